import EventLog
import Foundation
import Logging
import PostgresNIO

/// The event log in PostgreSQL (tables from `migrations/0001_event_log.sql`).
public struct PostgresEventStore: EventStore {
    /// 1 MiB, the default limit for one event's payload.
    public static let defaultPayloadLimit = 1 << 20

    public let client: PostgresClient
    public let payloadLimit: Int
    public let logger: Logger
    /// When set, concurrent appends share commits (decision 0012); nil: each append commits alone.
    public let groupCommit: GroupCommit?

    public init(client: PostgresClient, payloadLimit: Int = Self.defaultPayloadLimit, groupCommit: GroupCommit? = nil, logger: Logger) {
        self.client = client
        self.payloadLimit = payloadLimit
        self.groupCommit = groupCommit
        self.logger = logger
    }

    public func append(to stream: StreamID, expected: ExpectedVersion, events: [NewEvent]) async throws -> AppendResult {
        guard !events.isEmpty else { throw EventStoreError.emptyAppend(stream: stream) }
        for event in events { try event.validate(payloadLimit: payloadLimit) }
        if let groupCommit { return try await appendShared(to: stream, expected: expected, events: events, through: groupCommit) }
        return try await appendAlone(to: stream, expected: expected, events: events)
    }

    /// One append in a transaction of its own.
    private func appendAlone(to stream: StreamID, expected: ExpectedVersion, events: [NewEvent]) async throws -> AppendResult {
        let query: PostgresQuery = """
            SELECT out_position, out_version FROM append_events(
                \(stream.description), \(expected.requiredCurrentVersion), \(events.map(\.id)),
                \(events.map(\.type)), \(events.map { Int32(clamping: $0.schemaVersion) }),
                \(events.map(\.payload.text)), \(events.map { EventEnvelopeCodec.encodeMetadata($0.metadata) }))
            """
        do {
            var positions: [Int64] = []
            var version: Int64 = 0
            for try await (position, streamVersion) in try await client.query(query, logger: logger).decode((Int64, Int64).self) {
                positions.append(position)
                version = max(version, streamVersion)
            }
            return AppendResult(positions: positions, streamVersion: version, alreadyStored: false)
        } catch let error as PSQLError where error.sqlState == "TS409" {
            // A retry of an append that succeeded meets its own events as a conflict.
            if let stored = try await storedAppend(of: events, in: stream) { return stored }
            let actual = error.serverInfo?[.detail].flatMap { Int64($0) } ?? -1
            throw EventStoreError.versionConflict(stream: stream, expected: expected, actual: actual)
        } catch let error as PSQLError where error.sqlState == "23505" && error.serverInfo?[.constraintName] == "events_event_id_unique" {
            if let stored = try await storedAppend(of: events, in: stream) { return stored }
            throw EventStoreError.eventIDReused(stream: stream, detail: "some of the event ids are stored already, or stored in another stream")
        } catch let error as EventStoreError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: "append to \(stream)")
        }
    }

    private func appendShared(to stream: StreamID, expected: ExpectedVersion, events: [NewEvent], through groupCommit: GroupCommit) async throws -> AppendResult {
        let outcome: GroupCommit.Outcome
        do {
            outcome = try await groupCommit.append(stream, expected: expected, events: events, client: client, logger: logger)
        } catch {
            throw DatabaseError.wrapping(error, doing: "append to \(stream)")
        }
        switch outcome {
        case let .stored(positions, version):
            return AppendResult(positions: positions, streamVersion: version, alreadyStored: false)
        case .conflict(let detail):
            // A retry of an append that succeeded meets its own events as a conflict.
            if let stored = try await storedAppend(of: events, in: stream) { return stored }
            throw EventStoreError.versionConflict(stream: stream, expected: expected, actual: detail.flatMap { Int64($0) } ?? -1)
        case .alone:
            return try await appendAlone(to: stream, expected: expected, events: events)
        }
    }

    /// The earlier result of an append whose events are all stored in `stream`, or nil.
    private func storedAppend(of events: [NewEvent], in stream: StreamID) async throws -> AppendResult? {
        let query: PostgresQuery = """
            SELECT position, stream_version, stream_id FROM events WHERE event_id = ANY(\(events.map(\.id))) ORDER BY position
            """
        var positions: [Int64] = []
        var version: Int64 = 0
        do {
            for try await (position, streamVersion, storedStream) in try await client.query(query, logger: logger).decode((Int64, Int64, String).self) {
                guard storedStream == stream.description else {
                    throw EventStoreError.eventIDReused(stream: stream, detail: "an event id is stored in \(storedStream)")
                }
                positions.append(position)
                version = max(version, streamVersion)
            }
        } catch let error as EventStoreError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: "look up stored events of \(stream)")
        }
        if positions.isEmpty { return nil }
        guard positions.count == events.count else {
            throw EventStoreError.eventIDReused(stream: stream, detail: "\(positions.count) of \(events.count) event ids are stored already")
        }
        return AppendResult(positions: positions, streamVersion: version, alreadyStored: true)
    }

    public func readStream(_ stream: StreamID, from version: Int64, direction: ReadDirection, limit: Int) async throws -> [RecordedEvent] {
        let query: PostgresQuery = switch direction {
        case .forward:
            "SELECT \(unescaped: Self.columns) FROM events WHERE stream_id = \(stream.description) AND stream_version >= \(version) ORDER BY stream_version LIMIT \(limit)"
        case .backward:
            "SELECT \(unescaped: Self.columns) FROM events WHERE stream_id = \(stream.description) AND stream_version <= \(version) ORDER BY stream_version DESC LIMIT \(limit)"
        }
        return try await fetch(query, doing: "read \(stream)")
    }

    public func readAll(after position: LogPosition, limit: Int) async throws -> [RecordedEvent] {
        // Rows of transactions at or above the snapshot's xmin are left for a later read: one of
        // those transactions may still commit events that sort before them.
        let query: PostgresQuery = """
            SELECT \(unescaped: Self.columns) FROM events
             WHERE (transaction_id, position) > (\(position.transaction), \(position.position))
               AND transaction_id < log_horizon()
             ORDER BY transaction_id, position
             LIMIT \(limit)
            """
        return try await fetch(query, doing: "read the log")
    }

    /// ``readAll(after:limit:)`` as a read model folds it: the same events in the same order,
    /// without what no read model reads, so that a rebuild decodes only what it needs — a stage's
    /// outputs and a check's context are left out of their payloads (the codec reads both as
    /// empty), and of the metadata only the actor is kept.
    public func readAllForFolding(after position: LogPosition, limit: Int) async throws -> [RecordedEvent] {
        let query: PostgresQuery = """
            SELECT position, transaction_id, event_id, stream_id, stream_version, event_type, schema_version, recorded_at,
                   CASE event_type WHEN 'execution.stage.completed' THEN (payload - 'outputs')::text
                                   WHEN 'execution.stage.progressed' THEN (payload - 'context')::text
                                   ELSE payload::text END,
                   metadata->>'actor'
              FROM events
             WHERE (transaction_id, position) > (\(position.transaction), \(position.position))
               AND transaction_id < log_horizon()
             ORDER BY transaction_id, position
             LIMIT \(limit)
            """
        do {
            var events: [RecordedEvent] = []
            events.reserveCapacity(limit)
            let rows = try await client.query(query, logger: logger)
            for try await row in rows.decode((Int64, Int64, UUID, String, Int64, String, Int32, Date, String, String?).self) {
                let (position, transaction, id, stream, version, type, schemaVersion, recordedAt, payload, actor) = row
                events.append(RecordedEvent(
                    id: id, streamID: try StreamID(stream), streamVersion: version,
                    logPosition: LogPosition(transaction: transaction, position: position), type: type,
                    schemaVersion: Int(schemaVersion), recordedAt: recordedAt, payload: JSONText(unchecked: payload),
                    metadata: EventMetadata(actor: actor)))
            }
            return events
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the log for the read models")
        }
    }

    public func logPosition(before position: Int64) async throws -> LogPosition {
        if position <= 1 { return .start }
        let query: PostgresQuery = "SELECT transaction_id, position FROM events WHERE position = \(position)"
        do {
            for try await (transaction, found) in try await client.query(query, logger: logger).decode((Int64, Int64).self) {
                return LogPosition(transaction: transaction, position: found - 1)
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "look up position \(position)")
        }
        throw EventStoreError.unknownPosition(position)
    }

    /// The log position of the event at global `position` (0: the start of the log); throws
    /// ``EventStoreError/unknownPosition(_:)`` when no event has it.
    public func logPosition(of position: Int64) async throws -> LogPosition {
        if position <= 0 { return .start }
        let query: PostgresQuery = "SELECT transaction_id FROM events WHERE position = \(position)"
        do {
            for try await transaction in try await client.query(query, logger: logger).decode(Int64.self) {
                return LogPosition(transaction: transaction, position: position)
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "look up position \(position)")
        }
        throw EventStoreError.unknownPosition(position)
    }

    /// Where a live follower starts: after every event committed now.
    ///
    /// Events committed above the oldest open transaction are committed but not yet readable in
    /// log order; they are returned as `alreadyCommitted` so that the follower skips them when the
    /// log reaches them, while transactions still open now show up when they commit.
    public func liveStart() async throws -> (position: LogPosition, alreadyCommitted: Set<UUID>) {
        do {
            return try await client.withConnection { connection in
                // One snapshot for both reads.
                try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    var head = LogPosition.start
                    for try await (transaction, position) in try await connection.query("""
                        SELECT transaction_id, position FROM events
                         WHERE transaction_id < log_horizon()
                         ORDER BY transaction_id DESC, position DESC LIMIT 1
                        """, logger: logger).decode((Int64, Int64).self) {
                        head = LogPosition(transaction: transaction, position: position)
                    }
                    var committed: Set<UUID> = []
                    for try await id in try await connection.query("""
                        SELECT event_id FROM events WHERE (transaction_id, position) > (\(head.transaction), \(head.position))
                        """, logger: logger).decode(UUID.self) {
                        committed.insert(id)
                    }
                    try await connection.query("COMMIT", logger: logger)
                    return (head, committed)
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "find the head of the log")
        }
    }

    /// Events selected by a query of the caller's that returns ``columns`` (for read models and
    /// the audit log, which filter on more than streams and positions).
    public func events(_ query: PostgresQuery, doing action: String) async throws -> [RecordedEvent] {
        try await fetch(query, doing: action)
    }

    public static let columns = """
        position, transaction_id, event_id, stream_id, stream_version, event_type, schema_version, \
        recorded_at, payload::text, metadata::text
        """

    private func fetch(_ query: PostgresQuery, doing action: String) async throws -> [RecordedEvent] {
        do {
            var events: [RecordedEvent] = []
            let rows = try await client.query(query, logger: logger)
            for try await row in rows.decode((Int64, Int64, UUID, String, Int64, String, Int32, Date, String, String).self) {
                let (position, transaction, id, stream, version, type, schemaVersion, recordedAt, payload, metadata) = row
                events.append(RecordedEvent(
                    id: id,
                    streamID: try StreamID(stream),
                    streamVersion: version,
                    logPosition: LogPosition(transaction: transaction, position: position),
                    type: type,
                    schemaVersion: Int(schemaVersion),
                    recordedAt: recordedAt,
                    payload: JSONText(unchecked: payload),
                    metadata: try EventEnvelopeCodec.decodeMetadata(metadata)
                ))
            }
            return events
        } catch {
            throw DatabaseError.wrapping(error, doing: action)
        }
    }
}
