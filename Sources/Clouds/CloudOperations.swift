import Access
import Crypto
import EventLog
import Foundation
import Logging

/// Cloud operations as events (decision 0017). An operation is requested on the stream of its
/// idempotency key (`operation-<hash>`, written only if new), carried out by the account's
/// provider, and recorded as succeeded (with the server group as it then is) or failed; the
/// server group's own stream (`servergroup-<account>.<region>.<name>`) records what it became.
/// The same key again returns the recorded outcome, or carries an interrupted operation on (the
/// provider converges, so nothing is launched twice).
public struct CloudOperations: Sendable {
    public static let requestedType = "cloud.operation.requested"
    public static let succeededType = "cloud.operation.succeeded"
    public static let failedType = "cloud.operation.failed"
    public static let upsertedType = "servergroup.upserted"
    public static let destroyedType = "servergroup.destroyed"
    public static let enabledType = "servergroup.enabled"
    public static let disabledType = "servergroup.disabled"
    /// An operation on the server group began (the observer leaves a server group alone meanwhile).
    public static let operationStartedType = "servergroup.operation.started"
    /// The observer found fewer (or more) running instances than the log says, and converged.
    public static let driftType = "servergroup.drift.detected"
    /// The observer saw instances' health change.
    public static let healthChangedType = "servergroup.health.changed"
    public static let loadBalancerUpsertedType = "loadbalancer.upserted"
    public static let loadBalancerDeletedType = "loadbalancer.deleted"
    public static let securityGroupUpsertedType = "securitygroup.upserted"
    public static let securityGroupDeletedType = "securitygroup.deleted"

    public enum Operation: Sendable, Hashable {
        case createServerGroup(ServerGroupSpec)
        case resizeServerGroup(ServerGroupName, region: String, capacity: Capacity)
        case destroyServerGroup(ServerGroupName, region: String)
        case enableServerGroup(ServerGroupName, region: String)
        /// `percentage` below 100: only that share of its instances (a rolling deploy's step).
        case disableServerGroup(ServerGroupName, region: String, percentage: Int)
        case terminateInstances([String], region: String)
        case upsertLoadBalancer(name: String, region: String, port: Int, healthCheck: String, securityGroups: [String])
        case deleteLoadBalancer(name: String, region: String)
        case upsertSecurityGroup(name: String, region: String, rules: [IngressRule])
        case deleteSecurityGroup(name: String, region: String)

        var name: String {
            switch self {
            case .createServerGroup: "createServerGroup"
            case .resizeServerGroup: "resizeServerGroup"
            case .destroyServerGroup: "destroyServerGroup"
            case .enableServerGroup: "enableServerGroup"
            case .disableServerGroup: "disableServerGroup"
            case .terminateInstances: "terminateInstances"
            case .upsertLoadBalancer: "upsertLoadBalancer"
            case .deleteLoadBalancer: "deleteLoadBalancer"
            case .upsertSecurityGroup: "upsertSecurityGroup"
            case .deleteSecurityGroup: "deleteSecurityGroup"
            }
        }

        /// The server group it acts on (nil for load balancer operations) and its region.
        var target: (ServerGroupName?, String) {
            switch self {
            case .createServerGroup(let spec): (spec.name, spec.region)
            case .resizeServerGroup(let name, let region, _), .destroyServerGroup(let name, let region),
                 .enableServerGroup(let name, let region), .disableServerGroup(let name, let region, _): (name, region)
            case .terminateInstances(_, let region), .upsertLoadBalancer(_, let region, _, _, _), .deleteLoadBalancer(_, let region),
                 .upsertSecurityGroup(_, let region, _), .deleteSecurityGroup(_, let region): (nil, region)
            }
        }

