/// Exponential back-off: from `initial`, doubling to `maximum`, back to `initial` after a
/// success. The one back-off of every retry loop (relay, consumers, projector).
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    private var current: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration) {
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.current = initial
    }

    /// The delay to wait now; the next one is twice as long, up to the maximum.
    public mutating func next() -> Duration {
        let delay = current
        current = min(current * 2, maximum)
        return delay
    }

    public mutating func reset() { current = initial }
}
