import ArgumentParser
import CLISupport
import Foundation
import Kafka
import Logging
import PipelineEngine
import PostgresEventStore
import PostgresNIO
import ReadModels
import Relay
import ServiceLifecycle
import StageRunners

public struct BenchCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Topsail on this machine (docs/benchmarks.md explains the targets).",
        discussion: "Each benchmark works in a schema of its own, created and dropped by the run, and compares against a baseline measured in the same run.",
        subcommands: [BenchAppendCommand.self, BenchRelayCommand.self, BenchPipelineCommand.self, BenchWaitsCommand.self, BenchAPICommand.self, BenchLookupsCommand.self, BenchRebuildCommand.self, BenchTriggersCommand.self, BenchDeployCommand.self, BenchUICommand.self]
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
    var database = try options.migrationDatabase()
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

/// The engine's roles (relay, orchestrator, worker, scheduler, projector) in this process, on
/// topics of their own, as `topsail all` runs them: what the engine benchmarks measure through.
struct BenchEngine {
    let prefix: String
    let repository: ExecutionRepository
    let services: [any Service]

    init(client: PostgresClient, kafka: KafkaConfiguration, logger: Logger) {
        prefix = "bench" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(10) + "."
        // As `topsail all` has them: appends sharing commits, partitions held by leases.
        repository = ExecutionRepository(store: PostgresEventStore(client: client, groupCommit: GroupCommit(), logger: logger), logger: logger)
        let timers = TimerStore(client: client, logger: logger)
        var relay = RelayConfiguration()
        relay.name = prefix
        relay.topicPrefix = prefix
        services = [
            RelayService(configuration: relay, kafka: kafka, client: client, logger: logger),
            OrchestratorService(repository: repository, kafka: kafka, topicPrefix: prefix, partitions: 6, leaseClient: client, logger: logger),
            WorkerService(
                repository: repository, timers: timers, kafka: kafka, topicPrefix: prefix, partitions: 6,
                runners: StageRunners.standard(repository: repository, timers: timers), leaseClient: client, logger: logger),
            SchedulerService(timers: timers, repository: repository, logger: logger),
            ExecutionProjector(client: client, logger: logger),
        ]
    }

    /// Runs the roles while `body` runs, then stops them.
    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services { group.addTask { try await service.run() } }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Waits until the execution completes, failing after `timeout`.
    func waitUntilComplete(_ id: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !repository.load(id).status.isComplete {
            guard ContinuousClock.now < deadline else { throw CLIError("execution \(id) did not complete within \(timeout)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
