import Kafka
import Synchronization

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

/// The ``OffsetTracker`` shared by the dispatch loop (which starts messages) and the task that
/// stores offsets (which finishes them).
final class OffsetBook: Sendable {
    private let tracker = Mutex(OffsetTracker())

    func started(_ message: KafkaMessage) { tracker.withLock { $0.started(message) } }

    /// Records the messages as finished; returns, per partition, the message whose offset may now be stored.
    func finished(_ messages: [KafkaMessage]) -> [KafkaMessage] {
        tracker.withLock { tracker in
            var commits: [OffsetTracker.Partition: KafkaMessage] = [:]
            for message in messages {
                if let commit = tracker.finished(message) { commits[OffsetTracker.Partition(topic: commit.topic, partition: commit.partition)] = commit }
            }
            return Array(commits.values)
        }
    }
}

/// Messages whose handlers finished, waiting for the offsets' task to account for them.
final class FinishedMessages: Sendable {
    private let messages = Mutex<[KafkaMessage]>([])

    func add(_ message: KafkaMessage) { messages.withLock { $0.append(message) } }

    func take() -> [KafkaMessage] { messages.withLock { list in defer { list = [] }; return list } }
}
