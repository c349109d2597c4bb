import Foundation
import Kafka
import Testing

@Suite("Kafka client against the broker", .timeLimit(.minutes(5)))
struct KafkaClientTests {
    @Test("a consumer group resumes after the last committed offset")
    func manualCommits() async throws {
        let topic = "topsail.test" + TestEnvironment.uniqueName("c")
        let group = TestEnvironment.uniqueName("group-")
        let producer = try KafkaProducer(configuration: TestEnvironment.kafka(), logger: TestEnvironment.logger)
        defer { producer.close() }
        try await producer.createTopic(topic, partitions: 1)
        try await producer.send((0..<10).map { index in
            KafkaOutgoingMessage(topic: topic, key: Array("k".utf8), value: Array("\(index)".utf8), headers: [KafkaHeader("n", "\(index)")])
        })

        func read(_ count: Int, committingAt commitIndex: Int?) async throws -> [String] {
            let consumer = try KafkaConsumer(configuration: TestEnvironment.kafka(), groupID: group, topics: [topic], logger: TestEnvironment.logger)
            defer { consumer.close() }
            var values: [String] = []
            for try await message in consumer.messages {
                values.append(String(decoding: message.value, as: UTF8.self))
                #expect(message.header("n") == values.last)
                if values.count - 1 == commitIndex { try await consumer.commit(message) }
                if values.count == count { break }
            }
            return values
        }

        #expect(try await read(6, committingAt: 3) == ["0", "1", "2", "3", "4", "5"])
        // Offsets 4 and 5 were read but not committed: the group gets them again.
        #expect(try await read(6, committingAt: nil) == ["4", "5", "6", "7", "8", "9"])
    }

    @Test("KafkaPartitioner names the partition the producer sends a key to; the consumer reports its assignment")
    func partitioner() async throws {
        // Reference values of Kafka's murmur2 (as in librdkafka's and the Java client's own tests).
        #expect(KafkaPartitioner.murmur2(Array("kafka".utf8)) == 0xD067_CF64)
        #expect(KafkaPartitioner.murmur2(Array("".utf8)) == 0x106E_08D9)
        #expect(KafkaPartitioner.murmur2(Array("giberish123456789".utf8)) == 0x8F55_2B0C)

        let topic = "topsail.test" + TestEnvironment.uniqueName("p")
        let producer = try KafkaProducer(configuration: TestEnvironment.kafka(), logger: TestEnvironment.logger)
        defer { producer.close() }
        try await producer.createTopic(topic, partitions: 6)
        let keys = (0..<60).map { "execution-\(UUID().uuidString.lowercased())-\($0)" }
        try await producer.send(keys.map { KafkaOutgoingMessage(topic: topic, key: Array($0.utf8), value: Array($0.utf8)) })

        let consumer = try KafkaConsumer(configuration: TestEnvironment.kafka(), groupID: TestEnvironment.uniqueName("group-"), topics: [topic], logger: TestEnvironment.logger)
        defer { consumer.close() }
        #expect(try await consumer.partitionCount(of: topic) == 6)
        var seen: [String: Int32] = [:]
        for try await message in consumer.messages {
            seen[String(decoding: message.key, as: UTF8.self)] = message.partition
            if seen.count == keys.count { break }
        }
        for key in keys {
            #expect(seen[key] == KafkaPartitioner.partition(forKey: Array(key.utf8), partitionCount: 6), "\(key)")
        }
        #expect(Set(seen.values).count > 1, "every key went to one partition")
        #expect(consumer.assignment()[topic] == Set(0..<6), "a group's only member owns every partition")
    }

    @Test("the producer reports the cluster id and refuses bad configuration clearly")
    func clusterIDAndConfiguration() async throws {
        let producer = try KafkaProducer(configuration: TestEnvironment.kafka(), logger: TestEnvironment.logger)
        defer { producer.close() }
        #expect(try await !producer.clusterID().isEmpty)
        var bad = try TestEnvironment.kafka()
        bad.properties["no.such.property"] = "1"
        #expect {
            try KafkaProducer(configuration: bad, logger: TestEnvironment.logger)
        } throws: { error in
            (error as? KafkaError)?.description.contains("no.such.property") == true
        }
    }

    @Test("a batch larger than librdkafka's local queue waits for room (suspending) and is delivered whole and in order")
    func fullLocalQueue() async throws {
        let topic = "topsail.test" + TestEnvironment.uniqueName("q")
        var configuration = try TestEnvironment.kafka()
        configuration.properties["queue.buffering.max.messages"] = "5"
        let producer = try KafkaProducer(configuration: configuration, logger: TestEnvironment.logger)
        defer { producer.close() }
        try await producer.createTopic(topic, partitions: 1)
        // Other tasks keep running while the producer waits for room: the wait suspends.
        let ticks = Task {
            var count = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(1))
                count += 1
            }
            return count
        }
        try await producer.send((0..<300).map { KafkaOutgoingMessage(topic: topic, key: Array("k".utf8), value: Array("\($0)".utf8)) })
        ticks.cancel()
        #expect(await ticks.value > 0)
        let consumer = try KafkaConsumer(
            configuration: TestEnvironment.kafka(), groupID: TestEnvironment.uniqueName("group-"), topics: [topic], logger: TestEnvironment.logger)
        defer { consumer.close() }
        var values: [String] = []
        for try await message in consumer.messages {
            values.append(String(decoding: message.value, as: UTF8.self))
            if values.count == 300 { break }
        }
        #expect(values == (0..<300).map { "\($0)" })
    }

    @Test("a message to an unreachable broker fails with a retriable error, not a hang")
    func unreachableBroker() async throws {
        var configuration = try TestEnvironment.kafka(brokers: "127.0.0.1:\(try PrivateBroker.freePort())")
        configuration.messageTimeout = .seconds(2)
        let producer = try KafkaProducer(configuration: configuration, logger: TestEnvironment.logger)
        defer { producer.close() }
        do {
            try await producer.send([KafkaOutgoingMessage(topic: "topsail.nowhere", key: [], value: Array("x".utf8))])
            Issue.record("a send to an unreachable broker succeeded")
        } catch let error as KafkaError {
            #expect(error.isRetriable, "\(error)")
        }
    }
}
