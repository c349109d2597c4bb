import EventLog
import Foundation
import Kafka
import Testing

/// Reads `topic` from the beginning with a fresh consumer group until `done` holds.
func consume(
    topic: String, brokers: String? = nil, timeout: Duration = .seconds(60),
    until done: @escaping @Sendable ([KafkaMessage]) -> Bool
) async throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(
        configuration: TestEnvironment.kafka(brokers: brokers), groupID: TestEnvironment.uniqueName("group-"),
        topics: [topic], logger: TestEnvironment.logger)
    defer { consumer.close() }
    return try await withThrowingTaskGroup(of: [KafkaMessage]?.self) { group in
        group.addTask {
            var messages: [KafkaMessage] = []
            for try await message in consumer.messages {
                messages.append(message)
                if done(messages) { return messages }
            }
            return messages
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next(), let messages = result else {
            throw SetupError("timed out after \(timeout) consuming \(topic)")
        }
        return messages
    }
}

/// Creates `topic` so that a consumer can subscribe before the relay publishes.
func createTopic(_ topic: String, brokers: String? = nil, partitions: Int = 3) async throws {
    let producer = try KafkaProducer(configuration: TestEnvironment.kafka(brokers: brokers), logger: TestEnvironment.logger)
    defer { producer.close() }
    try await producer.createTopic(topic, partitions: partitions)
}

/// How many distinct events (by stream and version) the messages carry: after an outage the
/// relay publishes some events twice, so a raw message count can be reached too early.
func distinctEvents(_ messages: [KafkaMessage]) -> Int {
    var seen = Set<String>()
    for message in messages {
        if let event = try? EventEnvelopeCodec.decode(String(decoding: message.value, as: UTF8.self)) {
            seen.insert("\(event.streamID)/\(event.streamVersion)")
        }
    }
    return seen.count
}

/// The events in the messages, decoded, checking that key and CloudEvents headers match the value.
func decodeEvents(_ messages: [KafkaMessage]) throws -> [RecordedEvent] {
    try messages.map { message in
        let event = try EventEnvelopeCodec.decode(String(decoding: message.value, as: UTF8.self))
        #expect(String(decoding: message.key, as: UTF8.self) == event.streamID.description)
        #expect(message.header("ce_id") == event.id.uuidString.lowercased())
        #expect(message.header("ce_type") == event.type)
        #expect(message.header("ce_specversion") == "1.0")
        #expect(message.header("ce_source") != nil)
        #expect(message.header("ce_time") != nil)
        #expect(message.header("topsail_stream_version") == String(event.streamVersion))
        #expect(message.header("topsail_position") == String(event.position))
        return event
    }
}

/// Checks that after dropping duplicates by (stream, version), every stream arrived complete and
/// in version order, and returns how many duplicates were dropped.
@discardableResult
func expectCompleteAndOrdered(_ events: [RecordedEvent], versions expected: [StreamID: Int64]) -> Int {
    var dedupe = StreamVersionDeduplicator()
    var kept: [StreamID: [Int64]] = [:]
    for event in events where dedupe.accept(stream: event.streamID.description, version: event.streamVersion) {
        kept[event.streamID, default: []].append(event.streamVersion)
    }
    for (stream, last) in expected {
        #expect(kept[stream] == Array(1...last), "\(stream): \(kept[stream] ?? [])")
    }
    #expect(Set(kept.keys) == Set(expected.keys))
    return events.count - kept.values.reduce(0) { $0 + $1.count }
}

/// True when, per stream, the versions as delivered never go backwards except to re-deliver.
func streamsNeverSkipAhead(_ events: [RecordedEvent]) -> Bool {
    var highest: [StreamID: Int64] = [:]
    for event in events {
        let seen = highest[event.streamID] ?? 0
        if event.streamVersion > seen + 1 { return false }
        highest[event.streamID] = max(seen, event.streamVersion)
    }
    return true
}
