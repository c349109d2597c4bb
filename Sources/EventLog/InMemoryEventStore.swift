import struct Foundation.Date
import struct Foundation.UUID
import Synchronization

/// The event log in memory, with the semantics of the PostgreSQL one: version-checked atomic
/// appends per stream, idempotent retries by event id, each append a transaction of its own in
/// log order. For simulations and fast tests of the engine's interpreters — never a stand-in for
/// the integration tests against PostgreSQL.
public final class InMemoryEventStore: EventStore {
    private struct State {
        var events: [RecordedEvent] = []
        var streams: [StreamID: [Int]] = [:]
        var byID: [UUID: Int] = [:]
        var transaction: Int64 = 0
    }

    private let state = Mutex(State())
    private let payloadLimit: Int

    public init(payloadLimit: Int = 1 << 20) {
        self.payloadLimit = payloadLimit
    }

    /// Every event, in log order.
    public var all: [RecordedEvent] { state.withLock { $0.events } }

    public func append(to stream: StreamID, expected: ExpectedVersion, events: [NewEvent]) async throws -> AppendResult {
        guard !events.isEmpty else { throw EventStoreError.emptyAppend(stream: stream) }
        for event in events { try event.validate(payloadLimit: payloadLimit) }
        return try state.withLock { (state: inout State) throws(EventStoreError) -> AppendResult in
            let stored = events.compactMap { state.byID[$0.id] }
            if !stored.isEmpty {
                // A retry of an append that succeeded: its stored result; anything else is a reuse.
                guard stored.count == events.count, stored.allSatisfy({ state.events[$0].streamID == stream }) else {
                    throw EventStoreError.eventIDReused(stream: stream, detail: "some of the event ids are stored already, or stored in another stream")
                }
                return AppendResult(positions: stored.map { state.events[$0].position },
                                    streamVersion: stored.map { state.events[$0].streamVersion }.max() ?? 0, alreadyStored: true)
            }
            let current = Int64(state.streams[stream]?.count ?? 0)
            if let required = expected.requiredCurrentVersion, required != current {
                throw EventStoreError.versionConflict(stream: stream, expected: expected, actual: current)
            }
            state.transaction += 1
            let now = Date()
            var positions: [Int64] = []
            for (offset, event) in events.enumerated() {
                let position = Int64(state.events.count + 1)
                state.events.append(RecordedEvent(
                    id: event.id, streamID: stream, streamVersion: current + Int64(offset) + 1,
                    logPosition: LogPosition(transaction: state.transaction, position: position), type: event.type,
                    schemaVersion: event.schemaVersion, recordedAt: now, payload: event.payload, metadata: event.metadata))
                state.streams[stream, default: []].append(state.events.count - 1)
                state.byID[event.id] = state.events.count - 1
                positions.append(position)
            }
            return AppendResult(positions: positions, streamVersion: current + Int64(events.count), alreadyStored: false)
        }
    }

    public func readStream(_ stream: StreamID, from version: Int64, direction: ReadDirection, limit: Int) async throws -> [RecordedEvent] {
        state.withLock { state in
            let events = (state.streams[stream] ?? []).map { state.events[$0] }
            switch direction {
            case .forward: return Array(events.filter { $0.streamVersion >= version }.prefix(limit))
            case .backward: return Array(events.filter { $0.streamVersion <= version }.reversed().prefix(limit))
            }
        }
    }

    public func readAll(after position: LogPosition, limit: Int) async throws -> [RecordedEvent] {
        // Appends commit one at a time, in order: log order is append order, with no gaps to wait for.
        state.withLock { state in Array(state.events.lazy.filter { $0.logPosition > position }.prefix(limit)) }
    }

    public func logPosition(before position: Int64) async throws -> LogPosition {
        if position <= 1 { return .start }
        return try state.withLock { (state: inout State) throws(EventStoreError) -> LogPosition in
            guard position <= state.events.count else { throw EventStoreError.unknownPosition(position) }
            let event = state.events[Int(position) - 1]
            return LogPosition(transaction: event.logPosition.transaction, position: position - 1)
        }
    }
}
