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

/// Runs an operation until it succeeds, waiting a growing ``Backoff`` between failures that may
/// pass (a database restarting, a broker away); a failure that cannot pass is thrown at once, and
/// cancellation ends the waiting with `CancellationError`. The one retry loop of the engine.
///
/// Only this task's cancellation ends it: a `CancellationError` that a dependency throws while
/// the task goes on (a database driver giving up a connection attempt during an outage) is a
/// failure like any other, or one role would stop for good while the process lives on.
public func retrying<T>(
    initial: Duration = .milliseconds(100), maximum: Duration,
    when mayPass: (any Error) -> Bool = { _ in true },
    onFailure: (_ error: any Error, _ delay: Duration) -> Void,
    _ operation: () async throws -> T
) async throws -> T {
    var backoff = Backoff(initial: initial, maximum: maximum)
    while true {
        try Task.checkCancellation()
        do {
            return try await operation()
        } catch where mayPass(error) && !Task.isCancelled {
            let delay = backoff.next()
            onFailure(error, delay)
            try await Task.sleep(for: delay)
        }
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down).
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
