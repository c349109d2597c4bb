import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// `script` stages as an operator runs them: off unless enabled, and then each run in a sandbox
/// that reaches none of the engine's environment, files or processes, under resource limits,
/// killed with the engine. Every engine here runs without the test suite's shared /tmp.
@Suite("Script stages: off by default, sandboxed when on", .serialized, .timeLimit(.minutes(3)))
struct ScriptSandboxTests {
    typealias Engine = EngineTests.Engine

    /// An engine with script stages enabled (or not) and nothing of the host bound in.
    static func engine(_ db: TestDatabase, enabled: Bool = true, arguments: [String] = [], environment: [String: String] = [:]) throws -> Engine {
        try Engine(db, arguments: arguments, environment: [
            "TOPSAIL_ENABLED_STAGE_TYPES": enabled ? "script" : "", "TOPSAIL_SCRIPT_BINDS": "",
        ].merging(environment) { $1 })
    }

    @Test("without the operator's opt-in a script stage ends TERMINAL, naming the switch, and runs nothing")
    func offByDefault() async throws {
        let marker = "/tmp/" + TestEnvironment.uniqueName("never")
        try await TestDatabase.with { db in
            let engine = try Self.engine(db, enabled: false)
            defer { engine.process.terminate() }
            let id = try await engine.run(EngineTests.pipeline([EngineTests.script("1", "touch \(marker)")]))
            let state = try await engine.finished(id)
            #expect(state.status == .terminal)
            #expect(state.stage("1").outputs["error"]?.stringValue == PipelineValidation.disabledMessage("script"))
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
        // The CLI refuses such a pipeline too, saying how to enable it.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("p") + ".json")
        try Data(#"{"application": "a", "name": "n", "stages": [{"refId": "1", "type": "script", "command": "true"}]}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let refused = try await CLITests.run(["pipeline", "validate", "-f", file.path], environment: ["TOPSAIL_ENABLED_STAGE_TYPES": ""])
        #expect(refused.status == 1 && refused.stderr.contains("--enable-stage-type script"), "\(refused.stderr)")
        let accepted = try await CLITests.run(["pipeline", "validate", "-f", file.path], environment: ["TOPSAIL_ENABLED_STAGE_TYPES": "script"])
        #expect(accepted.status == 0, "\(accepted.stderr)")
    }

    @Test("the script sees a clean environment, its own workspace and user, none of the engine's files, processes or network; known secrets are masked")
    func isolation() async throws {
        let password = "pw-" + TestEnvironment.uniqueName("")
        let kafkaSecret = "ks-" + TestEnvironment.uniqueName("")
        let servicesFile = TestEnvironment.packageRoot.appendingPathComponent(".topsail/services.env").path
        try await TestDatabase.with { db in
            // The test server trusts local connections, so a password in the URL is accepted and
            // ignored: it is still a secret the engine knows.
            let url = db.url.replacingOccurrences(of: "\(db.configuration.username)@", with: "\(db.configuration.username):\(password)@")
            let engine = try Self.engine(db, arguments: [
                "--database-url", url, "--kafka-property", "sasl.password=\(kafkaSecret)",
            ])
            defer { engine.process.terminate() }
            let id = try await engine.run(EngineTests.pipeline([
                EngineTests.script("env", "env | sort", ["env": ["GREETING": "hello"]]),
                EngineTests.script("who", "id -u; id -g; pwd; echo $HOME; touch mine && ls"),
                EngineTests.script("files", "cat \(servicesFile) || echo unreadable"),
                EngineTests.script("procs", "ps -e -o comm= | sort -u | tr '\\n' ' '"),
                EngineTests.script("net", "bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(db.configuration.port)' 2>/dev/null && echo connected || echo unreachable"),
                // The secrets are not in the pipeline (that would put them in the log): the script makes them.
                EngineTests.script("echo", "echo db=$(echo \(Self.base64(password)) | base64 -d) kafka=$(echo \(Self.base64(kafkaSecret)) | base64 -d)"),
            ]))
            let state = try await engine.finished(id)
            let environment = state.stage("env").outputs["stdout"]?.stringValue ?? ""
            let names = Set(environment.split(separator: "\n").compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
            #expect(names == ["GREETING", "HOME", "PATH", "PWD", "TOPSAIL_EXECUTION_ID", "TOPSAIL_STAGE_ID"], "\(environment)")
            #expect(environment.contains("TOPSAIL_EXECUTION_ID=\(id)\n") && environment.contains("HOME=/workspace\n"))
            #expect(state.stage("who").outputs["stdout"] == "65534\n65534\n/workspace\n/workspace\nmine\n")
            #expect(state.stage("files").outputs["stdout"] == "unreadable\n")
            #expect(state.stage("files").outputs["stderr"]?.stringValue?.contains("No such file or directory") == true, "\(state.stage("files").outputs)")
            let processes = state.stage("procs").outputs["stdout"]?.stringValue ?? ""
            #expect(!processes.contains("topsail"), "the engine is visible: \(processes)")
            #expect(state.stage("net").outputs["stdout"] == "unreachable\n", "\(state.stage("net").outputs)")
            #expect(state.stage("echo").outputs["stdout"] == "db=*** kafka=***\n", "\(state.stage("echo").outputs)")
            // Nor in the log at all.
            for try await text in try await db.client.query("SELECT payload::text FROM events", logger: TestEnvironment.logger).decode(String.self) {
                #expect(!text.contains(password) && !text.contains(kafkaSecret))
            }
        }
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    @Test("a fork bomb and a memory hog are stopped by their limits with a stage error naming the limit")
    func limits() async throws {
        try await TestDatabase.with { db in
            // Another user than the other tests' scripts (nobody): the kernel counts processes per
            // user, so their scripts and this bomb must not share the count.
            let engine = try Self.engine(db, arguments: [
                "--script-processes", "16", "--script-memory-mb", "64", "--script-cpu-seconds", "1", "--script-user", "games",
            ])
            defer { engine.process.terminate() }
            // Each failure goes on (FAILED_CONTINUE), so that one does not cancel the others.
            let goOn: [String: JSONValue] = ["failPipeline": false, "continuePipeline": true]
            let id = try await engine.run(EngineTests.pipeline([
                EngineTests.script("bomb", "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait", after: ["hog", "spin"], goOn),
                EngineTests.script("hog", "awk 'BEGIN { s = \"x\"; while (1) s = s s }'", goOn),
                EngineTests.script("spin", "while :; do :; done", goOn),
            ]))
            let state = try await engine.finished(id, timeout: .seconds(60))
            #expect(state.stage("bomb").status == .failedContinue)
            #expect(state.stage("bomb").outputs["error"]?.stringValue?.contains("process limit (16 processes") == true, "\(state.stage("bomb").outputs)")
            #expect(state.stage("hog").status == .failedContinue)
            #expect(state.stage("hog").outputs["error"]?.stringValue?.contains("memory limit (64 MiB") == true, "\(state.stage("hog").outputs)")
            #expect(state.stage("spin").status == .failedContinue)
            #expect(state.stage("spin").outputs["error"]?.stringValue?.contains("CPU time limit (1 s)") == true, "\(state.stage("spin").outputs)")
        }
    }

    @Test("kill -9 of the engine during a long script leaves no script process behind")
    func diesWithTheEngine() async throws {
        let sleeper = EngineTests.uniqueSleep()
        try await TestDatabase.with { db in
            var engine = try Self.engine(db)
            defer { engine.process.terminate() }
            let id = try await engine.run(EngineTests.pipeline([EngineTests.script("long", "\(sleeper); echo woke")]))
            try await engine.until("the script to run") { EngineTests.isRunning(sleeper) }
            #expect(try await engine.repository.load(id).stage("long").status == .running)
            let killed = engine.process.pid
            engine.process.killHard()
            try await eventually(timeout: .seconds(5), "the script to die with the engine") { !EngineTests.isRunning(sleeper) }
            // Its workspace stayed behind (nothing ran after kill -9); the next engine to start
            // removes it — the restarted one, or one of another test running beside this one.
            func workspaces() -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp/topsail-scripts")) ?? []).filter { $0.hasPrefix("\(killed)-") }
            }
            try engine.restart()
            try await engine.until("the new engine to remove the killed one's workspace") { workspaces().isEmpty }
        }
    }
}
