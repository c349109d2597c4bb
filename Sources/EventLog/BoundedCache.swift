import Synchronization

/// Values by key, at most `capacity` of them; past that, the least recently used are forgotten.
///
/// The one bounded memory of the engine's hot paths: decoded histories, folded summaries, the
/// highest version seen per stream, the events a lane has handled. Eviction drops the oldest
/// tenth at once, which keeps the amortised cost of an insertion constant.
public struct RecentlyUsed<Key: Hashable, Value> {
    public let capacity: Int
    private var entries: [Key: (value: Value, used: UInt64)] = [:]
    private var clock: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity >= 0, "capacity must not be negative")
        self.capacity = capacity
    }

    public var count: Int { entries.count }

    /// The value for `key`, which counts as a use.
    public mutating func value(for key: Key) -> Value? {
        guard let entry = entries[key] else { return nil }
        clock &+= 1
        entries[key] = (entry.value, clock)
        return entry.value
    }

    public mutating func set(_ value: Value, for key: Key) {
        guard capacity > 0 else { return }
        clock &+= 1
        entries[key] = (value, clock)
        if entries.count > capacity { evictOldest() }
    }

    @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        entries.removeValue(forKey: key)?.value
    }

    public mutating func removeAll() { entries.removeAll() }

    private mutating func evictOldest() {
        let excess = entries.count - capacity + max(1, capacity / 10)
        for (key, _) in entries.sorted(by: { $0.value.used < $1.value.used }).prefix(excess) {
            entries.removeValue(forKey: key)
        }
    }
}

/// A ``RecentlyUsed`` shared between tasks.
public final class BoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let state: Mutex<RecentlyUsed<Key, Value>>

    public init(capacity: Int) {
        state = Mutex(RecentlyUsed(capacity: capacity))
    }

    public var count: Int { state.withLock { $0.count } }

    public subscript(key: Key) -> Value? {
        state.withLock { $0.value(for: key) }
    }

    public func set(_ value: Value, for key: Key) {
        state.withLock { $0.set(value, for: key) }
    }

    /// Stores what `change` makes of the current value (nil: none), atomically.
    public func update(_ key: Key, _ change: (Value?) -> Value?) {
        state.withLock { cache in
            if let new = change(cache.value(for: key)) { cache.set(new, for: key) } else { cache.remove(key) }
        }
    }

    @discardableResult
    public func remove(_ key: Key) -> Value? {
        state.withLock { $0.remove(key) }
    }

    public func removeAll() { state.withLock { $0.removeAll() } }
}
extension RecentlyUsed: Sendable where Key: Sendable, Value: Sendable {}
