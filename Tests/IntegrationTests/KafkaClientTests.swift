import Foundation
import Kafka
import Testing

@Suite("Kafka client against the broker")
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
