import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// Pipelines run by a real `topsail all` process (relay, orchestrator, worker) over the real
/// PostgreSQL and broker, each test in its own schema with its own topics and consumer groups.
// Each test runs a `topsail all` process; one at a time per suite keeps the two cores of a CI
// machine from being shared by dozens of engines at once (whose starved transactions then hold
// every log reader back).
@Suite("Engine: pipelines through Kafka", .serialized, .timeLimit(.minutes(5)))
struct EngineTests {
    struct Engine {
        let db: TestDatabase
        let prefix: String
        var process: ChildProcess

        init(
            _ db: TestDatabase, prefix: String = TestEnvironment.uniqueName("t") + ".", brokers: String? = nil, arguments: [String] = [],
            environment: [String: String] = [:]
        ) throws {
            self.db = db
            self.prefix = prefix
            self.brokers = brokers
            self.arguments = arguments
            self.environment = environment
            httpPort = try PrivateBroker.freePort()
            process = try Self.start(db, prefix: prefix, httpPort: httpPort, brokers: brokers, arguments: arguments, environment: environment)
        }

        /// More arguments for `topsail all`, and its environment's additions.
        let arguments: [String]
        let environment: [String: String]

        /// Another broker than the shared one (a private broker a test stops and starts).
        let brokers: String?

        /// Where the engine's HTTP API listens.
        let httpPort: Int
        var api: String { "http://127.0.0.1:\(httpPort)" }

        static func start(
            _ db: TestDatabase, prefix: String, httpPort: Int, brokers: String?, arguments: [String] = [], environment: [String: String] = [:]
        ) throws -> ChildProcess {
            try ChildProcess(try TestEnvironment.topsailExecutable(), [
                "all", "--database-url", db.url, "--topic-prefix", prefix, "--partitions", "2",
                "--http-port", String(httpPort), "--relay-name", prefix,
                "--kafka-property", "session.timeout.ms=2000", "--kafka-property", "heartbeat.interval.ms=500", "--log-level", "debug",
            ] + (brokers.map { ["--kafka-brokers", $0] } ?? []) + arguments, environment: environment)
        }

        mutating func restart() throws {
            process = try Self.start(db, prefix: prefix, httpPort: httpPort, brokers: brokers, arguments: arguments, environment: environment)
        }

        var repository: ExecutionRepository { ExecutionRepository(store: db.store, logger: TestEnvironment.logger) }

        func run(_ json: JSONValue) async throws -> String {
            guard case .success(let pipeline) = PipelineValidation.parse(json) else { throw SetupError("invalid test pipeline") }
            return try await repository.trigger(pipeline, trigger: ["type": "manual"], parameters: [:], metadata: EventMetadata(source: "test"))
        }

        func finished(_ id: String, timeout: Duration = .seconds(60)) async throws -> ExecutionState {
            var state = ExecutionState()
            try await until(timeout: timeout, "execution \(id) to complete") {
                state = try await repository.load(id)
                return state.status.isComplete
            }
            return state
        }

        /// ``eventually``, with the engine's output in the report when the condition never holds.
        func until(timeout: Duration = .seconds(30), _ what: String, _ condition: () async throws -> Bool) async throws {
            do {
                try await eventually(timeout: timeout, what, condition)
            } catch {
                var log = ""
                for try await (stream, version, type) in try await db.client.query(
                    "SELECT stream_id, stream_version, event_type FROM events ORDER BY position", logger: TestEnvironment.logger
                ).decode((String, Int64, String).self) {
                    log += "\(stream) v\(version) \(type)\n"
                }
                let lines = process.text.split(separator: "\n").filter { !$0.contains("CONFWARN") }
                // A crash report starts with "Program crashed"; show its crashed thread.
                let crash = lines.firstIndex { $0.contains("Program crashed") }
                let output = (crash.map { Array(lines[$0...].prefix(80)) } ?? Array(lines.suffix(60))).joined(separator: "\n")
                // What each role said last besides the database driver's chatter (which can fill
                // the tail during an outage): the roles' own notices, warnings and errors.
                let roles = lines.filter { !$0.contains("[PostgresNIO]") && ($0.contains(" notice ") || $0.contains(" warning ") || $0.contains(" error ") || $0.contains(" info ")) }
                Issue.record("the log:\n\(log)\nengine output:\n\(output)\nthe roles' last notices:\n\(roles.suffix(40).joined(separator: "\n"))")
                throw error
            }
        }
    }

