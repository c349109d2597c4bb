import ArgumentParser
import CLISupport
import EventLog
import Foundation
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO
import Relay
import Synchronization

struct BenchRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Commit-to-consumed latency through the relay at a fixed append rate.",
        discussion: """
            Appends single events at --rate per second while an in-process relay publishes them and a \
            consumer reads them back; latency runs from the append's return (the commit) to the \
            consumer receiving the message. The baseline, measured in the same run (rounds relay, \
            direct, direct, relay), produces messages straight to Kafka at the same rate: the \
            broker's own floor.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Events per second.")
    var rate: Int = 1000

    @Option(help: "Seconds of appending through the relay; the baseline runs for as long (each in two halves).")
    var duration: Double = 10

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard rate > 0, rate <= 100_000 else { throw ValidationError("--rate must be 1…100000") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0…3600 seconds") }
    }

    struct Phase: Codable {
        var samples: [Duration] = []
        var sent: Int
        var received: Int
        var sendRatePerSecond: Double
        var latency: LatencySummary
        /// The most events published or appended but not yet consumed at any moment.
        var maximumBacklog: Int
        /// From the last send to the last message consumed.
        var drainMs: Double

        enum CodingKeys: String, CodingKey {
            case sent, received, sendRatePerSecond, latency, maximumBacklog, drainMs
        }

        static func merge(_ phases: [Phase]) -> Phase {
            let samples = phases.flatMap(\.samples)
            return Phase(samples: samples, sent: phases.reduce(0) { $0 + $1.sent }, received: samples.count,
                         sendRatePerSecond: phases.map(\.sendRatePerSecond).reduce(0, +) / Double(max(1, phases.count)),
                         latency: LatencySummary(samples), maximumBacklog: phases.map(\.maximumBacklog).max() ?? 0,
                         drainMs: phases.map(\.drainMs).max() ?? 0)
        }
    }

    struct Result: Codable {
        var rate: Int
        var durationSeconds: Double
        var directProduce: Phase
        var relay: Phase
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let kafkaConfiguration = try options.benchKafka()
        let (rate, duration) = (self.rate, self.duration)
        let result = try await withBenchSchema(options, logger: logger, connections: 24) { client, _ in
            let category = "bench" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(10)
            var relayConfiguration = RelayConfiguration()
            relayConfiguration.name = "bench-\(category)"
            let relayTopic = relayConfiguration.topic(for: category)
            let directTopic = relayTopic + "direct"
            let producer = try KafkaProducer(configuration: kafkaConfiguration, logger: logger)
            defer { producer.close() }
            for topic in [relayTopic, directTopic] {
                try await producer.createTopic(topic, partitions: relayConfiguration.partitions)
            }
            let tracker = LatencyTracker()
            let consumer = try KafkaConsumer(configuration: kafkaConfiguration, groupID: "bench-\(category)", topics: [relayTopic, directTopic], logger: logger)
            defer { consumer.close() }
            let relay = RelayService(configuration: relayConfiguration, kafka: kafkaConfiguration, client: client, logger: logger)
            let store = PostgresEventStore(client: client, logger: logger)

            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await relay.run() }
                group.addTask {
                    for try await message in consumer.messages {
                        if let id = message.header(CloudEventHeaders.id) { tracker.received(id) }
                    }
                }
                defer { group.cancelAll() }
                progress("waiting for the consumer to join its group")
                try await warmUp(tracker: tracker) { id in
                    try await producer.send([KafkaOutgoingMessage(topic: directTopic, key: Array("warmup".utf8), value: [],
                                                                  headers: [KafkaHeader(CloudEventHeaders.id, id.uuidString.lowercased())])])
                }
                try await warmUp(tracker: tracker) { id in
                    _ = try await store.append(to: try StreamID(category: category, id: "warmup"), expected: .any,
                                               events: [NewEvent(id: id, type: "bench.warmup", payload: .emptyObject)])
                }
                let produceDirectly: @Sendable (Int) async throws -> Void = { index in
                    let id = UUID().uuidString.lowercased()
                    tracker.sent(id)
                    try await producer.send([KafkaOutgoingMessage(topic: directTopic, key: Array("s\(index % 50)".utf8), value: Array(repeating: 0x78, count: 200),
                                                                  headers: [KafkaHeader(CloudEventHeaders.id, id)])])
                }
                let appendToLog: @Sendable (Int) async throws -> Void = { index in
                    let event = NewEvent(type: "bench.appended", payload: JSONText(unchecked: "{\"n\":\(index)}"))
                    _ = try await store.append(to: try StreamID(category: category, id: "s\(index % 50)"), expected: .any, events: [event])
                    tracker.sent(event.id.uuidString.lowercased())
                }
                // Relay, direct, direct, relay: the development broker slows down as it fills, and
                // this order spreads that drift evenly over both.
                var direct: [Phase] = []
                var relayed: [Phase] = []
                for (round, viaRelay) in [true, false, false, true].enumerated() {
                    progress("round \(round + 1)/4: \(viaRelay ? "appending to the log (through the relay)" : "producing straight to Kafka"), \(rate)/s for \(duration / 2) s")
                    let phase = try await paced(rate: rate, duration: duration / 2, tracker: tracker, send: viaRelay ? appendToLog : produceDirectly)
                    if viaRelay { relayed.append(phase) } else { direct.append(phase) }
                }
                return Result(rate: rate, durationSeconds: duration, directProduce: Phase.merge(direct), relay: Phase.merge(relayed))
            }
        }
        if json {
            try printJSON(result)
        } else {
            for (name, phase) in [("direct produce", result.directProduce), ("through relay", result.relay)] {
                print(String(format: "%@: %d/%d received, p50 %.2f ms, p99 %.2f ms, max %.2f ms, max backlog %d, drained %.0f ms after the last send",
                             name, phase.received, phase.sent, phase.latency.p50Ms, phase.latency.p99Ms, phase.latency.maxMs, phase.maximumBacklog, phase.drainMs))
            }
        }
    }

    /// Sends one marker until it comes back, so that group joins and topic metadata are done.
    private func warmUp(tracker: LatencyTracker, send: (UUID) async throws -> Void) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let id = UUID()
            tracker.sent(id.uuidString.lowercased())
            try await send(id)
            let waitUntil = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < waitUntil {
                if tracker.hasReceived(id.uuidString.lowercased()) { tracker.reset(); return }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        throw CLIError("no message came back within 60 s: is the broker reachable?")
    }

    /// Calls `send(i)` at `rate` per second for `duration` from several tasks, then waits for the
    /// consumer to catch up.
    private func paced(rate: Int, duration: Double, tracker: LatencyTracker, send: @escaping @Sendable (Int) async throws -> Void) async throws -> Phase {
        let clock = ContinuousClock()
        let total = Int(Double(rate) * duration)
        let senders = min(32, max(1, rate / 100))
        let start = clock.now + .milliseconds(50)
        let interval = Duration.seconds(1) / rate
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sender in 0..<senders {
                group.addTask {
                    var index = sender
                    while index < total {
                        try await Task.sleep(until: start + interval * index, clock: clock)
                        try await send(index)
                        index += senders
                    }
                }
            }
            try await group.waitForAll()
        }
        let sendingTook = clock.now - start
        let lastSend = clock.now
        let deadline = lastSend + .seconds(30)
        while tracker.backlog > 0 && clock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
        let drained = clock.now - lastSend
        let (sent, latencies, maximumBacklog) = tracker.reset()
        return Phase(samples: latencies, sent: sent, received: latencies.count, sendRatePerSecond: Double(sent) / (sendingTook.milliseconds / 1000),
                     latency: LatencySummary(latencies), maximumBacklog: maximumBacklog, drainMs: drained.milliseconds)
    }
}

/// Matches sends with receipts by CloudEvents id.
final class LatencyTracker: Sendable {
    private struct State {
        var pending: [String: ContinuousClock.Instant] = [:]
        var latencies: [Duration] = []
        var sent = 0
        var receivedIDs: Set<String> = []
        /// Receipts that overtook the sender's bookkeeping (the append returned after the relay published).
        var early: [String: ContinuousClock.Instant] = [:]
        var maximumBacklog = 0
    }

    private let state = Mutex(State())

    func sent(_ id: String) {
        let now = ContinuousClock.now
        state.withLock { state in
            state.sent += 1
            if let receivedAt = state.early.removeValue(forKey: id) {
                state.latencies.append(max(.zero, receivedAt - now))
                state.receivedIDs.insert(id)
            } else {
                state.pending[id] = now
                state.maximumBacklog = max(state.maximumBacklog, state.pending.count)
            }
        }
    }

    func received(_ id: String) {
        let now = ContinuousClock.now
        state.withLock { state in
            guard let sentAt = state.pending.removeValue(forKey: id) else {
                state.early[id] = now
                return
            }
            state.latencies.append(now - sentAt)
            state.receivedIDs.insert(id)
        }
    }

    func hasReceived(_ id: String) -> Bool { state.withLock { $0.receivedIDs.contains(id) } }

    var backlog: Int { state.withLock { $0.pending.count } }

    @discardableResult
    func reset() -> (sent: Int, latencies: [Duration], maximumBacklog: Int) {
        state.withLock { state in
            defer { state = State() }
            return (state.sent, state.latencies, state.maximumBacklog)
        }
    }
}
