import Access
import EventLog
import Foundation
import Logging

/// Cloud accounts, each the stream `account-<name>` of versioned documents:
/// `{"name", "type": "podman", "regions": ["local"], "permissions": {"READ": [roles], "WRITE": [roles]}}`.
/// Like an application's, an account's permissions decide who may see (READ) and change (WRITE)
/// what runs in it; an account without permissions is open to every caller, admins may do all.
public struct CloudAccounts: Sendable {
    public static let category = "account"
    public static let types = ["podman"]

    public let documents: VersionedDocuments

    public init(store: any EventStore) {
        documents = VersionedDocuments(category: Self.category, store: store)
    }

    public struct Account: Sendable, Hashable {
        public var name: String
        public var type: String
        public var regions: [String]
        public var document: JSONValue
    }

    /// What is wrong with an account document, if anything.
    public static func problem(_ document: JSONValue) -> String? {
        guard let name = document["name"]?.stringValue, ApplicationStore.problem(name: name) == nil else {
            return "an account needs a name of lowercase letters, digits and '-', starting with a letter"
        }
        guard let type = document["type"]?.stringValue, types.contains(type) else { return "an account's type must be one of \(types.joined(separator: ", "))" }
        if let regions = document["regions"], regions.arrayValue?.allSatisfy({ $0.stringValue?.isEmpty == false }) != true {
            return "regions must be a list of names"
        }
        return nil
    }

    public func save(_ document: JSONValue, metadata: EventMetadata) async throws -> Int64 {
        if let problem = Self.problem(document) { throw CloudError(problem) }
        return try await documents.save(document, id: document["name"]!.stringValue!, metadata: metadata)
    }

    public func account(_ name: String) async throws -> Account? {
        guard let latest = try await documents.latest(name), let type = latest.document["type"]?.stringValue else { return nil }
        let regions = latest.document["regions"]?.arrayValue?.compactMap(\.stringValue) ?? ["local"]
        return Account(name: name, type: type, regions: regions.isEmpty ? ["local"] : regions, document: latest.document)
    }

    /// Why `caller` may not `permission` the account, or nil when it may.
    public static func refusal(_ caller: Caller, _ permission: Permission, account: Account) -> String? {
        guard !Authorization.allows(caller, permission, application: account.document) else { return nil }
        return Authorization.refusal(caller, permission, application: account.name, account.document)
            .replacingOccurrences(of: "application \(account.name)", with: "account \(account.name)")
    }
}
