import Access
import Clouds
import EventLog
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Orchestration
import Pipelines
import Testing

/// Deploy strategies run by a real `topsail all` on real containers (the example service)
/// behind a real HAProxy, with HTTP load through it the whole time.
@Suite("Clouds: deploy strategies on real containers behind HAProxy", .serialized, .timeLimit(.minutes(10)))
struct DeployTests {
    typealias Engine = EngineTests.Engine
    typealias Load = LoadBalancerTests.Load

    /// The example service's image at `version` (examples/service/build).
    static func image(_ version: String, healthy: Bool = true) async throws -> String {
        let build = TestEnvironment.packageRoot.appendingPathComponent("examples/service/build")
        let built = try await CLITests.run([version, healthy ? "true" : "false"], executable: build)
        guard built.status == 0 else { throw SetupError("examples/service/build: \(built.stderr)") }
        return built.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A cloud account that deployers may WRITE and developers only READ.
    static func account(_ db: TestDatabase) async throws -> String {
        let account = TestEnvironment.uniqueName("dep").lowercased().replacingOccurrences(of: "_", with: "-")
        _ = try await CloudAccounts(store: db.store).save([
            "name": .string(account), "type": "podman", "regions": ["local"],
            "permissions": ["READ": ["deployers", "devs"], "WRITE": ["deployers"]],
        ], metadata: EventMetadata(source: "test"))
        return account
    }

    static let deployer = Caller(user: "dee", roles: ["deployers"])

    static func run(_ engine: Engine, _ json: JSONValue, as caller: Caller = deployer, timeout: Duration = .seconds(120)) async throws -> ExecutionState {
        guard case .success(let config) = PipelineValidation.parse(json) else { throw SetupError("invalid pipeline \(json)") }
        let id = try await engine.repository.trigger(config, trigger: TriggerIdentity.recording(caller, in: ["type": "manual", "user": .string(caller.user)]),
                                                     parameters: [:], metadata: EventMetadata(source: "test"))
        return try await engine.finished(id, timeout: timeout)
    }

    static func loadBalancer(_ account: String, port: Int) -> JSONValue {
        ["application": "shop", "name": "lb", "limitConcurrent": false, "stages": [
            ["refId": "lb", "type": "upsertLoadBalancer", "loadBalancers": [[
                "name": "web", "credentials": .string(account), "region": "local", "healthCheckPath": "/health",
                "listeners": [["externalPort": .number(Double(port))]],
            ]]],
        ]]
    }

    static func deploy(_ account: String, image: String, strategy: String, _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var cluster: [String: JSONValue] = [
            "account": .string(account), "region": "local", "stack": "web", "imageId": .string(image), "loadBalancers": ["web"],
            "capacity": ["min": 2, "max": 4, "desired": 2], "strategy": .string(strategy), "waitForUpTimeoutSec": 60,
        ]
        cluster.merge(extra) { _, new in new }
        return ["application": "shop", "name": "deploy", "limitConcurrent": false, "stages": [["refId": "deploy", "type": "deploy", "clusters": [.object(cluster)]]]]
    }

    static func groups(_ account: String, cloudState: URL) async throws -> [ServerGroupState] {
        try await PodmanProvider(account: account, stateDirectory: cloudState, logger: TestEnvironment.logger).serverGroups(of: "shop")
    }

    /// Stops the engine first: its observer would otherwise launch again what the cleanup removes.
    static func cleanUp(_ account: String, cloudState: URL, engine: Engine) async {
        _ = await engine.process.stopped()
        let provider = PodmanProvider(account: account, stateDirectory: cloudState, logger: TestEnvironment.logger)
        for group in (try? await provider.serverGroups(of: "shop")) ?? [] { try? await provider.destroyServerGroup(group.name, region: "local", key: "cleanup") }
        try? await provider.deleteLoadBalancer("web", key: "cleanup")
        try? FileManager.default.removeItem(at: cloudState)
    }

    @Test("red/black v1 → v2 under load through HAProxy fails no request; an unhealthy v3 fails its deploy and rolls back while v2 keeps serving; highlander leaves one server group; rolling red/black steps through its percentages")
    func strategiesUnderLoad() async throws {
        try await TestDatabase.with { db in try await Self.strategiesScenario(db) }
    }

    static func strategiesScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let engine = try Engine(db, environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let url = "127.0.0.1:\(port)"
        let (v1, v2, v3, v4, v5) = (try await image("v1"), try await image("v2"), try await image("v3", healthy: false), try await image("v4"), try await image("v5"))
        do {
            let lb = try await run(engine, loadBalancer(account, port: port))
            #expect(lb.status == .succeeded, "\(lb.stage("lb").outputs)")
            let first = try await run(engine, deploy(account, image: v1, strategy: "redblack"))
            #expect(first.status == .succeeded, "\(first.stage("deploy").outputs)")
            try await engine.until("v1 to answer through the load balancer") { await PodmanProviderTests.get(url) == "v1" }

            let load = Load()
            let traffic = Task { await load.run(url) }

            // Red/black: v2 joins, then v1 leaves the rotation (drained) and stays, disabled.
            let second = try await run(engine, deploy(account, image: v2, strategy: "redblack", ["delayBeforeDisableSec": 1]))
            #expect(second.status == .succeeded, "\(second.stage("deploy").outputs)")
            #expect(second.stage("deploy").outputs["deploy.server.groups"]?["local"]?.arrayValue == ["shop-web-v001"])
            load.reset()
            try await engine.until(timeout: .seconds(60), "v2 to answer five times after the red/black") { (load.snapshot.answers["v2"] ?? 0) >= 5 }
            #expect(load.snapshot.answers["v1"] == nil, "v1 still served after it was disabled: \(load.snapshot)")
            var groups = try await groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v000", "shop-web-v001"] && groups.map(\.disabled) == [true, false], "\(groups)")

            // An unhealthy v3 never takes traffic; its deploy fails and rolls back to v2.
            let third = try await run(engine, deploy(account, image: v3, strategy: "redblack", [
                "waitForUpTimeoutSec": 6, "rollback": ["onFailure": true],
            ]))
            #expect(third.status == .terminal, "\(third.stage("deploy").outputs)")
            let error = third.stage("deploy").outputs["error"]?.stringValue ?? ""
            #expect(error.contains("shop-web-v002 has 0 of 2 instances Up") && error.contains("rolled back to shop-web-v001"), "\(error)")
            load.reset()
            try await engine.until(timeout: .seconds(60), "v2 to answer five times after the rollback") { (load.snapshot.answers["v2"] ?? 0) >= 5 }
            groups = try await Self.groups(account, cloudState: cloudState)
            #expect(groups.first { $0.name.sequence == 1 }?.disabled == false && groups.first { $0.name.sequence == 2 }?.disabled == true, "\(groups)")

            // Highlander: v4 up, every other server group of the cluster gone.
            let fourth = try await run(engine, deploy(account, image: v4, strategy: "highlander"))
            #expect(fourth.status == .succeeded, "\(fourth.stage("deploy").outputs)")
            groups = try await Self.groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v003"], "\(groups)")
            load.reset()
            try await engine.until(timeout: .seconds(60), "v4 to answer five times after highlander") { (load.snapshot.answers["v4"] ?? 0) >= 5 }

            // Rolling red/black at 50 % then 100 %: v5 grows 1 → 2 while v4 is disabled half, then whole.
            let fifth = try await run(engine, deploy(account, image: v5, strategy: "rollingredblack", ["targetPercentages": [50, 100]]))
            let fifthID = try #require(fifth.stage("deploy").outputs["deploy.clusters"]?.arrayValue?.first?["key"]?.stringValue)
            #expect(fifth.status == .succeeded, "\(fifth.stage("deploy").outputs)")
            load.reset()
            try await engine.until(timeout: .seconds(60), "v5 to answer five times after the rolling red/black") { (load.snapshot.answers["v5"] ?? 0) >= 5 }
            try await Task.sleep(for: .milliseconds(500))
            load.stop()
            await traffic.value
            let (answers, failures) = load.snapshot
            #expect(failures == 0, "requests failed during the deploys: \(failures) (answers \(answers))")
            #expect(answers["v3"] == nil && answers["v4"] == nil, "\(answers)")

            var operations: [JSONValue] = []
            for try await payload in try await db.client.query("""
                SELECT payload::text FROM events WHERE event_type = 'cloud.operation.requested' AND payload->>'key' LIKE \(fifthID + "/%") ORDER BY position
                """, logger: TestEnvironment.logger).decode(String.self) { operations.append(try JSONText(payload).decode(JSONValue.self)) }
            let steps = operations.map { "\($0["operation"]?.stringValue ?? "") \($0["serverGroup"]?.stringValue ?? "") \($0["capacity"]?["desired"]?.intValue ?? $0["percentage"]?.intValue ?? 0)" }
            #expect(steps == [
                "createServerGroup shop-web-v004 1", "disableServerGroup shop-web-v003 50", "resizeServerGroup shop-web-v004 2",
                "disableServerGroup shop-web-v003 100",
            ], "\(steps)")
            groups = try await Self.groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v003", "shop-web-v004"] && groups.map(\.disabled) == [true, false]
                    && groups.last?.instances.count == 2, "\(groups)")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    static func events(_ db: TestDatabase, stream: String) async throws -> [(type: String, payload: JSONValue)] {
        var found: [(String, JSONValue)] = []
        for try await (type, payload) in try await db.client.query(
            "SELECT event_type, payload::text FROM events WHERE stream_id = \(stream) ORDER BY stream_version", logger: TestEnvironment.logger
        ).decode((String, String).self) { found.append((type, try JSONText(payload).decode(JSONValue.self))) }
        return found
    }

