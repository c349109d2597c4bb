import EventLog
import Foundation
import Kafka
import Synchronization

/// Hands execution events appended by this process straight to this process's own roles, so a
/// transition does not wait for the relay and the broker.
///
/// The Kafka copy of every event still arrives and stays the source of truth: it is what a crash
/// or a restart replays. A role takes an event in process only when its consumer owns the
/// event's partition — the Kafka copy then comes to this same process, and ``HandledEvents``
/// lets exactly one of the two copies run the handler while the other waits for it before its
/// offset is committed. Events of partitions another process owns go through Kafka alone, so
/// scaling a role out never makes two processes run the same stage.
public final class LocalHandoff: Sendable {
    private let inboxes = Mutex<[ObjectIdentifier: LocalInbox]>([:])

    public init() {}

    /// Opens an inbox for one role; events arrive in it once it owns partitions.
    func open(role: String) -> LocalInbox {
        let inbox = LocalInbox(role: role)
        inboxes.withLock { $0[ObjectIdentifier(inbox)] = inbox }
        return inbox
    }

    func close(_ inbox: LocalInbox) {
        inboxes.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(inbox)) }
        inbox.finish()
    }

    /// Offers events that were just appended (committed) to every open inbox.
    func deliver(_ events: [RecordedEvent]) {
        guard !events.isEmpty else { return }
        let open = inboxes.withLock { Array($0.values) }
        for inbox in open {
            for event in events where inbox.owns(event.streamID) { inbox.yield(event) }
        }
    }

    /// The events as the log stored them, rebuilt from what was appended and the append's result.
    static func recorded(_ events: [NewEvent], stream: StreamID, result: AppendResult) -> [RecordedEvent] {
        guard !result.alreadyStored, result.positions.count == events.count else { return [] }
        let firstVersion = result.streamVersion - Int64(events.count) + 1
        let now = Date()
        return events.enumerated().map { index, event in
            RecordedEvent(
                id: event.id, streamID: stream, streamVersion: firstVersion + Int64(index),
                logPosition: LogPosition(transaction: 0, position: result.positions[index]), type: event.type,
                schemaVersion: event.schemaVersion, recordedAt: now, payload: event.payload, metadata: event.metadata)
        }
    }
}

/// One role's in-process events, and which partitions of its topic it owns right now.
final class LocalInbox: Sendable {
    struct Ownership: Sendable {
        var topic: String
        var partitionCount: Int
        var partitions: Set<Int32>
    }

    let role: String
    let events: AsyncStream<RecordedEvent>
    let handled = HandledEvents()
    private let continuation: AsyncStream<RecordedEvent>.Continuation
    private let ownership = Mutex<Ownership?>(nil)

    init(role: String) {
        self.role = role
        (events, continuation) = AsyncStream.makeStream(of: RecordedEvent.self)
    }

    func update(_ ownership: Ownership?) {
        self.ownership.withLock { $0 = ownership }
    }

    func owns(_ stream: StreamID) -> Bool {
        ownership.withLock { ownership in
            guard let ownership, ownership.partitionCount > 0, !ownership.partitions.isEmpty else { return false }
            let partition = KafkaPartitioner.partition(forKey: Array(stream.description.utf8), partitionCount: ownership.partitionCount)
            return ownership.partitions.contains(partition)
        }
    }

    func yield(_ event: RecordedEvent) { continuation.yield(event) }

    func finish() { continuation.finish() }
}

/// The events one role is handling or has handled in this process, so that of an event's two
/// copies (in process and from Kafka) one runs the handler and the other waits for it.
final class HandledEvents: Sendable {
    struct Key: Hashable, Sendable {
        let stream: String
        let version: Int64

        init(_ event: RecordedEvent) {
            stream = event.streamID.description
            version = event.streamVersion
        }
    }

    private struct Entry {
        var done = false
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var sequence: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var clock: UInt64 = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int = 50_000) {
        self.capacity = capacity
    }

    var count: Int { state.withLock { $0.entries.count } }

    /// True when the caller is the first to see the event and must handle it (then call
    /// ``finish(_:)``); false when another copy is being or was handled.
    func claim(_ key: Key) -> Bool {
        state.withLock { state in
            guard state.entries[key] == nil else { return false }
            state.clock &+= 1
            state.entries[key] = Entry(sequence: state.clock)
            if state.entries.count > capacity { Self.evictFinished(&state, capacity: capacity) }
            return true
        }
    }

    func finish(_ key: Key) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard var entry = state.entries[key] else { return [] }
            entry.done = true
            defer { entry.waiters = [:]; state.entries[key] = entry }
            return Array(entry.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the claimed copy finished (at once if none is in progress), or on cancellation.
    func waitUntilFinished(_ key: Key) async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    guard var entry = state.entries[key], !entry.done, !Task.isCancelled else { return true }
                    entry.waiters[id] = continuation
                    state.entries[key] = entry
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.entries[key]?.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Forgets a finished event: its last copy has been accounted for.
    func forget(_ key: Key) {
        state.withLock { state in
            if state.entries[key]?.done == true { state.entries.removeValue(forKey: key) }
        }
    }

    private static func evictFinished(_ state: inout State, capacity: Int) {
        // Finished entries whose Kafka copy went to another process (a rebalance) would stay
        // forever; dropping the oldest tenth keeps memory bounded at a constant amortised cost.
        let excess = state.entries.count - capacity + max(1, capacity / 10)
        let oldest = state.entries.filter { $0.value.done }.sorted { $0.value.sequence < $1.value.sequence }.prefix(excess)
        for (key, _) in oldest { state.entries.removeValue(forKey: key) }
    }
}
