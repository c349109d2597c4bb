import Access
import API
import ArgumentParser
import AsyncHTTPClient
import CLISupport
import EventLog
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import Synchronization
import ReadModels
import ServiceLifecycle
import Triggers

struct BenchTriggersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triggers",
        abstract: "Measure webhook intake: deliveries accepted per second with 100 pipelines listening, and receipt → first stage RUNNING at a steady rate.",
        discussion: """
            Runs the engine's roles (relay, orchestrator, worker, scheduler, projector) and the HTTP API in \
            this process over a schema and topics of their own, and saves --pipelines pipelines whose webhook \
            triggers all listen to one source, each with a payload constraint that only its own deliveries \
            match (so every delivery is weighed against all of them and starts one execution). Then, in the \
            same run: GET /health with --clients clients for --seconds (the baseline); POST \
            /webhooks/webhook/bench with --clients clients for --seconds (deliveries accepted per second, \
            and the ratio to the baseline); and --rate deliveries a second for --seconds, measuring from \
            each receipt's commit to the commit of its execution's first stage start (PostgreSQL's commit \
            timestamps; ops/services turns track_commit_timestamp on). Target (issue 11): p99 ≤ 100 ms at \
            100 deliveries a second.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Pipelines listening to the webhook source.")
    var pipelines: Int = 100

    @Option(help: "Concurrent clients in the throughput phases.")
    var clients: Int = 16

    @Option(help: "Seconds each phase runs.")
    var seconds: Int = 10

    @Option(help: "Deliveries a second in the latency phase.")
    var rate: Int = 100

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...1000).contains(pipelines) else { throw ValidationError("--pipelines must be 1…1000") }
        guard (1...256).contains(clients) else { throw ValidationError("--clients must be 1…256") }
        guard (1...600).contains(seconds) else { throw ValidationError("--seconds must be 1…600") }
        guard (1...2000).contains(rate) else { throw ValidationError("--rate must be 1…2000") }
    }

    struct Result: Codable {
        var pipelines: Int
        var clients: Int
        var seconds: Int
        var health: BenchAPICommand.Scenario
        var webhooks: BenchAPICommand.Scenario
        var webhooksToHealthRatio: Double
        var rate: Int
        var latencyDeliveries: Int
        var receiptToFirstStage: LatencySummary
    }

    func run() async throws {
        let logger = {
            var logger = options.logger("topsail.bench")
            logger.logLevel = .warning
            return logger
        }()
        let kafka = try options.benchKafka()
        let (pipelineCount, clients, seconds, rate) = (pipelines, self.clients, self.seconds, self.rate)
        let result = try await withBenchSchema(options, logger: logger, connections: 40) { client, _ in
            var timestamps = "off"
            for try await value in try await client.query("SHOW track_commit_timestamp", logger: logger).decode(String.self) { timestamps = value }
            guard timestamps == "on" else {
                throw CLIError("the latency phase reads commit timestamps: start PostgreSQL with track_commit_timestamp=on (ops/services does)")
            }
            let engine = BenchEngine(client: client, kafka: kafka, logger: logger)
            let repository = engine.repository
            let metadata = EventMetadata(source: "bench")
            let token = try await Identities(store: repository.eventStore).issue(user: "bench", name: "bench triggers", roles: ["admin"], metadata: metadata).token
            progress("saving \(pipelineCount) pipelines that listen to webhook source bench")
            for index in 0..<pipelineCount {
                try await PipelineConfigStore(store: repository.eventStore).save(PipelineConfig(json: [
                    "id": .string("listener-\(index)"), "application": "bench", "name": .string("listener-\(index)"), "limitConcurrent": false,
                    "triggers": [["type": "webhook", "source": "bench", "enabled": true, "payloadConstraints": ["target": .string("^p\(index)$")]]],
                    "stages": [["refId": "1", "type": "noop"]],
                ]), metadata: metadata)
            }
            let server = try await APIServer(client: client, repository: repository, configuration: .init(port: 0, rateLimit: nil), logger: logger)
            let port = AsyncStream.makeStream(of: Int.self)
            let application = server.application { port.continuation.yield($0) }
            return try await engine.run {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        try await ServiceGroup(configuration: .init(services: [application], logger: logger)).run()
                    }
                    defer { tasks.cancelAll() }
                    var ports = port.stream.makeAsyncIterator()
                    guard let bound = await ports.next(), bound > 0 else { throw CLIError("the API did not start") }
                    let base = "http://127.0.0.1:\(bound)"
                    progress("waiting for the projection to index the triggers")
                    let deadline = ContinuousClock.now + .seconds(60)
                    while true {
                        var count = 0
                        for try await value in try await client.query("SELECT count(*)::int FROM pipeline_configs", logger: logger).decode(Int.self) { count = value }
                        if count >= pipelineCount { break }
                        guard ContinuousClock.now < deadline else { throw CLIError("the projector did not index the pipelines within 60 s") }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    let http = HTTPClient(configuration: .init(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: clients)))
                    do {
                        progress("baseline: GET /health, \(clients) clients, \(seconds) s")
                        let health = try await BenchAPICommand.measure(
                            "health (baseline)", http: http, method: .GET, url: base + "/health", token: token, clients: clients, seconds: seconds)
                        progress("webhooks: POST /webhooks/webhook/bench, \(clients) clients, \(seconds) s")
                        let counter = Atomic<Int>(0)
                        let webhooks = try await BenchAPICommand.measure(
                            "webhooks", http: http, method: .POST, url: base + "/webhooks/webhook/bench", token: nil, clients: clients, seconds: seconds
                        ) { #"{"target": "p\#(counter.add(1, ordering: .relaxed).newValue % pipelineCount)"}"# }
                        progress("latency: \(rate) deliveries a second for \(seconds) s")
                        let sent = try await Self.steady(http: http, url: base + "/webhooks/webhook/bench", rate: rate, seconds: seconds, pipelines: pipelineCount)
                        progress("waiting for the last executions' first stages")
                        let latencies = try await Self.receiptToFirstStage(client: client, logger: logger, expected: sent)
                        try await http.shutdown()
                        return Result(
                            pipelines: pipelineCount, clients: clients, seconds: seconds, health: health, webhooks: webhooks,
                            webhooksToHealthRatio: health.requestsPerSecond > 0 ? webhooks.requestsPerSecond / health.requestsPerSecond : 0,
                            rate: rate, latencyDeliveries: sent, receiptToFirstStage: LatencySummary(latencies))
                    } catch {
                        try? await http.shutdown()
                        throw error
                    }
                }
            }
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "GET /health (baseline): %.0f requests/s, p99 %.2f ms", result.health.requestsPerSecond, result.health.latency.p99Ms))
            print(String(format: "webhooks with %d pipelines listening: %.0f accepted/s, p50 %.2f ms, p99 %.2f ms, %d errors; ratio to the baseline %.3f",
                         result.pipelines, result.webhooks.requestsPerSecond, result.webhooks.latency.p50Ms, result.webhooks.latency.p99Ms,
                         result.webhooks.errors, result.webhooksToHealthRatio))
            print(String(format: "receipt → first stage RUNNING at %d/s (%d deliveries): p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                         result.rate, result.latencyDeliveries, result.receiptToFirstStage.p50Ms, result.receiptToFirstStage.p99Ms,
                         result.receiptToFirstStage.maxMs))
        }
        guard result.webhooks.errors == 0, result.health.errors == 0 else { throw CLIError("requests failed; see above") }
    }

    /// Sends `rate` deliveries a second for `seconds`, each on its own schedule (not waiting for
    /// the one before), tagged for the latency phase; returns how many were accepted.
    static func steady(http: HTTPClient, url: String, rate: Int, seconds: Int, pipelines: Int) async throws -> Int {
        let start = ContinuousClock.now
        let total = rate * seconds
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<total {
                try await Task.sleep(until: start + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(rate)), clock: .continuous)
                group.addTask {
                    var request = HTTPClientRequest(url: url)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: #"{"target": "p\#(index % pipelines)", "phase": "latency"}"#))
                    let response = try await http.execute(request, timeout: .seconds(30))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    return response.status.code == 200
                }
            }
            var accepted = 0
            for try await ok in group where ok { accepted += 1 }
            guard accepted == total else { throw CLIError("\(total - accepted) of \(total) deliveries were not accepted") }
            return accepted
        }
    }

    /// For every latency-phase receipt: its commit to the commit of its execution's first stage
    /// start, once all of them started (60 s at most).
    static func receiptToFirstStage(client: PostgresClient, logger: Logger, expected: Int) async throws -> [Duration] {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            var latencies: [Duration] = []
            var missing = 0
            let rows = try await client.query("""
                SELECT extract(epoch FROM pg_xact_commit_timestamp(r.xmin))::float8,
                       (SELECT min(extract(epoch FROM pg_xact_commit_timestamp(e.xmin)))::float8 FROM events e
                         WHERE e.stream_id = 'execution-' || (d->>'executionId') AND e.event_type = 'execution.stage.started')
                  FROM events r, jsonb_array_elements(r.payload->'decisions') d
                 WHERE r.event_type = 'trigger.received' AND r.payload->'payload'->>'phase' = 'latency' AND d ? 'executionId'
                """, logger: logger)
            for try await (received, started) in rows.decode((Double, Double?).self) {
                if let started { latencies.append(.microseconds(Int64(((started - received) * 1_000_000).rounded()))) } else { missing += 1 }
            }
            if latencies.count >= expected && missing == 0 { return latencies }
            guard ContinuousClock.now < deadline else {
                throw CLIError("\(missing) of \(expected) executions did not start their first stage within 60 s")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