    @Test("the observer replaces a container killed with SIGKILL and an instance that turned unhealthy, records a health change once, and the load balancer keeps serving")
    func observerReplacesInstances() async throws {
        try await TestDatabase.with { db in try await Self.observerScenario(db) }
    }

    static func observerScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let engine = try Engine(db, arguments: ["--observe-every", "0.5", "--replace-unhealthy-after", "3"], environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let v1 = try await image("v1")
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            let deployed = try await run(engine, deploy(account, image: v1, strategy: "none"))
            #expect(deployed.status == .succeeded, "\(deployed.stage("deploy").outputs)")
            let stream = "servergroup-\(account).local.shop-web-v000"
            try await engine.until("both instances to be Up") {
                try await groups(account, cloudState: cloudState).first?.instances.map(\.health) == [.up, .up]
            }
            let before = try #require(try await groups(account, cloudState: cloudState).first)

            // Killed behind Topsail's back: noticed, replaced, said so.
            let killed = try await CLITests.run(["kill", "--signal", "KILL", "\(account).shop-web-v000-i0"], executable: URL(fileURLWithPath: "/usr/bin/podman"))
            #expect(killed.status == 0, "\(killed.stderr)")
            try await engine.until(timeout: .seconds(60), "the killed instance to be replaced") {
                let now = try await groups(account, cloudState: cloudState).first
                return now?.instances.count == 2 && now?.instances.allSatisfy { $0.running && $0.health == .up } == true
                    && now?.instances.first?.id != before.instances.first?.id
            }
            // podman events told the observer (which looks at once, not at its next round).
            #expect(engine.process.text.contains("podman events: a container died") && engine.process.text.contains("\(account).shop-web-v000-i0"),
                    "the observer did not hear of the death from podman events")
            var events = try await Self.events(db, stream: stream)
            let drift = try #require(events.first { $0.type == CloudOperations.driftType }?.payload)
            #expect(drift["stopped"]?.arrayValue == [.string(before.instances[0].id)] && drift["missingSlots"]?.arrayValue == [0], "\(drift)")
            try await engine.until("the load balancer to answer") { await PodmanProviderTests.get("127.0.0.1:\(port)") == "v1" }

