import EventLog
import Foundation
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO
import Testing

/// The real PostgreSQL and broker that `ops/test` starts, and helpers that give each test its own
/// schema, topics and processes.
enum TestEnvironment {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let migrationsDirectory = packageRoot.appendingPathComponent("migrations")

    static func variable(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw SetupError("\(name) is not set: run the integration tests with ops/test, which starts PostgreSQL and the broker")
        }
        return value
    }

    /// The shared server's URL as the owner, for tools such as psql and pg_dump.
    static var ownerURL: String {
        let environment = ProcessInfo.processInfo.environment
        return [environment["TOPSAIL_MIGRATION_DATABASE_URL"], environment["TOPSAIL_DATABASE_URL"]].compactMap { $0 }.first { !$0.isEmpty } ?? ""
    }

    static func database() throws -> DatabaseConfiguration {
        // Tests make schemas of their own: they connect as the owner when ops/services says who.
        let owner = ProcessInfo.processInfo.environment["TOPSAIL_MIGRATION_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        return try DatabaseConfiguration(url: owner ?? variable("TOPSAIL_DATABASE_URL"))
    }

    static func kafka(brokers: String? = nil) throws -> KafkaConfiguration {
        var configuration = KafkaConfiguration(bootstrapServers: try brokers ?? variable("TOPSAIL_KAFKA_BROKERS"))
        // Short group timeouts: a first join takes about half the session timeout.
        configuration.sessionTimeout = .milliseconds(2000)
        configuration.heartbeatInterval = .milliseconds(500)
        configuration.messageTimeout = .seconds(5)
        return configuration
    }

    /// The environment every `topsail` process a test starts gets, before the test's own
    /// additions: the operator's opt-in to script stages (most engine tests use them), with the
    /// machine's /tmp shared into the sandbox so tests can coordinate with scripts through files
    /// there. Tests of the defaults and of the sandbox itself set these to "".
    /// They connect as the owner, as the tests do, unless a test says otherwise.
    static func processEnvironment(_ additions: [String: String]) -> [String: String] {
        var defaults = ["TOPSAIL_ENABLED_STAGE_TYPES": "script", "TOPSAIL_SCRIPT_BINDS": "/tmp", "TOPSAIL_MIGRATION_DATABASE_URL": ""]
        if let owner = ProcessInfo.processInfo.environment["TOPSAIL_MIGRATION_DATABASE_URL"], !owner.isEmpty { defaults["TOPSAIL_DATABASE_URL"] = owner }
        return ProcessInfo.processInfo.environment.merging(defaults) { $1 }.merging(additions) { $1 }
    }

    /// The `topsail` executable built beside the tests.
    static func topsailExecutable() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["TOPSAIL_BIN"] { return URL(fileURLWithPath: path) }
        for configuration in ["debug", "release"] {
            let candidate = packageRoot.appendingPathComponent(".build/\(configuration)/topsail")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw SetupError("no topsail executable: run swift build (ops/test does)")
    }

    static func brokerExecutable() throws -> URL {
        URL(fileURLWithPath: try variable("TOPSAIL_BROKER_BIN"))
    }

    static let logger: Logger = {
        var logger = Logger(label: "topsail.tests") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = ProcessInfo.processInfo.environment["TOPSAIL_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }()

    /// A fresh lowercase name for schemas, categories and relay names.
    static func uniqueName(_ prefix: String) -> String {
        prefix + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
    }
}

struct SetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A migrated schema of its own, dropped afterwards.
struct TestDatabase: Sendable {
    let configuration: DatabaseConfiguration
    let client: PostgresClient
    let store: PostgresEventStore

    /// The same database whose store shares commits among concurrent appends (decision 0012) when asked.
    func sharing(commits: Bool) -> TestDatabase {
        guard commits else { return self }
        return TestDatabase(configuration: configuration, client: client,
                            store: PostgresEventStore(client: client, groupCommit: GroupCommit(), logger: TestEnvironment.logger))
    }

    var url: String {
        "postgres://\(configuration.username)@\(configuration.host):\(configuration.port)/\(configuration.database)?schema=\(configuration.schema)"
    }

    /// (On the server at `serverURL` when given, not the shared one.)
    static func with<T: Sendable>(
        migrate: Bool = true, maximumConnections: Int = 20, serverURL: String? = nil,
        _ body: @Sendable (TestDatabase) async throws -> T
    ) async throws -> T {
        let server = try serverURL.map { try DatabaseConfiguration(url: $0) } ?? TestEnvironment.database()
        var chosen = server.inSchema(TestEnvironment.uniqueName("t_"))
        chosen.maximumConnections = maximumConnections
        let configuration = chosen
        return try await withClient(configuration) { client in
            if migrate {
                try await Migrator(client: client, schema: configuration.schema, logger: TestEnvironment.logger)
                    .migrate(Migration.load(from: TestEnvironment.migrationsDirectory))
            }
            let database = TestDatabase(
                configuration: configuration, client: client,
                store: PostgresEventStore(client: client, logger: TestEnvironment.logger))
            do {
                let result = try await body(database)
                try await database.drop()
                return result
            } catch {
                try? await database.drop()
                throw error
            }
        }
    }

    /// Drops the test's schema. An engine a test stopped may still be finishing its last
    /// statements: a deadlock with them is retried, not reported as the test's failure.
    func drop() async throws {
        for attempt in 1...10 {
            do {
                try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(configuration.schema)\" CASCADE"))
                return
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "40P01" && attempt < 10 {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

/// Events appended for a test: `count` events spread over `streams` streams of `category`.
func appendSpread(_ store: some EventStore, category: String, streams: Int, count: Int) async throws -> [StreamID: Int64] {
    var versions: [StreamID: Int64] = [:]
    for index in 0..<count {
        let stream = try StreamID(category: category, id: "s\(index % streams)")
        let result = try await store.append(to: stream, expected: .any, events: [
            NewEvent(type: "test.happened", payload: try JSONText("{\"n\":\(index)}")),
        ])
        versions[stream] = result.streamVersion
    }
    return versions
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(30), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out after \(timeout) waiting for: \(what)\nopen write transactions on the server:\n\(openWriteTransactions())")
    throw SetupError("timed out waiting for: \(what)")
}

/// Reads the log after `position` once `count` events are visible. Log reads stop below the
/// oldest open write transaction of the whole server, and other tests write concurrently.
func readLog(_ store: some EventStore, after position: LogPosition = .start, expecting count: Int) async throws -> [RecordedEvent] {
    var events: [RecordedEvent] = []
    try await eventually("\(count) events in the log") {
        events = try await store.readAll(after: position, limit: count + 100)
        return events.count >= count
    }
    #expect(events.count == count)
    return events
}

/// The server's write transactions older than a second (they hold every log reader back), for
/// reports of tests that timed out.
func openWriteTransactions() -> String {
    guard let url = ProcessInfo.processInfo.environment["TOPSAIL_MIGRATION_DATABASE_URL"] ?? ProcessInfo.processInfo.environment["TOPSAIL_DATABASE_URL"] else { return "(no database)" }
    let psql = Process()
    psql.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    psql.arguments = ["psql", url.components(separatedBy: "?").first ?? url, "-Atc", """
        SELECT pid, now() - xact_start, state, backend_xid, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
          FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND now() - xact_start > interval '1 second' ORDER BY xact_start
        """]
    let pipe = Pipe()
    psql.standardOutput = pipe
    psql.standardError = pipe
    do { try psql.run() } catch { return "(psql: \(error))" }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    psql.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    return text.isEmpty ? "(none)" : text
}

/// A PostgreSQL server of a test's own (`ops/services postgres`), on a free port, for tests that
/// stop it or restore into it.
struct PrivatePostgres: Sendable {
    let port: Int
    let state: URL
    static let services = TestEnvironment.packageRoot.appendingPathComponent("ops/services")

    /// The owner's URL (the database `topsail`).
    var url: String { "postgres://postgres@127.0.0.1:\(port)/topsail" }
    var environment: [String: String] { ["TOPSAIL_STATE_DIR": state.path, "TOPSAIL_PG_PORT": String(port)] }

    static func start() async throws -> PrivatePostgres {
        let server = PrivatePostgres(
            port: try PrivateBroker.freePort(),
            state: FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("pg")))
        try await server.run("start")
        return server
    }

    /// `ops/services postgres start|stop`.
    func run(_ action: String) async throws {
        let outcome = try await CLITests.run(["postgres", action], environment: environment, executable: Self.services)
        guard outcome.status == 0 else { throw SetupError("ops/services postgres \(action): \(outcome.stdout)\(outcome.stderr)") }
    }

    /// Stops the server and removes its files, whatever happened (for `defer`).
    func remove() {
        let stop = Process()
        stop.executableURL = Self.services
        stop.arguments = ["postgres", "stop"]
        stop.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        stop.standardOutput = FileHandle.nullDevice
        stop.standardError = FileHandle.nullDevice
        if (try? stop.run()) != nil { stop.waitUntilExit() }
        try? FileManager.default.removeItem(at: state)
    }
}

/// Runs `body` with a client of `configuration` (an existing schema, unlike ``TestDatabase``).
func withClient<T: Sendable>(_ configuration: DatabaseConfiguration, _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
    let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: TestEnvironment.logger)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        return try await body(client)
    }
}

/// Runs a shell pipeline for a test; throws with its output when it fails.
func shell(_ command: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-o", "pipefail", "-c", command]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw SetupError("\(command) failed (\(process.terminationStatus)): \(output)") }
    return output
}
