import ArgumentParser
import Foundation
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Topsail on this machine (docs/benchmarks.md explains the targets).",
        discussion: "Each benchmark works in a schema of its own, created and dropped by the run, and compares against a baseline measured in the same run.",
        subcommands: [BenchAppendCommand.self, BenchRelayCommand.self, BenchPipelineCommand.self, BenchWaitsCommand.self]
    )
}

/// Percentiles of a set of latencies.
struct LatencySummary: Codable {
    var count: Int
    var p50Ms: Double
    var p99Ms: Double
    var maxMs: Double

    init(_ samples: [Duration]) {
        let sorted = samples.sorted()
        func at(_ quantile: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((Double(sorted.count) * quantile).rounded(.up)) - 1)
            return sorted[max(0, index)].milliseconds
        }
        count = sorted.count
        p50Ms = at(0.50)
        p99Ms = at(0.99)
        maxMs = sorted.last?.milliseconds ?? 0
    }
}

extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

/// A schema of its own for one benchmark run, migrated, and dropped at the end.
func withBenchSchema<T: Sendable>(
    _ options: CommonOptions, logger: Logger, connections: Int,
    _ body: @Sendable @escaping (PostgresClient, DatabaseConfiguration) async throws -> T
) async throws -> T {
    var database = try options.database()
    database = database.inSchema("bench_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(10))
    database.maximumConnections = connections
    let configuration = database
    let migrations = try Migration.load(from: migrationsDirectory(nil))
    return try await withDatabase(configuration, logger: logger) { client in
        try await Migrator(client: client, schema: configuration.schema, logger: logger).migrate(migrations)
        do {
            let result = try await body(client, configuration)
            try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \"\(configuration.schema)\" CASCADE"), logger: logger)
            return result
        } catch {
            _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \"\(configuration.schema)\" CASCADE"), logger: logger)
            throw error
        }
    }
}

/// A progress line on standard error, named by the command that prints it.
func progress(_ text: String, from command: String = "bench") {
    FileHandle.standardError.write(Data("\(command): \(text)\n".utf8))
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension CommonOptions {
    /// Kafka settings for a benchmark's own consumers: a first group join takes about half the
    /// session timeout, which would otherwise dominate a short run.
    func benchKafka() throws -> KafkaConfiguration {
        var kafka = try kafka()
        kafka.sessionTimeout = .milliseconds(2000)
        kafka.heartbeatInterval = .milliseconds(500)
        return kafka
    }
}
