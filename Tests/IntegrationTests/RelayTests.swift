import EventLog
import Foundation
import Kafka
import PostgresEventStore
import Relay
import Testing

@Suite("Relay to Kafka", .timeLimit(.minutes(5)))
struct RelayTests {
    static func relayArguments(_ db: TestDatabase, brokers: String? = nil, name: String) throws -> [String] {
        ["relay", "--database-url", db.url, "--kafka-brokers", try brokers ?? TestEnvironment.variable("TOPSAIL_KAFKA_BROKERS"),
         "--kafka-property", "message.timeout.ms=5000", "--relay-name", name, "--partitions", "3", "--log-level", "info"]
    }

    @Test("publishes every event with key, CloudEvents headers and per-stream order")
    func publishes() async throws {
        try await TestDatabase.with { db in
            let category = TestEnvironment.uniqueName("rp")
            let topic = "topsail.\(category)"
            try await createTopic(topic)
            var configuration = RelayConfiguration()
            configuration.name = TestEnvironment.uniqueName("relay")
            configuration.partitions = 3
            let relay = RelayService(configuration: configuration, kafka: try TestEnvironment.kafka(), client: db.client, logger: TestEnvironment.logger)
            let running = Task { try await relay.run() }
            defer { running.cancel() }
            let versions = try await appendSpread(db.store, category: category, streams: 7, count: 300)
            // At least once: a batch the broker acknowledges late (a loaded machine) is sent again.
            let messages = try await consume(topic: topic) { distinctEvents($0) >= 300 }
            let events = try decodeEvents(messages)
            expectCompleteAndOrdered(events, versions: versions)
            #expect(streamsNeverSkipAhead(events))
        }
    }

    @Test("kill -9 of the relay process loses nothing and keeps per-stream order")
    func survivesKill() async throws {
        try await TestDatabase.with { db in
            let category = TestEnvironment.uniqueName("rk")
            let topic = "topsail.\(category)"
            try await createTopic(topic)
            let name = TestEnvironment.uniqueName("relay")
            let executable = try TestEnvironment.topsailExecutable()
            var relay = try ChildProcess(executable, Self.relayArguments(db, name: name))
            let total = 1500
            let writer = Task {
                try await appendSpread(db.store, category: category, streams: 25, count: total)
            }
            // Kill the relay twice while the writer is still appending, restarting it each time.
            for _ in 0..<2 {
                try await Task.sleep(for: .milliseconds(Int.random(in: 400...900)))
                relay.killHard()
                relay = try ChildProcess(executable, Self.relayArguments(db, name: name))
            }
            let versions = try await writer.value
            let messages = try await consume(topic: topic) { messages in
                Set(messages.map { String(decoding: $0.value, as: UTF8.self) }).count >= total
            }
            relay.terminate()
            let events = try decodeEvents(messages)
            let duplicates = expectCompleteAndOrdered(events, versions: versions)
            #expect(streamsNeverSkipAhead(events), "a stream skipped ahead: an event was lost or reordered")
            #expect(Set(events.map(\.id)).count == total)
            print("relay kill test: \(events.count) messages for \(total) events, \(duplicates) duplicates")
        }
    }

    @Test("a broker outage: the relay backs off, then republishes to the new broker")
    func survivesBrokerRestart() async throws {
        try await TestDatabase.with { db in
            let broker = try PrivateBroker()
            let category = TestEnvironment.uniqueName("rb")
            let topic = "topsail.\(category)"
            try await createTopic(topic, brokers: broker.address)
            let name = TestEnvironment.uniqueName("relay")
            let relay = try ChildProcess(try TestEnvironment.topsailExecutable(), Self.relayArguments(db, brokers: broker.address, name: name))
            defer { relay.terminate() }
            var versions = try await appendSpread(db.store, category: category, streams: 5, count: 100)
            let before = try await consume(topic: topic, brokers: broker.address) { distinctEvents($0) >= 100 }
            #expect(distinctEvents(before) == 100)

            broker.stop()
            let more = try await appendSpread(db.store, category: category + "x", streams: 5, count: 100)
            try await Task.sleep(for: .seconds(2))
            try broker.start()
            versions.merge(more) { $1 }

            // The restarted broker is empty and has a new cluster id: everything is published again.
            try await eventually(timeout: .seconds(60), "the relay to notice the new cluster") {
                relay.text.contains(broker.clusterID)
            }
            try await createTopic(topic, brokers: broker.address)
            try await createTopic(topic + "x", brokers: broker.address)
            let first = try await consume(topic: topic, brokers: broker.address) { distinctEvents($0) >= 100 }
            let second = try await consume(topic: topic + "x", brokers: broker.address) { distinctEvents($0) >= 100 }
            let events = try decodeEvents(first + second)
            expectCompleteAndOrdered(events, versions: versions)
            #expect(relay.text.contains("the Kafka cluster changed"))
        }
    }

    @Test("two relays: one publishes, the other takes over when it is killed")
    func standbyTakesOver() async throws {
        try await TestDatabase.with { db in
            let category = TestEnvironment.uniqueName("rs")
            let topic = "topsail.\(category)"
            try await createTopic(topic)
            let name = TestEnvironment.uniqueName("relay")
            let executable = try TestEnvironment.topsailExecutable()
            let first = try ChildProcess(executable, Self.relayArguments(db, name: name))
            try await eventually("the first relay to lead") { first.text.contains("relay leading") }
            let second = try ChildProcess(executable, Self.relayArguments(db, name: name))
            defer { first.killHard(); second.terminate() }
            try await eventually("the second relay to stand by") { second.text.contains("standing by") }

            var versions = try await appendSpread(db.store, category: category, streams: 4, count: 200)
            let firstRound = try await consume(topic: topic) { distinctEvents($0) >= 200 }
            expectCompleteAndOrdered(try decodeEvents(firstRound), versions: versions)
            #expect(!second.text.contains("relay leading"))

            first.killHard()
            versions = try await appendSpread(db.store, category: category, streams: 4, count: 400)
            try await eventually("the second relay to take over") { second.text.contains("relay leading") }
            let all = try await consume(topic: topic) { messages in
                Set(messages.map { String(decoding: $0.value, as: UTF8.self) }).count >= 600
            }
            expectCompleteAndOrdered(try decodeEvents(all), versions: versions)
        }
    }

    @Test("on a new cluster, --from starts publishing at the given global position")
    func republishFrom() async throws {
        try await TestDatabase.with { db in
            let category = TestEnvironment.uniqueName("rf")
            let topic = "topsail.\(category)"
            try await createTopic(topic)
            _ = try await appendSpread(db.store, category: category, streams: 1, count: 10)
            let all = try await readLog(db.store, expecting: 10)
            let name = TestEnvironment.uniqueName("relay")
            let relay = try ChildProcess(try TestEnvironment.topsailExecutable(), Self.relayArguments(db, name: name) + ["--from", String(all[6].position)])
            defer { relay.terminate() }
            // Once the relay's checkpoint reached the last event, everything it published is in
            // the topic (it moves only on the broker's acknowledgement), a wrong earlier event too.
            try await eventually("the relay to publish up to the last event") {
                var position: Int64 = 0
                for try await value in try await db.client.query("SELECT position FROM relay_checkpoints WHERE relay_name = \(name)",
                                                                 logger: TestEnvironment.logger).decode(Int64.self) { position = value }
                return position == all[9].position
            }
            let messages = try await consume(topic: topic) { $0.count >= 4 }
            let events = try decodeEvents(messages)
            #expect(events.map(\.streamVersion) == [7, 8, 9, 10])
        }
    }
}
