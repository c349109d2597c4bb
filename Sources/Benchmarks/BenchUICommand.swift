import Access
import API
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import Logging
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import Processes
import ServiceLifecycle

struct BenchUICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Measure the web UI in headless chromium: an execution of --stages stages rendered, and an event's commit to its appearance in an open page.",
        discussion: """
            Runs the HTTP API in this process over a schema of its own and records two finished executions \
            straight into the log: one of --stages stages (a graph of columns of up to 10 stages, each \
            waiting for the column before) and, as the baseline, one of a single stage. Debian's chromium \
            (driven by Selenium from ops/bench/ui_bench.py, with the tools ops/setup installs) signs in, \
            then opens each execution --rounds times, timing in the page from the navigation to the graph \
            holding every stage (the fetch, the layout and the drawing). Then, with an execution open, the \
            benchmark appends --events events to it one at a time, --interval-ms apart, and the page notes \
            when each appears in its timeline; the latency is that moment minus the event's commit time \
            (PostgreSQL's commit timestamps; ops/services turns track_commit_timestamp on). Targets \
            (issue 13): render under 1 s at 200 stages; an event on screen within 500 ms of its commit.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Stages of the large execution.")
    var stages: Int = 200

    @Option(help: "Times each execution is opened.")
    var rounds: Int = 5

    @Option(help: "Events appended while the page is open.")
    var events: Int = 30

    @Option(help: "Milliseconds between those events.")
    var intervalMs: Int = 300

    @Option(help: "The Python with Selenium (ops/setup installs it in .topsail/venv).")
    var python = ".topsail/venv/bin/python"

    @Option(help: "The browser half of the benchmark.")
    var script = "ops/bench/ui_bench.py"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...2000).contains(stages) else { throw ValidationError("--stages must be 1…2000") }
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds must be 1…50") }
        guard (1...1000).contains(events) else { throw ValidationError("--events must be 1…1000") }
        guard (10...10_000).contains(intervalMs) else { throw ValidationError("--interval-ms must be 10…10000") }
        guard FileManager.default.isExecutableFile(atPath: python) else { throw ValidationError("no Python at \(python): run ops/setup (it installs Selenium there)") }
        guard FileManager.default.fileExists(atPath: script) else { throw ValidationError("no \(script): run the benchmark from Topsail's directory, or give --script") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else { throw ValidationError("no /usr/bin/chromium: run ops/setup") }
    }

    struct Result: Codable {
        var stages: Int
        var rounds: Int
        var renderLarge: LatencySummary
        var renderBaseline: LatencySummary
        var renderRatio: Double
        var events: Int
        var commitToScreen: LatencySummary
    }

    func run() async throws {
        let logger = {
            var logger = options.logger("topsail.bench")
            logger.logLevel = .warning
            return logger
        }()
        let (stageCount, rounds, eventCount, interval, python, script) = (stages, self.rounds, events, intervalMs, self.python, self.script)
        let result = try await withBenchSchema(options, logger: logger, connections: 10) { client, _ in
            var timestamps = "off"
            for try await value in try await client.query("SHOW track_commit_timestamp", logger: logger).decode(String.self) { timestamps = value }
            guard timestamps == "on" else {
                throw CLIError("the latency phase reads commit timestamps: start PostgreSQL with track_commit_timestamp=on (ops/services does)")
            }
            let store = PostgresEventStore(client: client, logger: logger)
            let repository = ExecutionRepository(store: store, logger: logger)
            let metadata = EventMetadata(source: "bench")
            let token = try await Identities(store: store).issue(user: "bench", name: "bench ui", roles: ["admin"], metadata: metadata).token
            progress("recording an execution of \(stageCount) stages and one of a single stage")
            let large = try await Self.record(stageCount, repository: repository, store: store)
            let baseline = try await Self.record(1, repository: repository, store: store)
            let server = try await APIServer(client: client, repository: repository, configuration: .init(port: 0, rateLimit: nil), logger: logger)
            let port = AsyncStream.makeStream(of: Int.self)
            let application = server.application { port.continuation.yield($0) }
            return try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await ServiceGroup(configuration: .init(services: [application], logger: logger)).run() }
                defer { tasks.cancelAll() }
                var ports = port.stream.makeAsyncIterator()
                guard let bound = await ports.next(), bound > 0 else { throw CLIError("the API did not start") }
                let ready = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-bench-ui-\(UUID().uuidString)").path
                defer { try? FileManager.default.removeItem(atPath: ready) }
                progress("chromium: opening each execution \(rounds) times, then timing \(eventCount) events \(interval) ms apart")
                async let browser = UnmaskedProcess.run(python, [
                    script, "--base", "http://127.0.0.1:\(bound)", "--token", token, "--render", "\(large):\(stageCount)", "--render", "\(baseline):1",
                    "--rounds", String(rounds), "--live", large, "--events", String(eventCount), "--ready", ready,
                ], environment: ProcessInfo.processInfo.environment)
                let deadline = ContinuousClock.now + .seconds(300)
                while !FileManager.default.fileExists(atPath: ready) {
                    guard ContinuousClock.now < deadline else { throw CLIError("the browser did not open the execution within 300 s") }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let stream = try ExecutionRepository.streamID(large)
                var positions: [Int64] = []
                for index in 0..<eventCount {
                    let event = ExecutionEvent.stageProgressed(refID: "s0", attempt: 1, poll: index + 1, context: ["bench": .number(Double(index))], retryAfterMs: 0)
                    let appended = try await store.append(to: stream, expected: .any, events: [try ExecutionRepository.newEvent(event, metadata: metadata)])
                    positions.append(appended.positions[0])
                    try await Task.sleep(for: .milliseconds(interval))
                }
                let finished = try await browser
                guard finished.status == 0 else { throw CLIError("the browser half failed (\(finished.status)): \(finished.errors.suffix(2000))") }
                guard let answer = try? JSONText(finished.output.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n").last ?? "")
                    .decode(JSONValue.self) else { throw CLIError("the browser half printed no result: \(finished.output.suffix(500))") }
                let committed = try await Self.commitTimes(positions, client: client, logger: logger)
                let seen = (answer["seen"]?.arrayValue ?? []).compactMap(\.doubleValue)
                guard seen.count >= committed.count else { throw CLIError("the page showed \(seen.count) of \(committed.count) events") }
                let latencies = zip(seen, committed).map { Duration.milliseconds(Int64(($0 - $1 * 1000).rounded())) }
                func durations(_ id: String) -> [Duration] {
                    (answer["render"]?[id]?.arrayValue ?? []).compactMap(\.doubleValue).map { .microseconds(Int64($0 * 1000)) }
                }
                let largeRender = LatencySummary(durations(large)), baselineRender = LatencySummary(durations(baseline))
                return Result(stages: stageCount, rounds: rounds, renderLarge: largeRender, renderBaseline: baselineRender,
                              renderRatio: baselineRender.p50Ms > 0 ? largeRender.p50Ms / baselineRender.p50Ms : 0,
                              events: eventCount, commitToScreen: LatencySummary(latencies))
            }
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "render, %d stages: p50 %.0f ms, max %.0f ms (%d rounds); 1 stage (baseline): p50 %.0f ms; ratio %.2f",
                         result.stages, result.renderLarge.p50Ms, result.renderLarge.maxMs, result.rounds, result.renderBaseline.p50Ms, result.renderRatio))
            print(String(format: "commit → on screen, %d events: p50 %.0f ms, p99 %.0f ms, max %.0f ms",
                         result.events, result.commitToScreen.p50Ms, result.commitToScreen.p99Ms, result.commitToScreen.maxMs))
        }
    }

    /// Records a finished execution of `count` stages (columns of up to 10, each stage waiting for
    /// the stages of the column before) straight into the log; returns its id.
    static func record(_ count: Int, repository: ExecutionRepository, store: PostgresEventStore) async throws -> String {
        var stages: [JSONValue] = []
        for index in 0..<count {
            let column = index / 10
            let before = column == 0 ? [] : (max(0, (column - 1) * 10)..<min(count, column * 10)).map { JSONValue.string("s\($0)") }
            stages.append(["refId": .string("s\(index)"), "type": "wait", "name": .string("Stage \(index)"), "waitTime": 1, "requisiteStageRefIds": .array(before)])
        }
        guard case .success(let pipeline) = PipelineValidation.parse(["application": "bench", "name": .string("ui-\(count)"), "stages": .array(stages)]) else {
            throw CLIError("the benchmark's pipeline of \(count) stages is not valid")
        }
        let metadata = EventMetadata(source: "bench")
        let id = try await repository.trigger(pipeline, trigger: ["type": "manual", "user": "bench"], parameters: [:], metadata: metadata)
        var events: [ExecutionEvent] = [.started]
        for index in 0..<count {
            events.append(.stageStarted(refID: "s\(index)", attempt: 1))
            events.append(.stageCompleted(refID: "s\(index)", status: .succeeded, outputs: [:]))
        }
        events.append(.completed(status: .succeeded))
        _ = try await store.append(to: try ExecutionRepository.streamID(id), expected: .exact(1), events: try events.map { try ExecutionRepository.newEvent($0, metadata: metadata) })
        return id
    }

    /// The commit time (seconds since 1970) of the events at these global positions, in order.
    static func commitTimes(_ positions: [Int64], client: PostgresClient, logger: Logger) async throws -> [Double] {
        var times: [Int64: Double] = [:]
        for try await (position, time) in try await client.query("""
            SELECT position, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM events WHERE position = ANY(\(positions))
            """, logger: logger).decode((Int64, Double).self) { times[position] = time }
        return try positions.map { position in
            guard let time = times[position] else { throw CLIError("no commit time for the event at \(position)") }
            return time
        }
    }
}