        var json: JSONValue {
            var fields: [String: JSONValue] = ["operation": .string(name), "region": .string(target.1)]
            if let group = target.0 { fields["serverGroup"] = .string(group.description) }
            switch self {
            case .createServerGroup(let spec):
                fields["image"] = .string(spec.image)
                fields["capacity"] = Self.json(spec.capacity)
                fields["port"] = .number(Double(spec.port))
            case .resizeServerGroup(_, _, let capacity):
                fields["capacity"] = Self.json(capacity)
            case .destroyServerGroup, .enableServerGroup:
                break
            case .disableServerGroup(_, _, let percentage):
                fields["percentage"] = .number(Double(percentage))
            case .terminateInstances(let ids, _):
                fields["instanceIds"] = .array(ids.map(JSONValue.string))
            case .upsertLoadBalancer(let name, _, let port, let healthCheck, let groups):
                fields["loadBalancer"] = .string(name)
                fields["port"] = .number(Double(port))
                fields["healthCheck"] = .string(healthCheck)
                fields["securityGroups"] = .array(groups.map(JSONValue.string))
            case .deleteLoadBalancer(let name, _):
                fields["loadBalancer"] = .string(name)
            case .upsertSecurityGroup(let name, _, let rules):
                fields["securityGroup"] = .string(name)
                fields["rules"] = .array(rules.map { ["cidr": .string($0.cidr), "startPort": .number(Double($0.startPort)), "endPort": .number(Double($0.endPort))] })
            case .deleteSecurityGroup(let name, _):
                fields["securityGroup"] = .string(name)
            }
            return .object(fields)
        }

        static func json(_ capacity: Capacity) -> JSONValue {
            ["min": .number(Double(capacity.min)), "max": .number(Double(capacity.max)), "desired": .number(Double(capacity.desired))]
        }
    }

    /// What an operation came to.
    public enum Outcome: Sendable {
        case succeeded(ServerGroupState?)
        case failed(String)
    }

    let store: any EventStore
    let provider: @Sendable (CloudAccounts.Account) -> (any CloudProvider)?
    let logger: Logger

    /// `provider` gives the provider of an account (nil: none for its type here).
    public init(store: any EventStore, logger: Logger, provider: @escaping @Sendable (CloudAccounts.Account) -> (any CloudProvider)?) {
        self.store = store
        self.provider = provider
        self.logger = logger
    }

    /// The operations of this installation: podman accounts run containers on this machine; no
    /// other provider type runs here.
    public static func standard(store: any EventStore, logger: Logger) -> CloudOperations {
        CloudOperations(store: store, logger: logger) { account in
            account.type == "podman" ? PodmanProvider(account: account.name, logger: logger) : nil
        }
    }

    public static func operationStream(_ key: String) throws -> StreamID {
        try StreamID(category: "operation", id: SHA256.hash(data: Array(key.utf8)).prefix(20).map { String(format: "%02x", $0) }.joined())
    }

    public static func serverGroupStream(account: String, region: String, name: ServerGroupName) throws -> StreamID {
        try StreamID(category: "servergroup", id: "\(account).\(region).\(name)")
    }

    /// A load balancer's or security group's stream: `loadbalancer-<account>.<region>.<name>`.
    public static func resourceStream(_ category: String, account: String, region: String, name: String) throws -> StreamID {
        try StreamID(category: category, id: "\(account).\(region).\(name)")
    }

