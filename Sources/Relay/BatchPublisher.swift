import EventLog
import Kafka

/// Turns a batch of events into Kafka messages, creating topics on first use.
struct BatchPublisher {
    let configuration: RelayConfiguration
    let producer: KafkaProducer
    private var knownTopics: Set<String> = []

    init(configuration: RelayConfiguration, producer: KafkaProducer) {
        self.configuration = configuration
        self.producer = producer
    }

    mutating func forgetTopics() { knownTopics.removeAll() }

    /// Hands the batch to the producer; the ticket completes when the broker acknowledged it.
    mutating func enqueue(_ events: [RecordedEvent]) async throws -> DeliveryTicket {
        var messages: [KafkaOutgoingMessage] = []
        messages.reserveCapacity(events.count)
        for event in events {
            let topic = configuration.topic(for: event.streamID.category)
            if !knownTopics.contains(topic) {
                try await producer.createTopic(topic, partitions: configuration.partitions, replicationFactor: configuration.replicationFactor)
                knownTopics.insert(topic)
            }
            messages.append(Self.message(for: event, topic: topic, source: configuration.source))
        }
        return try await producer.enqueue(messages)
    }

    static func message(for event: RecordedEvent, topic: String, source: String) -> KafkaOutgoingMessage {
        KafkaOutgoingMessage(
            topic: topic,
            key: Array(event.streamID.description.utf8),
            value: Array(EventEnvelopeCodec.encode(event).utf8),
            headers: CloudEventHeaders.make(for: event, source: source).map { KafkaHeader($0.0, $0.1) }
        )
    }
}
