import Clouds
import EventLog
import Foundation
import Logging
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Clouddriver's caching agents done as events (decision 0018): every `interval`, and at once when
/// `podman events` reports a Topsail container dead, the observer compares each live server group
/// in the cluster view with what its provider runs.
///
/// - Fewer running instances than the log's desired capacity (a container killed behind
///   Topsail's back), or more: `servergroup.drift.detected` names what differs, the provider
///   converges to the logged capacity (the missing slots launched, extras removed), and
///   `servergroup.upserted` records the result.
/// - An instance that was Up and has failed its health checks for longer than `unhealthyGrace`
///   is terminated and replaced the same way (the drift event names it as unhealthy).
/// - Instances whose health changed (Up, Down, Starting, OutOfService): `servergroup.health.changed`
///   with each change and the new state — only on a change, never once per look.
///
/// Both are appended at the stream's version the observer read, so two observers (or an
/// operation) acting at once make one record, and a server group with an operation in flight
/// (`servergroup.operation.started` last) is left alone until it ends (or for two minutes, if
/// the operation's worker died).
public final class CloudObserverService: Service {
    let client: PostgresClient
    let store: any EventStore
    let operations: CloudOperations
    let interval: Duration
    /// How long an instance that was Up may fail its health checks before it is replaced.
    let unhealthyGrace: Duration
    let logger: Logger

    public init(
        client: PostgresClient, store: any EventStore, operations: CloudOperations, interval: Duration = .seconds(5),
        unhealthyGrace: Duration = .seconds(30), logger: Logger
    ) {
        self.client = client
        self.store = store
        self.operations = operations
        self.interval = interval
        self.unhealthyGrace = unhealthyGrace
        self.logger = logger
    }

    /// What one look found and did.
    public struct Findings: Sendable {
        public var looked = 0
        public var repaired: [String] = []
        public var healthChanged: [String] = []
    }

