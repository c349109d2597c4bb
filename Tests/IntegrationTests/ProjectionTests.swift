import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import ReadModels
import Testing

@Suite("Executions read model", .timeLimit(.minutes(5)))
struct ProjectionTests {
    static func pipeline(_ name: String, application: String = "shop") -> PipelineConfig {
        PipelineConfig(json: [
            "application": .string(application), "name": .string(name), "id": .string("\(application)-\(name)"), "limitConcurrent": false,
            "stages": [
                ["refId": "build", "type": "noop", "name": "Build"],
                ["refId": "deploy", "type": "noop", "name": "Deploy", "requisiteStageRefIds": ["build"]],
            ],
        ])
    }

    /// Drives an execution through the handlers (no engine needed): `stages` complete with `status`.
    static func run(_ repository: ExecutionRepository, _ pipeline: PipelineConfig, until: ExecutionStatus?) async throws -> String {
        let metadata = EventMetadata(actor: "tester", source: "test")
        let id = try await repository.trigger(pipeline, trigger: ["type": "manual", "user": "ana"], parameters: [:], metadata: metadata)
        guard let until else { return id }
        try await repository.handle(.startExecution, executionID: id, metadata: metadata)
        try await repository.handle(.startStage(refID: "build"), executionID: id, metadata: metadata)
        guard until != .running else { return id }
        try await repository.handle(.completeStage(refID: "build", status: until == .succeeded ? .succeeded : .terminal, outputs: [:]),
                                    executionID: id, metadata: metadata)
        if until == .succeeded {
            try await repository.handle(.startStage(refID: "deploy"), executionID: id, metadata: metadata)
            try await repository.handle(.completeStage(refID: "deploy", status: .succeeded, outputs: [:]), executionID: id, metadata: metadata)
        }
        try await repository.handle(.completeExecution, executionID: id, metadata: metadata)
        return id
    }

