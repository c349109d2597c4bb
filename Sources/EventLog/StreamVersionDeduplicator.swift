/// Drops events a consumer has already seen, judged by (stream, version).
///
/// Kafka delivery is at-least-once: the relay may publish an event again after a crash. Events of
/// one stream arrive in version order, so remembering the highest version seen per stream is
/// enough. Memory is bounded: past `capacity` streams, the least recently seen are forgotten
/// (their next event is then accepted; handlers stay version-checked for that reason).
public struct StreamVersionDeduplicator: Sendable {
    public let capacity: Int
    private var highest: [String: (version: Int64, touched: UInt64)] = [:]
    private var clock: UInt64 = 0

    public init(capacity: Int = 100_000) {
        precondition(capacity > 0, "capacity must be positive")
        self.capacity = capacity
    }

    /// Records the event and tells whether it is new (true) or a duplicate (false).
    public mutating func accept(stream: String, version: Int64) -> Bool {
        clock &+= 1
        if let seen = highest[stream], seen.version >= version {
            highest[stream] = (seen.version, clock)
            return false
        }
        highest[stream] = (version, clock)
        if highest.count > capacity { evictOldest() }
        return true
    }

    public var trackedStreams: Int { highest.count }

    private mutating func evictOldest() {
        // Evicting a tenth at once keeps the amortised cost per accepted event constant.
        let excess = highest.count - capacity + max(1, capacity / 10)
        let oldest = highest.sorted { $0.value.touched < $1.value.touched }.prefix(excess)
        for (stream, _) in oldest { highest.removeValue(forKey: stream) }
    }
}