    public func run() async throws {
        // A container that dies makes the next look due at once (podman events); the rounds
        // every `interval` catch the rest (health, and anything the stream missed).
        let woken = Mutex(false)
        let events = PodmanEvents(logger: logger)
        events.start { [logger] died in
            logger.info("podman events: a container died", metadata: ["container": "\(died.container)", "account": "\(died.account)"])
            woken.withLock { $0 = true }
        }
        defer { events.stop() }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let findings = try await self.observe()
                    if !findings.repaired.isEmpty || !findings.healthChanged.isEmpty {
                        self.logger.info("cloud observed", metadata: [
                            "repaired": "\(findings.repaired.joined(separator: ", "))", "health-changed": "\(findings.healthChanged.joined(separator: ", "))",
                        ])
                    }
                } catch {
                    self.logger.warning("observing the clouds failed; retrying", metadata: ["error": "\(error)"])
                }
                let next = ContinuousClock.now + self.interval
                while ContinuousClock.now < next, !woken.withLock({ $0 }), !Task.isCancelled {
                    try? await Task.sleep(for: min(.milliseconds(100), next - ContinuousClock.now))
                }
                woken.withLock { $0 = false }
            }
        }
    }

    /// One look at every live server group.
    public func observe() async throws -> Findings {
        var findings = Findings()
        var rows: [(String, String, String, String)] = []
        do {
            for try await row in try await client.query(
                "SELECT stream_id, account, region, name FROM server_groups WHERE NOT destroyed ORDER BY stream_id", logger: logger
            ).decode((String, String, String, String).self) { rows.append(row) }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the live server groups")
        }
        var providers: [String: (any CloudProvider)?] = [:]
        for (streamText, account, region, nameText) in rows {
            guard let name = ServerGroupName(parsing: nameText), let stream = try? StreamID(streamText) else { continue }
            if providers[account] == nil { providers[account] = .some(try await operations.provider(account: account)) }
            guard let provider = providers[account] ?? nil else { continue }
            findings.looked += 1
            do {
                switch try await observe(name, region: region, account: account, stream: stream, provider: provider) {
                case .repaired: findings.repaired.append(nameText)
                case .healthChanged: findings.healthChanged.append(nameText)
                case .unchanged: break
                }
            } catch {
                logger.warning("observing a server group failed", metadata: ["server-group": "\(nameText)", "account": "\(account)", "error": "\(error)"])
            }
        }
        return findings
    }

    enum Change { case unchanged, repaired, healthChanged }

    func observe(_ name: ServerGroupName, region: String, account: String, stream: StreamID, provider: any CloudProvider) async throws -> Change {
        let recent = try await store.readStream(stream, from: .max, direction: .backward, limit: 50)
        guard let last = recent.first else { return .unchanged }
        if last.type == CloudOperations.operationStartedType, Date().timeIntervalSince(last.recordedAt) < 120 { return .unchanged }
        guard let recorded = try recent.first(where: { $0.type == CloudOperations.upsertedType }).map({ try $0.payload.decode(JSONValue.self) }),
              last.type != CloudOperations.destroyedType else { return .unchanged }
        let capacity = Capacity(min: recorded["capacity"]?["min"]?.intValue ?? 0, max: recorded["capacity"]?["max"]?.intValue ?? 0,
                                desired: recorded["capacity"]?["desired"]?.intValue ?? 0)
        let metadata = EventMetadata(correlationID: stream.description, actor: "observer", source: "observer")
        let state = try await provider.serverGroup(name, region: region)
        // An instance that was Up and has failed its health checks for longer than the grace is
        // replaced, as an auto-scaling group replaces an instance its load balancer finds unhealthy.
        // One that never came up is left (a failed deploy's server group is not churned).
        // Down since its latest change to Down, if the log ever recorded it Up.
        var downSince: [String: Date] = [:]
        var wasUp: Set<String> = []
        for event in recent {
            let payload = try event.payload.decode(JSONValue.self)
            if event.type == CloudOperations.healthChangedType {
                for change in payload["changes"]?.arrayValue ?? [] {
                    guard let id = change["id"]?.stringValue else { continue }
                    if change["from"] == "Up" || change["to"] == "Up" { wasUp.insert(id) }
                    if !downSince.keys.contains(id) { downSince[id] = change["to"] == "Down" ? event.recordedAt : .distantFuture }
                }
            } else if event.type == CloudOperations.upsertedType {
                for instance in payload["instances"]?.arrayValue ?? [] where instance["health"] == "Up" {
                    if let id = instance["id"]?.stringValue { wasUp.insert(id) }
                }
            }
        }
        for id in downSince.keys where !wasUp.contains(id) { downSince[id] = .distantFuture }
        let graceSeconds = Double(unhealthyGrace.components.seconds) + Double(unhealthyGrace.components.attoseconds) / 1e18
        let unhealthy = (state?.instances ?? []).filter { instance in
            instance.running && instance.health == .down && Date().timeIntervalSince(downSince[instance.id] ?? .distantFuture) > graceSeconds
        }
        let running = state?.instances.filter { $0.running && !unhealthy.contains($0) } ?? []
        if running.count != capacity.desired {
            let stopped = (state?.instances ?? []).filter { !$0.running }
            let present = Set(running.map(\.slot))
            let drift: JSONValue = [
                "account": .string(account), "region": .string(region), "serverGroup": .string(name.description),
                "desired": .number(Double(capacity.desired)), "running": .number(Double(running.count)),
                "stopped": .array(stopped.map { .string($0.id) }), "unhealthy": .array(unhealthy.map { .string($0.id) }),
                "missingSlots": .array((0..<capacity.desired).filter { !present.contains($0) }.map { .number(Double($0)) }),
            ]
            // Claimed at the version read: another observer or an operation that got there first wins.
            do {
                _ = try await store.append(to: stream, expected: .exact(last.streamVersion), events: [
                    NewEvent(type: CloudOperations.driftType, payload: try JSONText(encoding: drift), metadata: metadata),
                ])
            } catch EventStoreError.versionConflict {
                return .unchanged
            }
            let key = "observer/\(stream)/\(last.streamVersion)"
            if !unhealthy.isEmpty { try await provider.terminateInstances(unhealthy.map(\.id), key: key) }
            let repaired: ServerGroupState
            if let state, state.instances.count > unhealthy.count {
                repaired = try await provider.resizeServerGroup(name, region: region, capacity: capacity, key: key)
            } else {
                // Nothing of it left to copy from: launched again from what the log recorded.
                let balancers = (recorded["loadBalancers"]?.arrayValue ?? []).compactMap(\.stringValue)
                let spec = ServerGroupSpec(name: name, region: region, image: recorded["image"]?.stringValue ?? "", capacity: capacity, loadBalancers: balancers)
                repaired = try await provider.createServerGroup(spec, key: key)
            }
            let (type, payload) = CloudOperations.upserted(repaired, account: account)
            _ = try await store.append(to: stream, expected: .any, events: [NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: metadata)])
            logger.warning("server group drifted from the log; converged", metadata: [
                "server-group": "\(name)", "account": "\(account)", "desired": "\(capacity.desired)", "running": "\(running.count)",
            ])
            return .repaired
        }
        guard let state else { return .unchanged }
        var before: [String: String] = [:]
        for instance in recorded["instances"]?.arrayValue ?? [] {
            if let id = instance["id"]?.stringValue { before[id] = instance["health"]?.stringValue }
        }
        let changes: [JSONValue] = state.instances.compactMap { instance in
            guard before[instance.id] != instance.health.rawValue else { return nil }
            return ["id": .string(instance.id), "slot": .number(Double(instance.slot)),
                    "from": before[instance.id].map(JSONValue.string) ?? .null, "to": .string(instance.health.rawValue)]
        }
        let gone = Set(before.keys).subtracting(state.instances.map(\.id))
        guard !changes.isEmpty || !gone.isEmpty || recorded["disabled"]?.boolValue != state.disabled else { return .unchanged }
        let (type, payload) = CloudOperations.upserted(state, account: account)
        do {
            _ = try await store.append(to: stream, expected: .exact(last.streamVersion), events: [
                NewEvent(type: CloudOperations.healthChangedType, payload: try JSONText(encoding: [
                    "account": .string(account), "region": .string(region), "serverGroup": .string(name.description), "changes": .array(changes),
                ] as JSONValue), metadata: metadata),
                NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: metadata),
            ])
        } catch EventStoreError.versionConflict {
            return .unchanged
        }
        return .healthChanged
    }
}
