import Access
import ArgumentParser
import AsyncHTTPClient
import CLISupport
import Clouds
import EventLog
import Foundation
import Logging
import NIOCore
import Orchestration
import PipelineEngine
import Pipelines
import Synchronization

struct BenchDeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Measure a red/black deploy and a rollback of the example service under HTTP load through HAProxy: seconds until traffic is on the new version, requests served and failed.",
        discussion: """
            Runs the engine's roles in this process over a schema and topics of their own, with a podman \
            account of its own. It builds the example service at v1 and v2 (examples/service/build), puts a \
            load balancer in front, deploys v1 (--instances instances), and starts --clients clients sending \
            requests back to back through the load balancer. Then it measures, under that load: a red/black \
            deploy of v2 (a pipeline with a deploy stage), and a rollbackCluster back to v1. For each: seconds \
            from the trigger to the execution's completion, seconds from the trigger to the last answer of the \
            old version (traffic fully on the new one), and the requests answered and failed meanwhile. \
            Target (issue 12): 0 failed requests. Everything it made is removed at the end.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Instances of each server group.")
    var instances: Int = 4

    @Option(help: "Concurrent HTTP clients sending load through the load balancer.")
    var clients: Int = 4

    @Option(help: "The script that builds the example service's image.")
    var exampleBuild: String = "examples/service/build"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...20).contains(instances) else { throw ValidationError("--instances must be 1…20") }
        guard (1...64).contains(clients) else { throw ValidationError("--clients must be 1…64") }
    }

    struct Phase: Codable {
        var secondsToComplete: Double
        var secondsToTrafficOnNew: Double
        var requestsServed: Int
        var requestsFailed: Int
        var answeredByOld: Int
        var answeredByNew: Int
    }

    struct Result: Codable {
        var instances: Int
        var clients: Int
        var redBlack: Phase
        var rollback: Phase
    }

    /// Requests back to back through the load balancer, each answer counted with its time.
    final class Load: Sendable {
        struct Counts {
            var answers: [String: Int] = [:]
            var lastAnswer: [String: ContinuousClock.Instant] = [:]
            var failed = 0
        }

        let counts = Mutex(Counts())
        let stopped = Atomic(false)

        func run(_ url: String, client: HTTPClient) async {
            while !stopped.load(ordering: .relaxed) {
                var answer: String?
                do {
                    let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
                    let body = try await response.body.collect(upTo: 1 << 16)
                    if response.status == .ok { answer = String(buffer: body) }
                } catch {}
                let now = ContinuousClock.now
                counts.withLock { counts in
                    if let answer {
                        counts.answers[answer, default: 0] += 1
                        counts.lastAnswer[answer] = now
                    } else {
                        counts.failed += 1
                    }
                }
            }
        }

        func reset() { counts.withLock { $0 = Counts() } }
    }

    func run() async throws {
        let logger = {
            var logger = options.logger("topsail.bench")
            logger.logLevel = .warning
            return logger
        }()
        let kafka = try options.benchKafka()
        let (instances, clients, build) = (self.instances, self.clients, exampleBuild)
        guard FileManager.default.isExecutableFile(atPath: build) else {
            throw CLIError("no example service build script at \(build): run from the repository's root or pass --example-build")
        }
        let result = try await withBenchSchema(options, logger: logger, connections: 20) { client, _ in
            let engine = BenchEngine(client: client, kafka: kafka, logger: logger)
            let store = engine.repository.eventStore
            let metadata = EventMetadata(source: "bench")
            let account = "bench" + UUID().uuidString.lowercased().prefix(8)
            let caller = Caller(user: "bench", roles: ["bench"])
            _ = try await CloudAccounts(store: store).save([
                "name": .string(account), "type": "podman", "regions": ["local"], "permissions": ["READ": ["bench"], "WRITE": ["bench"]],
            ], metadata: metadata)
            progress("building the example service at v1 and v2")
            let (v1, v2) = (try await Self.build(build, "v1"), try await Self.build(build, "v2"))
            let provider = PodmanProvider(account: account, logger: logger)
            let port = try Self.freePort()
            let operations = CloudOperations.standard(store: store, logger: logger)
            if case .failed(let why) = try await operations.perform(
                .upsertLoadBalancer(name: "web", region: "local", port: port, healthCheck: "/health", securityGroups: []),
                account: account, caller: caller, key: "bench/\(account)/lb", metadata: metadata) {
                throw CLIError("the load balancer did not start: \(why)")
            }
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            func cleanUp() async {
                for group in (try? await provider.serverGroups(of: "bench")) ?? [] { try? await provider.destroyServerGroup(group.name, region: "local", key: "cleanup") }
                try? await provider.deleteLoadBalancer("web", key: "cleanup")
                try? await http.shutdown()
            }
            do {
                let outcome = try await engine.run {
                    func execute(_ stage: JSONValue) async throws -> (String, ContinuousClock.Instant) {
                        guard case .success(let config) = PipelineValidation.parse([
                            "application": "bench", "name": "deploy", "limitConcurrent": false, "stages": [stage],
                        ]) else { throw CLIError("the benchmark's pipeline is not valid") }
                        let start = ContinuousClock.now
                        let id = try await engine.repository.trigger(config, trigger: TriggerIdentity.recording(caller, in: ["type": "manual", "user": "bench"]),
                                                                     parameters: [:], metadata: metadata)
                        try await engine.waitUntilComplete(id, timeout: .seconds(300))
                        let state = try await engine.repository.load(id)
                        guard state.status == .succeeded else {
                            throw CLIError("the \(stage["type"]?.stringValue ?? "") stage ended \(state.status.rawValue): \(state.stage("1").outputs["error"]?.stringValue ?? "-")")
                        }
                        return (id, start)
                    }
                    func deploy(_ image: String) -> JSONValue {
                        ["refId": "1", "type": "deploy", "clusters": [[
                            "account": .string(account), "region": "local", "stack": "web", "imageId": .string(image), "loadBalancers": ["web"],
                            "capacity": ["min": .number(Double(instances)), "max": .number(Double(instances)), "desired": .number(Double(instances))],
                            "strategy": "redblack",
                        ]]]
                    }
                    progress("deploying v1 (\(instances) instances)")
                    _ = try await execute(deploy(v1))
                    let load = Load()
                    let url = "http://127.0.0.1:\(port)/"
                    return try await withThrowingTaskGroup(of: Void.self) { traffic in
                        for _ in 0..<clients { traffic.addTask { await load.run(url, client: http) } }
                        defer { load.stopped.store(true, ordering: .relaxed) }
                        try await Task.sleep(for: .seconds(2))
                        func measure(_ name: String, old: String, new: String, _ stage: JSONValue) async throws -> Phase {
                            load.reset()
                            progress("\(name) under load from \(clients) clients")
                            let (_, start) = try await execute(stage)
                            let completed = ContinuousClock.now - start
                            // Traffic is on the new version once the old one has stopped answering.
                            try await Task.sleep(for: .seconds(2))
                            let counts = load.counts.withLock { $0 }
                            let lastOld = counts.lastAnswer[old].map { $0 - start } ?? .zero
                            return Phase(
                                secondsToComplete: completed.seconds, secondsToTrafficOnNew: lastOld.seconds,
                                requestsServed: counts.answers.values.reduce(0, +), requestsFailed: counts.failed,
                                answeredByOld: counts.answers[old] ?? 0, answeredByNew: counts.answers[new] ?? 0)
                        }
                        let redBlack = try await measure("red/black v1 → v2", old: "v1", new: "v2", deploy(v2))
                        let rollback = try await measure("rollback v2 → v1", old: "v2", new: "v1", [
                            "refId": "1", "type": "rollbackCluster", "credentials": .string(account), "cluster": "bench-web", "regions": ["local"],
                        ])
                        load.stopped.store(true, ordering: .relaxed)
                        try await traffic.waitForAll()
                        return Result(instances: instances, clients: clients, redBlack: redBlack, rollback: rollback)
                    }
                }
                await cleanUp()
                return outcome
            } catch {
                await cleanUp()
                throw error
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            for (name, phase) in [("red/black", result.redBlack), ("rollback", result.rollback)] {
                print(String(format: "%@: complete %.1f s, traffic on the new version %.1f s, %d requests served, %d failed",
                             name, phase.secondsToComplete, phase.secondsToTrafficOnNew, phase.requestsServed, phase.requestsFailed))
            }
        }
    }

    static func build(_ script: String, _ version: String) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = [version]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("\(script) \(version) failed (exit \(process.terminationStatus))") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A port nothing listens on now.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw CLIError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
