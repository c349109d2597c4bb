import Access
import Clouds
import EventLog
import Pipelines
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Testing

/// The podman provider against real containers (runc, loopback ports): server groups created,
/// converged, resized, their instances answering HTTP, and destroyed.
@Suite("Clouds: the podman provider on real containers", .serialized, .timeLimit(.minutes(5)))
struct PodmanProviderTests {
    /// A tiny HTTP service image (busybox httpd answering `version`), built locally: no registry is reachable.
    static func image(version: String) async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("image"))
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("www"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(atPath: "/usr/bin/busybox", toPath: directory.appendingPathComponent("busybox").path)
        try version.write(to: directory.appendingPathComponent("www/index.html"), atomically: true, encoding: .utf8)
        try """
            FROM scratch
            COPY busybox /bin/busybox
            COPY www /www
            EXPOSE 8080
            ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
            """.write(to: directory.appendingPathComponent("Containerfile"), atomically: true, encoding: .utf8)
        let tag = "localhost/topsail-test-service:\(version)"
        let built = try await CLITests.run(["build", "--quiet", "--tag", tag, directory.path], executable: URL(fileURLWithPath: "/usr/bin/podman"))
        guard built.status == 0 else { throw SetupError("podman build: \(built.stderr)") }
        return tag
    }

    static func get(_ address: String) async -> String? {
        guard let (data, response) = try? await URLSession.shared.data(from: URL(string: "http://\(address)/")!),
              (response as? HTTPURLResponse)?.statusCode == 200 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    @Test("a server group is created with its instances answering, created again launches nothing, resizes up and down, replaces a terminated instance, and is destroyed")
    func serverGroupLifecycle() async throws {
        let account = TestEnvironment.uniqueName("acct")
        let provider = PodmanProvider(account: account, logger: TestEnvironment.logger)
        let image = try await Self.image(version: "v1")
        let name = ServerGroupName(application: "shop", stack: "test", sequence: 0)
        defer { Task { try? await provider.destroyServerGroup(name, region: "local", key: "cleanup") } }
        let spec = ServerGroupSpec(name: name, region: "local", image: image, capacity: Capacity(min: 1, max: 4, desired: 2))
        let created = try await provider.createServerGroup(spec, key: "op-1")
        #expect(created.instances.count == 2 && created.instances.map(\.slot) == [0, 1], "\(created)")
        for instance in created.instances {
            let address = try #require(instance.address)
            try await eventually(timeout: .seconds(20), "instance \(instance.id) to answer") { await Self.get(address) == "v1" }
        }
        // The same operation delivered again: the same two containers, nothing launched.
        let again = try await provider.createServerGroup(spec, key: "op-1")
        #expect(Set(again.instances.map(\.id)) == Set(created.instances.map(\.id)), "\(again.instances) vs \(created.instances)")

        let bigger = try await provider.resizeServerGroup(name, region: "local", capacity: Capacity(min: 1, max: 4, desired: 3), key: "op-2")
        #expect(bigger.instances.count == 3 && Set(created.instances.map(\.id)).isSubset(of: Set(bigger.instances.map(\.id))))
        // An instance terminated: the next convergence puts its slot back.
        try await provider.terminateInstances([bigger.instances[1].id], key: "op-3")
        let healed = try await provider.resizeServerGroup(name, region: "local", capacity: Capacity(min: 1, max: 4, desired: 3), key: "op-4")
        #expect(healed.instances.map(\.slot) == [0, 1, 2] && !healed.instances.map(\.id).contains(bigger.instances[1].id), "\(healed.instances)")
        let smaller = try await provider.resizeServerGroup(name, region: "local", capacity: Capacity(min: 1, max: 4, desired: 1), key: "op-5")
        #expect(smaller.instances.map(\.slot) == [0])
        let listed = try await provider.serverGroups(of: "shop")
        #expect(listed.count == 1 && listed.first?.name == name && listed.first?.instances.count == 1, "\(listed)")

        // Another account's provider sees nothing of this one and cannot terminate its instances.
        let other = PodmanProvider(account: account + "-other", logger: TestEnvironment.logger)
        #expect(try await other.serverGroups(of: "shop").isEmpty)
        try await other.terminateInstances(smaller.instances.map(\.id), key: "op-6")
        #expect(try await provider.serverGroups(of: "shop").first?.instances.count == 1)

        await #expect(throws: CloudError.self) {
            try await provider.resizeServerGroup(name, region: "local", capacity: Capacity(min: 2, max: 4, desired: 1), key: "op-7")
        }
        try await provider.destroyServerGroup(name, region: "local", key: "op-8")
        #expect(try await provider.serverGroups(of: "shop").isEmpty)
        try await provider.destroyServerGroup(name, region: "local", key: "op-8")
    }
}

