import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import Logging
import PipelineEngine
import PostgresEventStore
import PostgresNIO

/// The lookups that filter events by type or data, on a large log, with and without the indexes
/// of migration 0010 (dropped inside a transaction that is rolled back: the same data, the same
/// run).
struct BenchLookupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookups",
        abstract: "Plans and timings of the event lookups (pipeline by name, tokens, audit) on a large log, against the same queries without their indexes.",
        discussion: """
            Fills a log of --events events (90% an engine's execution events, the rest pipeline saves, application \
            saves and tokens by 50 users, interleaved in log order), then runs each lookup the code makes with \
            EXPLAIN ANALYZE: the median of three runs with migration 0010's indexes, and again with those indexes \
            dropped inside a transaction that is rolled back. Prints the plan's access paths and both times.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Events in the log.")
    var events: Int = 1_000_000

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (10_000...20_000_000).contains(events) else { throw ValidationError("--events must be 10000…20000000") }
    }

    struct Lookup: Codable {
        var name: String
        var indexedMs: Double
        var withoutIndexesMs: Double
        /// Without the indexes over with them.
        var speedup: Double
        var indexedPlan: String
        var withoutIndexesPlan: String
    }

    struct Result: Codable {
        var events: Int
        var fillSeconds: Double
        var lookups: [Lookup]
    }

    static let indexes = ["events_pipeline_by_name", "events_by_type", "events_by_actor", "events_by_people"]

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let total = events
        let result = try await withBenchSchema(options, logger: logger, connections: 4) { client, _ in
            let began = ContinuousClock.now
            try await Self.fill(client, events: total, logger: logger)
            let fillSeconds = (ContinuousClock.now - began).milliseconds / 1000
            var maxPosition: Int64 = 0
            for try await value in try await client.query("SELECT max(position) FROM events", logger: logger).decode(Int64.self) { maxPosition = value }
            let store = PostgresEventStore(client: client, logger: logger)
            let nearEnd = try await store.logPosition(of: maxPosition - 10_000)
            func audit(_ configure: (inout AuditLog.Filter) -> Void, after start: LogPosition = .start) -> PostgresQuery {
                var filter = AuditLog.Filter()
                configure(&filter)
                return AuditLog.query(filter, after: start)
            }
            let lookups: [(String, PostgresQuery)] = [
                ("pipeline by application and name", PipelineLookup.byNameQuery(application: "app-7", name: "pipe-4207")),
                ("pipelines of an application", PipelineLookup.byApplicationQuery("app-7")),
                ("token listing", TokenListing.query),
                ("audit: one actor, first page", audit { $0.actor = "user-7" }),
                ("audit: type pipeline.*, first page", audit { $0.type = "pipeline.*" }),
                ("audit: people's events, first page", audit { _ in }),
                ("audit: people's events, a page 10,000 events from the end", audit({ _ in }, after: nearEnd)),
                ("audit: one application (no index of its own)", audit { $0.application = "app-7" }),
            ]
            var measured: [Lookup] = []
            for (name, query) in lookups {
                progress("explaining: \(name)")
                let indexed = try await Self.explain(client, query, dropping: [], logger: logger)
                let plain = try await Self.explain(client, query, dropping: Self.indexes, logger: logger)
                measured.append(Lookup(
                    name: name, indexedMs: indexed.milliseconds, withoutIndexesMs: plain.milliseconds,
                    speedup: indexed.milliseconds > 0 ? plain.milliseconds / indexed.milliseconds : 0,
                    indexedPlan: indexed.plan, withoutIndexesPlan: plain.plan))
            }
            return Result(events: total, fillSeconds: fillSeconds, lookups: measured)
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "%d events, filled in %.0f s", result.events, result.fillSeconds))
            for lookup in result.lookups {
                print(String(format: "%@: %.2f ms indexed (%@), %.2f ms without (%@), ×%.1f",
                             lookup.name, lookup.indexedMs, lookup.indexedPlan, lookup.withoutIndexesMs, lookup.withoutIndexesPlan, lookup.speedup))
            }
        }
    }

    /// Fills the log in chunks of 10,000 events, each chunk its own transaction: 9,000 events of
    /// 450 executions (the engine's, 20 each), 500 pipeline saves (5 versions of 100 pipelines in
    /// 200 applications), 400 application saves and 100 tokens, by 50 users.
    static func fill(_ client: PostgresClient, events: Int, logger: Logger) async throws {
        let chunks = max(1, events / 10_000)
        for chunk in 0..<chunks {
            if chunk % 10 == 0 { progress("filling the log: \(chunk * 10_000) of \(chunks * 10_000) events") }
            try await client.query("""
                INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, metadata, hash)
                SELECT gen_random_uuid(), s, v, t, 1, p, m, '\\x'::bytea FROM (
                    SELECT 'execution-c' || \(chunk) || '-' || (k / 20) AS s, (k % 20) + 1 AS v,
                           (ARRAY['execution.triggered', 'execution.started', 'execution.stage.started', 'execution.stage.completed',
                                  'execution.stage.progressed', 'execution.completed'])[(k % 6) + 1] AS t,
                           jsonb_build_object('refId', k % 7, 'status', 'SUCCEEDED') AS p,
                           jsonb_build_object('actor', 'worker', 'source', 'worker') AS m, k AS o
                      FROM generate_series(0, 8999) AS k
                    UNION ALL
                    SELECT 'pipeline-p' || (\(chunk) * 100 + k / 5), (k % 5) + 1, 'pipeline.saved',
                           jsonb_build_object('pipeline', jsonb_build_object('id', 'p' || (\(chunk) * 100 + k / 5),
                               'application', 'app-' || ((\(chunk) * 100 + k / 5) % 200), 'name', 'pipe-' || (\(chunk) * 100 + k / 5),
                               'stages', jsonb_build_array(jsonb_build_object('refId', '1', 'type', 'wait')))),
                           jsonb_build_object('actor', 'user-' || (k % 50), 'source', 'api'), k * 18
                      FROM generate_series(0, 499) AS k
                    UNION ALL
                    SELECT 'application-app-c' || \(chunk) || '-' || (k / 2), (k % 2) + 1, 'application.saved',
                           jsonb_build_object('application', jsonb_build_object('name', 'app-' || k)),
                           jsonb_build_object('actor', 'user-' || (k % 50), 'source', 'api'), k * 22 + 5
                      FROM generate_series(0, 399) AS k
                    UNION ALL
                    SELECT 'token-t' || \(chunk) || '-' || k, 1, 'token.saved',
                           jsonb_build_object('token', jsonb_build_object('user', 'user-' || (k % 50), 'name', 'ci')),
                           jsonb_build_object('actor', 'admin', 'source', 'cli'), k * 90 + 7
                      FROM generate_series(0, 99) AS k
                ) AS rows ORDER BY o
                """, logger: logger)
        }
        progress("analyzing the log")
        try await client.query("ANALYZE events", logger: logger)
    }

    /// The median execution time of three EXPLAIN ANALYZE runs of `query` (after one unmeasured
    /// run), with `dropping` dropped inside a transaction that is rolled back, and the access
    /// paths of its plan.
    static func explain(_ client: PostgresClient, _ query: PostgresQuery, dropping: [String], logger: Logger) async throws -> (milliseconds: Double, plan: String) {
        try await client.withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                for index in dropping { try await connection.query(PostgresQuery(unsafeSQL: "DROP INDEX \(index)"), logger: logger) }
                _ = try await connection.query(query, logger: logger).collect()
                var times: [Double] = []
                var plan = ""
                for _ in 0..<3 {
                    let explained = PostgresQuery(unsafeSQL: "EXPLAIN (ANALYZE, FORMAT JSON) " + query.sql, binds: query.binds)
                    for try await text in try await connection.query(explained, logger: logger).decode(String.self) {
                        let document = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
                        times.append(document.arrayValue?.first?["Execution Time"]?.doubleValue ?? 0)
                        plan = Self.accessPaths(document.arrayValue?.first?["Plan"] ?? .null).joined(separator: ", ")
                    }
                }
                try await connection.query("ROLLBACK", logger: logger)
                return (times.sorted()[times.count / 2], plan)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// How a plan reads its tables: each scan node, with its index when it has one.
    static func accessPaths(_ node: JSONValue) -> [String] {
        var paths: [String] = []
        if let type = node["Node Type"]?.stringValue, type.contains("Scan") {
            let relation = node["Relation Name"]?.stringValue ?? node["Index Name"]?.stringValue ?? ""
            paths.append([type, node["Index Name"]?.stringValue.map { "using \($0)" }, relation.isEmpty ? nil : "on \(relation)"]
                .compactMap { $0 }.joined(separator: " "))
        }
        for child in node["Plans"]?.arrayValue ?? [] { paths += accessPaths(child) }
        return paths
    }
}
