import ArgumentParser
import CLISupport
import EventLog
import Foundation
import Logging
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import Relay
import ServiceLifecycle

struct BenchWaitsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waits",
        abstract: "Park executions in wait stages and measure this process's resident memory.",
        discussion: """
            Runs the relay, orchestrator, worker, scheduler and projector in this process (as topsail all \
            does) on a schema and topics of their own, measures the resident set after a warm-up \
            execution (the baseline), triggers --executions runs of a one-stage pipeline that waits an \
            hour, waits until every one is parked (its durable timer stored), and measures again.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Executions to park.")
    var executions: Int = 1000

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...100_000).contains(executions) else { throw ValidationError("--executions must be 1…100000") }
    }

    struct Result: Codable {
        var executions: Int
        var baselineResidentMB: Double
        var parkedResidentMB: Double
        var perExecutionKB: Double
        var parkSeconds: Double
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let kafka = try options.benchKafka()
        let count = executions
        let result = try await withBenchSchema(options, logger: logger, connections: 20) { client, _ in
            let engine = BenchEngine(client: client, kafka: kafka, logger: logger)
            let repository = engine.repository
            @Sendable func pipeline(wait seconds: Int) -> PipelineConfig {
                PipelineConfig(json: ["application": "bench", "name": "parked", "limitConcurrent": false,
                                      "stages": [["refId": "soak", "type": "wait", "waitTime": .number(Double(seconds))]]])
            }
            @Sendable func parked() async throws -> Int {
                for try await parked in try await client.query("SELECT count(*)::int FROM timers", logger: logger).decode(Int.self) { return parked }
                return 0
            }
            return try await engine.run {
                progress("warming up: one execution through every role")
                let warmup = try await repository.trigger(pipeline(wait: 0), trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))
                try await engine.waitUntilComplete(warmup, timeout: .seconds(120))
                try await Task.sleep(for: .seconds(2))
                let baseline = try Self.residentMegabytes()
                progress(String(format: "baseline %.1f MB resident; parking %d executions", baseline, count))
                let began = ContinuousClock.now
                for index in 0..<count {
                    _ = try await repository.trigger(pipeline(wait: 3600), trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))
                    if (index + 1) % 250 == 0 { progress("\(index + 1)/\(count) triggered") }
                }
                var last = -1
                while true {
                    let now = try await parked()
                    if now >= count { break }
                    guard ContinuousClock.now - began < .seconds(600) else { throw CLIError("only \(now) of \(count) executions parked within 600 s") }
                    if now != last { progress("\(now)/\(count) parked"); last = now }
                    try await Task.sleep(for: .milliseconds(500))
                }
                let parkSeconds = Double((ContinuousClock.now - began).milliseconds) / 1000
                // Let in-flight work settle before measuring.
                try await Task.sleep(for: .seconds(3))
                let resident = try Self.residentMegabytes()
                return Result(executions: count, baselineResidentMB: baseline, parkedResidentMB: resident,
                              perExecutionKB: max(0, resident - baseline) * 1024 / Double(count), parkSeconds: parkSeconds)
            }
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "%d executions parked in %.1f s", result.executions, result.parkSeconds))
            print(String(format: "resident: %.1f MB baseline, %.1f MB parked (%.1f KB per execution)",
                         result.baselineResidentMB, result.parkedResidentMB, result.perExecutionKB))
        }
    }

    /// This process's resident set size (VmRSS), in MiB.
    static func residentMegabytes() throws -> Double {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { throw CLIError("cannot read the resident set size from /proc/self/status") }
        return kilobytes / 1024
    }
}
