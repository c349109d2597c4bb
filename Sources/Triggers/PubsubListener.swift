import EventLog
import Foundation
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle

/// Subscribes to the Kafka topics that enabled `pubsub` triggers name (`subscriptionName`, with
/// `pubsubSystem: kafka`) and hands every message to the trigger intake, keyed by (topic,
/// partition, offset): a message read again after a crash is the same receipt. Messages are read
/// by the consumer group `<prefix>pubsub` from the end of each topic when the group is new (a
/// trigger added today does not start a run for every message of the topic's past), and a
/// message's offset is committed once its receipt is recorded. A message that is not a JSON
/// object becomes `{"message": <its text>}`.
public final class PubsubListener: Service, Sendable {
    let intake: TriggerIntake
    let client: PostgresClient
    let kafka: KafkaConfiguration
    let groupID: String
    let logger: Logger

    public init(intake: TriggerIntake, client: PostgresClient, kafka: KafkaConfiguration, groupID: String, logger: Logger) {
        self.intake = intake
        self.client = client
        var kafka = kafka
        kafka.properties["auto.offset.reset"] = kafka.properties["auto.offset.reset"] ?? "latest"
        self.kafka = kafka
        self.groupID = groupID
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var topics: [String] = []
            var listening: Task<Void, Never>?
            while !Task.isCancelled {
                do {
                    let wanted = try await self.subscribedTopics()
                    if wanted != topics {
                        listening?.cancel()
                        await listening?.value
                        topics = wanted
                        listening = wanted.isEmpty ? nil : Task { await self.listen(to: wanted) }
                    }
                } catch {
                    self.logger.warning("reading the pubsub triggers failed; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(5))
            }
            listening?.cancel()
            await listening?.value
        }
    }

    func subscribedTopics() async throws -> [String] {
        let probe = try JSONText(encoding: JSONValue.array([["type": "pubsub"]])).text
        var topics: Set<String> = []
        do {
            for try await text in try await client.query("""
                SELECT config::text FROM pipeline_configs WHERE NOT deleted AND NOT disabled AND config->'triggers' @> \(probe)::jsonb
                """, logger: logger).decode(String.self) {
                for trigger in try JSONText(text).decode(JSONValue.self)["triggers"]?.arrayValue ?? []
                where trigger["type"] == "pubsub" && trigger["enabled"]?.boolValue == true && (trigger["pubsubSystem"]?.stringValue ?? "kafka") == "kafka" {
                    if let topic = trigger["subscriptionName"]?.stringValue, !topic.isEmpty { topics.insert(topic) }
                }
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the pubsub triggers")
        }
        return topics.sorted()
    }

    /// Reads `topics` until cancelled, starting over after a failure.
    func listen(to topics: [String]) async {
        do {
            try await retrying(initial: .seconds(1), maximum: .seconds(30), onFailure: { error, delay in
                self.logger.warning("reading pubsub topics failed; starting over", metadata: ["topics": "\(topics)", "error": "\(error)", "retry.delay": "\(delay)"])
            }) {
                let consumer = try KafkaConsumer(configuration: self.kafka, groupID: self.groupID, topics: topics, logger: self.logger)
                do {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            // Said once the group has given this member partitions (tests and operators wait for it).
                            while !Task.isCancelled, consumer.assignment().isEmpty { try await Task.sleep(for: .milliseconds(100)) }
                            self.logger.info("pubsub: listening", metadata: ["topics": "\(topics)", "partitions": "\(consumer.assignment())"])
                        }
                        group.addTask {
                            for try await message in consumer.messages {
                                try await self.deliver(message)
                                try await consumer.commit(message)
                            }
                        }
                        defer { group.cancelAll() }
                        try await group.next()
                        try await group.next()
                    }
                } catch {
                    await consumer.shutdown()
                    throw error
                }
                await consumer.shutdown()
            }
        } catch {
            // Cancelled: the topics changed or the role stops.
        }
    }

    func deliver(_ message: KafkaMessage) async throws {
        let text = String(decoding: message.value, as: UTF8.self)
        var payload = (try? JSONText(text).decode(JSONValue.self)) ?? .string(text)
        if payload.objectValue == nil { payload = ["message": payload] }
        let origin = PubsubMessage(topic: message.topic, partition: message.partition, offset: message.offset,
                                   key: message.key.isEmpty ? nil : String(decoding: message.key, as: UTF8.self))
        let delivery = Delivery(origin: .pubsub(origin), payload: payload, eventID: UUID().uuidString.lowercased(),
                                dedupeKey: "pubsub/kafka/\(message.topic)/\(message.partition)/\(message.offset)")
        _ = try await intake.receive(delivery, body: [], proof: Signatures.Proof(), headers: [:], sender: "pubsub", recordUnheard: false)
    }
}
