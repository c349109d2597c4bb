import EventLog
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
import PostgresEventStore
#endif
import Processes
import Testing

/// The `topsail` executable as users run it.
@Suite("Command line", .timeLimit(.minutes(5)))
struct CLITests {
    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs the executable to completion on a thread of its own (blocking a test's cooperative
    /// thread while a command runs would stall every other test in the process), its output in
    /// files and its exit collected by `waitpid` on its own pid: neither waits on a pipe's end,
    /// which a daemon the command starts could hold open, nor on Foundation's reaping of children,
    /// seen to stall in a test process that has killed children with SIGKILL.
    /// (Another executable than `topsail` when `executable` is given.)
    static func run(_ arguments: [String], environment: [String: String] = [:], executable: URL? = nil) async throws -> Outcome {
        let finished = try await UnmaskedProcess.run(
            (executable ?? TestEnvironment.topsailExecutable()).path, arguments, environment: TestEnvironment.processEnvironment(environment))
        return Outcome(status: finished.status, stdout: finished.output, stderr: finished.errors)
    }

    @Test("migrate, append, read: positions printed, JSON lines read back, retries idempotent")
    func appendAndRead() async throws {
        try await TestDatabase.with(migrate: false) { db in
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let migrated = try await Self.run(["migrate"], environment: env)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            let count = try Migration.load(from: TestEnvironment.migrationsDirectory).count
            #expect(count >= 4)
            #expect(migrated.stdout.contains("\(count) applied, 0 already applied"), "\(migrated.stdout)")

            let id = UUID().uuidString
            let first = try await Self.run(["events", "append", "--stream", "deploy-42", "--type", "deploy.requested",
                                      "--data", #"{"version":"1.2.3"}"#, "--id", id, "--expected-version", "no-stream"], environment: env)
            #expect(first.status == 0, "\(first.stderr)")
            let position = first.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(Int(position) != nil)
            let retry = try await Self.run(["events", "append", "--stream", "deploy-42", "--type", "deploy.requested",
                                      "--data", #"{"version":"1.2.3"}"#, "--id", id, "--expected-version", "no-stream"], environment: env)
            #expect(retry.status == 0)
            #expect(retry.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == position)

            let read = try await Self.run(["events", "read", "--stream", "deploy-42"], environment: env)
            let lines = read.stdout.split(separator: "\n")
            #expect(lines.count == 1)
            let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
            #expect(object?["type"] as? String == "deploy.requested")
            #expect((object?["data"] as? [String: Any])?["version"] as? String == "1.2.3")
            #expect(object?["position"] as? Int == Int(position))
        }
    }

    @Test("bad input: one clear line on stderr and a non-zero exit", arguments: [
        (["events", "append", "--stream", "nodash", "--type", "t", "--data", "{}"], "invalid stream id"),
        (["events", "append", "--stream", "a-1", "--type", "t", "--data", "{nope"], "not valid JSON"),
        (["events", "append", "--stream", "a-1", "--type", "bad type", "--data", "{}"], "invalid event type"),
        (["events", "append", "--stream", "a-1", "--type", "t", "--data", "{}", "--expected-version", "7"], "version conflict"),
        (["events", "append", "--stream", "a-1", "--type", "t", "--data", #""xxxxxxxxxx""#, "--max-payload-bytes", "5"], "over the limit of 5 bytes"),
        (["events", "read"], "exactly one of --stream S and --all"),
        (["events", "read", "--all", "--from", "987654"], "no event has global position 987654"),
    ])
    func badInput(_ arguments: [String], _ message: String) async throws {
        try await TestDatabase.with { db in
            let outcome = try await Self.run(arguments, environment: ["TOPSAIL_DATABASE_URL": db.url])
            #expect(outcome.status != 0)
            #expect(outcome.stderr.contains(message), "stderr: \(outcome.stderr)")
            #expect(!outcome.stderr.contains("Fatal error"))
        }
    }

    @Test("an unreachable database is reported within seconds, naming what to do")
    func unreachableDatabase() async throws {
        let started = ContinuousClock.now
        let outcome = try await Self.run(["events", "read", "--all"], environment: ["TOPSAIL_DATABASE_URL": "postgres://postgres@127.0.0.1:1/topsail"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("PostgreSQL"))
        #expect(ContinuousClock.now - started < .seconds(15))
    }

    @Test("missing configuration names the variable to set")
    func missingConfiguration() async throws {
        let outcome = try await Self.run(["events", "read", "--all"], environment: ["TOPSAIL_DATABASE_URL": ""])
        #expect(outcome.status != 0)
        #expect(outcome.stderr.contains("TOPSAIL_DATABASE_URL"))
    }

    @Test("topsail all serves /health and /ready over HTTP and stops on SIGTERM")
    func allServesHealth() async throws {
        try await TestDatabase.with { db in
            let port = try PrivateBroker.freePort()
            let all = try ChildProcess(try TestEnvironment.topsailExecutable(), [
                "all", "--database-url", db.url, "--http-port", String(port), "--relay-name", TestEnvironment.uniqueName("relay"),
            ])
            defer { all.killHard() }
            let url = URL(string: "http://127.0.0.1:\(port)/health")!
            try await eventually("/health to answer") {
                (try? await URLSession.shared.data(from: url)) != nil
            }
            let (body, response) = try await URLSession.shared.data(from: url)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect(String(decoding: body, as: UTF8.self).contains("ok"))
            let (_, ready) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/ready")!)
            #expect((ready as? HTTPURLResponse)?.statusCode == 200)
            #expect(await all.stopped(grace: .seconds(20)), "topsail all did not stop on SIGTERM: \(all.text.suffix(3000))")
            #expect(all.exitStatus == 0, "\(all.text.suffix(3000))")
        }
    }
}

@Suite("Command line: following the log", .timeLimit(.minutes(5)))
struct TailTests {
    @Test("events tail prints each new event as a JSON line as it commits")
    func tailFollows() async throws {
        try await TestDatabase.with { db in
            _ = try await db.store.append(to: try StreamID("old-1"), expected: .any, events: [NewEvent(type: "old.event", payload: .emptyObject)])
            let tail = try ChildProcess(try TestEnvironment.topsailExecutable(), ["events", "tail", "--database-url", db.url])
            defer { tail.terminate() }
            // Events appended before tail found the head of the log are not new to it.
            try await eventually("tail to start following") { tail.text.contains("tail: following the log after position") }
            for index in 1...3 {
                _ = try await db.store.append(to: try StreamID("new-1"), expected: .any, events: [
                    NewEvent(type: "new.event", payload: try JSONText("{\"n\":\(index)}")),
                ])
            }
            // Log reads wait for every older open transaction on the server, and other tests hold some open.
            try await eventually(timeout: .seconds(45), "three lines from tail") {
                tail.text.split(separator: "\n").filter { $0.hasPrefix("{") }.count >= 3
            }
            let lines = tail.text.split(separator: "\n").filter { $0.hasPrefix("{") }
            #expect(lines.count == 3, "\(tail.text)")
            #expect(lines.allSatisfy { $0.contains("\"type\":\"new.event\"") }, "tail printed events from before it started")
            for (index, line) in lines.enumerated() {
                #expect(line.contains("\"version\":\(index + 1),"), "line \(index): \(line)")
            }
        }
    }
}

@Suite("Command line: pipeline validation", .timeLimit(.minutes(5)))
struct PipelineValidateCLITests {
    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("pipeline-") + ".json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a valid pipeline: summary and exit 0")
    func valid() async throws {
        let path = try Self.write("""
            {"application": "web", "name": "p", "stages": [
              {"refId": "1", "type": "wait", "waitTime": 1},
              {"refId": "2", "type": "noop", "requisiteStageRefIds": ["1"]}]}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try await CLITests.run(["pipeline", "validate", "-f", path])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.contains("valid: 2 stages, starting with 1"))
    }

    @Test("the README's example pipeline is valid")
    func example() async throws {
        let path = TestEnvironment.packageRoot.appendingPathComponent("examples/hello-pipeline.json").path
        let outcome = try await CLITests.run(["pipeline", "validate", "-f", path])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.contains("valid: 5 stages, starting with 1"))
    }

    @Test("an invalid pipeline: every problem with stage and path, exit 1")
    func invalid() async throws {
        let path = try Self.write("""
            {"stages": [
              {"refId": "1", "type": "script"},
              {"refId": "2", "type": "noop", "requisiteStageRefIds": ["9"]}]}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try await CLITests.run(["pipeline", "validate", "-f", path])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("stage '1' (stages[0].command): a script stage needs 'command'"))
        #expect(outcome.stderr.contains("stage '2' (stages[1].requisiteStageRefIds[0]): unknown refId '9'"))
    }

    @Test("not JSON, or no such file: one clear line")
    func unreadable() async throws {
        let path = try Self.write("{nope")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let garbage = try await CLITests.run(["pipeline", "validate", "-f", path])
        #expect(garbage.status != 0)
        #expect(garbage.stderr.contains("is not valid JSON"))
        let missing = try await CLITests.run(["pipeline", "validate", "-f", "/nonexistent/p.json"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("cannot read /nonexistent/p.json"))
    }
}

/// The benchmarks are measured by hand (docs/benchmarks.md); this keeps them working.
@Suite("Command line: benchmarks run", .timeLimit(.minutes(5)))
struct BenchSmokeTests {
    static func json(_ arguments: [String]) async throws -> [String: Any] {
        let outcome = try await CLITests.run(arguments + ["--json"], environment: ["TOPSAIL_MIGRATIONS_DIR": TestEnvironment.migrationsDirectory.path])
        #expect(outcome.status == 0, "\(outcome.stderr.suffix(2000))")
        return (try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func append() async throws {
        let result = try await Self.json(["bench", "append", "--writers", "2", "--batch", "5", "--duration", "1"])
        let topsail = result["topsail"] as? [String: Any]
        #expect((topsail?["eventsPerSecond"] as? Double ?? 0) > 0)
        #expect((result["ratio"] as? Double ?? 0) > 0)
    }

    @Test func relay() async throws {
        let result = try await Self.json(["bench", "relay", "--rate", "50", "--duration", "1"])
        let relay = result["relay"] as? [String: Any]
        #expect(relay?["sent"] as? Int == 50)
        #expect(relay?["received"] as? Int == 50)
    }

    @Test func pipeline() async throws {
        let result = try await Self.json(["bench", "pipeline", "--stages", "3", "--executions", "2", "--baseline-seconds", "1"])
        #expect(result["succeeded"] as? Int == 2)
        #expect((result["transition"] as? [String: Any])?["count"] as? Int == 6, "3 per execution: each stage's start to the next one's, the last to the completion")
        #expect((result["ratio"] as? Double ?? 0) > 0)
    }

    @Test func rebuild() async throws {
        let result = try await Self.json(["bench", "rebuild", "--events", "500", "--stages", "3"])
        #expect(result["events"] as? Int == 495 && result["executions"] as? Int == 55, "whole executions of 9 events")
        #expect((result["rebuildEventsPerSecond"] as? Double ?? 0) > 0 && (result["ratio"] as? Double ?? 0) > 0)
    }

    @Test func waits() async throws {
        let result = try await Self.json(["bench", "waits", "--executions", "20"])
        #expect(result["executions"] as? Int == 20)
        #expect((result["parkedResidentMB"] as? Double ?? 0) > 0)
    }
}