            // Slot 1 starts failing its health checks: one health change (Up → Down), then, after the
            // grace, a replacement.
            let failing = try #require(try await groups(account, cloudState: cloudState).first?.instances.first { $0.slot == 1 })
            let (_, response) = try await URLSession.shared.data(from: URL(string: "http://\(try #require(failing.address))/cgi-bin/fail")!)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            try await engine.until(timeout: .seconds(60), "the unhealthy instance to be replaced") {
                let now = try await groups(account, cloudState: cloudState).first
                return now?.instances.count == 2 && now?.instances.allSatisfy { $0.health == .up } == true && now?.instances.last?.id != failing.id
            }
            events = try await Self.events(db, stream: stream)
            var downs: [JSONValue] = []
            for event in events where event.type == CloudOperations.healthChangedType {
                for change in event.payload["changes"]?.arrayValue ?? [] where change["id"]?.stringValue == failing.id && change["to"]?.stringValue == "Down" {
                    downs.append(change)
                }
            }
            #expect(downs.count == 1, "the health change was recorded \(downs.count) times: \(downs)")
            #expect(events.contains { $0.type == CloudOperations.driftType && $0.payload["unhealthy"]?.arrayValue == [.string(failing.id)] },
                    "\(events.map(\.type))")
            // Quiet when nothing changes: once the log has both instances Up, no event for a second
            // and a half of looks.
            try await engine.until("the log to record both instances Up") {
                let last = try await Self.events(db, stream: stream).last { $0.type == CloudOperations.upsertedType }
                return last?.payload["instances"]?.arrayValue?.map { $0["health"] } == ["Up", "Up"]
            }
            let count = try await Self.events(db, stream: stream).count
            try await Task.sleep(for: .milliseconds(1_500))
            #expect(try await Self.events(db, stream: stream).count == count)
            #expect(await PodmanProviderTests.get("127.0.0.1:\(port)") == "v1")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    @Test("kill -9 of the engine in the middle of a red/black: traffic keeps flowing, the restarted engine finishes the deploy, nothing is launched twice, and a redelivered operation launches nothing")
    func killedMidRedBlack() async throws {
        try await TestDatabase.with { db in try await Self.killScenario(db) }
    }

    static func killScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        var engine = try Engine(db, environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let url = "127.0.0.1:\(port)"
        let (v1, v2) = (try await image("v1"), try await image("v2"))
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            #expect(try await run(engine, deploy(account, image: v1, strategy: "redblack")).status == .succeeded)
            try await engine.until("v1 to answer") { await PodmanProviderTests.get(url) == "v1" }
            let load = Load()
            let traffic = Task { await load.run(url) }

            guard case .success(let config) = PipelineValidation.parse(deploy(account, image: v2, strategy: "redblack", ["delayBeforeDisableSec": 3])) else {
                throw SetupError("invalid pipeline")
            }
            let id = try await engine.repository.trigger(config, trigger: TriggerIdentity.recording(deployer, in: ["type": "manual", "user": "dee"]),
                                                         parameters: [:], metadata: EventMetadata(source: "test"))
            // In the delay before v1 is disabled: v2 serves beside v1.
            try await engine.until(timeout: .seconds(60), "the deploy to reach its delay") {
                try await engine.repository.load(id).stage("deploy").outputs["deploy.clusters"]?.arrayValue?.first?["phase"] == "delay"
            }
            engine.process.killHard()
            try await Task.sleep(for: .seconds(1))
            try engine.restart()
            let state = try await engine.finished(id, timeout: .seconds(120))
            #expect(state.status == .succeeded, "\(state.stage("deploy").outputs)")
            load.reset()
            try await engine.until(timeout: .seconds(60), "v2 to answer five times") { (load.snapshot.answers["v2"] ?? 0) >= 5 }
            load.stop()
            await traffic.value
            #expect(load.snapshot.failures == 0, "requests failed across the kill: \(load.snapshot)")
            #expect(load.snapshot.answers["v1"] == nil, "\(load.snapshot)")

            let groups = try await groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v000", "shop-web-v001"] && groups.map(\.disabled) == [true, false]
                    && groups.map(\.instances.count) == [2, 2], "\(groups)")
            let key = try #require(state.stage("deploy").outputs["deploy.clusters"]?.arrayValue?.first?["key"]?.stringValue)
            var requested: [String] = []
            for try await operation in try await db.client.query("""
                SELECT payload->>'operation' FROM events WHERE event_type = 'cloud.operation.requested' AND payload->>'key' LIKE \(key + "/%") ORDER BY position
                """, logger: TestEnvironment.logger).decode(String.self) { requested.append(operation) }
            #expect(requested == ["createServerGroup", "disableServerGroup"], "\(requested)")

            // The create delivered again under its key: the recorded outcome, nothing launched.
            let operations = CloudOperations(store: db.store, logger: TestEnvironment.logger) { account in
                PodmanProvider(account: account.name, stateDirectory: cloudState, logger: TestEnvironment.logger)
            }
            let spec = ServerGroupSpec(name: ServerGroupName(application: "shop", stack: "web", sequence: 1), region: "local", image: v2,
                                       capacity: Capacity(min: 2, max: 4, desired: 2), loadBalancers: ["web"])
            let ids = Set(groups[1].instances.map(\.id))
            let again = try await operations.perform(.createServerGroup(spec), account: account, caller: deployer, key: key + "/create", metadata: EventMetadata(source: "test"))
            guard case .succeeded = again else { throw SetupError("the redelivered create failed: \(again)") }
            #expect(Set(try await Self.groups(account, cloudState: cloudState)[1].instances.map(\.id)) == ids)
            let ps = try await CLITests.run(["ps", "--all", "--quiet", "--filter", "label=topsail.account=\(account)"], executable: URL(fileURLWithPath: "/usr/bin/podman"))
            #expect(ps.stdout.split(separator: "\n").count == 4, "containers of the account: \(ps.stdout)")

            // A user who may only READ the account deploys nothing.
            let refused = try await run(engine, deploy(account, image: v2, strategy: "redblack"), as: Caller(user: "dev", roles: ["devs"]))
            #expect(refused.status == .terminal && refused.stage("deploy").outputs["error"]?.stringValue?.contains("may not WRITE account") == true,
                    "\(refused.stage("deploy").outputs)")
            #expect(try await Self.groups(account, cloudState: cloudState).count == 2)
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    @Test("cluster stages and reads: a task clones a server group, rollbackCluster goes back one, scaleDownCluster and shrinkCluster leave the newest, the cluster, load balancer, instance and security group reads answer only callers who may READ the account")
    func clusterStagesAndReads() async throws {
        try await TestDatabase.with { db in try await Self.clusterScenario(db) }
    }

    static func clusterScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let engine = try Engine(db, environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let (v1, v2) = (try await image("v1"), try await image("v2"))
        let identities = Identities(store: db.store)
        let deployerToken = try await identities.issue(user: "dee", name: nil, roles: ["deployers"], metadata: EventMetadata(source: "test")).token
        let outsider = try await identities.issue(user: "otto", name: nil, roles: ["others"], metadata: EventMetadata(source: "test")).token
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            #expect(try await run(engine, deploy(account, image: v1, strategy: "redblack")).status == .succeeded)
            #expect(try await run(engine, deploy(account, image: v2, strategy: "redblack")).status == .succeeded)
            try await APIContractTests.answering(engine)

            // An ad-hoc task: a security group, then a clone of v001 (red/black, so v001 is disabled).
            let task = try await APIContractTests.call("POST", engine.api + "/applications/shop/tasks", """
                {"description": "clone", "job": [
                  {"type": "upsertSecurityGroup", "credentials": "\(account)", "securityGroupName": "office",
                   "ipIngress": [{"cidr": "127.0.0.1/32", "startPort": \(port), "endPort": \(port)}]},
                  {"type": "cloneServerGroup", "source": {"account": "\(account)", "region": "local", "serverGroupName": "shop-web-v001"}, "strategy": "redblack"}
                ]}
                """, deployerToken)
            #expect(task.status == 202, "\(task.json)")
            let taskID = try #require(task.json["id"]?.stringValue)
            let cloned = try await engine.finished(taskID, timeout: .seconds(120))
            #expect(cloned.status == .succeeded, "\(cloned.stage("1").outputs) \(cloned.stage("2").outputs)")
            #expect(try await APIContractTests.call("GET", engine.api + "/tasks/\(taskID)", nil, deployerToken).json["status"] == "SUCCEEDED")
            let script = try await APIContractTests.call("POST", engine.api + "/applications/shop/tasks", #"{"job": [{"type": "script", "command": "id"}]}"#, deployerToken)
            #expect(script.status == 400, "a task ran a script: \(script.json)")
            var groups = try await groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v000", "shop-web-v001", "shop-web-v002"] && groups.map(\.disabled) == [true, true, false],
                    "\(groups)")

            let clusterStages: JSONValue = ["application": "shop", "name": "cluster", "limitConcurrent": false, "stages": [
                ["refId": "rollback", "type": "rollbackCluster", "credentials": .string(account), "cluster": "shop-web", "regions": ["local"]],
                ["refId": "scaledown", "type": "scaleDownCluster", "requisiteStageRefIds": ["rollback"], "credentials": .string(account),
                 "cluster": "shop-web", "remainingFullSizeServerGroups": 2],
                ["refId": "shrink", "type": "shrinkCluster", "requisiteStageRefIds": ["scaledown"], "credentials": .string(account),
                 "cluster": "shop-web", "shrinkToSize": 2],
            ]]
            let cluster = try await run(engine, clusterStages)
            #expect(cluster.status == .succeeded, "\(cluster.stage("rollback").outputs) \(cluster.stage("scaledown").outputs) \(cluster.stage("shrink").outputs)")
            #expect(cluster.stage("rollback").outputs["rollbackTo"] == "shop-web-v001")
            #expect(cluster.stage("scaledown").outputs["serverGroups"]?.arrayValue == ["shop-web-v000"], "\(cluster.stage("scaledown").outputs)")
            #expect(cluster.stage("shrink").outputs["serverGroups"]?.arrayValue == ["shop-web-v000"], "\(cluster.stage("shrink").outputs)")
            groups = try await Self.groups(account, cloudState: cloudState)
            #expect(groups.map(\.name.description) == ["shop-web-v001", "shop-web-v002"] && groups.map(\.disabled) == [false, true], "\(groups)")
            try await engine.until("v2 (v001) to answer after the rollback") { await PodmanProviderTests.get("127.0.0.1:\(port)") == "v2" }

            // Reads, from the cluster view.
            try await engine.until("the cluster view to show two server groups") {
                let view = try await APIContractTests.call("GET", engine.api + "/applications/shop/clusters/\(account)/shop-web", nil, deployerToken).json
                return view["serverGroups"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["shop-web-v001", "shop-web-v002"]
            }
            let outsiderCluster = try await APIContractTests.call("GET", engine.api + "/applications/shop/clusters/\(account)/shop-web", nil, outsider)
            #expect(outsiderCluster.status == 403, "\(outsiderCluster.json)")
            let balancers = try await APIContractTests.call("GET", engine.api + "/applications/shop/loadBalancers", nil, deployerToken).json.arrayValue ?? []
            #expect(balancers.map { $0["name"] } == ["web"] && balancers.first?["port"]?.intValue == port, "\(balancers)")
            let instance = try #require(groups.first?.instances.first)
            let shown = try await APIContractTests.call("GET", engine.api + "/instances/\(account)/local/\(instance.id)", nil, deployerToken)
            #expect(shown.status == 200 && shown.json["serverGroup"] == "shop-web-v001" && shown.json["health"] == "Up", "\(shown.json)")
            #expect(try await APIContractTests.call("GET", engine.api + "/instances/\(account)/local/\(instance.id)", nil, outsider).status == 403)
            #expect(try await APIContractTests.call("GET", engine.api + "/instances/\(account)/local/nosuch", nil, deployerToken).status == 404)
            let securityGroups = try await APIContractTests.call("GET", engine.api + "/securityGroups", nil, deployerToken).json
            #expect(securityGroups[account]?["local"]?.arrayValue?.first?["name"] == "office", "\(securityGroups)")
            #expect(try await APIContractTests.call("GET", engine.api + "/securityGroups", nil, outsider).json[account] == nil)

            // The CLI: listing from the database, acting through the API as the caller.
            let listed = try await CLITests.run(["server-groups", "list", "shop", "--database-url", db.url])
            #expect(listed.status == 0 && listed.stdout.contains("shop-web-v001\tenabled\tdesired 2\t2/2 up"), "\(listed.stdout) \(listed.stderr)")
            let resized = try await CLITests.run(["server-groups", "act", "resize", account, "shop-web-v001", "--desired", "3", "--max", "4",
                                                  "--api", engine.api, "--token", deployerToken])
            #expect(resized.status == 0 && resized.stdout.contains("SUCCEEDED"), "\(resized.stdout) \(resized.stderr)")
            #expect(try await Self.groups(account, cloudState: cloudState).first?.instances.count == 3)
            let refused = try await CLITests.run(["server-groups", "act", "destroy", account, "shop-web-v001", "--api", engine.api, "--token", outsider])
            #expect(refused.status != 0 && refused.stderr.contains("HTTP 403"), "\(refused.stdout) \(refused.stderr)")
            let lbs = try await CLITests.run(["load-balancers", "shop", "--api", engine.api, "--token", deployerToken])
            #expect(lbs.status == 0 && lbs.stdout.contains("\(account)\tweb\tport \(port)"), "\(lbs.stdout) \(lbs.stderr)")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    @Test("the clusters page in headless chromium: a container killed behind Topsail's back disappears from the screen and its replacement shows Up, without a reload; disable, enable and resize by clicking, each followed on screen")
    func clustersInTheBrowser() async throws {
        try await TestDatabase.with { db in try await Self.browserScenario(db) }
    }

    static func browserScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let engine = try Engine(db, arguments: ["--observe-every", "0.5"], environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let v1 = try await image("v1")
        let admin = try await Identities(store: db.store).issue(user: "ada", name: "ui", roles: ["admin"], metadata: EventMetadata(source: "test")).token
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            #expect(try await run(engine, deploy(account, image: v1, strategy: "none")).status == .succeeded)
            try await engine.until("both instances to be Up") {
                try await groups(account, cloudState: cloudState).first?.instances.map(\.health) == [.up, .up]
            }
            let screenshots = TestEnvironment.packageRoot.appendingPathComponent(".topsail/screenshots")
            try FileManager.default.createDirectory(at: screenshots, withIntermediateDirectories: true)
            let outcome = try await CLITests.run([
                TestEnvironment.packageRoot.appendingPathComponent("Tests/Browser/ui_browser_test.py").path, "--base", engine.api, "--admin", admin,
                "--reader", "unused", "--screenshots", screenshots.path, "--kill", "\(account).shop-web-v000-i0",
            ], executable: TestEnvironment.packageRoot.appendingPathComponent(".topsail/venv/bin/python"))
            #expect(outcome.status == 0 && outcome.stdout.contains("\"failures\": []"), "the browser checks:\n\(outcome.stdout)\n\(outcome.stderr.suffix(3000))")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    @Test("custom strategy: once the new server group is up, the strategy pipeline runs as a child with Orca's parameters and does the clean-up; a strategy pipeline that fails fails the deploy, which rolls back")
    func customStrategy() async throws {
        try await TestDatabase.with { db in try await Self.customScenario(db) }
    }

    static func customScenario(_ db: TestDatabase) async throws {
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        let engine = try Engine(db, environment: ["TOPSAIL_CLOUD_STATE_DIR": cloudState.path])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        let (v1, v2, v3) = (try await image("v1"), try await image("v2"), try await image("v3"))
        let configs = PipelineConfigStore(store: db.store)
        // The strategy: leave only the newest server group enabled, from the parameters it is given.
        try await configs.save(PipelineConfig(json: [
            "id": "leave-newest", "application": "shop", "name": "leave-newest", "limitConcurrent": false, "stages": [
                ["refId": "1", "type": "disableCluster", "credentials": "${parameters.credentials}", "cluster": "${parameters.cluster}",
                 "region": "${parameters.region}", "remainingEnabledServerGroups": 1],
            ],
        ]), metadata: EventMetadata(source: "test"))
        try await configs.save(PipelineConfig(json: [
            "id": "refuse", "application": "shop", "name": "refuse", "limitConcurrent": false, "stages": [
                ["refId": "1", "type": "checkPreconditions", "preconditions": [["type": "expression", "context": ["expression": "${parameters.approved == 'yes'}"]]]],
            ],
        ]), metadata: EventMetadata(source: "test"))
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            #expect(try await run(engine, deploy(account, image: v1, strategy: "none")).status == .succeeded)
            let custom = try await run(engine, deploy(account, image: v2, strategy: "custom", ["strategyApplication": "shop", "strategyPipeline": "leave-newest"]))
            #expect(custom.status == .succeeded, "\(custom.stage("deploy").outputs)")
            let progress = custom.stage("deploy").outputs["deploy.clusters"]?.arrayValue?.first
            let childID = try #require(progress?["strategyExecutionId"]?.stringValue, "\(custom.stage("deploy").outputs)")
            let child = try await engine.repository.load(childID)
            let parameters = child.trigger["parameters"]
            #expect(child.status == .succeeded && child.trigger["parentExecution"]?["id"] != nil
                    && child.trigger["parentExecution"]?["id"] == parameters?["parentPipelineId"], "\(child.trigger)")
            #expect(parameters?["credentials"]?.stringValue == account && parameters?["cluster"] == "shop-web" && parameters?["region"] == "local"
                    && parameters?["strategy"] == true && parameters?["serverGroup"] == "shop-web-v001" && parameters?["parentStageId"] == "deploy",
                    "\(parameters ?? .null)")
            var groups = try await groups(account, cloudState: cloudState)
            #expect(groups.map { "\($0.name) \($0.disabled)" }.sorted() == ["shop-web-v000 true", "shop-web-v001 false"])
            try await engine.until("v2 to answer through the load balancer") { await PodmanProviderTests.get("127.0.0.1:\(port)") == "v2" }

            // The strategy refuses: the deploy fails and rolls back to v2.
            let refused = try await run(engine, deploy(account, image: v3, strategy: "custom", [
                "strategyApplication": "shop", "strategyPipeline": "refuse", "pipelineParameters": ["approved": "no"], "rollback": ["onFailure": true],
            ]))
            #expect(refused.status == .terminal, "\(refused.stage("deploy").outputs)")
            let error = refused.stage("deploy").outputs["error"]?.stringValue ?? ""
            #expect(error.contains("strategy pipeline") && error.contains("rolled back to shop-web-v001"), "\(error)")
            groups = try await Self.groups(account, cloudState: cloudState)
            #expect(groups.map { "\($0.name) \($0.disabled)" }.sorted() == ["shop-web-v000 true", "shop-web-v001 false", "shop-web-v002 true"])
            try await engine.until("v2 to answer again") { await PodmanProviderTests.get("127.0.0.1:\(port)") == "v2" }

            let unnamed = try await run(engine, deploy(account, image: v3, strategy: "custom"))
            #expect(unnamed.status == .terminal && unnamed.stage("deploy").outputs["error"]?.stringValue?.contains("strategyPipeline") == true,
                    "\(unnamed.stage("deploy").outputs)")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }

    @Test("bake: the example service baked on a local base image under a content-hash tag, deployed by the next stage without naming an image; the same inputs reuse the image, rebake builds it again, findImageFromTags finds it, and a package outside the package root is refused")
    func bakeAndDeploy() async throws {
        try await TestDatabase.with { db in try await Self.bakeScenario(db) }
    }

    static func bakeScenario(_ db: TestDatabase) async throws {
        let based = try await CLITests.run(["bake", "base"])
        #expect(based.status == 0 && based.stdout.contains("localhost/topsail-base:busybox"), "\(based.stdout) \(based.stderr)")
        let packages = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("packages"))
        let service = packages.appendingPathComponent("service")
        try FileManager.default.createDirectory(at: service, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: TestEnvironment.packageRoot.appendingPathComponent("examples/service/start.sh"), to: service.appendingPathComponent("start.sh"))
        let release = "VERSION=baked-\(UUID().uuidString.prefix(8))\nHEALTHY=true\n"
        try release.write(to: service.appendingPathComponent("release"), atomically: true, encoding: .utf8)
        let version = String(release.dropFirst("VERSION=".count).prefix { $0 != "\n" })
        defer { try? FileManager.default.removeItem(at: packages) }
        let cloudState = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("clouds"))
        // A registry on plain HTTP (Debian's docker-registry), where every baked image is pushed.
        let registry = try Registry()
        defer { registry.stop() }
        let engine = try Engine(db, environment: [
            "TOPSAIL_CLOUD_STATE_DIR": cloudState.path, "TOPSAIL_BAKE_PACKAGES_DIR": packages.path,
            "TOPSAIL_BAKE_REGISTRY": registry.host, "TOPSAIL_BAKE_REGISTRY_TLS_VERIFY": "false",
        ])
        defer { engine.process.terminate() }
        let account = try await account(db)
        let port = try PrivateBroker.freePort()
        func bake(_ extra: [String: JSONValue] = [:], deploy: Bool = false) -> JSONValue {
            var stage: [String: JSONValue] = [
                "refId": "bake", "type": "bake", "package": "service", "baseOs": "busybox", "imageName": "shop-service", "tags": ["release": .string(version)],
                "recipe": #"COPY package/ /\#nENTRYPOINT ["/bin/sh", "/start.sh"]"#,
            ]
            stage.merge(extra) { _, new in new }
            var stages: [JSONValue] = [.object(stage)]
            if deploy {
                stages.append(["refId": "deploy", "type": "deploy", "requisiteStageRefIds": ["bake"], "clusters": [[
                    "account": .string(account), "region": "local", "stack": "web", "loadBalancers": ["web"], "strategy": "redblack",
                    "capacity": ["min": 1, "max": 1, "desired": 1],
                ]]])
            }
            return ["application": "shop", "name": "bake", "limitConcurrent": false, "stages": .array(stages)]
        }
        do {
            #expect(try await run(engine, loadBalancer(account, port: port)).status == .succeeded)
            let first = try await run(engine, bake(deploy: true))
            #expect(first.status == .succeeded, "\(first.stage("bake").outputs) \(first.stage("deploy").outputs)")
            let image = try #require(first.stage("bake").outputs["imageId"]?.stringValue)
            #expect(image.hasPrefix("localhost/shop-service:") && first.stage("bake").outputs["cached"] == false, "\(first.stage("bake").outputs)")
            try await engine.until("the baked version to answer through the load balancer") { await PodmanProviderTests.get("127.0.0.1:\(port)") == version }
            #expect(try await groups(account, cloudState: cloudState).first?.image == image)
            // Pushed under the same tag; the digest recorded is the one the registry serves.
            let hash = String(image.dropFirst("localhost/shop-service:".count))
            let pushed = try #require(first.stage("bake").outputs["pushed"]?.stringValue, "\(first.stage("bake").outputs)")
            #expect(pushed.hasPrefix("\(registry.host)/shop-service:\(hash)@sha256:"), "\(pushed)")
            #expect(try await registry.tags("shop-service").contains(hash))
            #expect(try await registry.digest("shop-service", tag: hash) == pushed.components(separatedBy: "@").last)

            let again = try await run(engine, bake())
            #expect(again.stage("bake").outputs["imageId"]?.stringValue == image && again.stage("bake").outputs["cached"] == true, "\(again.stage("bake").outputs)")
            let rebaked = try await run(engine, bake(["rebake": true]))
            #expect(rebaked.stage("bake").outputs["imageId"]?.stringValue == image && rebaked.stage("bake").outputs["cached"] == false, "\(rebaked.stage("bake").outputs)")
            try "VERSION=other\nHEALTHY=true\n".write(to: service.appendingPathComponent("release"), atomically: true, encoding: .utf8)
            let changed = try await run(engine, bake())
            #expect(changed.stage("bake").outputs["imageId"]?.stringValue != image, "a changed package kept the image's tag")

            let found = try await run(engine, ["application": "shop", "name": "find", "limitConcurrent": false, "stages": [
                ["refId": "find", "type": "findImageFromTags", "packageName": "shop-service", "tags": ["release": .string(version)]],
            ]])
            // The newest image with those tags: the one baked from the changed package.
            #expect(found.stage("find").outputs["imageId"] == changed.stage("bake").outputs["imageId"], "\(found.stage("find").outputs)")
            // A tarball package, unpacked under /opt/package by the default recipe.
            let tar = try await CLITests.run(["-czf", packages.appendingPathComponent("service.tar.gz").path, "-C", packages.path, "service"],
                                             executable: URL(fileURLWithPath: "/bin/tar"))
            #expect(tar.status == 0, "\(tar.stderr)")
            let tarball = try await run(engine, bake(["package": "service.tar.gz", "recipe": .null]))
            let unpacked = try #require(tarball.stage("bake").outputs["imageId"]?.stringValue, "\(tarball.stage("bake").outputs)")
            let listed = try await CLITests.run(["--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                                 unpacked, "cat", "/opt/package/service/release"], executable: URL(fileURLWithPath: "/usr/bin/podman"))
            #expect(listed.status == 0 && listed.stdout.contains("VERSION=other"), "\(listed.stdout) \(listed.stderr)")
            let outside = try await run(engine, bake(["package": "../../etc"]))
            #expect(outside.status == .terminal && outside.stage("bake").outputs["error"]?.stringValue?.contains("package root") == true,
                    "\(outside.stage("bake").outputs)")
            var baked = 0
            for try await count in try await db.client.query(
                "SELECT count(*)::int FROM events WHERE event_type = 'image.baked' AND stream_id = 'image-shop-service'", logger: TestEnvironment.logger
            ).decode(Int.self) { baked = count }
            #expect(baked == 5, "image.baked events: \(baked)")
        } catch {
            await cleanUp(account, cloudState: cloudState, engine: engine)
            throw error
        }
        await cleanUp(account, cloudState: cloudState, engine: engine)
    }
}

