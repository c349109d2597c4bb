import Dispatch
import Synchronization

/// Runs a blocking librdkafka call (close, flush) on a dispatch thread, not on one of Swift's
/// few cooperative threads, and waits for it without blocking any.
public func offCooperativeThreads(_ work: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            work()
            done.resume()
        }
    }
}

/// A flag shared with threads and dispatch blocks (an `Atomic` cannot be captured by value).
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { value.load(ordering: .acquiring) }

    /// Sets the flag; returns whether it was already set.
    func set() -> Bool { value.exchange(true, ordering: .acquiringAndReleasing) }
}

/// The text of a NUL-terminated C buffer.
func string(fromCBuffer buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
