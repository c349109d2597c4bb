import EventLog
import Kafka
import Logging
import PostgresEventStore

/// Consumes one role's view of the execution events from Kafka: decodes each message, drops
/// duplicates by (stream, version), runs the role's handler — up to `concurrency` at once — and
/// commits offsets only below the oldest message still being handled, so a crash re-delivers
/// whatever was not finished.
struct ExecutionEventConsumer {
    let consumer: KafkaConsumer
    let concurrency: Int
    let logger: Logger

    func run(_ handle: @escaping @Sendable (RecordedEvent) async throws -> Void) async throws {
        var offsets = OffsetTracker()
        var dedupe = StreamVersionDeduplicator()
        try await withThrowingTaskGroup(of: KafkaMessage.self) { group in
            var running = 0
            for try await message in consumer.messages {
                // Take what finished meanwhile, then make room.
                while running >= concurrency, let done = try await group.next() {
                    running -= 1
                    try await commit(offsets.finished(done))
                }
                let event: RecordedEvent
                do {
                    event = try EventEnvelopeCodec.decode(String(decoding: message.value, as: UTF8.self))
                } catch {
                    logger.error("undecodable message skipped", metadata: ["kafka.topic": "\(message.topic)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
                    continue
                }
                guard dedupe.accept(stream: event.streamID.description, version: event.streamVersion) else { continue }
                offsets.started(message)
                running += 1
                group.addTask {
                    await handleWithRetry(event, handle)
                    return message
                }
            }
        }
    }

    private func commit(_ message: KafkaMessage?) async throws {
        if let message { try await consumer.commit(message) }
    }

    /// Retries while the failure may pass (PostgreSQL restarting); skips what can never succeed.
    private func handleWithRetry(_ event: RecordedEvent, _ handle: @Sendable (RecordedEvent) async throws -> Void) async {
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await handle(event)
                return
            } catch let error as DatabaseError where error.isRetriable {
                logger.warning("handling an event failed; retrying", metadata: ["event.stream": "\(event.streamID)", "error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            } catch {
                logger.error("handling an event failed; skipped", metadata: [
                    "event.stream": "\(event.streamID)", "event.version": "\(event.streamVersion)", "event.type": "\(event.type)", "error": "\(error)",
                ])
                return
            }
        }
    }
}

/// Which offsets of each partition may be committed while messages are handled concurrently.
struct OffsetTracker {
    struct Partition: Hashable {
        let topic: String
        let partition: Int32
    }

    private var inFlight: [Partition: Set<Int64>] = [:]
    private var highestFinished: [Partition: KafkaMessage] = [:]

    mutating func started(_ message: KafkaMessage) {
        inFlight[Partition(topic: message.topic, partition: message.partition), default: []].insert(message.offset)
    }

    /// Records `message` as handled; returns the message whose offset may now be committed.
    mutating func finished(_ message: KafkaMessage) -> KafkaMessage? {
        let key = Partition(topic: message.topic, partition: message.partition)
        inFlight[key]?.remove(message.offset)
        if (highestFinished[key]?.offset ?? -1) < message.offset { highestFinished[key] = message }
        guard let highest = highestFinished[key] else { return nil }
        if let oldest = inFlight[key]?.min(), oldest < highest.offset {
            // Only up to just before the oldest unfinished message.
            var below = highest
            below.offset = oldest - 1
            return below.offset >= 0 ? below : nil
        }
        return highest
    }
}