    @Test("the projector lists by application, pipeline and status, pages, and shows one execution with its stages")
    func listAndGet() async throws {
        try await TestDatabase.with { db in
            let repository = ExecutionRepository(store: db.store, logger: TestEnvironment.logger)
            var ids: [String: ExecutionStatus] = [:]
            for (name, status) in [("api", ExecutionStatus.succeeded), ("api", .terminal), ("web", .running), ("api", .succeeded)] {
                ids[try await Self.run(repository, Self.pipeline(name), until: status)] = status
            }
            let other = try await Self.run(repository, Self.pipeline("api", application: "billing"), until: nil)
            let projector = ExecutionProjector(client: db.client, logger: TestEnvironment.logger)
            // Other tests' open transactions hold log reads back for a moment.
            try await eventually("the read model to catch up") {
                _ = try await projector.catchUp()
                return try await projector.lag() == 0
            }

            let model = ExecutionReadModel(client: db.client, logger: TestEnvironment.logger)
            let shop = try await model.list(.init(application: "shop", limit: 100))
            #expect(Set(shop.map(\.id)) == Set(ids.keys))
            #expect(shop.map(\.triggeredAt) == shop.map(\.triggeredAt).sorted(by: >), "newest first")
            for summary in shop { #expect(summary.status == ids[summary.id], "\(summary.id)") }
            let failed = try await model.list(.init(application: "shop", pipelineName: "api", statuses: [.terminal]))
            #expect(failed.count == 1 && failed.first?.status == .terminal)
            #expect(try await model.list(.init(statuses: [.notStarted])).map(\.id) == [other])

            // Keyset paging walks every execution once.
            var seen: [String] = []
            var page = ExecutionReadModel.Filter(limit: 2)
            while true {
                let rows = try await model.list(page)
                seen += rows.map(\.id)
                guard rows.count == 2 else { break }
                page.after = rows.last?.id
            }
            #expect(seen.count == 5 && Set(seen).count == 5)

            let succeeded = try #require(ids.first { $0.value == .succeeded }?.key)
            let one = try #require(try await model.get(succeeded))
            #expect(one.stages.map(\.refID) == ["build", "deploy"])
            #expect(one.stages.map(\.name) == ["Build", "Deploy"])
            #expect(one.stages.allSatisfy { $0.status == .succeeded && $0.attempt == 1 && $0.startedAt != nil && $0.completedAt != nil })
            #expect(one.triggeredBy == "ana" && one.triggerType == "manual" && one.pipelineID == "shop-api")
            #expect(one.completedAt != nil && one.startedAt != nil)
            #expect(try await model.get("no-such-execution") == nil)
        }
    }

    @Test("a running projector follows new events; a rebuild replays the log into the same rows")
    func followAndRebuild() async throws {
        try await TestDatabase.with { db in
            let repository = ExecutionRepository(store: db.store, logger: TestEnvironment.logger)
            let model = ExecutionReadModel(client: db.client, logger: TestEnvironment.logger)
            let projector = ExecutionProjector(client: db.client, logger: TestEnvironment.logger, pollInterval: .milliseconds(10))
            let running = Task { try await projector.run() }
            defer { running.cancel() }
            let id = try await Self.run(repository, Self.pipeline("api"), until: .running)
            try await eventually("the projector to show the execution running") { try await model.get(id)?.status == .running }
            let metadata = EventMetadata(source: "test")
            try await repository.handle(.completeStage(refID: "build", status: .succeeded, outputs: [:]), executionID: id, metadata: metadata)
            try await repository.handle(.startStage(refID: "deploy"), executionID: id, metadata: metadata)
            try await repository.handle(.cancel(by: "ana", reason: nil), executionID: id, metadata: metadata)
            try await eventually("the projector to show the cancel") { try await model.get(id)?.status == .canceled }
            for _ in 0..<6 { _ = try await Self.run(repository, Self.pipeline("web"), until: .succeeded) }
            try await eventually("the projector to catch up") { try await projector.lag() == 0 }
            let before = try await model.list(.init(limit: 100))
            let detail = try await model.get(id)

            // A reset while the projector runs: it notices and rebuilds with (or instead of) this one.
            try await ExecutionProjector.reset(client: db.client, logger: TestEnvironment.logger)
            let rebuilder = ExecutionProjector(client: db.client, logger: TestEnvironment.logger)
            _ = try await rebuilder.catchUp()
            try await eventually("the rebuilt read model to match") { try await model.list(.init(limit: 100)) == before }
            #expect(try await model.get(id) == detail)
            #expect(detail?.stages.map(\.status) == [.succeeded, .canceled])
            running.cancel()
            _ = await running.result
        }
    }
}

@Suite("Supervisor", .timeLimit(.minutes(5)))
struct SupervisorTests {
    @Test("executions stuck lists running executions overdue by their stages' limits, and only those")
    func findsStuckExecutions() async throws {
        try await TestDatabase.with { db in
            let repository = ExecutionRepository(store: db.store, logger: TestEnvironment.logger)
            let metadata = EventMetadata(source: "test")
            func started(_ stages: [JSONValue], running ref: String) async throws -> String {
                let pipeline = PipelineConfig(json: ["application": "ops", "name": .string(ref), "limitConcurrent": false, "stages": .array(stages)])
                let id = try await repository.trigger(pipeline, trigger: ["type": "manual"], parameters: [:], metadata: metadata)
                try await repository.handle(.startExecution, executionID: id, metadata: metadata)
                try await repository.handle(.startStage(refID: ref), executionID: id, metadata: metadata)
                return id
            }
            // No engine runs: each stays as it is.
            let noop = try await started([["refId": "n", "type": "noop"]], running: "n")
            let judgment = try await started([["refId": "j", "type": "manualJudgment"]], running: "j")
            let wait = try await started([["refId": "w", "type": "wait", "waitTime": 3600]], running: "w")
            try await eventually("the read model to catch up") {
                _ = try await ExecutionProjector(client: db.client, logger: TestEnvironment.logger).catchUp()
                return try await ExecutionReadModel(client: db.client, logger: TestEnvironment.logger).list(.init(statuses: [.running])).count == 3
            }
            try await Task.sleep(for: .milliseconds(1200))
            let stuck = try await Supervisor(client: db.client, logger: TestEnvironment.logger).stuck(grace: .seconds(1))
            #expect(stuck.map(\.id) == [noop], "\(stuck)")
            let reason = stuck.first?.reasons.first ?? ""
            #expect(reason.hasPrefix("stage n (noop) has run ") && reason.hasSuffix(" s, expected within 0 s"), "\(stuck)")
            _ = (judgment, wait)

            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let listed = try await CLITests.run(["executions", "stuck", "--grace", "1"], environment: env)
            #expect(listed.status == 2, "stuck executions make the exit status 2: \(listed.stderr)")
            #expect(listed.stdout.hasPrefix("\(noop) ops/n: stage n (noop) has run"), "\(listed.stdout)")
            try await repository.handle(.cancel(by: "ops", reason: "stuck"), executionID: noop, metadata: metadata)
            try await eventually("the canceled execution to leave the list") {
                _ = try await ExecutionProjector(client: db.client, logger: TestEnvironment.logger).catchUp()
                return try await Supervisor(client: db.client, logger: TestEnvironment.logger).stuck(grace: .seconds(1)).isEmpty
            }
            let none = try await CLITests.run(["executions", "stuck", "--grace", "1"], environment: env)
            #expect(none.status == 0 && none.stdout == "no stuck executions\n")
        }
    }
}
