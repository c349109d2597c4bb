import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// `pipeline` stages: child executions of saved pipelines, run by a `topsail all` process.
@Suite("Engine: child pipelines", .serialized, .timeLimit(.minutes(5)))
struct ChildPipelineTests {
    typealias Engine = EngineTests.Engine

    static func save(_ db: TestDatabase, id: String, _ stages: [JSONValue], extra: [String: JSONValue] = [:]) async throws {
        var json: [String: JSONValue] = ["id": .string(id), "application": "child-app", "name": .string("child-\(id)"), "limitConcurrent": false,
                                         "stages": .array(stages)]
        json.merge(extra) { $1 }
        try await PipelineConfigStore(store: db.store).save(PipelineConfig(json: json), metadata: EventMetadata(source: "test"))
    }

    static func child(_ ref: String, pipeline: String, after: [String] = [], _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var stage: [String: JSONValue] = ["refId": .string(ref), "type": "pipeline", "application": "child-app", "pipeline": .string(pipeline),
                                          "requisiteStageRefIds": .array(after.map(JSONValue.string)), "backoffPeriodMs": 100]
        stage.merge(extra) { $1 }
        return .object(stage)
    }

    @Test("a child runs with evaluated parameters; the parent keeps a reference and waits for it")
    func runsAndWaits() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await Self.save(db, id: "greeter", [EngineTests.script("hello", "echo hello ${parameters.who} from ${trigger.parentExecution.name}")],
                                extra: ["parameterConfig": [["name": "who", "required": true], ["name": "mood", "default": "calm"]]])
            // The parent's check waits a minute between polls: it finishes early only because the
            // child's completion wakes it.
            let id = try await engine.run(EngineTests.pipeline([
                Self.child("call", pipeline: "greeter", ["pipelineParameters": ["who": "${trigger.type}"], "backoffPeriodMs": 60_000]),
                EngineTests.script("after", "echo child was ${#stage('call').outputs.executionId}", after: ["call"]),
            ]))
            let state = try await engine.finished(id, timeout: .seconds(40))
            #expect(state.status == .succeeded)
            let outputs = state.stage("call").outputs
            let childID = try #require(outputs["executionId"]?.stringValue)
            #expect(Set(outputs.keys) == ["executionId", "executionName", "application", "status"], "the parent holds a reference, not a copy")
            #expect(outputs["status"] == "SUCCEEDED")
            #expect(state.stage("after").outputs["stdout"] == .string("child was \(childID)\n"))
            let child = try await engine.repository.load(childID)
            #expect(child.status == .succeeded)
            #expect(child.stage("hello").outputs["stdout"] == "hello manual from engine\n")
            #expect(child.parameters == ["who": "manual", "mood": "calm"])
            #expect(child.trigger["parentExecution"]?["id"] == .string(id))
            #expect(child.trigger["parentPipelineStageId"] == "call")
        }
    }

    @Test("a failing child fails the stage; a missing pipeline fails it; waitForCompletion false goes on at once")
    func failuresAndFireAndForget() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await Self.save(db, id: "broken", [EngineTests.script("1", "exit 3")])
            try await Self.save(db, id: "slow", [EngineTests.script("1", "sleep 1")])
            try await Self.save(db, id: "needs", [["refId": "1", "type": "noop"]], extra: ["parameterConfig": [["name": "x", "required": true]]])
            let failing = try await engine.run(EngineTests.pipeline([Self.child("c", pipeline: "broken")]))
            let missing = try await engine.run(EngineTests.pipeline([Self.child("c", pipeline: "nowhere")]))
            let unparameterized = try await engine.run(EngineTests.pipeline([Self.child("c", pipeline: "needs")]))
            let detached = try await engine.run(EngineTests.pipeline([Self.child("c", pipeline: "slow", ["waitForCompletion": false])]))

            let failed = try await engine.finished(failing)
            #expect(failed.status == .terminal)
            let childID = try #require(failed.stage("c").outputs["executionId"]?.stringValue)
            #expect(failed.stage("c").outputs["error"] == .string("child pipeline execution \(childID) ended TERMINAL"))
            #expect(try await engine.finished(missing).stage("c").outputs["error"] == "no saved pipeline nowhere (application child-app)")
            #expect(try await engine.finished(unparameterized).stage("c").outputs["error"] == "child pipeline needs: missing required parameters: x")
            let parent = try await engine.finished(detached)
            #expect(parent.status == .succeeded)
            let slowChild = try #require(parent.stage("c").outputs["executionId"]?.stringValue)
            #expect(try await engine.finished(slowChild).status == .succeeded)
            // The parent completed before its child did (the log's times).
            func completedAt(_ id: String) async throws -> Date? {
                try await db.store.readStream(try ExecutionRepository.streamID(id), from: .max, direction: .backward, limit: 1).first?.recordedAt
            }
            let parentDone = try #require(try await completedAt(detached))
            let childDone = try #require(try await completedAt(slowChild))
            #expect(parentDone < childDone, "the parent waited for the child")
        }
    }

    @Test("pipeline save and pipeline run --id through the CLI")
    func saveAndRunByID() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("saved-") + ".json").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try #"{"application": "cli", "name": "saved", "stages": [{"refId": "1", "type": "script", "command": "echo v${parameters.v}"}], "parameterConfig": [{"name": "v", "required": true}]}"#
                .write(toFile: file, atomically: true, encoding: .utf8)
            let noID = try await CLITests.run(["pipeline", "save", "-f", file], environment: env)
            #expect(noID.status == 1 && noID.stderr.contains("has no \"id\"; give one with --id"), "\(noID.stderr)")
            let saved = try await CLITests.run(["pipeline", "save", "-f", file, "--id", "saved-1"], environment: env)
            #expect(saved.stdout == "saved pipeline saved-1 (cli/saved), version 1\n", "\(saved.stderr)")
            let again = try await CLITests.run(["pipeline", "save", "-f", file, "--id", "saved-1"], environment: env)
            #expect(again.stdout.contains("version 2"))
            let missingParameter = try await CLITests.run(["pipeline", "run", "--id", "saved-1"], environment: env)
            #expect(missingParameter.status == 1 && missingParameter.stderr.contains("missing required parameters: v"))
            let unknown = try await CLITests.run(["pipeline", "run", "--id", "nope"], environment: env)
            #expect(unknown.status == 1 && unknown.stderr.contains("no saved pipeline nope"))
            let both = try await CLITests.run(["pipeline", "run", "--id", "saved-1", "-f", file], environment: env)
            #expect(both.status != 0 && both.stderr.contains("give exactly one of -f FILE and --id ID"))
            let ran = try await CLITests.run(["pipeline", "run", "--id", "saved-1", "--param", "v=7", "--wait", "--json"], environment: env)
            #expect(ran.status == 0, "\(ran.stdout)\(ran.stderr)")
            let view = try JSONText(ran.stdout).decode(JSONValue.self)
            #expect(view["status"] == "SUCCEEDED")
            #expect(view["stages"]?.arrayValue?.first?["outputs"]?["stdout"] == "v7\n", "\(ran.stdout)")
        }
    }

    @Test("canceling the parent cancels the child and kills its script")
    func cancelReachesTheChild() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let sleeper = EngineTests.uniqueSleep()
            try await Self.save(db, id: "long", [EngineTests.script("1", sleeper)])
            let id = try await engine.run(EngineTests.pipeline([Self.child("c", pipeline: "long")]))
            var childID = ""
            try await engine.until("the child's script to run") {
                let state = try await engine.repository.load(id)
                guard let child = state.stage("c").outputs["executionId"]?.stringValue else { return false }
                childID = child
                return try await engine.repository.load(child).stage("1").status == .running
            }
            try await engine.repository.handle(.cancel(by: "tester", reason: "enough"), executionID: id, metadata: EventMetadata(source: "test"))
            #expect(try await engine.finished(id).status == .canceled)
            #expect(try await engine.finished(childID).status == .canceled)
            try await eventually(timeout: .seconds(10), "the child's script to be killed") { !EngineTests.isRunning(sleeper) }
        }
    }
}
