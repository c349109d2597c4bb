import EventLog
import Kafka
import Logging
import PostgresEventStore
import Synchronization

/// Consumes one role's view of the execution events from Kafka: decodes each message, drops
/// duplicates by (stream, version), runs the role's handler — up to `concurrency` at once — and
/// commits offsets only below the oldest message still being handled, so a crash re-delivers
/// whatever was not finished.
struct ExecutionEventConsumer {
    let consumer: KafkaConsumer
    let concurrency: Int
    let logger: Logger
    /// Events this process appended, handed over without the trip through Kafka.
    var inbox: LocalInbox?
    /// Where handled offsets are recorded: the partition leases in PostgreSQL (and Kafka in the
    /// background, for its tools), or the consumer group in Kafka.
    var leases: PartitionLeases?

    func run(_ handle: @escaping @Sendable (RecordedEvent) async throws -> Void) async throws {
        var offsets = OffsetTracker()
        var dedupe = StreamVersionDeduplicator()
        let handled = inbox?.handled ?? HandledEvents()
        // Handlers report here as they finish, so offsets move on with every new message, not
        // only when all `concurrency` slots are busy.
        let finished = FinishedMessages()
        // A discarding group keeps nothing of finished handlers, however long the role runs.
        try await withThrowingDiscardingTaskGroup { group in
            if let inbox {
                group.addTask {
                    await withDiscardingTaskGroup { local in
                        for await event in inbox.events {
                            let key = HandledEvents.Key(event)
                            guard handled.claim(key) else { continue }
                            local.addTask {
                                await handleWithRetry(event, handle)
                                handled.finish(key)
                            }
                        }
                    }
                }
            }
            var running = 0
            func settle() async throws {
                var commits: [OffsetTracker.Partition: KafkaMessage] = [:]
                for done in finished.take() {
                    running -= 1
                    if let commit = offsets.finished(done) { commits[OffsetTracker.Partition(topic: commit.topic, partition: commit.partition)] = commit }
                }
                for commit in commits.values {
                    do {
                        if let leases {
                            try await leases.store(topic: commit.topic, partition: commit.partition, next: commit.offset + 1)
                            consumer.commitInBackground(commit)
                        } else {
                            try await consumer.commit(commit)
                        }
                    } catch let error as DatabaseError where error.isRetriable {
                        // The events are handled; whoever reads the partition next may see them again.
                        logger.warning("storing an offset failed; its events may come again", metadata: [
                            "kafka.topic": "\(commit.topic)", "kafka.partition": "\(commit.partition)", "error": "\(error)",
                        ])
                    } catch let error as KafkaError {
                        // A rebalance took the partition (or the broker is slow): the events are
                        // handled, and whoever owns the partition now may see them again.
                        logger.warning("committing an offset failed; its events may come again", metadata: [
                            "kafka.topic": "\(commit.topic)", "kafka.partition": "\(commit.partition)", "error": "\(error)",
                        ])
                    }
                }
            }
            for try await message in consumer.messages {
                try await settle()
                while running >= concurrency {
                    try await Task.sleep(for: .milliseconds(1))
                    try await settle()
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
                    // The in-process copy may have been (or be being) handled: then only wait for
                    // it, so the offset is committed after the handler finished, never before.
                    let key = HandledEvents.Key(event)
                    if handled.claim(key) {
                        await handleWithRetry(event, handle)
                        handled.finish(key)
                    } else {
                        await handled.waitUntilFinished(key)
                    }
                    handled.forget(key)
                    finished.add(message)
                }
            }
        }
    }

    /// Retries while the failure may pass (PostgreSQL restarting, an execution that kept changing
    /// under its handler); skips what can never succeed (an event that does not decode).
    private func handleWithRetry(_ event: RecordedEvent, _ handle: @Sendable (RecordedEvent) async throws -> Void) async {
        var backoff = Backoff(maximum: .seconds(5))
        while !Task.isCancelled {
            do {
                try await handle(event)
                return
            } catch where Self.mayPass(error) {
                logger.warning("handling an event failed; retrying", metadata: ["event.stream": "\(event.streamID)", "error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            } catch {
                logger.error("handling an event failed; skipped", metadata: [
                    "event.stream": "\(event.streamID)", "event.version": "\(event.streamVersion)", "event.type": "\(event.type)", "error": "\(error)",
                ])
                return
            }
        }
    }

    static func mayPass(_ error: any Error) -> Bool {
        if let error = error as? DatabaseError { return error.isRetriable }
        return error is EngineError
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

/// Messages whose handlers finished, waiting for the consume loop to account for them.
final class FinishedMessages: Sendable {
    private let messages = Mutex<[KafkaMessage]>([])

    func add(_ message: KafkaMessage) { messages.withLock { $0.append(message) } }

    func take() -> [KafkaMessage] { messages.withLock { list in defer { list = [] }; return list } }
}
