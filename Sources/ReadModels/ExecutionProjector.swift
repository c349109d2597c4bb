import Access
import EventLog
import Foundation
import Logging
import Orchestration
import PipelineEngine
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle

/// The `projector` role for executions: follows the log (gap-free, in commit order) and keeps
/// `execution_summaries` and `stage_summaries` current. Rows and the checkpoint move in one
/// transaction, so every event is projected exactly once; the checkpoint row is locked while a
/// batch is written, so several projectors may run (one advances at a time) and a rebuild that
/// resets the checkpoint is noticed by a running projector, which starts over with it.
public final class ExecutionProjector: Service {
    let client: PostgresClient
    let store: PostgresEventStore
    let logger: Logger
    let batchSize: Int
    let pollInterval: Duration
    private let folds: BoundedCache<String, ExecutionSummaryFold>

    /// Events per batch when replaying the whole log: fewer, larger transactions.
    public static let rebuildBatchSize = 5_000

    public init(client: PostgresClient, logger: Logger, batchSize: Int = 500, pollInterval: Duration = .milliseconds(50), cacheCapacity: Int = 10_000) {
        self.client = client
        self.store = PostgresEventStore(client: client, logger: logger)
        self.logger = logger
        self.batchSize = batchSize
        self.pollInterval = pollInterval
        self.folds = BoundedCache(capacity: cacheCapacity)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var position: LogPosition?
            var backoff = Backoff(maximum: .seconds(5))
            while !Task.isCancelled {
                do {
                    let start: LogPosition
                    if let position { start = position } else { start = try await self.checkpoint() }
                    let step = try await self.project(after: start)
                    position = step.position
                    backoff.reset()
                    if step.events == 0 { try await Task.sleep(for: self.pollInterval) }
                } catch is CancellationError where Task.isCancelled {
                    // This task was cancelled: the role is stopping. (A CancellationError from a
                    // dependency while it goes on is a failure like any other, retried below.)
                    return
                } catch {
                    self.logger.warning("projecting executions failed; retrying", metadata: ["error": "\(error)"])
                    position = nil
                    try? await Task.sleep(for: backoff.next())
                }
            }
        }
    }

    /// Projects until the log's readable end; returns how many events it read. For rebuilds and
    /// tests; `progress` hears the running count. The next batch is read while the current one
    /// is folded and written, so the database's time and the fold's overlap.
    public func catchUp(progress: @Sendable (Int) -> Void = { _ in }) async throws -> Int {
        var position = try await checkpoint()
        var total = 0
        var batch = try await store.readAllForFolding(after: position, limit: batchSize)
        while let last = batch.last {
            let (step, next) = try await withThrowingTaskGroup(of: [RecordedEvent].self) { group in
                group.addTask { [store, batchSize] in try await store.readAllForFolding(after: last.logPosition, limit: batchSize) }
                let step = try await self.apply(batch, after: position)
                guard step.position == last.logPosition else {
                    // Someone else moved the checkpoint: what was read ahead may not follow it.
                    group.cancelAll()
                    return (step, [RecordedEvent]?.none)
                }
                return (step, try await group.next() ?? [])
            }
            total += step.events
            position = step.position
            progress(total)
            if let next { batch = next } else { batch = try await store.readAllForFolding(after: position, limit: batchSize) }
        }
        return total
    }

    /// How many committed events the read model has not taken in yet.
    public func lag() async throws -> Int {
        let at = try await checkpoint()
        do {
            for try await count in try await client.query("""
                SELECT count(*)::int FROM events WHERE (transaction_id, position) > (\(at.transaction), \(at.position))
                """, logger: logger).decode(Int.self) {
                return count
            }
            return 0
        } catch {
            throw DatabaseError.wrapping(error, doing: "measure the projection's lag")
        }
    }

    /// The stored checkpoint (the log's start when there is none).
    func checkpoint() async throws -> LogPosition {
        do {
            let rows = try await client.query(
                "SELECT transaction_id, position FROM projection_checkpoints WHERE projection = \(ExecutionReadModel.projection)",
                logger: logger)
            for try await (transaction, position) in rows.decode((Int64, Int64).self) {
                return LogPosition(transaction: transaction, position: position)
            }
            return .start
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the projection checkpoint")
        }
    }

    /// Reads one batch after `position` and writes what it changes. Returns where the projection
    /// now is: after the batch, or wherever the stored checkpoint says when another projector or
    /// a rebuild moved it.
    func project(after position: LogPosition) async throws -> (events: Int, position: LogPosition) {
        try await apply(try await store.readAllForFolding(after: position, limit: batchSize), after: position)
    }

    /// Folds and writes a batch read after `position`.
    private func apply(_ batch: [RecordedEvent], after position: LogPosition) async throws -> (events: Int, position: LogPosition) {
        guard let last = batch.last else { return (0, position) }
        var touched: [String: ExecutionSummaryFold] = [:]
        // The last event of a document in the batch is its latest version.
        var configs: [String: JSONValue] = [:]
        var applications: [String: JSONValue] = [:]
        var serverGroups: [String: JSONValue] = [:]
        var resources: [String: JSONValue] = [:]
        for event in batch {
            switch event.streamID.category {
            case PipelineConfigStore.category: configs[event.streamID.id] = try Self.configRow(event)
            case ApplicationStore.category: applications[event.streamID.id] = try Self.applicationRow(event)
            case Self.serverGroupCategory: if let row = try Self.serverGroupRow(event) { serverGroups[event.streamID.description] = row }
            case "loadbalancer", "securitygroup": if let row = try Self.resourceRow(event) { resources[event.streamID.description] = row }
            default: break
            }
        }
        for event in batch where event.streamID.category == ExecutionRepository.category {
            let id = event.streamID.id
            var fold = touched[id] ?? folds.remove(id) ?? ExecutionSummaryFold()
            if fold.version < event.streamVersion - 1 {
                // Not cached (evicted, or a projector that started mid-log): fold the stream's
                // earlier events first.
                fold = ExecutionSummaryFold()
                for earlier in try await store.readStream(event.streamID, from: 1, direction: .forward, limit: Int(event.streamVersion - 1)) {
                    try fold.apply(earlier)
                }
            }
            if fold.version == event.streamVersion - 1 { try fold.apply(event) }
            touched[id] = fold
        }
        let summaries = touched.values.compactMap(\.summary)
        let moved: LogPosition? = try await write(summaries, configs: Array(configs.values), applications: Array(applications.values),
                                                 serverGroups: Array(serverGroups.values), resources: Array(resources.values), from: position, to: last.logPosition)
        if let moved {
            // Someone else moved the checkpoint: what this batch folded may not match it.
            folds.removeAll()
            return (0, moved)
        }
        for (id, fold) in touched { folds.set(fold, for: id) }
        return (batch.count, last.logPosition)
    }

    /// Writes the rows and moves the checkpoint from `from` to `to` in one transaction. Returns
    /// the stored checkpoint instead, writing nothing, when it is not at `from`.
    private func write(
        _ summaries: [ExecutionSummary], configs: [JSONValue], applications: [JSONValue], serverGroups: [JSONValue], resources: [JSONValue], from: LogPosition, to: LogPosition
    ) async throws -> LogPosition? {
        let name = ExecutionReadModel.projection
        let logger = self.logger
        return try await client.transaction(logger: logger, doing: "write the executions read model") { connection in
            try await connection.query("""
                INSERT INTO projection_checkpoints (projection, transaction_id, position) VALUES (\(name), 0, 0)
                ON CONFLICT (projection) DO NOTHING
                """, logger: logger)
            var stored = LogPosition.start
            for try await (transaction, position) in try await connection.query(
                "SELECT transaction_id, position FROM projection_checkpoints WHERE projection = \(name) FOR UPDATE", logger: logger
            ).decode((Int64, Int64).self) {
                stored = LogPosition(transaction: transaction, position: position)
            }
            // Moved by another projector or a rebuild: write nothing (committing only the
            // checkpoint row's creation, which is what it would be anyway).
            guard stored == from else { return stored }
            if !summaries.isEmpty {
                let (executions, stages) = try Self.rows(summaries)
                try await connection.query("""
                    INSERT INTO execution_summaries (\(unescaped: ExecutionReadModel.summaryColumns))
                    SELECT execution_id, application, pipeline_name, pipeline_id, status, trigger_type, triggered_by,
                           \(unescaped: Self.timestamp("triggered_at")), \(unescaped: Self.timestamp("started_at")),
                           \(unescaped: Self.timestamp("completed_at")), \(unescaped: Self.timestamp("updated_at")), stream_version
                      FROM jsonb_to_recordset(\(executions)::jsonb) AS r(
                           execution_id text, application text, pipeline_name text, pipeline_id text, status text,
                           trigger_type text, triggered_by text, triggered_at bigint, started_at bigint,
                           completed_at bigint, updated_at bigint, stream_version bigint)
                    ON CONFLICT (execution_id) DO UPDATE SET
                        status = EXCLUDED.status, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
                        updated_at = EXCLUDED.updated_at, stream_version = EXCLUDED.stream_version
                    """, logger: logger)
                try await connection.query("""
                    INSERT INTO stage_summaries (execution_id, ref_id, stage_order, name, type, status, attempt, started_at, completed_at)
                    SELECT execution_id, ref_id, stage_order, name, type, status, attempt,
                           \(unescaped: Self.timestamp("started_at")), \(unescaped: Self.timestamp("completed_at"))
                      FROM jsonb_to_recordset(\(stages)::jsonb) AS r(
                           execution_id text, ref_id text, stage_order integer, name text, type text, status text,
                           attempt integer, started_at bigint, completed_at bigint)
                    ON CONFLICT (execution_id, ref_id) DO UPDATE SET
                        status = EXCLUDED.status, attempt = EXCLUDED.attempt, started_at = EXCLUDED.started_at,
                        completed_at = EXCLUDED.completed_at
                    """, logger: logger)
            }
            if !configs.isEmpty {
                let rows = try JSONText(encoding: JSONValue.array(configs)).text
                try await connection.query("""
                    INSERT INTO pipeline_configs (pipeline_id, application, name, version, disabled, deleted, config, updated_at, updated_by)
                    SELECT pipeline_id, application, name, version, disabled, deleted, config, updated_at, updated_by
                      FROM jsonb_to_recordset(\(rows)::jsonb) AS r(
                           pipeline_id text, application text, name text, version bigint, disabled boolean, deleted boolean,
                           config jsonb, updated_at timestamptz, updated_by text)
                    ON CONFLICT (pipeline_id) DO UPDATE SET
                        application = COALESCE(EXCLUDED.application, pipeline_configs.application),
                        name = COALESCE(EXCLUDED.name, pipeline_configs.name), version = EXCLUDED.version,
                        disabled = EXCLUDED.disabled, deleted = EXCLUDED.deleted, config = COALESCE(EXCLUDED.config, pipeline_configs.config),
                        updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
                    """, logger: logger)
            }
            if !applications.isEmpty {
                let rows = try JSONText(encoding: JSONValue.array(applications)).text
                try await connection.query("""
                    INSERT INTO applications (name, version, deleted, config, updated_at, updated_by)
                    SELECT name, version, deleted, config, updated_at, updated_by
                      FROM jsonb_to_recordset(\(rows)::jsonb) AS r(
                           name text, version bigint, deleted boolean, config jsonb, updated_at timestamptz, updated_by text)
                    ON CONFLICT (name) DO UPDATE SET
                        version = EXCLUDED.version, deleted = EXCLUDED.deleted, config = COALESCE(EXCLUDED.config, applications.config),
                        updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
                    """, logger: logger)
            }
            if !serverGroups.isEmpty {
                let rows = try JSONText(encoding: JSONValue.array(serverGroups)).text
                try await connection.query("""
                    INSERT INTO server_groups (stream_id, account, region, name, application, cluster, image, capacity, instances, destroyed,
                                               disabled, load_balancers, version, updated_at)
                    SELECT stream_id, account, region, name, application, cluster, image, capacity, coalesce(instances, '[]'), destroyed,
                           coalesce(disabled, false), coalesce(load_balancers, '[]'), version, updated_at
                      FROM jsonb_to_recordset(\(rows)::jsonb) AS r(
                           stream_id text, account text, region text, name text, application text, cluster text, image text,
                           capacity jsonb, instances jsonb, destroyed boolean, disabled boolean, load_balancers jsonb, version bigint, updated_at timestamptz)
                    ON CONFLICT (stream_id) DO UPDATE SET
                        image = coalesce(EXCLUDED.image, server_groups.image), capacity = coalesce(EXCLUDED.capacity, server_groups.capacity),
                        instances = EXCLUDED.instances, destroyed = EXCLUDED.destroyed, disabled = EXCLUDED.disabled,
                        load_balancers = EXCLUDED.load_balancers, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
                    """, logger: logger)
            }
            if !resources.isEmpty {
                let rows = try JSONText(encoding: JSONValue.array(resources)).text
                try await connection.query("""
                    INSERT INTO cloud_resources (stream_id, kind, account, region, name, document, deleted, version, updated_at)
                    SELECT stream_id, kind, account, region, name, document, deleted, version, updated_at
                      FROM jsonb_to_recordset(\(rows)::jsonb) AS r(
                           stream_id text, kind text, account text, region text, name text, document jsonb, deleted boolean, version bigint, updated_at timestamptz)
                    ON CONFLICT (stream_id) DO UPDATE SET
                        document = EXCLUDED.document, deleted = EXCLUDED.deleted, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
                    """, logger: logger)
            }
            try await connection.query("""
                UPDATE projection_checkpoints SET transaction_id = \(to.transaction), position = \(to.position), updated_at = now()
                 WHERE projection = \(name)
                """, logger: logger)
            return nil
        }
    }

    /// A time as `jsonb_to_recordset` reads it into a timestamptz (microseconds kept).
    /// The timestamp a row's microseconds since the epoch stand for (exact: integer arithmetic).
    static func timestamp(_ column: String) -> String {
        "'epoch'::timestamptz + \(column) * interval '1 microsecond'"
    }

    static func time(_ date: Date?) -> JSONValue {
        date.map { .string($0.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))) } ?? .null
    }

    /// A `pipeline_configs` row for a pipeline's event (a deletion keeps the last configuration).
    static func configRow(_ event: RecordedEvent) throws -> JSONValue {
        let deleted = event.type == PipelineConfigStore.deletedType
        let config = deleted ? nil : try event.payload.decode(JSONValue.self)["pipeline"]
        return [
            "pipeline_id": .string(event.streamID.id), "application": config?["application"] ?? .null, "name": config?["name"] ?? .null,
            "version": .number(Double(event.streamVersion)), "disabled": .bool(config?["disabled"]?.boolValue ?? false), "deleted": .bool(deleted),
            "config": config ?? .null, "updated_at": time(event.recordedAt),
            "updated_by": event.metadata.actor.map(JSONValue.string) ?? .null,
        ]
    }

    static let serverGroupCategory = "servergroup"

    /// A `server_groups` row for a server group's event (`servergroup.upserted` or `.destroyed`).
    static func serverGroupRow(_ event: RecordedEvent) throws -> JSONValue? {
        // Enabling and disabling are followed by the server group's state (`upserted`, with `disabled`).
        guard event.type == "servergroup.upserted" || event.type == "servergroup.destroyed" else { return nil }
        let payload = try event.payload.decode(JSONValue.self)
        guard let account = payload["account"]?.stringValue, let region = payload["region"]?.stringValue,
              let name = payload["serverGroup"]?.stringValue else { return nil }
        let destroyed = event.type == "servergroup.destroyed"
        // Frigga: the application is the name up to its first '-', the cluster the name without its -vNNN.
        let application = payload["application"]?.stringValue ?? String(name.prefix { $0 != "-" })
        let cluster = payload["cluster"]?.stringValue ?? (name.range(of: #"-v\d{3}$"#, options: .regularExpression).map { String(name[..<$0.lowerBound]) } ?? name)
        return [
            "stream_id": .string(event.streamID.description), "account": .string(account), "region": .string(region), "name": .string(name),
            "application": .string(application), "cluster": .string(cluster), "image": payload["image"] ?? .null,
            "capacity": payload["capacity"] ?? .null, "instances": destroyed ? .array([]) : payload["instances"] ?? .array([]),
            "destroyed": .bool(destroyed), "disabled": payload["disabled"] ?? .bool(false), "load_balancers": payload["loadBalancers"] ?? .array([]),
            "version": .number(Double(event.streamVersion)), "updated_at": time(event.recordedAt),
        ]
    }

    /// A `cloud_resources` row for a load balancer's or security group's event.
    static func resourceRow(_ event: RecordedEvent) throws -> JSONValue? {
        let kinds = ["loadbalancer.upserted": ("loadBalancer", false), "loadbalancer.deleted": ("loadBalancer", true),
                     "securitygroup.upserted": ("securityGroup", false), "securitygroup.deleted": ("securityGroup", true)]
        guard let (kind, deleted) = kinds[event.type] else { return nil }
        let payload = try event.payload.decode(JSONValue.self)
        guard let account = payload["account"]?.stringValue, let region = payload["region"]?.stringValue,
              let name = payload[kind]?.stringValue else { return nil }
        return [
            "stream_id": .string(event.streamID.description), "kind": .string(kind), "account": .string(account), "region": .string(region),
            "name": .string(name), "document": payload, "deleted": .bool(deleted), "version": .number(Double(event.streamVersion)),
            "updated_at": time(event.recordedAt),
        ]
    }

    /// An `applications` row for an application's event (a deletion keeps the last document).
    static func applicationRow(_ event: RecordedEvent) throws -> JSONValue {
        let deleted = event.type != "\(ApplicationStore.category).saved"
        return [
            "name": .string(event.streamID.id), "version": .number(Double(event.streamVersion)), "deleted": .bool(deleted),
            "config": deleted ? .null : try event.payload.decode(JSONValue.self)[ApplicationStore.category] ?? .null,
            "updated_at": time(event.recordedAt),
            "updated_by": event.metadata.actor.map(JSONValue.string) ?? .null,
        ]
    }

    /// The rows as JSON arrays for `jsonb_to_recordset`: two statements per batch, whatever its size.
    static func rows(_ summaries: [ExecutionSummary]) throws -> (executions: String, stages: String) {
        // Written straight to JSON text (no intermediate values); times as microseconds since
        // the epoch, which the statement turns back into timestamps exactly.
        var executions = JSONWriter(capacity: summaries.count * 400)
        var stages = JSONWriter(capacity: summaries.count * 1_000)
        func field(_ writer: inout JSONWriter, _ name: String, _ value: String?, first: Bool = false) {
            writer.raw(first ? "\"" : ",\"")
            writer.raw(name)
            writer.raw("\":")
            if let value { writer.write(value) } else { writer.raw("null") }
        }
        func field(_ writer: inout JSONWriter, _ name: String, _ value: Int64?) {
            writer.raw(",\"")
            writer.raw(name)
            writer.raw("\":")
            if let value { writer.write(value) } else { writer.raw("null") }
        }
        func micros(_ date: Date?) -> Int64? {
            date.map { Int64(($0.timeIntervalSince1970 * 1_000_000).rounded()) }
        }
        executions.raw("[")
        stages.raw("[")
        var firstStage = true
        for (index, summary) in summaries.enumerated() {
            executions.raw(index == 0 ? "{" : ",{")
            field(&executions, "execution_id", summary.id, first: true)
            field(&executions, "application", summary.application)
            field(&executions, "pipeline_name", summary.pipelineName)
            field(&executions, "pipeline_id", summary.pipelineID)
            field(&executions, "status", summary.status.rawValue)
            field(&executions, "trigger_type", summary.triggerType)
            field(&executions, "triggered_by", summary.triggeredBy)
            field(&executions, "triggered_at", micros(summary.triggeredAt))
            field(&executions, "started_at", micros(summary.startedAt))
            field(&executions, "completed_at", micros(summary.completedAt))
            field(&executions, "updated_at", micros(summary.updatedAt))
            field(&executions, "stream_version", summary.version)
            executions.raw("}")
            for (order, stage) in summary.stages.enumerated() {
                stages.raw(firstStage ? "{" : ",{")
                firstStage = false
                field(&stages, "execution_id", summary.id, first: true)
                field(&stages, "ref_id", stage.refID)
                field(&stages, "stage_order", Int64(order))
                field(&stages, "name", stage.name)
                field(&stages, "type", stage.type)
                field(&stages, "status", stage.status.rawValue)
                field(&stages, "attempt", Int64(stage.attempt))
                field(&stages, "started_at", micros(stage.startedAt))
                field(&stages, "completed_at", micros(stage.completedAt))
                stages.raw("}")
            }
        }
        executions.raw("]")
        stages.raw("]")
        return (executions.text, stages.text)
    }

    /// Empties the read model and its checkpoint: the projector (or ``catchUp(progress:)``)
    /// rebuilds it from the start of the log.
    public static func reset(client: PostgresClient, logger: Logger) async throws {
        try await client.transaction(logger: logger, doing: "reset the executions read model") { connection in
            try await connection.query("TRUNCATE stage_summaries, execution_summaries, pipeline_configs, applications, server_groups, cloud_resources", logger: logger)
            try await connection.query("""
                INSERT INTO projection_checkpoints (projection, transaction_id, position) VALUES (\(ExecutionReadModel.projection), 0, 0)
                ON CONFLICT (projection) DO UPDATE SET transaction_id = 0, position = 0, updated_at = now()
                """, logger: logger)
        }
    }
}
