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
import Synchronization

struct BenchPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Run executions of a sequential noop pipeline through every role and measure transitions against the append rate.",
        discussion: """
            First measures the baseline in the same run: single-event appends from 4 writers for \
            --baseline-seconds (as `bench append --writers 4`). Then starts the relay, orchestrator, \
            worker, scheduler and projector in this process (as topsail all does, with shared commits \
            and partition leases) on a schema and topics of their own, triggers --executions runs of a \
            --stages-stage sequential noop pipeline at once, and checks that every one SUCCEEDED.

            Times are when each event became visible in the log in commit order, seen by a reader \
            polling every millisecond — not the transaction's start that `recorded_at` holds. A \
            transition is one stage's start to the next stage's start (the last: to the execution's \
            completion), so it holds the worker's half (running the stage, recording its completion) \
            and the orchestrator's (starting the next). End to end is triggered to completed. The rate \
            is transitions over the span from the first trigger to the last completion; the ratio \
            divides it by the baseline's appends per second.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Stages per pipeline, one after the other.")
    var stages: Int = 10

    @Option(help: "Executions triggered at once.")
    var executions: Int = 100

    @Option(help: "Seconds of the append baseline (0: none).")
    var baselineSeconds: Double = 5

    @Flag(help: "Also print the first execution's events: when each transaction began (recorded_at) and when it was seen committed.")
    var timeline = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...200).contains(stages) else { throw ValidationError("--stages must be 1…200") }
        guard (1...10_000).contains(executions) else { throw ValidationError("--executions must be 1…10000") }
        guard baselineSeconds >= 0 else { throw ValidationError("--baseline-seconds must not be negative") }
    }

    struct Result: Codable {
        var stages: Int
        var executions: Int
        var succeeded: Int
        var endToEnd: LatencySummary
        var transition: LatencySummary
        var transitionsPerSecond: Double
        /// Single-event appends per second from 4 writers, measured just before.
        var baselineAppendsPerSecond: Double?
        /// Transitions per second over the baseline's appends per second.
        var ratio: Double?
        var wallSeconds: Double
        /// What the times were taken from: commit timestamps, or a reader polling the log.
        var timedBy: String
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let kafkaConfiguration = try options.benchKafka()
        let (stageCount, executionCount, baselineSeconds, timeline) = (stages, executions, self.baselineSeconds, self.timeline)
        let result = try await withBenchSchema(options, logger: logger, connections: 40) { client, _ in
            var baseline: BenchAppendCommand.Phase?
            if baselineSeconds > 0 {
                progress("baseline: single-event appends from 4 writers for \(baselineSeconds) s")
                baseline = try await BenchAppendCommand.singleEventAppends(
                    PostgresEventStore(client: client, logger: logger), writers: 4, for: .milliseconds(Int64(baselineSeconds * 1000)))
            }
            let engine = BenchEngine(client: client, kafka: kafkaConfiguration, logger: logger)
            let (repository, store) = (engine.repository, PostgresEventStore(client: client, logger: logger))
            let pipeline = PipelineConfig(json: [
                "application": "bench", "name": "sequential", "limitConcurrent": false,
                "stages": .array((1...stageCount).map { index in
                    ["refId": .string("\(index)"), "type": "noop", "requisiteStageRefIds": index == 1 ? [] : [.string("\(index - 1)")]]
                }),
            ])
            var result = try await engine.run {
                progress("waiting for the roles to take their partitions")
                let warmup = try await repository.trigger(pipeline, trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))
                try await engine.waitUntilComplete(warmup, timeout: .seconds(120))
                let tail = try await LogTail(store: store, client: client, logger: logger)
                return try await tail.watching {
                    progress("triggering \(executionCount) executions of \(stageCount) noop stages")
                    let clock = ContinuousClock()
                    let began = clock.now
                    // All at once, as a burst of CI builds would: the executions run concurrently
                    // from the start instead of trickling in one trigger's round trip at a time.
                    let ids = try await withThrowingTaskGroup(of: String.self) { group in
                        for _ in 0..<executionCount {
                            group.addTask {
                                try await repository.trigger(pipeline, trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))
                            }
                        }
                        return try await group.reduce(into: [String]()) { $0.append($1) }
                    }
                    try await waitUntilComplete(ids, tail: tail, timeout: .seconds(600))
                    let wall = clock.now - began
                    try await tail.collectCommitTimes()
                    if timeline, let first = ids.first { try await printTimeline(first, store: store, tail: tail) }
                    return try await measure(ids, repository: repository, tail: tail, stages: stageCount, executions: executionCount, wall: wall)
                }
            }
            if let baseline {
                result.baselineAppendsPerSecond = baseline.appendsPerSecond
                result.ratio = baseline.appendsPerSecond > 0 ? result.transitionsPerSecond / baseline.appendsPerSecond : nil
            }
            return result
        }
        if json {
            try printJSON(result)
        } else {
            print("\(result.succeeded)/\(result.executions) executions SUCCEEDED (timed by \(result.timedBy))")
            print(String(format: "end to end: p50 %.1f ms, p99 %.1f ms", result.endToEnd.p50Ms, result.endToEnd.p99Ms))
            print(String(format: "stage transition (start to next start): p50 %.1f ms, p99 %.1f ms", result.transition.p50Ms, result.transition.p99Ms))
            print(String(format: "%.0f transitions/s (first trigger to last completion); %.1f s in all", result.transitionsPerSecond, result.wallSeconds))
            if let appends = result.baselineAppendsPerSecond, let ratio = result.ratio {
                print(String(format: "baseline: %.0f single-event appends/s from 4 writers; ratio %.2f", appends, ratio))
            }
        }
        guard result.succeeded == result.executions else {
            throw CLIError("\(result.executions - result.succeeded) of \(result.executions) executions did not succeed; the numbers above do not count")
        }
    }

    private func waitUntilComplete(_ ids: [String], tail: LogTail, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var reported = 0
        while true {
            let done = try await tail.completedCount(of: ids)
            if done != reported {
                progress("\(done)/\(ids.count) executions complete")
                reported = done
            }
            if done == ids.count { return }
            guard ContinuousClock.now < deadline else {
                throw CLIError("\(ids.count - done) of \(ids.count) executions did not complete within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// One execution's events: milliseconds from its trigger to each transaction's start and to
    /// when the reader saw it committed.
    private func printTimeline(_ id: String, store: PostgresEventStore, tail: LogTail) async throws {
        let recorded = try await store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 10_000)
        let seen = tail.seen(id)
        guard let firstRecorded = recorded.first?.recordedAt, let firstSeen = seen.first?.at else { return }
        FileHandle.standardError.write(Data("timeline of \(id): recorded (transaction start) / committed (\(tail.instrument)), ms\n".utf8))
        for (index, event) in recorded.enumerated() {
            let seenAt = index < seen.count ? (seen[index].at - firstSeen).milliseconds : .nan
            let ref = (try? event.payload.decode(JSONValue.self))?["refId"]?.stringValue ?? ""
            FileHandle.standardError.write(Data(String(format: "  %8.1f %8.1f  %@ %@\n", event.recordedAt.timeIntervalSince(firstRecorded) * 1000, seenAt,
                                                       event.type, ref).utf8))
        }
    }

    /// Reads the timings from when the log reader saw each event.
    private func measure(_ ids: [String], repository: ExecutionRepository, tail: LogTail, stages: Int, executions: Int, wall: Duration) async throws -> Result {
        var endToEnd: [Duration] = []
        var transitions: [Duration] = []
        var (firstTriggered, lastCompleted): (ContinuousClock.Instant?, ContinuousClock.Instant?) = (nil, nil)
        var succeeded = 0
        for id in ids {
            if try await repository.load(id).status == .succeeded { succeeded += 1 }
            let seen = tail.seen(id)
            guard let triggered = seen.first(where: { $0.type == ExecutionEvent.WireType.triggered })?.at,
                  let completed = seen.last(where: { $0.type == ExecutionEvent.WireType.completed })?.at
            else { continue }
            firstTriggered = min(firstTriggered ?? triggered, triggered)
            lastCompleted = max(lastCompleted ?? completed, completed)
            endToEnd.append(completed - triggered)
            let marks = seen.filter { $0.type == ExecutionEvent.WireType.stageStarted }.map(\.at) + [completed]
            for (from, to) in zip(marks, marks.dropFirst()) { transitions.append(to - from) }
        }
        let span = (firstTriggered.flatMap { first in lastCompleted.map { $0 - first } } ?? .zero).milliseconds / 1000
        return Result(stages: stages, executions: executions, succeeded: succeeded, endToEnd: LatencySummary(endToEnd),
                      transition: LatencySummary(transitions), transitionsPerSecond: Double(transitions.count) / max(span, 0.001),
                      baselineAppendsPerSecond: nil, ratio: nil, wallSeconds: wall.milliseconds / 1000, timedBy: tail.instrument)
    }
}

/// When each execution event was committed. With `track_commit_timestamp` on (`ops/services`
/// starts PostgreSQL so), the commit times are read from the server after the run, and nothing
/// polls the log meanwhile; otherwise the log is followed in commit order (gap-free reads),
/// polling every millisecond, and an event counts as committed when the reader first saw it.
final class LogTail: Sendable {
    struct Seen: Sendable {
        let type: String
        let at: ContinuousClock.Instant
    }

    let store: PostgresEventStore
    let client: PostgresClient
    let logger: Logger
    /// Whether the server records commit times (then nothing polls during the run).
    let commitTimestamps: Bool
    private let start: LogPosition
    private let events = Mutex<[String: [Seen]]>([:])

    init(store: PostgresEventStore, client: PostgresClient, logger: Logger) async throws {
        self.store = store
        self.client = client
        self.logger = logger
        var setting = "off"
        for try await value in try await client.query("SHOW track_commit_timestamp", logger: logger).decode(String.self) { setting = value }
        commitTimestamps = setting == "on"
        // From the end of the log as it is now.
        var position = LogPosition.start
        while true {
            let batch = try await store.readAll(after: position, limit: 10_000)
            guard let last = batch.last else { break }
            position = last.logPosition
        }
        start = position
    }

    /// What the results are measured by, for the report.
    var instrument: String { commitTimestamps ? "commit timestamps" : "a reader polling every millisecond" }

    /// Runs `body` while following the log (when commit times are not recorded).
    func watching<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        guard !commitTimestamps else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                var position = self.start
                while !Task.isCancelled {
                    let batch = try await self.store.readAll(after: position, limit: 5_000)
                    let now = ContinuousClock.now
                    if batch.isEmpty {
                        try await Task.sleep(for: .milliseconds(1))
                        continue
                    }
                    self.events.withLock { seen in
                        for event in batch where event.streamID.category == ExecutionRepository.category {
                            seen[event.streamID.id, default: []].append(Seen(type: event.type, at: now))
                        }
                    }
                    if let last = batch.last { position = last.logPosition }
                }
                return nil
            }
            defer { group.cancelAll() }
            let result = try await body()
            return result
        }
    }

    /// Reads every execution event's commit time since the start (commit-timestamp mode).
    func collectCommitTimes() async throws {
        guard commitTimestamps else { return }
        let anchor = ContinuousClock.now
        var collected: [String: [Seen]] = [:]
        var base: Double?
        let rows = try await client.query("""
            SELECT stream_id, event_type, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
              FROM events WHERE (transaction_id, position) > (\(start.transaction), \(start.position))
             ORDER BY transaction_id, position
            """, logger: logger)
        for try await (stream, type, committed) in rows.decode((String, String, Double).self) {
            guard let id = try? StreamID(stream), id.category == ExecutionRepository.category else { continue }
            let origin = base ?? committed
            base = origin
            collected[id.id, default: []].append(Seen(type: type, at: anchor + .microseconds(Int64(((committed - origin) * 1_000_000).rounded()))))
        }
        events.withLock { $0 = collected }
    }

    func seen(_ executionID: String) -> [Seen] { events.withLock { $0[executionID] ?? [] } }

    /// How many of `ids` completed: by the reader's notes, or (commit-timestamp mode) by one count.
    func completedCount(of ids: [String]) async throws -> Int {
        guard commitTimestamps else {
            return events.withLock { seen in ids.filter { seen[$0]?.contains { $0.type == ExecutionEvent.WireType.completed } == true }.count }
        }
        // Counted by stream, not from the start position: the start is only as recent as the
        // log's gap-free horizon, and events of earlier executions may follow it.
        let streams = try ids.map { try ExecutionRepository.streamID($0).description }
        var count = 0
        for try await value in try await client.query("""
            SELECT count(DISTINCT stream_id)::int FROM events
             WHERE event_type = \(ExecutionEvent.WireType.completed) AND stream_id = ANY(\(streams))
            """, logger: logger).decode(Int.self) { count = value }
        return count
    }
}
