import EventLog
import Foundation
import PostgresEventStore
import PipelineEngine
import PostgresNIO
import Synchronization
import Testing

/// The log cannot be rewritten: the database refuses changes, the runtime role may only append and
/// read, and hash chains show any change made behind the database's back.
@Suite("Event log: append-only and tamper-evident", .timeLimit(.minutes(3)))
struct LogIntegrityTests {
    static func event(_ type: String, _ data: String) throws -> NewEvent {
        NewEvent(type: type, payload: try JSONText(data), metadata: EventMetadata(actor: "tester", source: "test"))
    }

    /// The SQLSTATE a statement fails with, or nil when it succeeds.
    static func failure(_ client: PostgresClient, _ sql: String) async -> String? {
        do {
            try await client.query(PostgresQuery(unsafeSQL: sql), logger: TestEnvironment.logger)
            return nil
        } catch let error as PSQLError {
            return error.serverInfo?[.sqlState] ?? "\(error.code)"
        } catch {
            return "\(error)"
        }
    }

    @Test("UPDATE, DELETE and TRUNCATE on events are refused by the database, even for the table's owner")
    func appendOnly() async throws {
        try await TestDatabase.with { db in
            _ = try await db.store.append(to: try StreamID("ledger-1"), expected: .any, events: [try Self.event("entry.made", #"{"n": 1}"#)])
            #expect(await Self.failure(db.client, "UPDATE events SET payload = '{\"n\": 2}'") == "TS405")
            #expect(await Self.failure(db.client, "DELETE FROM events") == "TS405")
            #expect(await Self.failure(db.client, "TRUNCATE events") == "TS405")
            let kept = try await db.store.readStream(try StreamID("ledger-1"), from: 1, direction: .forward, limit: 10)
            #expect(kept.count == 1 && kept[0].payload.text.contains("1"))
        }
    }

    @Test("the runtime role appends and reads events and keeps the disposable tables, but may not change events")
    func runtimeRole() async throws {
        try await TestDatabase.with { db in
            try await db.client.withConnection { connection in
                try await connection.query("SET ROLE topsail_runtime", logger: TestEnvironment.logger)
                try await connection.query("""
                    SELECT * FROM append_events('ledger-2', NULL, ARRAY[gen_random_uuid()], ARRAY['entry.made'], ARRAY[1],
                                                ARRAY['{"n": 1}'], ARRAY['{}'])
                    """, logger: TestEnvironment.logger)
                try await connection.query("SELECT count(*) FROM events", logger: TestEnvironment.logger)
                try await connection.query("DELETE FROM timers", logger: TestEnvironment.logger)
                try await connection.query("TRUNCATE stage_summaries", logger: TestEnvironment.logger)
                for statement in ["UPDATE events SET event_type = 'x'", "DELETE FROM events", "TRUNCATE events", "DROP TABLE timers"] {
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: TestEnvironment.logger)
                        Issue.record("the runtime role could run \(statement)")
                    } catch let error as PSQLError {
                        #expect(error.serverInfo?[.sqlState] == "42501", "\(statement): \(String(reflecting: error))")
                    }
                }
                try await connection.query("RESET ROLE", logger: TestEnvironment.logger)
            }
        }
    }

    @Test("topsail all runs as the runtime role ops/services sets up: a pipeline with a wait, a script and variables completes, and the projections follow")
    func engineAsRuntimeRole() async throws {
        let environment = ProcessInfo.processInfo.environment
        let runtime = try #require(environment["TOPSAIL_DATABASE_URL"], "ops/services writes TOPSAIL_DATABASE_URL")
        let owner = try #require(environment["TOPSAIL_MIGRATION_DATABASE_URL"], "ops/services writes TOPSAIL_MIGRATION_DATABASE_URL")
        #expect(runtime.hasPrefix("postgres://topsail_app:") && runtime != owner)
        try await TestDatabase.with { db in
            let engine = try EngineTests.Engine(db, arguments: ["--database-url", runtime + "?schema=" + db.configuration.schema])
            defer { engine.process.terminate() }
            let id = try await engine.run(EngineTests.pipeline([
                ["refId": "1", "type": "wait", "waitTime": 1],
                ["refId": "2", "type": "evaluateVariables", "variables": [["key": "who", "value": "runtime"]], "requisiteStageRefIds": ["1"]],
                EngineTests.script("3", "echo ${who}", after: ["2"]),
            ]))
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.stage("3").outputs["stdout"] == "runtime\n")
            try await engine.until("the projector, as the runtime role, to record the execution") {
                var status: String?
                for try await row in try await db.client.query("SELECT status FROM execution_summaries WHERE execution_id = \(id)",
                                                                logger: TestEnvironment.logger).decode(String.self) { status = row }
                return status == "SUCCEEDED"
            }
            #expect(engine.process.isRunning)

        }
    }

