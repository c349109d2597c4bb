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
import ServiceLifecycle

struct BenchAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Measure the HTTP API under concurrent clients: reading an execution and triggering a pipeline.",
        discussion: """
            Serves the API in this process on a loopback port, over a schema of its own, without the \
            engine's roles (triggered executions are recorded, not run) and without a rate limit. \
            --clients concurrent keep-alive clients each send requests back to back for --seconds per \
            scenario: GET /health (the baseline: HTTP and authentication-free routing only), GET \
            /pipelines/{id} of an execution with 10 stages, and POST /pipelines/{app}/{name}. Prints \
            requests/s, p50 and p99 latency and errors for each, and each scenario's p99 as a ratio of \
            the baseline's. Any error fails the run.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Concurrent clients.")
    var clients: Int = 64

    @Option(help: "Seconds each scenario runs.")
    var seconds: Int = 10

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...1024).contains(clients) else { throw ValidationError("--clients must be 1…1024") }
        guard (1...600).contains(seconds) else { throw ValidationError("--seconds must be 1…600") }
    }

    struct Scenario: Codable {
        var name: String
        var requests: Int
        var errors: Int
        var requestsPerSecond: Double
        var latency: LatencySummary
        var p99RatioToBaseline: Double?
    }

    struct Result: Codable {
        var clients: Int
        var seconds: Int
        var scenarios: [Scenario]
    }

    func run() async throws {
        let logger = {
            var logger = options.logger("topsail.bench")
            logger.logLevel = .warning
            return logger
        }()
        let (clients, seconds) = (self.clients, self.seconds)
        let result = try await withBenchSchema(options, logger: logger, connections: 40) { client, _ in
            let repository = ExecutionRepository(store: PostgresEventStore(client: client, logger: logger), logger: logger)
            let token = try await Identities(store: repository.eventStore).issue(user: "bench", name: "bench api", roles: ["admin"], metadata: EventMetadata(source: "bench")).token
            let stages: [JSONValue] = (1...10).map { index in
                ["refId": .string("s\(index)"), "type": "wait", "waitTime": 1, "requisiteStageRefIds": index == 1 ? [] : [.string("s\(index - 1)")]]
            }
            let pipeline = PipelineConfig(json: ["id": "bench-pipeline", "application": "bench", "name": "deploy", "limitConcurrent": false, "stages": .array(stages)])
            try await PipelineConfigStore(store: repository.eventStore).save(pipeline, metadata: EventMetadata(source: "bench"))
            let execution = try await repository.trigger(pipeline, trigger: ["type": "bench"], parameters: [:], metadata: EventMetadata(source: "bench"))

            let server = try await APIServer(
                client: client, repository: repository, configuration: .init(port: 0, rateLimit: nil), logger: logger)
            let port = AsyncStream.makeStream(of: Int.self)
            let application = server.application { port.continuation.yield($0) }
            let group = ServiceGroup(configuration: .init(services: [application], logger: logger))
            return try await withThrowingTaskGroup(of: Result?.self) { tasks in
                tasks.addTask {
                    try await group.run()
                    return nil
                }
                defer { tasks.cancelAll() }
                var ports = port.stream.makeAsyncIterator()
                guard let bound = await ports.next(), bound > 0 else { throw CLIError("the API did not start") }
                let base = "http://127.0.0.1:\(bound)"
                progress("API on \(base); \(clients) clients, \(seconds) s a scenario")
                let http = HTTPClient(configuration: .init(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: clients)))
                do {
                    var scenarios: [Scenario] = []
                    for (name, method, path) in [
                        ("health (baseline)", HTTPMethod.GET, "/health"),
                        ("read an execution", .GET, "/pipelines/\(execution)"),
                        ("trigger a pipeline", .POST, "/pipelines/bench/deploy"),
                    ] {
                        progress("\(name): \(method) \(path)")
                        var scenario = try await Self.measure(
                            name, http: http, method: method, url: base + path, token: token, clients: clients, seconds: seconds)
                        if let baseline = scenarios.first, baseline.latency.p99Ms > 0 { scenario.p99RatioToBaseline = scenario.latency.p99Ms / baseline.latency.p99Ms }
                        scenarios.append(scenario)
                    }
                    try await http.shutdown()
                    await group.triggerGracefulShutdown()
                    for try await _ in tasks {}
                    return Result(clients: clients, seconds: seconds, scenarios: scenarios)
                } catch {
                    try? await http.shutdown()
                    await group.triggerGracefulShutdown()
                    throw error
                }
            } ?? Result(clients: clients, seconds: seconds, scenarios: [])
        }
        if json {
            try printJSON(result)
        } else {
            for scenario in result.scenarios {
                print(String(
                    format: "%@: %.0f requests/s, p50 %.2f ms, p99 %.2f ms, %d errors%@", scenario.name, scenario.requestsPerSecond,
                    scenario.latency.p50Ms, scenario.latency.p99Ms, scenario.errors,
                    scenario.p99RatioToBaseline.map { String(format: " (p99 %.1f× the baseline's)", $0) } ?? ""))
            }
        }
        let errors = result.scenarios.reduce(0) { $0 + $1.errors }
        guard errors == 0 else { throw CLIError("\(errors) requests failed; see the scenarios above") }
    }

    /// `clients` loops sending the request back to back until `seconds` pass.
    static func measure(
        _ name: String, http: HTTPClient, method: HTTPMethod, url: String, token: String?, clients: Int, seconds: Int,
        body: @escaping @Sendable () -> String = { "{}" }
    ) async throws -> Scenario {
        let began = ContinuousClock.now
        let end = began + .seconds(seconds)
        // Each client keeps its own tally; they are added up at the end.
        let tallies = try await withThrowingTaskGroup(of: (samples: [Duration], errors: Int, firstError: String?).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var samples: [Duration] = []
                    var errors = 0
                    var firstError: String?
                    while ContinuousClock.now < end {
                        var request = HTTPClientRequest(url: url)
                        request.method = method
                        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                        if method == .POST {
                            request.headers.add(name: "Content-Type", value: "application/json")
                            request.body = .bytes(ByteBuffer(string: body()))
                        }
                        let sent = ContinuousClock.now
                        do {
                            let response = try await http.execute(request, timeout: .seconds(30))
                            _ = try await response.body.collect(upTo: 1 << 22)
                            samples.append(ContinuousClock.now - sent)
                            if response.status.code >= 300 {
                                errors += 1
                                firstError = firstError ?? "HTTP \(response.status.code)"
                            }
                        } catch {
                            errors += 1
                            firstError = firstError ?? "\(error)"
                        }
                    }
                    return (samples, errors, firstError)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let elapsed = (ContinuousClock.now - began).milliseconds / 1000
        let all = tallies.flatMap(\.samples)
        let errors = tallies.reduce(0) { $0 + $1.errors }
        if let first = tallies.compactMap(\.firstError).first { progress("\(name): first error: \(first)") }
        return Scenario(
            name: name, requests: all.count, errors: errors, requestsPerSecond: Double(all.count) / elapsed,
            latency: LatencySummary(all), p99RatioToBaseline: nil)
    }
}
