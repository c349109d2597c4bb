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
import ReadModels
import Synchronization

struct BenchRebuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Replay rate of `projections rebuild` against a raw scan of the same events in the same run.",
        discussion: """
            Fills a schema of its own with about --events execution events: executions of a \
            --stages-stage pipeline, each triggered, started, every stage started and completed, and \
            completed (the shape real runs leave). Then, alternating twice: the raw scan — every \
            event read through the same driver in log order, 10,000 rows a statement, nothing \
            decoded — and the rebuild — the read models emptied and replayed from the log, as \
            `topsail projections rebuild` does. Prints both rates and their ratio.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Events to fill the log with (rounded to whole executions).")
    var events: Int = 100_000

    @Option(help: "Stages per execution.")
    var stages: Int = 10

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...10_000_000).contains(events) else { throw ValidationError("--events must be 1…10000000") }
        guard (1...200).contains(stages) else { throw ValidationError("--stages must be 1…200") }
    }

    struct Result: Codable {
        var events: Int
        var executions: Int
        var rawScanEventsPerSecond: Double
        var rebuildEventsPerSecond: Double
        /// The rebuild's rate over the raw scan's.
        var ratio: Double
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let (wanted, stageCount) = (events, stages)
        let result = try await withBenchSchema(options, logger: logger, connections: 20) { client, _ in
            let perExecution = 2 * stageCount + 3
            let executions = max(1, wanted / perExecution)
            let total = executions * perExecution
            try await Self.fill(client: client, executions: executions, stages: stageCount, logger: logger)
            var scans: [Double] = []
            var rebuilds: [Double] = []
            for round in 1...2 {
                progress("round \(round)/2: raw scan of \(total) events")
                scans.append(try await Self.rawScan(client: client, logger: logger, expecting: total))
                progress("round \(round)/2: rebuild of the read models from \(total) events")
                rebuilds.append(try await Self.rebuild(client: client, logger: logger, expecting: total, executions: executions))
            }
            let scan = scans.reduce(0, +) / 2
            let rebuild = rebuilds.reduce(0, +) / 2
            return Result(events: total, executions: executions, rawScanEventsPerSecond: scan, rebuildEventsPerSecond: rebuild,
                          ratio: scan > 0 ? rebuild / scan : 0)
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "raw scan: %.0f events/s", result.rawScanEventsPerSecond))
            print(String(format: "rebuild:  %.0f events/s (%d events, %d executions)", result.rebuildEventsPerSecond, result.events, result.executions))
            print(String(format: "ratio:    %.2f", result.ratio))
        }
    }

    /// Appends the executions' events from 8 writers, one append per execution.
    static func fill(client: PostgresClient, executions: Int, stages: Int, logger: Logger) async throws {
        let store = PostgresEventStore(client: client, groupCommit: GroupCommit(), logger: logger)
        let pipeline = PipelineConfig(json: [
            "id": "bench-rebuild", "application": "bench", "name": "sequential", "limitConcurrent": false,
            "stages": .array((1...stages).map { index in
                ["refId": .string("\(index)"), "type": "noop", "name": .string("stage \(index)"),
                 "requisiteStageRefIds": index == 1 ? [] : [.string("\(index - 1)")]]
            }),
        ])
        var history: [ExecutionEvent] = [.triggered(pipeline: pipeline, trigger: ["type": "bench", "user": "bench"], parameters: [:]), .started]
        for index in 1...stages {
            history.append(.stageStarted(refID: "\(index)", attempt: 1))
            history.append(.stageCompleted(refID: "\(index)", status: .succeeded, outputs: ["n": .number(Double(index))]))
        }
        history.append(.completed(status: .succeeded))
        let encoded = try history.map { event in
            let (type, payload) = ExecutionEventCodec.encode(event)
            return (type, try JSONText(encoding: payload))
        }
        let next = Counter()
        let clock = ContinuousClock()
        let began = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    while let index = next.take(below: executions) {
                        let events = encoded.map { NewEvent(type: $0.0, payload: $0.1, metadata: EventMetadata(actor: "bench", source: "bench")) }
                        _ = try await store.append(to: try ExecutionRepository.streamID("bench-\(index)"), expected: .noStream, events: events)
                        if index % 2_000 == 0 { progress("filled \(index)/\(executions) executions") }
                    }
                }
            }
            try await group.waitForAll()
        }
        progress("filled \(executions) executions (\(executions * history.count) events) in \(clock.now - began)")
    }

    /// Every event in log order through the driver, 10,000 rows a statement, nothing decoded.
    static func rawScan(client: PostgresClient, logger: Logger, expecting total: Int) async throws -> Double {
        let clock = ContinuousClock()
        let began = clock.now
        var (transaction, position) = (Int64(0), Int64(0))
        var count = 0
        while true {
            var rows = 0
            for try await (t, p, _, _, _, _, _, _, _, _) in try await client.query("""
                SELECT transaction_id, position, event_id, stream_id, stream_version, event_type, schema_version, recorded_at, payload::text, metadata::text
                  FROM events WHERE (transaction_id, position) > (\(transaction), \(position)) ORDER BY transaction_id, position LIMIT 10000
                """, logger: logger).decode((Int64, Int64, UUID, String, Int64, String, Int32, Date, String, String).self) {
                (transaction, position) = (t, p)
                rows += 1
            }
            count += rows
            if rows < 10_000 { break }
        }
        guard count == total else { throw CLIError("the raw scan read \(count) events, expected \(total)") }
        return Double(count) / max((clock.now - began).milliseconds / 1000, 0.001)
    }

    /// Empties the read models and replays the log into them, as `projections rebuild` does.
    static func rebuild(client: PostgresClient, logger: Logger, expecting total: Int, executions: Int) async throws -> Double {
        try await ExecutionProjector.reset(client: client, logger: logger)
        let clock = ContinuousClock()
        let began = clock.now
        let count = try await ExecutionProjector(client: client, logger: logger, batchSize: ExecutionProjector.rebuildBatchSize).catchUp()
        let elapsed = clock.now - began
        guard count == total else { throw CLIError("the rebuild replayed \(count) events, expected \(total)") }
        let succeeded = try await ExecutionReadModel(client: client, logger: logger).countByStatus()[.succeeded] ?? 0
        guard succeeded == executions else { throw CLIError("the rebuilt read model holds \(succeeded) SUCCEEDED executions, expected \(executions)") }
        return Double(count) / max(elapsed.milliseconds / 1000, 0.001)
    }
}

/// Hands out 0, 1, 2 … to concurrent workers.
final class Counter: Sendable {
    private let value = Mutex(0)

    func take(below limit: Int) -> Int? {
        value.withLock { value in
            guard value < limit else { return nil }
            defer { value += 1 }
            return value
        }
    }
}
