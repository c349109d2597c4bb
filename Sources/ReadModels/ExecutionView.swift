import Access
import EventLog
import Expressions
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Logging
import PostgresEventStore
import PostgresNIO

/// An execution as JSON for people and programs (the CLI's `--json`, the API): status, trigger,
/// times, and each stage's status and outputs. Field names follow Spinnaker's where it has them.
public struct ExecutionView: Encodable, Sendable {
    public struct Stage: Encodable, Sendable {
        public let refId: String
        public let name: String
        public let type: String
        public let status: String
        public let attempt: Int
        public let startTime: Date?
        public let endTime: Date?
        public let outputs: [String: JSONValue]
        /// The stages this one waits for (the graph's edges).
        public let requisiteStageRefIds: [String]
        /// The stage's own configuration (its fields as saved), for showing what it was asked to do.
        public let context: JSONValue
    }

    public let id: String
    public let status: String
    public let application: String?
    public let pipeline: String?
    public let pipelineConfigId: String?
    public let trigger: JSONValue
    public let parameters: [String: JSONValue]
    public let buildTime: Date?
    public let startTime: Date?
    public let endTime: Date?
    public let stages: [Stage]
    /// How many events the execution's stream holds: its version, which replay steps through.
    public let version: Int64
    /// The outcome of every notification the execution called for (`notification.sent` or
    /// `notification.failed`), when asked for.
    public var notifications: [JSONValue]?

    /// The view of a folded execution; times come with a fold of the recorded events.
    public init(id: String, state: ExecutionState, summary: ExecutionSummary? = nil) {
        self.id = id
        status = state.status.rawValue
        application = state.pipeline.application
        pipeline = state.pipeline.name
        pipelineConfigId = state.pipeline.id
        trigger = state.trigger
        parameters = state.parameters
        buildTime = summary?.triggeredAt
        startTime = summary?.startedAt
        endTime = summary?.completedAt
        let times = Dictionary((summary?.stages ?? []).map { ($0.refID, $0) }, uniquingKeysWith: { $1 })
        stages = state.graph.order.map { ref in
            let stage = state.stage(ref)
            let config = state.config(ref)
            return Stage(refId: ref, name: config?.name ?? ref, type: config?.type ?? "", status: stage.status.rawValue,
                         attempt: stage.attempt, startTime: times[ref]?.startedAt, endTime: times[ref]?.completedAt, outputs: stage.outputs,
                         requisiteStageRefIds: config?.requisiteStageRefIDs ?? [], context: config.map { .object($0.json) } ?? .null)
        }
        version = state.version
    }

    /// The view of a folded summary (which holds the state too).
    public init(id: String, fold: ExecutionSummaryFold) {
        self.init(id: id, state: fold.state, summary: fold.summary)
    }

    public func jsonText(pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

extension ExecutionRepository {
    /// The execution with its times, folded from the log (through its `through`-th event, when
    /// given: as it stood then); nil when there is none.
    public func view(_ executionID: String, through: Int64? = nil) async throws -> ExecutionView? {
        guard let stream = try? Self.streamID(executionID) else { return nil }
        var fold = ExecutionSummaryFold()
        var next: Int64 = 1
        while true {
            let batch = try await eventStore.readStream(stream, from: next, direction: .forward, limit: 500)
            for event in batch where through.map({ event.streamVersion <= $0 }) ?? true { try fold.apply(event) }
            guard let last = batch.last, batch.count == 500, through.map({ last.streamVersion < $0 }) ?? true else { break }
            next = last.streamVersion + 1
        }
        return fold.version == 0 ? nil : ExecutionView(id: executionID, fold: fold)
    }
}

extension ExecutionRepository {
    /// The execution's own events in order (its timeline), after stream version `after`.
    public func timeline(_ executionID: String, after: Int64 = 0, limit: Int = 100) async throws -> [AuditLog.Entry] {
        guard let stream = try? Self.streamID(executionID) else { return [] }
        return try await eventStore.readStream(stream, from: after + 1, direction: .forward, limit: limit).map(AuditLog.Entry.init)
    }

    /// Evaluates a `${…}` expression (or a text with several) against the execution as its
    /// stages see it now: `execution`, `trigger`, `parameters`, `#stage(…)`. Nil when there is
    /// no such execution; an expression that fails throws its ``ExpressionError``.
    public func evaluate(_ expression: String, executionID: String) async throws -> JSONValue? {
        guard (try? Self.streamID(executionID)) != nil else { return nil }
        let state = try await load(executionID)
        guard state.version > 0 else { return nil }
        let evaluator = ExpressionEvaluator(context: ExpressionScope.context(executionID: executionID, state: state))
        return try Template.evaluate(expression, with: evaluator)
    }
}

/// The recorded outcomes of an execution's notifications, oldest first.
public struct NotificationOutcomes: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func of(_ executionID: String) async throws -> [JSONValue] {
        var outcomes: [JSONValue] = []
        do {
            for try await (type, payload, time) in try await client.query("""
                SELECT event_type, payload::text, recorded_at FROM events
                 WHERE event_type IN ('notification.sent', 'notification.failed') AND metadata->>'correlationId' = \(executionID)
                 ORDER BY transaction_id, position LIMIT 1000
                """, logger: logger).decode((String, String, Date).self) {
                var fields = try JSONText(payload).decode(JSONValue.self).objectValue ?? [:]
                fields["outcome"] = .string(type == "notification.sent" ? "sent" : "failed")
                fields["time"] = .string(time.formatted(Date.ISO8601FormatStyle()))
                outcomes.append(.object(fields))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read an execution's notifications")
        }
        return outcomes
    }
}