/// Debian's docker-registry on a free port, storing in a temporary directory.
final class Registry: @unchecked Sendable {
    let host: String
    private let directory: URL
    private var process: ChildProcess?

    init() throws {
        let port = try PrivateBroker.freePort()
        host = "127.0.0.1:\(port)"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("registry"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("config.yml")
        try """
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: \(directory.appendingPathComponent("data").path)
            http:
              addr: \(host)
            """.write(to: config, atomically: true, encoding: .utf8)
        process = try ChildProcess(URL(fileURLWithPath: "/usr/bin/docker-registry"), ["serve", config.path])
        for _ in 0..<100 {
            if PrivateBroker.answers(port: port) { return }
            usleep(50_000)
        }
        throw SetupError("docker-registry did not start on \(host) (ops/setup installs it): \(process?.text ?? "")")
    }

    func tags(_ name: String) async throws -> [String] {
        let (body, _) = try await URLSession.shared.data(from: URL(string: "http://\(host)/v2/\(name)/tags/list")!)
        return try JSONText(String(decoding: body, as: UTF8.self)).decode(JSONValue.self)["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    func digest(_ name: String, tag: String) async throws -> String? {
        var request = URLRequest(url: URL(string: "http://\(host)/v2/\(name)/manifests/\(tag)")!)
        request.httpMethod = "HEAD"
        request.setValue("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json", forHTTPHeaderField: "Accept")
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Docker-Content-Digest")
    }

    func stop() {
        process?.killHard()
        process = nil
        try? FileManager.default.removeItem(at: directory)
    }
}