/// Cloud stages in pipelines run by a real `topsail all`: operations as events, account permissions.
@Suite("Clouds: server group stages through the engine", .serialized, .timeLimit(.minutes(5)))
struct ServerGroupStageTests {
    typealias Engine = EngineTests.Engine

    @Test("createServerGroup, resizeServerGroup and destroyServerGroup run as the trigger's identity: each operation requested and recorded as events, the server group's stream follows it; a caller without WRITE on the account is refused")
    func stagesRunOperations() async throws {
        try await TestDatabase.with { db in
            let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
            let engine = try Engine(db, environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
            defer { engine.process.terminate() }
            let account = TestEnvironment.uniqueName("acct").lowercased().replacingOccurrences(of: "_", with: "-")
            let port = try PrivateBroker.freePort()
            _ = try await CloudAccounts(store: db.store).save([
                "name": .string(account), "type": "podman", "regions": ["local"],
                "permissions": ["READ": ["deployers", "devs"], "WRITE": ["deployers"]],
            ], metadata: EventMetadata(source: "test"))
            let image = try await PodmanProviderTests.image(version: "stage")
            defer { Task { try? await PodmanProvider(account: account, logger: TestEnvironment.logger).destroyServerGroup(ServerGroupName(application: "shop", stack: "e2e", sequence: 0), region: "local", key: "cleanup") } }
            let pipeline: JSONValue = [
                "application": "shop", "name": "servergroups", "limitConcurrent": false,
                "stages": [
                    ["refId": "lb", "type": "upsertLoadBalancer",
                     "loadBalancers": [["name": "web", "credentials": .string(account), "region": "local", "listeners": [["externalPort": .number(Double(port))]]]]],
                    ["refId": "create", "type": "createServerGroup", "requisiteStageRefIds": ["lb"],
                     "clusters": [["account": .string(account), "region": "local", "stack": "e2e", "imageId": .string(image), "loadBalancers": ["web"],
                                   "capacity": ["min": 1, "max": 4, "desired": 2]]]],
                    ["refId": "resize", "type": "resizeServerGroup", "requisiteStageRefIds": ["create"], "credentials": .string(account),
                     "serverGroupName": "shop-e2e-v000", "region": "local", "capacity": ["min": 1, "max": 4, "desired": 3]],
                ],
            ]
            let teardown: JSONValue = [
                "application": "shop", "name": "teardown", "limitConcurrent": false,
                "stages": [
                    ["refId": "disable", "type": "disableServerGroup", "credentials": .string(account), "serverGroupName": "shop-e2e-v000", "region": "local"],
                    ["refId": "destroy", "type": "destroyServerGroup", "requisiteStageRefIds": ["disable"], "credentials": .string(account),
                     "serverGroupName": "shop-e2e-v000", "region": "local"],
                ],
            ]
            guard case .success(let config) = PipelineValidation.parse(pipeline), case .success(let teardownConfig) = PipelineValidation.parse(teardown) else {
                throw SetupError("invalid pipeline")
            }
            func trigger(_ config: PipelineConfig, as caller: Caller) async throws -> String {
                try await engine.repository.trigger(config, trigger: TriggerIdentity.recording(caller, in: ["type": "manual", "user": .string(caller.user)]),
                                                    parameters: [:], metadata: EventMetadata(source: "test"))
            }
            let deployer = Caller(user: "dee", roles: ["deployers"])
            let id = try await trigger(config, as: deployer)
            let state = try await engine.finished(id, timeout: .seconds(120))
            #expect(state.status == .succeeded, "\(state.stage("create").outputs) \(state.stage("resize").outputs)")
            #expect(state.stage("create").outputs["deploy.server.groups"]?["local"]?.arrayValue == ["shop-e2e-v000"], "\(state.stage("create").outputs)")
            #expect(state.stage("create").outputs["instances"]?.arrayValue?.count == 2)
            #expect(state.stage("resize").outputs["instances"] == 3)
            try await engine.until("the server group to answer through its load balancer") { await PodmanProviderTests.get("127.0.0.1:\(port)") == "stage" }

            // The cluster view, through the API: only for callers who may READ the account.
            let identities = Identities(store: db.store)
            let reader = try await identities.issue(user: "rita", name: nil, roles: ["devs"], metadata: EventMetadata(source: "test")).token
            let outsider = try await identities.issue(user: "otto", name: nil, roles: ["others"], metadata: EventMetadata(source: "test")).token
            try await APIContractTests.answering(engine)
            try await engine.until("the cluster view to show 3 instances") {
                let groups = try await APIContractTests.call("GET", engine.api + "/applications/shop/serverGroups", nil, reader).json.arrayValue ?? []
                return groups.first?["instances"]?.arrayValue?.count == 3
            }
            let groups = try await APIContractTests.call("GET", engine.api + "/applications/shop/serverGroups", nil, reader).json.arrayValue ?? []
            #expect(groups.count == 1 && groups.first?["name"] == "shop-e2e-v000" && groups.first?["capacity"]?["desired"] == 3, "\(groups)")
            let clusters = try await APIContractTests.call("GET", engine.api + "/applications/shop/clusters", nil, reader).json
            #expect(clusters[account]?.arrayValue == ["shop-e2e"], "\(clusters)")
            #expect(try await APIContractTests.call("GET", engine.api + "/applications/shop/serverGroups", nil, outsider).json.arrayValue?.isEmpty == true,
                    "a caller without READ on the account saw its server groups")

            let torn = try await engine.finished(try await trigger(teardownConfig, as: deployer), timeout: .seconds(60))
            #expect(torn.status == .succeeded, "\(torn.stage("destroy").outputs)")
            try await engine.until("the cluster view to drop the server group") {
                try await APIContractTests.call("GET", engine.api + "/applications/shop/serverGroups", nil, reader).json.arrayValue?.isEmpty == true
            }
            #expect(await PodmanProviderTests.get("127.0.0.1:\(port)") == nil, "the load balancer still sends traffic to a destroyed server group")
            try await PodmanProvider(account: account, stateDirectory: cloudState, logger: TestEnvironment.logger).deleteLoadBalancer("web", key: "cleanup")
            try? FileManager.default.removeItem(at: cloudState)
            var types: [String] = []
            for try await type in try await db.client.query(
                "SELECT event_type FROM events WHERE (stream_id LIKE 'operation-%' OR stream_id LIKE 'servergroup-%') AND coalesce(metadata->>'source', '') <> 'observer' ORDER BY position", logger: TestEnvironment.logger
            ).decode(String.self) { types.append(type) }
            #expect(types.filter { $0 == CloudOperations.requestedType }.count == 5 && types.filter { $0 == CloudOperations.succeededType }.count == 5, "\(types)")
            #expect(types.filter { $0 == CloudOperations.upsertedType }.count == 3 && types.filter { $0 == CloudOperations.destroyedType }.count == 1
                    && types.filter { $0 == CloudOperations.disabledType }.count == 1, "\(types)")
            #expect(try await PodmanProvider(account: account, logger: TestEnvironment.logger).serverGroups(of: "shop").isEmpty)

            let refused = try await trigger(config, as: Caller(user: "dev", roles: ["devs"]))
            let denied = try await engine.finished(refused, timeout: .seconds(60))
            #expect(denied.status == .terminal && denied.stage("lb").outputs["error"]?.stringValue?.contains("may not WRITE account \(account)") == true,
                    "\(denied.stage("lb").outputs)")
            #expect(try await PodmanProvider(account: account, logger: TestEnvironment.logger).serverGroups(of: "shop").isEmpty, "a refused caller launched something")
        }
    }
}

