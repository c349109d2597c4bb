import ArgumentParser
import CLISupport
import Processes
import EventLog
import Foundation
import Logging
import PostgresEventStore
import PostgresNIO

struct BenchAppendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Append throughput and latency, against plain INSERTs into an equivalent table in the same run.",
        discussion: """
            Writers append to streams of their own with exact expected versions. The baseline is a \
            table with the same columns and indexes (the hash column filled with a constant) filled by plain multi-row INSERTs through the \
            same driver and pool. The phases alternate (baseline, Topsail, baseline, Topsail) so \
            that drift in the machine's speed falls on both.

            With --group-commit, Topsail's appends share commits as the engine's do (decision 0012). \
            With --pgbench, PostgreSQL's own pgbench is a second baseline in each round: --writers \
            clients each inserting single rows into the same table, one transaction per row.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Concurrent writers.")
    var writers: Int = 4

    @Option(help: "Events per append (one transaction).")
    var batch: Int = 1

    @Option(help: "Seconds of measurement per system (split over two rounds).")
    var duration: Double = 10

    @Option(help: "Bytes of JSON payload per event.")
    var payloadBytes: Int = 200

    @Flag(help: "Let Topsail's concurrent appends share commits, as the engine's do (decision 0012).")
    var groupCommit = false

    @Option(help: "With --group-commit: shared commits in flight at once (the engine uses 2).")
    var commitsInFlight: Int = 2

    @Flag(help: "Also run pgbench with --writers clients inserting single rows into the same table, in each round.")
    var pgbench = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if pgbench && batch != 1 { throw ValidationError("--pgbench compares single-row inserts: use --batch 1") }
        guard writers > 0, writers <= 256 else { throw ValidationError("--writers must be 1…256") }
        guard batch > 0, batch <= 10_000 else { throw ValidationError("--batch must be 1…10000") }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        guard (1...64).contains(commitsInFlight) else { throw ValidationError("--commits-in-flight must be 1…64") }
    }

    struct Phase: Codable {
        var eventsPerSecond: Double
        var appendsPerSecond: Double
        var latency: LatencySummary
    }

    struct Result: Codable {
        var writers: Int
        var batch: Int
        var durationSeconds: Double
        var groupCommit: Bool
        var topsail: Phase
        var plainInsert: Phase
        /// Topsail's event rate as a share of the plain INSERT rate.
        var ratio: Double
        /// With --group-commit: the appends each shared commit carried, on average.
        var appendsPerCommit: Double?
        /// With --group-commit: how long a shared commit's statement took, on average.
        var commitMs: Double?
        /// pgbench's rows per second (one transaction each), and Topsail's events/s over it.
        var pgbenchRowsPerSecond: Double?
        var pgbenchRatio: Double?
    }

    func run() async throws {
        let logger = options.logger("topsail.bench")
        let (writers, batch, duration, payloadBytes) = (self.writers, self.batch, self.duration, self.payloadBytes)
        let (groupCommit, runPgbench) = (self.groupCommit, self.pgbench)
        let pgbenchPath = runPgbench ? try Self.pgbenchExecutable() : nil
        let result = try await withBenchSchema(options, logger: logger, connections: writers + 2) { client, database in
            try await client.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE plain_events (
                    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    transaction_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
                    event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, stream_version bigint NOT NULL,
                    event_type text NOT NULL, schema_version integer NOT NULL,
                    recorded_at timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL, metadata jsonb NOT NULL,
                    hash bytea NOT NULL DEFAULT '\\x'::bytea, UNIQUE (stream_id, stream_version))
                """), logger: logger)
            // The same indexes as `events` (migrations 0001 and 0010): the ratio is the append
            // function's own cost (stream lock, version check, hash chain), not the indexes'.
            for index in [
                "CREATE INDEX ON plain_events (transaction_id, position)",
                "CREATE INDEX ON plain_events ((payload->'pipeline'->>'application'), (payload->'pipeline'->>'name'), position) WHERE event_type = 'pipeline.saved'",
                "CREATE INDEX ON plain_events (event_type text_pattern_ops, transaction_id, position)",
                "CREATE INDEX ON plain_events ((metadata->>'actor'), transaction_id, position)",
                "CREATE INDEX ON plain_events (transaction_id, position) WHERE COALESCE(metadata->>'source', '') NOT IN ('orchestrator', 'worker', 'scheduler', 'relay', 'pipeline-stage')",
            ] {
                try await client.query(PostgresQuery(unsafeSQL: index), logger: logger)
            }
            let payload = JSONText(unchecked: "{\"filler\":\"" + String(repeating: "x", count: max(0, payloadBytes - 14)) + "\"}")
            let sharing = groupCommit ? GroupCommit(maximumInFlight: commitsInFlight) : nil
            let store = PostgresEventStore(client: client, groupCommit: sharing, logger: logger)
            let phase = Duration.milliseconds(Int64(duration * 500))
            var topsail: [Measurement] = []
            var plain: [Measurement] = []
            var pgbenchRates: [Double] = []
            if pgbenchPath != nil { try await client.query("CREATE SEQUENCE pgbench_versions", logger: logger) }
            for round in 1...2 {
                if let pgbenchPath {
                    progress("round \(round)/2: pgbench baseline, \(writers) clients × single-row INSERTs, \(phase)")
                    pgbenchRates.append(try await Self.runPgbench(pgbenchPath, database: database, clients: writers, seconds: duration / 2, payload: payload))
                }
                progress("round \(round)/2: plain INSERT baseline, \(writers) writers × \(batch) events, \(phase)")
                plain.append(try await Self.measure(writers: writers, for: phase) { writer, iteration in
                    try await insertPlain(client, stream: "plain-r\(round)w\(writer)", iteration: iteration, batch: batch, payload: payload, logger: logger)
                })
                progress("round \(round)/2: Topsail append, \(writers) writers × \(batch) events, \(phase)")
                topsail.append(try await Self.measure(writers: writers, for: phase) { writer, iteration in
                    let stream = try StreamID(category: "bench", id: "r\(round)w\(writer)")
                    let events = (0..<batch).map { _ in NewEvent(type: "bench.appended", payload: payload) }
                    _ = try await store.append(to: stream, expected: iteration == 0 ? .noStream : .exact(Int64(iteration * batch)), events: events)
                })
            }
            let topsailPhase = Measurement.merge(topsail).phase(batch: batch)
            let plainPhase = Measurement.merge(plain).phase(batch: batch)
            let pgbenchRate = pgbenchRates.isEmpty ? nil : pgbenchRates.reduce(0, +) / Double(pgbenchRates.count)
            let shared = sharing?.statistics
            return Result(writers: writers, batch: batch, durationSeconds: duration, groupCommit: groupCommit, topsail: topsailPhase, plainInsert: plainPhase,
                          ratio: plainPhase.eventsPerSecond > 0 ? topsailPhase.eventsPerSecond / plainPhase.eventsPerSecond : 0,
                          appendsPerCommit: shared.map { $0.commits > 0 ? Double($0.appends) / Double($0.commits) : 0 },
                          commitMs: shared.map { $0.commits > 0 ? $0.committing.milliseconds / Double($0.commits) : 0 },
                          pgbenchRowsPerSecond: pgbenchRate, pgbenchRatio: pgbenchRate.map { $0 > 0 ? topsailPhase.eventsPerSecond / $0 : 0 })
        }
        if json {
            try printJSON(result)
        } else {
            print(String(format: "plain INSERT: %.0f events/s, p50 %.2f ms, p99 %.2f ms", result.plainInsert.eventsPerSecond, result.plainInsert.latency.p50Ms, result.plainInsert.latency.p99Ms))
            print(String(format: "Topsail:      %.0f events/s, p50 %.2f ms, p99 %.2f ms", result.topsail.eventsPerSecond, result.topsail.latency.p50Ms, result.topsail.latency.p99Ms))
            print(String(format: "ratio:        %.2f", result.ratio))
            if let shared = result.appendsPerCommit, let commitMs = result.commitMs {
                print(String(format: "group commit: %.1f appends per commit, %.2f ms per commit", shared, commitMs))
            }
            if let rate = result.pgbenchRowsPerSecond, let ratio = result.pgbenchRatio {
                print(String(format: "pgbench:      %.0f rows/s (one transaction each); Topsail over pgbench: %.2f", rate, ratio))
            }
        }
    }

    /// Single-event appends from `writers` writers, each to a stream of its own with exact
    /// expected versions, for `duration`: the append rate the pipeline benchmark compares with.
    static func singleEventAppends(_ store: PostgresEventStore, writers: Int, for duration: Duration) async throws -> Phase {
        let payload = JSONText(unchecked: "{\"filler\":\"" + String(repeating: "x", count: 186) + "\"}")
        let run = UUID().uuidString.prefix(8).lowercased()
        return try await measure(writers: writers, for: duration) { writer, iteration in
            let stream = try StreamID(category: "bench", id: "\(run)w\(writer)")
            _ = try await store.append(to: stream, expected: iteration == 0 ? .noStream : .exact(Int64(iteration)), events: [
                NewEvent(type: "bench.appended", payload: payload),
            ])
        }.phase(batch: 1)
    }

    /// pgbench from PATH or PostgreSQL's versioned bin directories.
    static func pgbenchExecutable() throws -> String {
        var candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/pgbench" }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        candidates += versions.sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin/pgbench" }
        guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw CLIError("pgbench was not found on PATH or in /usr/lib/postgresql/*/bin: install postgresql-client (or drop --pgbench)")
        }
        return found
    }

    /// Runs pgbench against the bench schema's `plain_events` and returns its transactions (rows) per second.
    static func runPgbench(_ executable: String, database: DatabaseConfiguration, clients: Int, seconds: Double, payload: JSONText) async throws -> Double {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-pgbench-\(UUID().uuidString).sql")
        defer { try? FileManager.default.removeItem(at: script) }
        let table = "\"\(database.schema)\".plain_events"
        let literal = payload.text.replacingOccurrences(of: "'", with: "''")
        try """
            INSERT INTO \(table) (event_id, stream_id, stream_version, event_type, schema_version, payload, metadata) VALUES (gen_random_uuid(), 'pgbench-' || :client_id, nextval('"\(database.schema)".pgbench_versions'), 'bench.appended', 1, '\(literal)'::jsonb, '{}'::jsonb);

            """.write(to: script, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        if let password = database.password { environment["PGPASSWORD"] = password }
        let finished = try await UnmaskedProcess.run(executable, [
            "-n", "-M", "prepared", "-c", String(clients), "-j", String(min(clients, 4)), "-T", String(max(1, Int(seconds.rounded()))),
            "-f", script.path, "-h", database.host, "-p", String(database.port), "-U", database.username, database.database,
        ], environment: environment)
        guard finished.status == 0,
              let line = finished.output.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
              let tps = Double(line.dropFirst("tps = ".count).prefix { $0.isNumber || $0 == "." })
        else {
            throw CLIError("pgbench failed (exit \(finished.status)): \(finished.errors.suffix(500))\(finished.output.suffix(500))")
        }
        return tps
    }

    private func insertPlain(_ client: PostgresClient, stream: String, iteration: Int, batch: Int, payload: JSONText, logger: Logger) async throws {
        let base = Int64(iteration * batch)
        let ids = (0..<batch).map { _ in UUID() }
        try await client.query("""
            INSERT INTO plain_events (event_id, stream_id, stream_version, event_type, schema_version, payload, metadata)
            SELECT id, \(stream), \(base) + ord, 'bench.appended', 1, \(payload.text)::jsonb, '{}'::jsonb
              FROM unnest(\(ids)) WITH ORDINALITY AS t(id, ord)
            """, logger: logger)
    }

    struct Measurement {
        var operations: Int
        var elapsed: Duration
        var latencies: [Duration]

        static func merge(_ parts: [Measurement]) -> Measurement {
            Measurement(operations: parts.reduce(0) { $0 + $1.operations }, elapsed: parts.reduce(.zero) { $0 + $1.elapsed },
                        latencies: parts.flatMap(\.latencies))
        }

        func phase(batch: Int) -> Phase {
            let seconds = elapsed.milliseconds / 1000
            return Phase(eventsPerSecond: Double(operations * batch) / seconds, appendsPerSecond: Double(operations) / seconds,
                         latency: LatencySummary(latencies))
        }
    }

    /// Runs `operation` from `writers` concurrent loops for `duration`.
    static func measure(writers: Int, for duration: Duration, _ operation: @escaping @Sendable (Int, Int) async throws -> Void) async throws -> Measurement {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + duration
        let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var samples: [Duration] = []
                    var iteration = 0
                    while clock.now < deadline {
                        let began = clock.now
                        try await operation(writer, iteration)
                        samples.append(clock.now - began)
                        iteration += 1
                    }
                    return samples
                }
            }
            return try await group.reduce(into: [Duration]()) { $0 += $1 }
        }
        return Measurement(operations: latencies.count, elapsed: clock.now - start, latencies: latencies)
    }
}
