/// Exponential back-off from 100 ms doubling to a maximum, reset after success.
struct Backoff {
    let maximum: Duration
    private var current: Duration = .milliseconds(100)

    init(maximum: Duration) {
        self.maximum = maximum
    }

    mutating func next() -> Duration {
        let delay = current
        current = min(current * 2, maximum)
        return delay
    }

    mutating func reset() { current = .milliseconds(100) }
}