    static func script(_ ref: String, _ command: String, after: [String] = [], _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var stage: [String: JSONValue] = ["refId": .string(ref), "type": "script", "command": .string(command),
                                          "requisiteStageRefIds": .array(after.map(JSONValue.string))]
        stage.merge(extra) { $1 }
        return .object(stage)
    }

    /// A `sleep` long enough to outlast any test, recognisable among the machine's processes.
    static func uniqueSleep() -> String {
        "sleep 60.\(Int.random(in: 100_000...999_999))"
    }

    static func isRunning(_ command: String) -> Bool {
        let pgrep = Process()
        pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        pgrep.arguments = ["-f", command]
        pgrep.standardOutput = FileHandle.nullDevice
        guard (try? pgrep.run()) != nil else { return true }
        while pgrep.isRunning { usleep(10_000) }
        return pgrep.terminationStatus == 0
    }

    static func pipeline(_ stages: [JSONValue]) -> JSONValue {
        ["application": "test", "name": "engine", "limitConcurrent": false, "stages": .array(stages)]
    }

    @Test("parallel branches run together and the join waits for both")
    func branchesAndJoin() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let id = try await engine.run(Self.pipeline([
                ["refId": "1", "type": "noop"],
                Self.script("2", "sleep 0.5; echo left", after: ["1"]),
                Self.script("3", "sleep 0.5; echo right", after: ["1"]),
                ["refId": "4", "type": "noop", "requisiteStageRefIds": ["2", "3"]],
            ]))
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded, "\(engine.process.text)")
            #expect(state.stage("2").outputs["stdout"] == "left\n")
            let events = try await engine.repository.events(of: id)
            func index(_ target: ExecutionEvent) -> Int? { events.firstIndex(of: target) }
            let started2 = try #require(index(.stageStarted(refID: "2", attempt: 1)))
            let started3 = try #require(index(.stageStarted(refID: "3", attempt: 1)))
            let completed2 = try #require(events.firstIndex { if case .stageCompleted("2", _, _) = $0 { true } else { false } })
            let completed3 = try #require(events.firstIndex { if case .stageCompleted("3", _, _) = $0 { true } else { false } })
            let started4 = try #require(index(.stageStarted(refID: "4", attempt: 1)))
            #expect(max(started2, started3) < min(completed2, completed3), "the branches ran one after the other")
            #expect(started4 > max(completed2, completed3))
        }
    }

    @Test("a failing stage ends the execution TERMINAL and kills the other branch's script")
    func failureCancelsOtherBranches() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let sleeper = Self.uniqueSleep()
            let id = try await engine.run(Self.pipeline([
                Self.script("fail", "sleep 0.3; exit 7"),
                Self.script("slow", "\(sleeper); echo finished"),
                ["refId": "after", "type": "noop", "requisiteStageRefIds": ["fail"]],
            ]))
            let state = try await engine.finished(id)
            #expect(state.status == .terminal)
            #expect(state.stage("fail").status == .terminal)
            #expect(state.stage("fail").outputs["exitCode"] == 7)
            #expect(state.stage("slow").status == .canceled)
            #expect(state.stage("after").status == .notStarted)
            try await eventually(timeout: .seconds(10), "the canceled script to be killed") { !Self.isRunning(sleeper) }
        }
    }

    @Test("continuePipeline: FAILED_CONTINUE and the downstream stage runs")
    func continuePipeline() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let id = try await engine.run(Self.pipeline([
                Self.script("1", "exit 1", ["continuePipeline": true, "failPipeline": false]),
                Self.script("2", "echo ran", after: ["1"]),
            ]))
            let state = try await engine.finished(id)
            #expect(state.stage("1").status == .failedContinue)
            #expect(state.stage("2").status == .succeeded)
            #expect(state.status == .succeeded)
        }
    }

    @Test("cancel during a script kills it and the execution ends CANCELED")
    func cancelDuringScript() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let sleeper = Self.uniqueSleep()
            let id = try await engine.run(Self.pipeline([Self.script("1", "\(sleeper); echo finished")]))
            try await engine.until("the script to start") { try await engine.repository.load(id).stage("1").status == .running }
            try await engine.repository.handle(.cancel(by: "tester", reason: "test"), executionID: id, metadata: EventMetadata(actor: "tester", source: "test"))
            let state = try await engine.finished(id)
            #expect(state.status == .canceled)
            #expect(state.stage("1").status == .canceled)
            try await eventually(timeout: .seconds(10), "the canceled script to be killed") { !Self.isRunning(sleeper) }
        }
    }

    @Test("kill -9 of the engine with scripts and timed waits in flight: each execution ends as a crash-free run does, and no completed stage runs again")
    func survivesKills() async throws {
        let marker = "/tmp/" + TestEnvironment.uniqueName("crash-marks")
        defer { try? FileManager.default.removeItem(atPath: marker) }
        // Each script notes when it starts and ends; the wait holds a stored timer meanwhile.
        func noting(_ ref: String, _ work: String, after: [String] = []) -> JSONValue {
            Self.script(ref, "echo \"${execution.id} \(ref) start $(date +%s.%N)\" >> \(marker); \(work); " +
                        "echo \"${execution.id} \(ref) end $(date +%s.%N)\" >> \(marker); echo \(ref) done", after: after)
        }
        let shapes: [(JSONValue, ExecutionStatus)] = [
            (Self.pipeline([noting("build", "sleep 1"), ["refId": "soak", "type": "wait", "waitTime": 2],
                            noting("ship", "sleep 0.2", after: ["build", "soak"])]), .succeeded),
            (Self.pipeline([noting("build", "sleep 0.8"), noting("fail", "exit 2", after: ["build"]), noting("never", "true", after: ["fail"])]), .terminal),
        ]
        try await TestDatabase.with { db in
            var engine = try Engine(db)
            defer { engine.process.killHard() }
            // What a crash-free run of each shape ends with.
            var reference: [ExecutionState] = []
            for (json, _) in shapes { reference.append(try await engine.finished(try await engine.run(json))) }
            var expected: [String: Int] = [:]
            for _ in 0..<3 {
                for (index, (json, _)) in shapes.enumerated() { expected[try await engine.run(json)] = index }
            }
            func marks() -> [[Substring]] {
                ((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ") }
            }
            for round in 0..<2 {
                // Kill only with work in flight: a script started and not ended, and a wait's timer stored.
                try await engine.until(timeout: .seconds(60), "round \(round): a script and a timed wait in flight") {
                    let lines = marks()
                    let started = Set(lines.filter { $0[2] == "start" }.map { "\($0[0]) \($0[1])" })
                    let ended = Set(lines.filter { $0[2] == "end" }.map { "\($0[0]) \($0[1])" })
                    var timers = 0
                    for try await count in try await db.client.query("SELECT count(*)::int FROM timers WHERE timer_id LIKE '%/soak/%'",
                                                                     logger: TestEnvironment.logger).decode(Int.self) { timers = count }
                    return !started.subtracting(ended).isEmpty && timers > 0
                }
                engine.process.killHard()
                try engine.restart()
            }
            var completedAt: [String: Date] = [:]
            for (id, shape) in expected {
                let state = try await engine.finished(id, timeout: .seconds(90))
                #expect(state.status == shapes[shape].1, "execution \(id)")
                for ref in state.graph.order {
                    let (got, want) = (state.stage(ref), reference[shape].stage(ref))
                    #expect(got.status == want.status, "\(id) stage \(ref): \(got.status) after crashes, \(want.status) without")
                    if state.config(ref)?.type == "script" { #expect(got.outputs == want.outputs, "\(id) stage \(ref) outputs differ") }
                }
                var completions: [String: Int] = [:]
                for recorded in try await engine.db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 1000) {
                    if case let .stageCompleted(ref, _, _)? = try? ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self)) {
                        completions[ref, default: 0] += 1
                        completedAt["\(id) \(ref)"] = recorded.recordedAt
                    }
                }
                #expect(completions.values.allSatisfy { $0 == 1 }, "a stage completed twice: \(completions)")
            }
            // A script may start again only when a kill interrupted it; never once its stage completed.
            for line in marks() where line[2] == "start" {
                if let done = completedAt["\(line[0]) \(line[1])"], let at = Double(line[3]) {
                    #expect(at < done.timeIntervalSince1970, "\(line[0]) \(line[1]) ran again after its stage completed")
                }
            }
            var runs: [String: Int] = [:]
            for line in marks() where line[2] == "start" { runs["\(line[0]) \(line[1])", default: 0] += 1 }
            print("crash test: \(expected.count) executions, 2 kills, \(runs.values.reduce(0) { $0 + max(0, $1 - 1) }) script runs interrupted and run again")
        }
    }

    @Test("kill -9 of engine processes ten times (one process three times 1.5 s apart, then two in turn) while 50 executions run scripts, waits, webhooks and child pipelines: each ends as a crash-free run does within 30 s of the last kill, no completed stage runs again")
    func recoversFromRepeatedKills() async throws {
        let marker = "/tmp/" + TestEnvironment.uniqueName("kills")
        defer { try? FileManager.default.removeItem(atPath: marker) }
        @Sendable func noting(_ ref: String, _ work: String, after: [String] = []) -> JSONValue {
            Self.script(ref, "echo \"${execution.id} \(ref) start $(date +%s.%N)\" >> \(marker); \(work); " +
                        "echo \"${execution.id} \(ref) end $(date +%s.%N)\" >> \(marker); echo \(ref) done", after: after)
        }
        try await ScriptedHTTPServer.with { server in
            server.on("/notify", .json(#"{"ok": true}"#))
            let shape = Self.pipeline([
                noting("build", "sleep 0.5"), ["refId": "soak", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["build"]],
                WebhookTests.webhook("notify", server.base + "/notify", after: ["soak"]),
                ChildPipelineTests.child("child", pipeline: "leaf", after: ["notify"]),
                noting("ship", "sleep 0.3", after: ["child"]),
            ])
            try await TestDatabase.with { db in
                try await ChildPipelineTests.save(db, id: "leaf", [noting("leaf", "sleep 0.2")])
                // librdkafka's own group timeouts, as an installation has them (with a consumer
                // group they made recovery slow; partition leases do not use them).
                let defaults = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=1500"]
                var engines = [try Engine(db, arguments: defaults)]
                defer { for engine in engines { engine.process.killHard() } }
                var ids: [String] = []
                for _ in 0..<20 { ids.append(try await engines[0].run(shape)) }
                var generator = SystemRandomNumberGenerator()
                for kill in 0..<10 {
                    // First the sequence that once wedged the development broker's consumer group
                    // for good (one process killed three times 1.5 s apart), then two processes
                    // killed in turn at random moments.
                    try await Task.sleep(for: .milliseconds(kill < 3 ? 1500 : Int.random(in: 1000...3000, using: &generator)))
                    if kill == 3 { engines.append(try Engine(db, prefix: engines[0].prefix, arguments: defaults)) }
                    // Kill only with work in flight: more work arrives before each kill, and some
                    // stage of some execution is running.
                    for _ in 0..<3 { ids.append(try await engines[0].run(shape)) }
                    let pending = ids
                    try await engines[0].until(timeout: .seconds(30), "kill \(kill + 1): a stage running") {
                        for id in pending where try await engines[0].repository.load(id).runningStages.isEmpty == false { return true }
                        return false
                    }
                    let victim = kill < 3 ? 0 : kill % 2
                    engines[victim].process.killHard()
                    try engines[victim].restart()
                }
                let lastKill = ContinuousClock.now
                var completedAt: [String: Date] = [:]
                for id in ids {
                    let state = try await engines[0].finished(id, timeout: .seconds(60))
                    #expect(state.status == .succeeded, "execution \(id)")
                    #expect(state.stage("ship").outputs["stdout"] == "ship done\n")
                    #expect(state.stage("child").outputs["status"] == "SUCCEEDED")
                    var completions: [String: Int] = [:]
                    for recorded in try await db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 1000) {
                        if case let .stageCompleted(ref, _, _)? = try? ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self)) {
                            completions[ref, default: 0] += 1
                            completedAt["\(id) \(ref)"] = recorded.recordedAt
                        }
                    }
                    #expect(completions.values.allSatisfy { $0 == 1 }, "a stage completed twice: \(completions)")
                }
                let recovery = ContinuousClock.now - lastKill
                #expect(recovery < .seconds(30), "the executions finished \(recovery) after the last kill")
                // A script may start again only when a kill interrupted it; never once its stage completed.
                for line in ((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "").split(separator: "\n").map({ $0.split(separator: " ") })
                where line[2] == "start" && line[1] != "leaf" {
                    if let done = completedAt["\(line[0]) \(line[1])"], let at = Double(line[3]) {
                        #expect(at < done.timeIntervalSince1970, "\(line[0]) \(line[1]) ran again after its stage completed")
                    }
                }
                print("repeated kills: \(ids.count) executions, 10 kills across 2 processes with work in flight at each, all finished \(recovery) after the last kill; \(server.received("/notify").count) webhook calls")
            }
        }
    }

    @Test("a frozen broker stops no role: heartbeats and commits fail, the engine carries on when it thaws")
    func survivesBrokerOutage() async throws {
        try await TestDatabase.with { db in
            let broker = try PrivateBroker()
            let engine = try Engine(db, brokers: broker.address)
            defer { engine.process.terminate() }
            let before = try await engine.run(Self.pipeline([Self.script("1", "echo before")]))
            #expect(try await engine.finished(before).status == .succeeded)

            // Frozen: heartbeats and commits time out and the group forgets its members.
            let pid = try #require(broker.pid)
            kill(pid, SIGSTOP)
            let frozen = try await engine.run(Self.pipeline([Self.script("1", "echo frozen"), Self.script("2", "echo after", after: ["1"])]))
            try await Task.sleep(for: .seconds(8))
            kill(pid, SIGCONT)
            #expect(engine.process.isRunning, "the engine exited while the broker was frozen")
            #expect(try await engine.finished(frozen, timeout: .seconds(90)).stage("2").outputs["stdout"] == "after\n")
            #expect(engine.process.isRunning)
        }
    }

    @Test("two engine processes share the work: every script runs exactly once")
    func twoProcesses() async throws {
        try await TestDatabase.with { db in
            let first = try Engine(db)
            defer { first.process.terminate() }
            let second = try Engine(db, prefix: first.prefix)
            defer { second.process.terminate() }
            // Both workers have joined their group once each owns one of the two partitions.
            func ownsOnePartition(_ engine: Engine) -> Bool {
                let last = engine.process.text.split(separator: "\n").last { $0.contains("partitions assigned") && $0.contains("role=worker") }
                return last?.contains("kafka.partitions=[0] ") == true || last?.contains("kafka.partitions=[1] ") == true
            }
            try await first.until(timeout: .seconds(60), "each worker to own one partition") { ownsOnePartition(first) && ownsOnePartition(second) }
            let log = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("runs-")).path
            defer { try? FileManager.default.removeItem(atPath: log) }
            var ids: [String] = []
            for _ in 0..<20 {
                ids.append(try await first.run(Self.pipeline([
                    Self.script("1", "sleep 0.2; echo \"${execution.id} 1\" >> \(log)"),
                    Self.script("2", "sleep 0.2; echo \"${execution.id} 2\" >> \(log)", after: ["1"]),
                ])))
            }
            for id in ids { #expect(try await first.finished(id).status == .succeeded) }
            // Each line: execution id and stage.
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            #expect(lines.count == 40, "scripts ran \(lines.count) times for 40 stages")
            #expect(Set(lines).count == 40, "a stage's script ran twice")
            // Two partitions, one per member: with 20 executions both engines ran stages (each
            // worker logs the stages it runs).
            for engine in [first, second] {
                #expect(engine.process.text.split(separator: "\n").contains { $0.contains("stage running") && $0.contains("stage.type=script") },
                        "engine \(engine.process.pid) ran no script")
            }
        }
    }

    @Test("the CLI: pipeline run --wait exit codes, executions show, cancel and restart")
    func commandLine() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let directory = FileManager.default.temporaryDirectory
            let marker = directory.appendingPathComponent(TestEnvironment.uniqueName("flag-")).path
            // Fails until the marker exists: the restart then succeeds.
            let file = directory.appendingPathComponent(TestEnvironment.uniqueName("pipeline-") + ".json").path
            try """
                {"application": "cli", "name": "retry", "limitConcurrent": false, "stages": [
                  {"refId": "1", "type": "script", "command": "test -e \(marker)"},
                  {"refId": "2", "type": "noop", "requisiteStageRefIds": ["1"]}]}
                """.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }

            let failed = try await CLITests.run(["pipeline", "run", "-f", file, "--wait"], environment: env)
            #expect(failed.status == 1, "\(failed.stdout)\(failed.stderr)")
            #expect(failed.stdout.contains("stage 1 (1, script) TERMINAL"))
            #expect(failed.stdout.contains("execution TERMINAL"))
            let id = try #require(failed.stdout.split(separator: "\n").first?.split(separator: " ").last.map(String.init))

            _ = FileManager.default.createFile(atPath: marker, contents: Data())
            defer { try? FileManager.default.removeItem(atPath: marker) }
            let restarted = try await CLITests.run(["executions", "restart", id, "--stage", "1"], environment: env)
            #expect(restarted.status == 0, "\(restarted.stderr)")
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.stage("1").attempt == 2)
            let shown = try await CLITests.run(["executions", "show", id], environment: env)
            #expect(shown.stdout.contains("execution \(id) SUCCEEDED"))
            #expect(shown.stdout.contains("attempt 2"))

            // The read model, kept by the engine's projector.
            try await engine.until("executions list to show the execution SUCCEEDED") {
                let listed = try await CLITests.run(["executions", "list", "--application", "cli", "--status", "succeeded", "--json"], environment: env)
                return listed.status == 0 && listed.stdout.contains(#""id":"\#(id)""#) && listed.stdout.contains(#""status":"SUCCEEDED""#)
            }
            let table = try await CLITests.run(["executions", "list", "--pipeline", "retry"], environment: env)
            #expect(table.stdout.hasPrefix("\(id)\tSUCCEEDED\tcli/retry\t"), "\(table.stdout)")
            let none = try await CLITests.run(["executions", "list", "--status", "buffered"], environment: env)
            #expect(none.stdout == "no executions match\n")
            let badStatus = try await CLITests.run(["executions", "list", "--status", "DONE"], environment: env)
            #expect(badStatus.status != 0 && badStatus.stderr.contains("unknown status 'DONE'"), "\(badStatus.stderr)")
            let rebuilt = try await CLITests.run(["projections", "rebuild"], environment: env)
            #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
            #expect(rebuilt.stdout.contains("rebuilt the executions read model"))
            let after = try await CLITests.run(["executions", "list", "--pipeline", "retry"], environment: env)
            #expect(after.stdout == table.stdout)
            let status = try await CLITests.run(["projections", "status"], environment: env)
            #expect(status.stdout.contains("SUCCEEDED\t1"), "\(status.stdout)")

            let again = try await CLITests.run(["executions", "cancel", id], environment: env)
            #expect(again.status == 1)
            #expect(again.stderr.contains("cannot cancel execution \(id): it is SUCCEEDED"))
            let unknown = try await CLITests.run(["executions", "show", "no-such-id"], environment: env)
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("no execution no-such-id"))
        }
    }

    @Test("a manual judgment waits for an answer given with executions judge")
    func manualJudgment() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let id = try await engine.run(Self.pipeline([
                ["refId": "approve", "type": "manualJudgment", "instructions": "ship it?"],
                Self.script("deploy", "echo deployed", after: ["approve"]),
            ]))
            try await engine.until("the judgment stage to wait") { try await engine.repository.load(id).stage("approve").status == .running }
            // Once the worker ran the stage (it logs each run), only an answer completes it.
            try await engine.until("the worker to run the judgment stage") {
                engine.process.text.split(separator: "\n").contains { $0.contains("stage running") && $0.contains("stage.ref=approve stage.type=manualJudgment") }
            }
            #expect(try await engine.repository.load(id).stage("approve").status == .running, "the judgment completed by itself")
            let answer = try await CLITests.run(["executions", "judge", id, "--stage", "approve", "--continue", "--input", "yes"],
                                          environment: ["TOPSAIL_DATABASE_URL": db.url])
            #expect(answer.status == 0, "\(answer.stderr)")
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.stage("approve").outputs["judgmentInput"] == "yes")
            #expect(state.stage("deploy").outputs["stdout"] == "deployed\n")
        }
    }

    @Test("a wait stage is a durable timer: it completes after waitTime, across a kill -9 of the engine")
    func durableWait() async throws {
        try await TestDatabase.with { db in
            // Long enough that a loaded machine still sees the wait running and its timer stored
            // before the kill.
            var engine = try Engine(db)
            defer { engine.process.terminate() }
            let started = ContinuousClock.now
            let id = try await engine.run(Self.pipeline([
                ["refId": "soak", "type": "wait", "waitTime": 8],
                Self.script("after", "echo done", after: ["soak"]),
            ]))
            try await engine.until("the wait to begin") { try await engine.repository.load(id).stage("soak").status == .running }
            var timers = 0
            try await engine.until("the timer to be stored") {
                for try await count in try await db.client.query("SELECT count(*)::int FROM timers").decode(Int.self) { timers = count }
                return timers == 1
            }
            engine.process.killHard()
            try engine.restart()
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.stage("after").outputs["stdout"] == "done\n")
            #expect(ContinuousClock.now - started >= .seconds(8), "the wait ended early")
            for try await count in try await db.client.query("SELECT count(*)::int FROM timers").decode(Int.self) { timers = count }
            #expect(timers == 0, "a fired timer stays behind")
        }
    }

    @Test("graceful shutdown (SIGTERM) lets a running script finish and records its outcome before the process exits; the restart carries on")
    func gracefulShutdownDrains() async throws {
        try await TestDatabase.with { db in
            var engine = try Engine(db, arguments: ["--drain-timeout", "30"])
            defer { engine.process.terminate() }
            let marker = "sleep 3.\(Int.random(in: 100_000...999_999))"
            let id = try await engine.run(Self.pipeline([Self.script("1", "\(marker); echo finished"), Self.script("2", "echo second", after: ["1"])]))
            try await engine.until("the script to start") { Self.isRunning(marker) }
            let signalled = ContinuousClock.now
            #expect(await engine.process.stopped(grace: .seconds(40)), "the engine did not exit by itself")
            let took = ContinuousClock.now - signalled
            // The process stayed until the script ended (about 3 s) and reported it.
            #expect(took < .seconds(30), "the shutdown took \(took)")
            let afterExit = try await engine.repository.load(id)
            #expect(afterExit.stage("1").status == .succeeded, "the drained script's outcome was not recorded: \(afterExit.stage("1").status)")
            #expect(afterExit.stage("1").outputs["stdout"] == "finished\n")
            try engine.restart()
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            let completions = try await db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 1_000)
                .filter { $0.type == ExecutionEvent.WireType.stageCompleted }.count
            #expect(completions == 2, "a completed stage ran again: \(completions) completions for 2 stages")
        }
    }

    @Test("graceful shutdown past --drain-timeout cancels the running script (killed, stage left RUNNING) and the restart runs it again")
    func gracefulShutdownCancelsAfterTheDrainTimeout() async throws {
        try await TestDatabase.with { db in
            var engine = try Engine(db, arguments: ["--drain-timeout", "1"])
            defer { engine.process.terminate() }
            let marker = "sleep 12.\(Int.random(in: 100_000...999_999))"
            let id = try await engine.run(Self.pipeline([Self.script("1", "\(marker); echo finished")]))
            try await engine.until("the script to start") { Self.isRunning(marker) }
            let signalled = ContinuousClock.now
            #expect(await engine.process.stopped(grace: .seconds(20)), "the engine did not exit by itself")
            let took = ContinuousClock.now - signalled
            // The script would take 12 s; a loaded machine may be slow to stop, but not that slow.
            #expect(took < .seconds(9), "the shutdown waited for the script (\(took)) instead of cancelling it after 1 s")
            try await eventually(timeout: .seconds(5), "the cancelled script to be killed") { !Self.isRunning(marker) }
            #expect(try await engine.repository.load(id).stage("1").status == .running, "a cancelled script must not complete its stage")
            try engine.restart()
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.stage("1").outputs["stdout"] == "finished\n")
        }
    }

    @Test("stageTimeoutMs: a durable timer fails a stage that runs too long and its script is killed")
    func stageTimeout() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let sleeper = Self.uniqueSleep()
            let id = try await engine.run(Self.pipeline([
                Self.script("slow", sleeper, ["stageTimeoutMs": 1000]),
                ["refId": "soak", "type": "wait", "waitTime": 3600, "stageTimeoutMs": 500, "markSuccessfulOnTimeout": true],
            ]))
            let state = try await engine.finished(id)
            #expect(state.stage("slow").status == .terminal)
            #expect(state.stage("slow").outputs["error"] == "stage timed out after 1000 ms")
            #expect(state.stage("soak").status == .succeeded, "markSuccessfulOnTimeout")
            #expect(state.status == .terminal)
            try await eventually(timeout: .seconds(10), "the timed-out script to be killed") { !Self.isRunning(sleeper) }
        }
    }

    @Test("expressions: stageEnabled skips stages, fields are evaluated at stage start, failures are reported")
    func stageEnabled() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            guard case .success(let pipeline) = PipelineValidation.parse(Self.pipeline([
                Self.script("deploy", "echo deploying", ["stageEnabled": ["type": "expression", "expression": "${parameters.env == 'prod'}"]]),
                Self.script("notify", "echo ${parameters.env}", after: ["deploy"]),
                // After notify: its failure would cancel a stage still running beside it.
                Self.script("shell", "echo ${parameters.nope}${HOME:+ok}", after: ["notify"]),
            ])) else { throw SetupError("invalid test pipeline") }
            let id = try await engine.repository.trigger(pipeline, trigger: ["type": "manual"], parameters: ["env": "staging"],
                                                         metadata: EventMetadata(source: "test"))
            let state = try await engine.finished(id)
            #expect(state.stage("deploy").status == .skipped)
            #expect(state.stage("notify").status == .succeeded)
            #expect(state.stage("notify").outputs["stdout"] == "staging\n")
            // A failed expression is left to the shell, and reported with the original text.
            let summary = state.stage("shell").outputs["expressionEvaluationSummary"]?.arrayValue ?? []
            #expect(summary.first?["path"] == "$.command")
            #expect(summary.first?["error"] == "no property 'nope'")
            #expect(state.status == .terminal, "the shell rejects the unevaluated ${parameters.nope}")
        }
    }

    @Test("evaluateVariables outputs flow to later stages; checkPreconditions gates the pipeline")
    func variablesAndPreconditions() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            guard case .success(let pipeline) = PipelineValidation.parse(Self.pipeline([
                ["refId": "vars", "name": "vars", "type": "evaluateVariables",
                 "variables": [["key": "greeting", "value": "hello ${parameters.who}"]]],
                ["refId": "check", "type": "checkPreconditions", "requisiteStageRefIds": ["vars"],
                 "preconditions": [["type": "expression", "context": ["expression": "${#stage('vars').outputs.greeting == 'hello world'}"]]]],
                Self.script("say", "echo '${#stage(\"vars\").outputs.greeting}'", after: ["check"]),
            ])) else { throw SetupError("invalid test pipeline") }
            let passing = try await engine.repository.trigger(pipeline, trigger: ["type": "manual"], parameters: ["who": "world"],
                                                              metadata: EventMetadata(source: "test"))
            let failing = try await engine.repository.trigger(pipeline, trigger: ["type": "manual"], parameters: ["who": "moon"],
                                                              metadata: EventMetadata(source: "test"))
            let passed = try await engine.finished(passing)
            #expect(passed.status == .succeeded)
            #expect(passed.stage("say").outputs["stdout"] == "hello world\n")
            let stopped = try await engine.finished(failing)
            #expect(stopped.stage("check").status == .terminal)
            #expect(stopped.stage("say").status == .notStarted)
            #expect(stopped.status == .terminal)
        }
    }
}
