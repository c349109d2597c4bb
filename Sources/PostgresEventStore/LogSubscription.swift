import EventLog

/// A catch-up subscription: every committed event after a position, then new ones as they commit.
///
/// Pull-based: the next batch is read only when the consumer has taken the previous one, so a
/// slow consumer slows the reads instead of piling events up in memory. An empty read waits
/// `pollInterval` before asking again.
public struct LogSubscription: AsyncSequence, Sendable {
    public typealias Element = RecordedEvent

    public let store: any EventStore
    public let start: LogPosition
    public let batchSize: Int
    public let pollInterval: Duration

    public init(store: any EventStore, after start: LogPosition, batchSize: Int = 500, pollInterval: Duration = .milliseconds(5)) {
        precondition(batchSize > 0, "batchSize must be positive")
        self.store = store
        self.start = start
        self.batchSize = batchSize
        self.pollInterval = pollInterval
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(subscription: self, position: start)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let subscription: LogSubscription
        var position: LogPosition
        var buffer: [RecordedEvent] = []
        var index = 0

        public mutating func next() async throws -> RecordedEvent? {
            while index == buffer.count {
                try Task.checkCancellation()
                buffer = try await subscription.store.readAll(after: position, limit: subscription.batchSize)
                index = 0
                if buffer.isEmpty { try await Task.sleep(for: subscription.pollInterval) }
            }
            let event = buffer[index]
            index += 1
            position = event.logPosition
            return event
        }
    }
}
