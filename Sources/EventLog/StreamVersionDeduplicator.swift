/// Drops events a consumer has already seen, judged by (stream, version).
///
/// Kafka delivery is at-least-once: the relay may publish an event again after a crash. Events of
/// one stream arrive in version order, so remembering the highest version seen per stream is
/// enough. Memory is bounded: past `capacity` streams, the least recently seen are forgotten
/// (their next event is then accepted; handlers stay version-checked for that reason).
public struct StreamVersionDeduplicator: Sendable {
    private var highest: RecentlyUsed<String, Int64>

    public init(capacity: Int = 100_000) {
        precondition(capacity > 0, "capacity must be positive")
        highest = RecentlyUsed(capacity: capacity)
    }

    public var capacity: Int { highest.capacity }

    /// Records the event and tells whether it is new (true) or a duplicate (false).
    public mutating func accept(stream: String, version: Int64) -> Bool {
        if let seen = highest.value(for: stream), seen >= version { return false }
        highest.set(version, for: stream)
        return true
    }

    public var trackedStreams: Int { highest.count }
}
