import Access
import EventLog
import Foundation
import Hummingbird
import PipelineEngine

/// Identity routes: API tokens and service accounts. Admins manage everyone's; anyone else may
/// issue, list and revoke tokens of their own (without roles: roles are an admin's to give).
extension APIServer {
    func addIdentityRoutes(to routes: Routes) {
        routes.on(.get, "/tokens", .authenticated) { _, context in
            let caller = try context.requireCaller()
            let tokens = try await TokenListing(client: client, logger: logger).all()
            return try Self.json(caller.isAdmin ? tokens : tokens.filter { $0.user == caller.user })
        }
        routes.on(.post, "/tokens", .authenticated) { request, context in
            let caller = try context.requireCaller()
            let body = try await self.body(request, allowEmpty: true)
            let given = try Self.string(body, "user")
            guard given != nil || !caller.user.hasPrefix(Caller.oidcPrefix) else {
                throw APIError(.forbidden, "forbidden", "\(caller.user) signs in through its OIDC provider; API tokens are for Topsail users and service accounts")
            }
            let user = given ?? caller.user
            let name = try Self.string(body, "name")
            let roles = try Self.names(body, "roles")
            guard caller.isAdmin || (user == caller.user && roles == nil) else {
                throw APIError(.forbidden, "forbidden", "\(caller.user) may issue tokens only for itself and without roles; admins issue the others")
            }
            guard Identities.validName(user) else {
                throw APIError(.badRequest, "bad_request", "user names are letters, digits, '.', '_', '@' and '-' (at most 100)",
                               problems: [.init(path: "user", stage: nil, message: "not a valid user name")])
            }
            let issued = try await Identities(store: repository.eventStore).issue(user: user, name: name, roles: roles, metadata: Self.metadata(context))
            return try Self.json(["id": .string(issued.id), "user": .string(user), "token": .string(issued.token)] as JSONValue, status: .created)
        }
        routes.on(.delete, "/tokens/:id", .admin) { _, context in
            let caller = try context.requireCaller()
            let id = try context.parameters.require("id")
            guard let token = try await TokenListing(client: client, logger: logger).all().first(where: { $0.id == id && !$0.revoked }) else {
                throw APIError.notFound("no active token \(id)")
            }
            guard caller.isAdmin || token.user == caller.user else {
                throw APIError(.forbidden, "forbidden", "\(caller.user) may revoke only its own tokens")
            }
            _ = try await Identities(store: repository.eventStore).revoke(id: id, metadata: Self.metadata(context))
            return try Self.json(["id": .string(id), "revoked": true] as JSONValue)
        }
        routes.on(.post, "/serviceAccounts", .admin) { request, context in
            let caller = try context.requireCaller()
            guard caller.isAdmin else { throw APIError(.forbidden, "forbidden", "only admins create service accounts") }
            let body = try await self.body(request)
            guard let name = try Self.string(body, "name"), Identities.validName(name) else {
                throw APIError(.badRequest, "bad_request", "a service account needs a name of letters, digits, '.', '_', '@' and '-' (at most 100)",
                               problems: [.init(path: "name", stage: nil, message: "missing or not a valid name")])
            }
            guard let roles = try Self.names(body, "roles"), !roles.isEmpty else {
                throw APIError(.badRequest, "bad_request", "a service account needs at least one role",
                               problems: [.init(path: "roles", stage: nil, message: "required: a list of role names")])
            }
            try await Identities(store: repository.eventStore).saveServiceAccount(name, roles: roles, metadata: Self.metadata(context))
            return try Self.json(["name": .string(name), "roles": .array(Set(roles).sorted().map(JSONValue.string))] as JSONValue)
        }
    }

    /// An optional string field of a body.
    static func string(_ body: JSONValue, _ field: String) throws -> String? {
        guard let value = body[field], value != .null else { return nil }
        guard let text = value.stringValue else {
            throw APIError(.badRequest, "bad_request", "\(field) must be a string", problems: [.init(path: field, stage: nil, message: "not a string")])
        }
        return text
    }

    /// An optional list of names (roles) in a body: non-empty strings of at most 100 characters.
    static func names(_ body: JSONValue, _ field: String) throws -> [String]? {
        guard let value = body[field], value != .null else { return nil }
        let items = value.arrayValue ?? []
        let names = items.compactMap(\.stringValue)
        guard value.arrayValue != nil, items.count <= 100, names.count == items.count, names.allSatisfy({ !$0.isEmpty && $0.count <= 100 }) else {
            throw APIError(.badRequest, "bad_request", "\(field) must be a list of at most 100 names",
                           problems: [.init(path: field, stage: nil, message: "not a list of names")])
        }
        return names
    }
}
