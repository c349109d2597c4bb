import Access
import Clouds
import EventLog
import Foundation
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

    static func cleanUp(_ account: String, cloudState: URL) async {
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
            await cleanUp(account, cloudState: cloudState)
            throw error
        }
        await cleanUp(account, cloudState: cloudState)
    }
}
