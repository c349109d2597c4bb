import Access
import EventLog
import Foundation
import Logging
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO

/// The executions read model (`migrations/0004_execution_read_model.sql`): fast queries over
/// execution and stage statuses. The log stays the truth; these rows lag it by the projector's
/// poll and can be rebuilt from it at any time.
public struct ExecutionReadModel: Sendable {
    public static let projection = "executions"

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public struct Filter: Sendable {
        public var application: String?
        public var pipelineName: String?
        public var pipelineID: String?
        public var statuses: [ExecutionStatus] = []
        public var limit = 20
        /// Keyset paging: executions triggered before this one (its id) in the listing's order.
        public var after: String?

        public init(application: String? = nil, pipelineName: String? = nil, statuses: [ExecutionStatus] = [], limit: Int = 20) {
            self.application = application
            self.pipelineName = pipelineName
            self.statuses = statuses
            self.limit = limit
        }
    }

    static let summaryColumns = """
        execution_id, application, pipeline_name, pipeline_id, status, trigger_type, triggered_by,
        triggered_at, started_at, completed_at, updated_at, stream_version
        """

    /// Executions matching `filter`, newest first, without their stages.
    public func list(_ filter: Filter) async throws -> [ExecutionSummary] {
        let statuses = filter.statuses.map(\.rawValue)
        let query: PostgresQuery = """
            SELECT \(unescaped: Self.summaryColumns) FROM execution_summaries s
             WHERE (\(filter.application)::text IS NULL OR application = \(filter.application))
               AND (\(filter.pipelineName)::text IS NULL OR pipeline_name = \(filter.pipelineName))
               AND (\(filter.pipelineID)::text IS NULL OR pipeline_id = \(filter.pipelineID))
               AND (cardinality(\(statuses)::text[]) = 0 OR status = ANY(\(statuses)::text[]))
               AND (\(filter.after)::text IS NULL OR (triggered_at, execution_id) <
                    (SELECT triggered_at, execution_id FROM execution_summaries WHERE execution_id = \(filter.after)))
             ORDER BY triggered_at DESC, execution_id DESC
             LIMIT \(filter.limit)
            """
        return try await summaries(query, doing: "list executions")
    }

    /// One execution with its stages, or nil when the read model does not know it (yet).
    public func get(_ executionID: String) async throws -> ExecutionSummary? {
        guard var summary = try await summaries(
            "SELECT \(unescaped: Self.summaryColumns) FROM execution_summaries WHERE execution_id = \(executionID)", doing: "read an execution"
        ).first else { return nil }
        do {
            let rows = try await client.query("""
                SELECT ref_id, name, type, status, attempt, started_at, completed_at FROM stage_summaries
                 WHERE execution_id = \(executionID) ORDER BY stage_order
                """, logger: logger)
            for try await (ref, name, type, status, attempt, startedAt, completedAt) in rows.decode(
                (String, String?, String?, String, Int, Date?, Date?).self
            ) {
                summary.stages.append(ExecutionSummary.Stage(
                    refID: ref, name: name, type: type, status: ExecutionStatus(rawValue: status) ?? .notStarted, attempt: attempt,
                    startedAt: startedAt, completedAt: completedAt))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read an execution's stages")
        }
        return summary
    }

    /// Counts of executions per status (for the supervisor and operators).
    public func countByStatus() async throws -> [ExecutionStatus: Int] {
        var counts: [ExecutionStatus: Int] = [:]
        do {
            let rows = try await client.query("SELECT status, count(*)::int FROM execution_summaries GROUP BY status", logger: logger)
            for try await (status, count) in rows.decode((String, Int).self) {
                if let status = ExecutionStatus(rawValue: status) { counts[status] = count }
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "count executions")
        }
        return counts
    }

    private func summaries(_ query: PostgresQuery, doing action: String) async throws -> [ExecutionSummary] {
        var result: [ExecutionSummary] = []
        do {
            let rows = try await client.query(query, logger: logger)
            for try await (id, application, name, pipelineID, status, triggerType, triggeredBy, triggeredAt, startedAt, completedAt, updatedAt, version)
                in rows.decode((String, String?, String?, String?, String, String?, String?, Date, Date?, Date?, Date, Int64).self) {
                result.append(ExecutionSummary(
                    id: id, application: application, pipelineName: name, pipelineID: pipelineID,
                    status: ExecutionStatus(rawValue: status) ?? .notStarted, triggerType: triggerType, triggeredBy: triggeredBy,
                    triggeredAt: triggeredAt, startedAt: startedAt, completedAt: completedAt, updatedAt: updatedAt, version: version,
                    stages: []))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: action)
        }
        return result
    }
}

/// Saved pipelines as the projector keeps them (`pipeline_configs`): listings by application.
public struct PipelineConfigReadModel: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The application's pipelines (not deleted), by name, each its latest configuration.
    public func list(application: String) async throws -> [JSONValue] {
        try await configs("""
            SELECT config::text FROM pipeline_configs WHERE application = \(application) AND NOT deleted ORDER BY name, pipeline_id
            """)
    }

    private func configs(_ query: PostgresQuery) async throws -> [JSONValue] {
        try await jsonDocuments(query, client: client, logger: logger, doing: "list pipelines")
    }
}

/// The JSON documents a query returns as its one text column.
func jsonDocuments(_ query: PostgresQuery, client: PostgresClient, logger: Logger, doing action: String) async throws -> [JSONValue] {
    var result: [JSONValue] = []
    do {
        for try await text in try await client.query(query, logger: logger).decode(String.self) {
            result.append(try JSONText(unchecked: text).decode(JSONValue.self))
        }
    } catch let error as DatabaseError {
        throw error
    } catch {
        throw DatabaseError.wrapping(error, doing: action)
    }
    return result
}

/// Applications as the projector keeps them (`applications`).
public struct ApplicationReadModel: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Every application not deleted, by name, each with its version.
    public func list() async throws -> [JSONValue] {
        try await jsonDocuments(
            "SELECT (config || jsonb_build_object('version', version))::text FROM applications WHERE NOT deleted ORDER BY name",
            client: client, logger: logger, doing: "list applications")
    }
}
