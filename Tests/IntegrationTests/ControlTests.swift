import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// What people do to running executions, through the CLI against a `topsail all` process.
@Suite("Engine: pause, resume, skip wait, judgment inputs, failure options", .serialized, .timeLimit(.minutes(5)))
struct ControlTests {
    typealias Engine = EngineTests.Engine

    @Test("pause holds the next stage until resume; skip-wait ends a wait; judgment inputs are checked")
    func pauseSkipAndJudge() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let marker = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("go-")).path
            defer { try? FileManager.default.removeItem(atPath: marker) }
            let id = try await engine.run(EngineTests.pipeline([
                // Runs until the test creates the marker.
                EngineTests.script("build", "while [ ! -e \(marker) ]; do sleep 0.05; done"),
                ["refId": "soak", "type": "wait", "waitTime": 3600, "requisiteStageRefIds": ["build"]],
                ["refId": "approve", "type": "manualJudgment", "requisiteStageRefIds": ["soak"],
                 "judgmentInputs": [["value": "ship"], ["value": "hold"]]],
                EngineTests.script("deploy", "echo deployed", after: ["approve"]),
            ]))
            try await engine.until("the build to run") { try await engine.repository.load(id).stage("build").status == .running }
            let paused = try await CLITests.run(["executions", "pause", id], environment: env)
            #expect(paused.stdout == "pause: execution \(id) is PAUSED\n", "\(paused.stderr)")
            // The running stage finishes while paused; nothing new starts.
            _ = FileManager.default.createFile(atPath: marker, contents: Data())
            try await engine.until("the build to finish") { try await engine.repository.load(id).stage("build").status == .succeeded }
            try await Task.sleep(for: .milliseconds(700))
            var state = try await engine.repository.load(id)
            #expect(state.status == .paused)
            #expect(state.stage("soak").status == .notStarted, "a stage started while the execution was paused")
            let resumed = try await CLITests.run(["executions", "resume", id], environment: env)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            try await engine.until("the wait to start") { try await engine.repository.load(id).stage("soak").status == .running }

            let notAWait = try await CLITests.run(["executions", "skip-wait", id, "--stage", "build"], environment: env)
            #expect(notAWait.status == 1 && notAWait.stderr.contains("stage build is a script stage, not a wait"), "\(notAWait.stderr)")
            let skipped = try await CLITests.run(["executions", "skip-wait", id, "--stage", "soak"], environment: env)
            #expect(skipped.status == 0, "\(skipped.stderr)")
            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("approve").status == .running }
            state = try await engine.repository.load(id)
            #expect(state.stage("soak").status == .succeeded && state.stage("soak").outputs["skipRemainingWait"] == true)

            let wrong = try await CLITests.run(["executions", "judge", id, "--stage", "approve", "--continue", "--input", "maybe"], environment: env)
            #expect(wrong.status == 1 && wrong.stderr.contains("'maybe' is not one of the stage's judgment inputs: ship, hold"), "\(wrong.stderr)")
            let judged = try await CLITests.run(["executions", "judge", id, "--stage", "approve", "--continue", "--input", "ship"], environment: env)
            #expect(judged.status == 0, "\(judged.stderr)")
            let final = try await engine.finished(id)
            #expect(final.status == .succeeded)
            #expect(final.stage("deploy").outputs["stdout"] == "deployed\n")
        }
    }

    @Test("failPipeline false stops its branch (STOPPED) while others finish; completeOtherBranchesThenFail then fails the execution")
    func stoppedBranches() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            func shape(_ options: [String: JSONValue]) -> JSONValue {
                var failing: [String: JSONValue] = ["failPipeline": false]
                failing.merge(options) { $1 }
                return EngineTests.pipeline([
                    EngineTests.script("a", "exit 1", failing), EngineTests.script("a2", "true", after: ["a"]),
                    EngineTests.script("b", "sleep 0.5"), EngineTests.script("b2", "true", after: ["b"]),
                ])
            }
            let stopped = try await engine.run(shape([:]))
            let failing = try await engine.run(shape(["completeOtherBranchesThenFail": true]))
            for (id, status) in [(stopped, ExecutionStatus.succeeded), (failing, .terminal)] {
                let state = try await engine.finished(id)
                #expect(state.stage("a").status == .stopped)
                #expect(state.stage("a2").status == .notStarted, "downstream of a stopped stage ran")
                #expect(state.stage("b").status == .succeeded && state.stage("b2").status == .succeeded, "the other branch did not finish")
                #expect(state.status == status)
            }
        }
    }
}
