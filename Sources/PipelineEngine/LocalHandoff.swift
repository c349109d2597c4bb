import EventLog
import Foundation
import Kafka
import Synchronization

/// Hands execution events appended by this process straight to this process's own roles, so a
/// transition does not wait for the relay and the broker.
///
/// The Kafka copy of every event still arrives and stays the source of truth: it is what a crash
/// or a restart replays. A role takes an event in process only when its consumer owns the
/// event's partition — the Kafka copy then comes to this same process, into the same lane
/// (``ExecutionLanes``), which lets the first copy run the handler and the second wait for it
/// before its offset is committed. Events of partitions another process owns go through Kafka alone, so
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