/// Load balancers: HAProxy in front of podman server groups, through its runtime API.
@Suite("Clouds: HAProxy load balancers in front of server groups", .serialized, .timeLimit(.minutes(5)))
struct LoadBalancerTests {
    /// Sends requests back to back until stopped; counts what each version answered and what failed.
    final class Load: @unchecked Sendable {
        // @unchecked: the counters are guarded by `lock`.
        private let lock = NSLock()
        private var answers: [String: Int] = [:]
        private var failures = 0
        private var stopped = false

        func run(_ url: String) async {
            while !lock.withLock({ stopped }) {
                let answer = await PodmanProviderTests.get(url)
                lock.withLock {
                    if let answer { answers[answer, default: 0] += 1 } else { failures += 1 }
                }
            }
        }

        func stop() { lock.withLock { stopped = true } }
        var snapshot: (answers: [String: Int], failures: Int) { lock.withLock { (answers, failures) } }
        func reset() { lock.withLock { answers = [:] } }
    }

    @Test("a server group behind a load balancer serves through it; a second one joins it; disabling the first moves all traffic with no failed request; destroying it too")
    func redBlackAtTheProviderLevel() async throws {
        let account = TestEnvironment.uniqueName("lb").lowercased().replacingOccurrences(of: "_", with: "-")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let provider = PodmanProvider(account: account, stateDirectory: state, logger: TestEnvironment.logger)
        let (v1, v2) = (try await PodmanProviderTests.image(version: "v1"), try await PodmanProviderTests.image(version: "v2"))
        let port = try PrivateBroker.freePort()
        let blue = ServerGroupName(application: "shop", stack: "web", sequence: 0), green = ServerGroupName(application: "shop", stack: "web", sequence: 1)
        defer {
            Task {
                try? await provider.destroyServerGroup(blue, region: "local", key: "cleanup")
                try? await provider.destroyServerGroup(green, region: "local", key: "cleanup")
                try? await provider.deleteLoadBalancer("web", key: "cleanup")
                try? FileManager.default.removeItem(at: state)
            }
        }
        try await provider.upsertLoadBalancer("web", port: port, healthCheck: "/", securityGroups: [], key: "lb-1")
        try await provider.upsertLoadBalancer("web", port: port, healthCheck: "/", securityGroups: [], key: "lb-1")
        let url = "127.0.0.1:\(port)"
        _ = try await provider.createServerGroup(ServerGroupSpec(name: blue, region: "local", image: v1, capacity: Capacity(min: 2, max: 2, desired: 2), loadBalancers: ["web"]), key: "sg-1")
        try await eventually(timeout: .seconds(20), "v1 to answer through the load balancer") { await PodmanProviderTests.get(url) == "v1" }

        let load = Load()
        let traffic = Task { await load.run(url) }
        _ = try await provider.createServerGroup(ServerGroupSpec(name: green, region: "local", image: v2, capacity: Capacity(min: 2, max: 2, desired: 2), loadBalancers: ["web"]), key: "sg-2")
        try await eventually(timeout: .seconds(20), "v2 to take traffic beside v1") { (load.snapshot.answers["v2"] ?? 0) > 5 }
        try await provider.setServerGroupEnabled(blue, region: "local", enabled: false, percentage: 100, key: "disable-1")
        try await Task.sleep(for: .seconds(1))
        load.reset()
        // However slow a loaded machine answers: only v2 from now on.
        try await eventually(timeout: .seconds(60), "v2 to answer five times after the switch") { (load.snapshot.answers["v2"] ?? 0) > 5 }
        #expect(load.snapshot.answers["v1"] == nil, "\(load.snapshot)")
        try await provider.destroyServerGroup(blue, region: "local", key: "destroy-1")
        try await Task.sleep(for: .seconds(1))
        load.stop()
        await traffic.value
        let (answers, failures) = load.snapshot
        #expect(failures == 0, "requests failed during the switch: \(failures), answers \(answers)")
        #expect(answers["v1"] == nil && (answers["v2"] ?? 0) > 5, "\(answers)")
        let servers = try HAProxy(directory: state.appendingPathComponent(account).appendingPathComponent("load-balancers")).servers(of: "web")
        #expect(servers.map(\.name).sorted() == ["shop-web-v001-i0", "shop-web-v001-i1"], "\(servers)")

        // A security group at the frontend: a rule for another network refuses loopback, one for
        // loopback lets it in again — without a restart.
        try await provider.upsertSecurityGroup("office", rules: [IngressRule(cidr: "10.0.0.0/8", startPort: port, endPort: port)], key: "sg-office-1")
        try await provider.upsertLoadBalancer("web", port: port, healthCheck: "/", securityGroups: ["office"], key: "lb-2")
        #expect(await PodmanProviderTests.get(url) == nil, "a connection from 127.0.0.1 passed a security group allowing only 10.0.0.0/8")
        try await provider.upsertSecurityGroup("office", rules: [IngressRule(cidr: "127.0.0.1/32", startPort: port, endPort: port)], key: "sg-office-2")
        #expect(await PodmanProviderTests.get(url) == "v2", "loopback allowed by the security group, yet refused")
        await #expect(throws: CloudError.self) { try await provider.deleteSecurityGroup("office", key: "sg-office-3") }
        await #expect(throws: CloudError.self) {
            try await provider.upsertSecurityGroup("office", rules: [IngressRule(cidr: "127.0.0.1/32 evil", startPort: port, endPort: port)], key: "sg-office-4")
        }
        #expect(try await provider.loadBalancers().first?.securityGroups == ["office"])
        #expect(try await provider.securityGroups().map(\.name) == ["office"])
        try await provider.destroyServerGroup(green, region: "local", key: "destroy-2")
        try await provider.deleteLoadBalancer("web", key: "delete-1")
        #expect(await PodmanProviderTests.get(url) == nil, "the load balancer still answers after its deletion")
    }
}