    /// Carries out `operation` in `accountName` for `caller` (who needs WRITE on the account),
    /// once per `key`.
    public func perform(_ operation: Operation, account accountName: String, caller: Caller, key: String, metadata: EventMetadata) async throws -> Outcome {
        guard let account = try await CloudAccounts(store: store).account(accountName) else {
            return .failed("there is no account \(accountName): topsail accounts save \(accountName) --type podman")
        }
        if let refusal = CloudAccounts.refusal(caller, .write, account: account) { return .failed(refusal) }
        let (name, region) = operation.target
        guard account.regions.contains(region) else {
            return .failed("account \(accountName) has no region \(region) (it has \(account.regions.joined(separator: ", ")))")
        }
        guard let provider = provider(account) else { return .failed("no \(account.type) provider runs here for account \(accountName)") }
        let stream = try Self.operationStream(key)
        let history = try await store.readStream(stream, from: 1, direction: .forward, limit: 10)
        if let done = history.first(where: { $0.type == Self.succeededType || $0.type == Self.failedType }) {
            let payload = try done.payload.decode(JSONValue.self)
            return done.type == Self.failedType ? .failed(payload["error"]?.stringValue ?? "failed") : .succeeded(nil)
        }
        var request = operation.json.objectValue ?? [:]
        request["account"] = .string(accountName)
        request["key"] = .string(key)
        request["user"] = .string(caller.user)
        var version = history.last?.streamVersion ?? 0
        if history.isEmpty {
            do {
                version = try await append([(Self.requestedType, .object(request))], to: stream, expected: .noStream, metadata: metadata)
            } catch EventStoreError.versionConflict {
                // Requested at the same moment by another delivery of the same work: carry on; the
                // provider converges and only one outcome is recorded.
                version = try await store.readStream(stream, from: 1, direction: .forward, limit: 10).last?.streamVersion ?? 1
            }
        }
        let result: Outcome
        let groupStream = try name.map { try Self.serverGroupStream(account: accountName, region: region, name: $0) }
        if let groupStream {
            _ = try await append([(Self.operationStartedType, ["operation": .string(operation.name), "key": .string(key)])],
                                 to: groupStream, expected: .any, metadata: metadata)
        }
        do {
            switch operation {
            case .createServerGroup(let spec):
                let state = try await provider.createServerGroup(spec, key: key)
                if let groupStream { try await record(state, account: accountName, stream: groupStream, metadata: metadata) }
                result = .succeeded(state)
            case .resizeServerGroup(let name, let region, let capacity):
                let state = try await provider.resizeServerGroup(name, region: region, capacity: capacity, key: key)
                if let groupStream { try await record(state, account: accountName, stream: groupStream, metadata: metadata) }
                result = .succeeded(state)
            case .destroyServerGroup(let name, let region):
                try await provider.destroyServerGroup(name, region: region, key: key)
                if let groupStream {
                    _ = try await append([(Self.destroyedType, ["account": .string(accountName), "region": .string(region), "serverGroup": .string(name.description)])],
                                         to: groupStream, expected: .any, metadata: metadata)
                }
                result = .succeeded(nil)
            case .enableServerGroup(let name, let region), .disableServerGroup(let name, let region, _):
                var percentage = 100
                if case .disableServerGroup(_, _, let share) = operation { percentage = share }
                let enabled = if case .enableServerGroup = operation { true } else { false }
                try await provider.setServerGroupEnabled(name, region: region, enabled: enabled, percentage: percentage, key: key)
                if let groupStream {
                    var payload: [String: JSONValue] = ["account": .string(accountName), "region": .string(region), "serverGroup": .string(name.description)]
                    if !enabled { payload["percentage"] = .number(Double(percentage)) }
                    _ = try await append([(enabled ? Self.enabledType : Self.disabledType, .object(payload))],
                                         to: groupStream, expected: .any, metadata: metadata)
                }
                let state = try await provider.serverGroup(name, region: region)
                if let groupStream, let state { try await record(state, account: accountName, stream: groupStream, metadata: metadata) }
                result = .succeeded(state)
            case .terminateInstances(let ids, _):
                try await provider.terminateInstances(ids, key: key)
                result = .succeeded(nil)
            case .upsertLoadBalancer(let name, let region, let port, let healthCheck, let groups):
                try await provider.upsertLoadBalancer(name, port: port, healthCheck: healthCheck, securityGroups: groups, key: key)
                _ = try await append([(Self.loadBalancerUpsertedType, [
                    "account": .string(accountName), "region": .string(region), "loadBalancer": .string(name), "port": .number(Double(port)),
                    "healthCheck": .string(healthCheck), "securityGroups": .array(groups.map(JSONValue.string)),
                ])], to: try Self.resourceStream("loadbalancer", account: accountName, region: region, name: name), expected: .any, metadata: metadata)
                result = .succeeded(nil)
            case .deleteLoadBalancer(let name, let region):
                try await provider.deleteLoadBalancer(name, key: key)
                _ = try await append([(Self.loadBalancerDeletedType, ["account": .string(accountName), "region": .string(region), "loadBalancer": .string(name)])],
                                     to: try Self.resourceStream("loadbalancer", account: accountName, region: region, name: name), expected: .any, metadata: metadata)
                result = .succeeded(nil)
            case .upsertSecurityGroup(let name, let region, let rules):
                try await provider.upsertSecurityGroup(name, rules: rules, key: key)
                var payload = operation.json.objectValue ?? [:]
                payload["operation"] = nil
                payload["account"] = .string(accountName)
                _ = try await append([(Self.securityGroupUpsertedType, .object(payload))],
                                     to: try Self.resourceStream("securitygroup", account: accountName, region: region, name: name), expected: .any, metadata: metadata)
                result = .succeeded(nil)
            case .deleteSecurityGroup(let name, let region):
                try await provider.deleteSecurityGroup(name, key: key)
                _ = try await append([(Self.securityGroupDeletedType, ["account": .string(accountName), "region": .string(region), "securityGroup": .string(name)])],
                                     to: try Self.resourceStream("securitygroup", account: accountName, region: region, name: name), expected: .any, metadata: metadata)
                result = .succeeded(nil)
            }
        } catch let error as CloudError {
            if error.retriable { throw error }
            result = .failed(error.description)
        }
        let (type, payload): (String, JSONValue)
        switch result {
        case .succeeded(let state): (type, payload) = (Self.succeededType, ["instances": .number(Double(state?.instances.count ?? 0))])
        case .failed(let error): (type, payload) = (Self.failedType, ["error": .string(error)])
        }
        do {
            _ = try await append([(type, payload)], to: stream, expected: .exact(version), metadata: metadata)
        } catch EventStoreError.versionConflict {
            // Recorded by the other delivery.
        }
        return result
    }

