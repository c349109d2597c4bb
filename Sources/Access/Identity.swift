import Crypto
import EventLog
import Logging
import PostgresEventStore
import PostgresNIO
import Foundation

/// Who a caller is: a user (or service account) and the roles it belongs to.
public struct Caller: Sendable, Hashable {
    public static let adminRole = "admin"
    /// Users from the OIDC issuer are `oidc:<name>`: Topsail's own users and service accounts
    /// cannot contain ':', so the two never meet.
    public static let oidcPrefix = "oidc:"

    public let user: String
    public let roles: Set<String>

    public init(user: String, roles: Set<String>) {
        self.user = user
        self.roles = roles
    }

    public var isAdmin: Bool { roles.contains(Self.adminRole) }
}

/// API tokens and users, kept as event streams like everything else: `token-<id>` holds
/// `token.created` (the SHA-256 of the secret, never the secret) and `token.revoked`;
/// `user-<name>` holds `user.saved` with the user's roles.
///
/// A token reads `tsk_<id>_<secret>`: the id names its stream, so checking a token is one read of
/// one stream, with nothing to index and no read model to lag behind a revocation.
public struct Identities: Sendable {
    /// How every API token begins.
    public static let tokenPrefix = "tsk_"

    let tokens: VersionedDocuments
    let users: VersionedDocuments

    public init(store: any EventStore) {
        tokens = VersionedDocuments(category: "token", store: store)
        users = VersionedDocuments(category: "user", store: store)
    }

    public struct IssuedToken: Sendable {
        public let id: String
        /// Shown once; only its hash is stored.
        public let token: String
    }

    public struct TokenInfo: Sendable, Encodable {
        public let id: String
        public let name: String?
        public let user: String
        public let createdAt: Date
        public let createdBy: String?
        public let revoked: Bool
    }

    /// Issues a token for `user`; with `roles`, the user's roles become those.
    public func issue(user: String, name: String?, roles: [String]? = nil, metadata: EventMetadata) async throws -> IssuedToken {
        guard Self.validName(user) else { throw AccessError("user names are letters, digits, '.', '_', '@' and '-' (at most 100)") }
        if let roles { try await setRoles(user: user, roles: roles, metadata: metadata) }
        // Hex, so that an id never starts with '-' (command lines would take it for an option).
        let id = Self.randomHex(bytes: 8)
        let secret = Self.random(bytes: 32)
        let document: JSONValue = ["id": .string(id), "name": name.map(JSONValue.string) ?? .null, "user": .string(user),
                                   "sha256": .string(Self.hash(secret))]
        try await tokens.save(document, id: id, basedOn: 0, metadata: metadata)
        return IssuedToken(id: id, token: "\(Self.tokenPrefix)\(id)_\(secret)")
    }

    /// Issues a browser session for `caller` (decision 0020): a token like any other, kept in the
    /// session cookie, that lapses after `lifetime`. A user from the OIDC issuer has no user stream;
    /// the roles its JWT carried are kept with the session.
    public func issueSession(for caller: Caller, lifetime: Duration, metadata: EventMetadata) async throws -> IssuedToken {
        let oidc = caller.user.hasPrefix(Caller.oidcPrefix)
        guard oidc || Self.validName(caller.user) else { throw AccessError("user names are letters, digits, '.', '_', '@' and '-' (at most 100)") }
        let id = Self.randomHex(bytes: 8)
        let secret = Self.random(bytes: 32)
        var document: [String: JSONValue] = [
            "id": .string(id), "name": "browser session", "user": .string(caller.user), "sha256": .string(Self.hash(secret)), "session": true,
            "expiresAt": .number(Date().addingTimeInterval(Double(lifetime.components.seconds)).timeIntervalSince1970.rounded()),
        ]
        if oidc { document["roles"] = .array(caller.roles.sorted().map(JSONValue.string)) }
        try await tokens.save(.object(document), id: id, basedOn: 0, metadata: metadata)
        return IssuedToken(id: id, token: "\(Self.tokenPrefix)\(id)_\(secret)")
    }

    public func setRoles(user: String, roles: [String], metadata: EventMetadata) async throws {
        var document = try await users.latest(user)?.document.objectValue ?? [:]
        document["name"] = .string(user)
        document["roles"] = .array(Set(roles).sorted().map(JSONValue.string))
        try await users.save(.object(document), id: user, metadata: metadata)
    }

    /// Creates or updates a service account: a user that automation acts as (a trigger's
    /// `runAsUser`), member of `roles`. Nobody logs in as one.
    public func saveServiceAccount(_ name: String, roles: [String], metadata: EventMetadata) async throws {
        guard Self.validName(name) else { throw AccessError("service account names are letters, digits, '.', '_', '@' and '-' (at most 100)") }
        try await users.save(
            ["name": .string(name), "roles": .array(Set(roles).sorted().map(JSONValue.string)), "serviceAccount": true], id: name, metadata: metadata)
    }

    /// The service account called `name` as a caller, or nil when there is none by that name.
    public func serviceAccount(_ name: String) async throws -> Caller? {
        guard Self.validName(name), let document = try await users.latest(name)?.document, document["serviceAccount"] == true else { return nil }
        return Caller(user: name, roles: Set(document["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []))
    }

    public func roles(of user: String) async throws -> Set<String> {
        Set(try await users.latest(user)?.document["roles"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    /// The caller a token stands for, or nil when it is malformed, unknown or revoked.
    public func caller(token: String) async throws -> Caller? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "tsk", !parts[1].isEmpty, parts[1].count <= 40, !parts[2].isEmpty else { return nil }
        guard let stored = try await tokens.latest(String(parts[1])),
              let expected = stored.document["sha256"]?.stringValue, let user = stored.document["user"]?.stringValue,
              Self.constantTimeEqual(expected, Self.hash(String(parts[2])))
        else { return nil }
        if let expires = stored.document["expiresAt"]?.doubleValue, Date().timeIntervalSince1970 >= expires { return nil }
        if let kept = stored.document["roles"]?.arrayValue { return Caller(user: user, roles: Set(kept.compactMap(\.stringValue))) }
        return Caller(user: user, roles: try await roles(of: user))
    }

    /// Revokes a token; false when there is no such token or it was revoked already.
    public func revoke(id: String, metadata: EventMetadata) async throws -> Bool {
        try await tokens.delete(id, metadata: metadata) != nil
    }

    static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func random(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "-")
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "_", with: "-")
    }

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 100
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._@-".unicodeScalars.contains($0) }
    }
}

/// Every token's state, from the log.
public struct TokenListing: Sendable {
    public struct Token: Sendable, Encodable {
        public let id: String
        public let user: String
        public let name: String?
        public let created: Date
        public let revoked: Bool
    }

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Every token's first save and whether it was deleted (`events_by_type` serves it).
    public static var query: PostgresQuery {
        """
        SELECT substring(stream_id FROM 7), min(payload->'token'->>'user'), min(payload->'token'->>'name'), min(recorded_at),
               bool_or(event_type = 'token.deleted')
          FROM events WHERE event_type IN ('token.saved', 'token.deleted')
         GROUP BY stream_id ORDER BY min(recorded_at)
        """
    }

    public func all() async throws -> [Token] {
        var result: [Token] = []
        do {
            for try await (id, user, name, created, revoked) in try await client.query(Self.query, logger: logger)
                .decode((String, String?, String?, Date, Bool).self) {
                result.append(Token(id: id, user: user ?? "?", name: name, created: created, revoked: revoked))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "list tokens")
        }
        return result
    }
}

/// A request Access refuses as given (a name it cannot hold, a document without an id): safe to show.
public struct AccessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
