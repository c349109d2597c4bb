import ArgumentParser
import EventLog
import Foundation
import Logging
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO

struct BenchPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Run executions of a sequential noop pipeline through every role and measure transitions.",
        discussion: """
            Starts the relay, orchestrator, worker, scheduler and projector in this process (as topsail all does) on \
            a schema and topics of their own, triggers --executions runs of a --stages-stage sequential \
            noop pipeline at once, and reads the timings back from the log: end to end (triggered → \
            completed), stage transition (one stage completed → the next started) and transitions per \
            second over the whole run.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Stages per pipeline, one after the other.")
    var stages: Int = 10

    @Option(help: "Executions triggered at once.")
    var executions: Int = 100

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...200).contains(stages) else { throw ValidationError("--stages must be 1…200") }
        guard (1...10_000).contains(executions) else { throw ValidationError("--executions must be 1…10000") }
    }

    struct Result: Codable {
        var stages: Int
        var executions: Int
        var endToEnd: LatencySummary
        var transition: LatencySummary
        var transitionsPerSecond: Double
        var wallSeconds: Double
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let kafkaConfiguration = try options.benchKafka()
        let (stageCount, executionCount) = (stages, executions)
        let result = try await withBenchSchema(options, logger: logger, connections: 40) { client, _ in
            let engine = BenchEngine(client: client, kafka: kafkaConfiguration, logger: logger)
            let (repository, store) = (engine.repository, PostgresEventStore(client: client, logger: logger))
            let pipeline = PipelineConfig(json: [
                "application": "bench", "name": "sequential", "limitConcurrent": false,
                "stages": .array((1...stageCount).map { index in
                    ["refId": .string("\(index)"), "type": "noop", "requisiteStageRefIds": index == 1 ? [] : [.string("\(index - 1)")]]
                }),
            ])
            return try await engine.run {
                progress("waiting for the roles to join their consumer groups")
                let warmup = try await repository.trigger(pipeline, trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))
                try await engine.waitUntilComplete(warmup, timeout: .seconds(120))
                progress("triggering \(executionCount) executions of \(stageCount) noop stages")
                let clock = ContinuousClock()
                let began = clock.now
                var ids: [String] = []
                for _ in 0..<executionCount {
                    ids.append(try await repository.trigger(pipeline, trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench")))
                }
                try await waitUntilComplete(ids, repository: repository, timeout: .seconds(600))
                let wall = clock.now - began
                return try await measure(ids, store: store, stages: stageCount, executions: executionCount, wall: wall)
            }
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "end to end: p50 %.1f ms, p99 %.1f ms", result.endToEnd.p50Ms, result.endToEnd.p99Ms))
            print(String(format: "stage transition: p50 %.1f ms, p99 %.1f ms", result.transition.p50Ms, result.transition.p99Ms))
            print(String(format: "%.0f transitions/s (first trigger to last completion); %.1f s in all", result.transitionsPerSecond, result.wallSeconds))
        }
    }

    private func waitUntilComplete(_ ids: [String], repository: ExecutionRepository, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var pending = ids
        while !pending.isEmpty {
            guard ContinuousClock.now < deadline else {
                throw CLIError("\(pending.count) of \(ids.count) executions did not complete within \(timeout)")
            }
            var still: [String] = []
            for id in pending where !(try await repository.load(id).status.isComplete) { still.append(id) }
            if still.count != pending.count { progress("\(ids.count - still.count)/\(ids.count) executions complete") }
            pending = still
            if !pending.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
        }
    }

    /// Reads the timings back from the events' recorded times.
    private func measure(_ ids: [String], store: PostgresEventStore, stages: Int, executions: Int, wall: Duration) async throws -> Result {
        var endToEnd: [Duration] = []
        var transitions: [Duration] = []
        var (firstTriggered, lastCompleted) = (Date.distantFuture, Date.distantPast)
        for id in ids {
            let events = try await store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 10_000)
            guard let first = events.first, let last = events.last else { continue }
            firstTriggered = min(firstTriggered, first.recordedAt)
            lastCompleted = max(lastCompleted, last.recordedAt)
            endToEnd.append(.milliseconds(Int64(last.recordedAt.timeIntervalSince(first.recordedAt) * 1000)))
            var completedAt: [String: Date] = [:]
            for event in events {
                let payload = try event.payload.decode(JSONValue.self)
                guard let ref = payload["refId"]?.stringValue else { continue }
                if event.type == ExecutionEvent.WireType.stageCompleted { completedAt[ref] = event.recordedAt }
                if event.type == ExecutionEvent.WireType.stageStarted, let index = Int(ref), index > 1, let previous = completedAt[String(index - 1)] {
                    transitions.append(.microseconds(Int64(event.recordedAt.timeIntervalSince(previous) * 1_000_000)))
                }
            }
        }
        // The rate counts from the first trigger to the last completion as the log recorded them,
        // not the bench's polling for completion.
        let span = max(lastCompleted.timeIntervalSince(firstTriggered), 0.001)
        return Result(stages: stages, executions: executions, endToEnd: LatencySummary(endToEnd), transition: LatencySummary(transitions),
                      transitionsPerSecond: Double(transitions.count) / span, wallSeconds: Double(wall.milliseconds) / 1000)
    }
}