    /// The server group an operation with `key` asked for, if one was requested.
    public func requestedServerGroup(key: String) async throws -> String? {
        let first = try await store.readStream(try Self.operationStream(key), from: 1, direction: .forward, limit: 1).first
        return try first.flatMap { try $0.payload.decode(JSONValue.self)["serverGroup"]?.stringValue }
    }

    /// The application's server groups in the account, as its provider sees them now.
    public func serverGroups(account accountName: String, application: String) async throws -> [ServerGroupName] {
        try await serverGroupStates(account: accountName, application: application).map(\.name)
    }

    /// The application's server groups in the account with their instances and health, as its
    /// provider sees them now; for a caller who may READ the account (nil: the engine itself).
    public func serverGroupStates(account accountName: String, application: String, caller: Caller? = nil) async throws -> [ServerGroupState] {
        guard let account = try await CloudAccounts(store: store).account(accountName), let provider = provider(account) else { return [] }
        if let caller, let refusal = CloudAccounts.refusal(caller, .read, account: account) { throw CloudError(refusal) }
        return try await provider.serverGroups(of: application)
    }

    /// The provider of an account, for reads (nil: no such account, or no provider for its type here).
    public func provider(account accountName: String) async throws -> (any CloudProvider)? {
        try await CloudAccounts(store: store).account(accountName).flatMap(provider)
    }

    /// The server group as it is now, on its stream.
    func record(_ state: ServerGroupState, account: String, stream: StreamID, metadata: EventMetadata) async throws {
        _ = try await append([Self.upserted(state, account: account)], to: stream, expected: .any, metadata: metadata)
    }

    /// A `servergroup.upserted` event for the server group as it is.
    public static func upserted(_ state: ServerGroupState, account: String) -> (String, JSONValue) {
        let instances: [JSONValue] = state.instances.map { instance in
            ["id": .string(instance.id), "slot": .number(Double(instance.slot)), "health": .string(instance.health.rawValue),
             "address": instance.address.map(JSONValue.string) ?? .null]
        }
        return (Self.upsertedType, [
            "account": .string(account), "region": .string(state.region), "serverGroup": .string(state.name.description),
            "application": .string(state.name.application), "cluster": .string(state.name.cluster), "image": .string(state.image),
            "capacity": Operation.json(state.capacity), "instances": .array(instances), "disabled": .bool(state.disabled),
            "loadBalancers": .array(state.loadBalancers.map(JSONValue.string)),
        ])
    }

    func append(_ events: [(String, JSONValue)], to stream: StreamID, expected: ExpectedVersion, metadata: EventMetadata) async throws -> Int64 {
        let result = try await store.append(to: stream, expected: expected, events: try events.map { type, payload in
            NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: metadata)
        })
        return result.streamVersion
    }
}
