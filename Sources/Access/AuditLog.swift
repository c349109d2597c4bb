import EventLog
import Foundation
import Logging
import PostgresEventStore
import PostgresNIO

/// Who did what: the log's events filtered by actor, application, event type and time, in log
/// order, paged by global position. Every change is an event carrying its actor, source,
/// correlation and causation ids, so the audit log is a query, not a second record.
public struct AuditLog: Sendable {
    public struct Filter: Sendable {
        public var actor: String?
        public var application: String?
        /// An event type, or a prefix ending in `*` (`execution.*`).
        public var type: String?
        public var since: Date?
        public var until: Date?
        /// Events after this global position (the `next` of the previous page).
        public var after: Int64 = 0
        public var limit = 100
        /// Also the engine's own events (orchestrator, worker, scheduler); by default only what
        /// people and programs did.
        public var includeSystem = false

        public init() {}
    }

    /// An event with the application it concerns.
    public struct Entry: Sendable, Encodable {
        public let position: Int64
        public let id: String
        public let stream: String
        public let version: Int64
        public let type: String
        public let time: Date
        public let actor: String?
        public let source: String?
        public let correlationId: String?
        public let causationId: String?
        public let data: JSONValue

        /// The entry for one recorded event.
        public init(_ event: RecordedEvent) throws {
            position = event.position
            id = event.id.uuidString.lowercased()
            stream = event.streamID.description
            version = event.streamVersion
            type = event.type
            time = event.recordedAt
            actor = event.metadata.actor
            source = event.metadata.source
            correlationId = event.metadata.correlationID
            causationId = event.metadata.causationID
            data = try event.payload.decode(JSONValue.self)
        }
    }

    public static let systemSources = ["orchestrator", "worker", "scheduler", "relay", "pipeline-stage"]

    /// Written out literally (not bound) so that the planner can use the partial index
    /// `events_by_people` of migration 0010, whose predicate it repeats.
    static let peoplePredicate = "AND COALESCE(metadata->>'source', '') NOT IN ("
        + systemSources.map { "'\($0)'" }.joined(separator: ", ") + ")"

    let store: PostgresEventStore

    /// The query of one page after `start` (`topsail bench lookups` explains it).
    public static func query(_ filter: Filter, after start: LogPosition) -> PostgresQuery {
        let typePattern = filter.type.map { $0.hasSuffix("*") ? String($0.dropLast()) + "%" : $0 }
        return """
            SELECT \(unescaped: PostgresEventStore.columns) FROM events
             WHERE (transaction_id, position) > (\(start.transaction), \(start.position))
               AND transaction_id < log_horizon()
               AND (\(filter.actor)::text IS NULL OR metadata->>'actor' = \(filter.actor))
               AND (\(typePattern)::text IS NULL OR event_type LIKE \(typePattern))
               AND (\(filter.since)::timestamptz IS NULL OR recorded_at >= \(filter.since))
               AND (\(filter.until)::timestamptz IS NULL OR recorded_at < \(filter.until))
               \(unescaped: filter.includeSystem ? "" : Self.peoplePredicate)
               AND (\(filter.application)::text IS NULL OR \(filter.application) = COALESCE(
                     (SELECT application FROM execution_summaries
                       WHERE stream_id LIKE 'execution-%' AND execution_id = substring(stream_id FROM 11)),
                     payload->'pipeline'->>'application',
                     CASE WHEN stream_id LIKE 'application-%' THEN substring(stream_id FROM 13) END))
             ORDER BY transaction_id, position
             LIMIT \(filter.limit)
            """
    }

    public init(client: PostgresClient, logger: Logger) {
        store = PostgresEventStore(client: client, logger: logger)
    }

    /// One page of entries and the position to continue after (nil at the end).
    public func page(_ filter: Filter) async throws -> (entries: [Entry], next: Int64?) {
        // In log order below the oldest open writer, as every reader of the log pages
        // (decision 0001): a page never passes an event that commits late. The cursor is the
        // global position of the last entry seen; its place in log order is looked up.
        let start = try await store.logPosition(of: filter.after)
        let events = try await store.events(Self.query(filter, after: start), doing: "read the audit log")
        let entries = try events.map(Entry.init)
        return (entries, entries.count == filter.limit ? entries.last?.position : nil)
    }
}