    @Test("a dump restored into another cluster, whose transaction ids are lower: new events sort after the restored ones and a reader's old checkpoint reaches them")
    func restoreIntoAnotherCluster() async throws {
        let target = try await PrivatePostgres.start()
        defer { target.remove() }
        try await TestDatabase.with { source in
            let stream = try StreamID("ledger-r")
            for n in 1...3 {
                _ = try await source.store.append(to: stream, expected: .any, events: [try Self.event("entry.made", #"{"n": \#(n)}"#)])
            }
            // The source's transaction ids, surely above a new cluster's (which starts near 750).
            let owner = TestEnvironment.ownerURL
            _ = try shell("psql '\(owner)' -qAtc 'DO $$ BEGIN FOR i IN 1..2000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$'")
            _ = try await source.store.append(to: stream, expected: .any, events: [try Self.event("entry.made", #"{"n": 4}"#)])
            let restored = try await readLog(source.store, expecting: 4)
            // A reader (the relay, a projection) has read everything: its checkpoint.
            let checkpoint = try #require(restored.last?.logPosition)

            let schema = source.configuration.schema
            _ = try shell("pg_dump '\(owner)' -n \(schema) | psql -q -v ON_ERROR_STOP=1 '\(target.url)'")
            let configuration = try DatabaseConfiguration(url: target.url).inSchema(schema)
            try await withClient(configuration) { client in
                var next: Int64 = 0
                for try await id in try await client.query("SELECT pg_current_xact_id()::text::bigint", logger: TestEnvironment.logger).decode(Int64.self) { next = id }
                try #require(next < checkpoint.transaction, "the new cluster's ids (\(next)) must start below the restored ones (\(checkpoint.transaction)) for this test to mean anything")

                // What an operator runs after a restore (ops/run does on every start).
                let migrated = try await CLITests.run(["migrate", "--database-url", target.url + "?schema=" + schema])
                #expect(migrated.status == 0 && migrated.stderr.contains("sort after them"), "\(migrated.stdout)\(migrated.stderr)")
                let store = PostgresEventStore(client: client, logger: TestEnvironment.logger)
                _ = try await store.append(to: stream, expected: .exact(4), events: [try Self.event("entry.made", #"{"n": 5}"#)])
                let after = try await readLog(store, after: checkpoint, expecting: 1)
                #expect(after.map(\.streamVersion) == [5])
                // Starting the engine's processes checks again and finds nothing to do.
                #expect(try await LogEpoch.realign(client, logger: TestEnvironment.logger) == 0)
            }
            let verified = try await CLITests.run(["events", "verify", "--database-url", target.url + "?schema=" + schema])
            #expect(verified.status == 0 && verified.stdout.contains("verified 5 events"), "\(verified.stdout)\(verified.stderr)")
        }
    }

    @Test("due timers are claimed in one short statement and fired outside any transaction; a dead scheduler's claim lapses and its timer fires once")
    func timerClaims() async throws {
        try await TestDatabase.with { db in
            let timers = TimerStore(client: db.client, logger: TestEnvironment.logger)
            let (first, second) = (TimerStore.StageTimer(executionID: "e1", refID: "w", attempt: 1, kind: .waitElapsed),
                                   TimerStore.StageTimer(executionID: "e2", refID: "w", attempt: 1, kind: .waitElapsed))
            try await timers.set(first, dueIn: .zero)
            // A scheduler that died holding a claim on the second timer a moment ago.
            try await timers.set(second, dueIn: .zero)
            try await db.client.query("""
                UPDATE timers SET claimed_until = now() + interval '5 seconds', claimed_by = gen_random_uuid() WHERE stream_id = 'execution-e2'
                """, logger: TestEnvironment.logger)
            let head = try await db.store.readAll(after: .start, limit: 1000).last?.logPosition ?? .start
            let fired = Mutex<[String]>([])
            let store = db.store
            let count = try await timers.fireDue { timer in
                fired.withLock { $0.append(timer.executionID) }
                // Were the scheduler still inside a write transaction, every gap-free reader on the
                // server (this one too) would wait for it to end.
                _ = try await store.append(to: try StreamID("fired-\(timer.executionID)"), expected: .noStream,
                                           events: [NewEvent(type: "timer.fired", payload: .emptyObject)])
                _ = try await readLog(store, after: head, expecting: 1)
            }
            #expect(count == 1 && fired.withLock { $0 } == ["e1"], "the claimed timer fired before its claim lapsed")
            try await eventually("the dead scheduler's claim to lapse and its timer to fire") {
                _ = try await timers.fireDue { timer in fired.withLock { $0.append(timer.executionID) } }
                return fired.withLock { $0 } == ["e1", "e2"]
            }
            #expect(try await timers.fireDue { _ in Issue.record("a fired timer fired again") } == 0)
        }
    }

    @Test("topsail events verify: intact chains pass; a changed event and a removed one are named as the first broken links")
    func hashChains() async throws {
        try await TestDatabase.with { db in
            for stream in ["ledger-a", "ledger-b"] {
                for n in 1...3 {
                    _ = try await db.store.append(to: try StreamID(stream), expected: .any, events: [try Self.event("entry.made", #"{"n": \#(n)}"#)])
                }
            }
            // Several events in one append chain too.
            _ = try await db.store.append(to: try StreamID("ledger-a"), expected: .exact(3), events: [
                try Self.event("entry.made", #"{"n": 4}"#), try Self.event("entry.made", #"{"n": 5}"#),
            ])
            let intact = try await CLITests.run(["events", "verify", "--database-url", db.url])
            #expect(intact.status == 0 && intact.stdout.contains("verified 8 events in 2 streams: every chain is intact"), "\(intact.stdout)\(intact.stderr)")

            // Someone with the owner's rights switches the guard off and rewrites history.
            try await db.client.query("ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete", logger: TestEnvironment.logger)
            try await db.client.query("""
                UPDATE events SET payload = '{"n": 20}' WHERE stream_id = 'ledger-a' AND stream_version = 2
                """, logger: TestEnvironment.logger)
            try await db.client.query("DELETE FROM events WHERE stream_id = 'ledger-b' AND stream_version = 1", logger: TestEnvironment.logger)
            let broken = try await CLITests.run(["events", "verify", "--database-url", db.url])
            #expect(broken.status == 1, "\(broken.stdout)\(broken.stderr)")
            #expect(broken.stderr.contains("the first broken link is stream ledger-a version 2"), "\(broken.stderr)")
            #expect(broken.stderr.contains("stream ledger-b version 2") && broken.stderr.contains("events are missing"), "\(broken.stderr)")
            // One stream alone.
            let onlyA = try await CLITests.run(["events", "verify", "--database-url", db.url, "--stream", "ledger-a"])
            #expect(onlyA.status == 1 && !onlyA.stderr.contains("ledger-b"), "\(onlyA.stderr)")
            // Fixing the hash of the changed event moves the break to the next one: the chain
            // cannot be mended without rewriting everything after it.
            try await db.client.query("""
                UPDATE events SET hash = event_hash(
                    (SELECT hash FROM events WHERE stream_id = 'ledger-a' AND stream_version = 1), event_id, stream_id, stream_version,
                    event_type, schema_version, recorded_at, payload, metadata)
                 WHERE stream_id = 'ledger-a' AND stream_version = 2
                """, logger: TestEnvironment.logger)
            let mended = try await CLITests.run(["events", "verify", "--database-url", db.url, "--stream", "ledger-a"])
            #expect(mended.status == 1 && mended.stderr.contains("the first broken link is stream ledger-a version 3"), "\(mended.stderr)")
        }
    }
}
