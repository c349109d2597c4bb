import Foundation
import Logging
import PostgresNIO

/// One numbered SQL file of `migrations/`, named `NNNN_name.sql`.
public struct Migration: Sendable, Hashable {
    public let version: Int
    public let fileName: String
    public let sql: String

    /// Reads every `NNNN_name.sql` in `directory`, in version order.
    public static func load(from directory: URL) throws(DatabaseError) -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw DatabaseError(.migration, "cannot read the migrations directory \(directory.path); pass --migrations DIR or set TOPSAIL_MIGRATIONS_DIR")
        }
        var migrations: [Migration] = []
        for name in names where name.hasSuffix(".sql") {
            let digits = name.prefix { $0.isASCII && $0.isNumber }
            guard digits.count == 4, let version = Int(digits), name.dropFirst(4).hasPrefix("_") else {
                throw DatabaseError(.migration, "migration file \(name) is not named NNNN_name.sql")
            }
            guard let sql = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8) else {
                throw DatabaseError(.migration, "cannot read migration file \(name) as UTF-8")
            }
            migrations.append(Migration(version: version, fileName: name, sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (previous, next) in zip(migrations, migrations.dropFirst()) where previous.version == next.version {
            throw DatabaseError(.migration, "migrations \(previous.fileName) and \(next.fileName) share version \(next.version)")
        }
        return migrations
    }
}

/// Applies migrations in order, each in its own transaction, and records each with its checksum.
///
/// Runs under a session advisory lock per schema, so concurrent `topsail migrate` runs wait for
/// each other and the second finds nothing left to do. A file whose text changed after it was
/// applied is refused: history must be amended with a new migration, never rewritten.
public struct Migrator: Sendable {
    static let lockNamespace: Int32 = 1953721090

    public let client: PostgresClient
    public let schema: String
    public let logger: Logger

    public init(client: PostgresClient, schema: String, logger: Logger) {
        self.client = client
        self.schema = schema
        self.logger = logger
    }

    public struct Report: Sendable, Equatable {
        public var applied: [String]
        public var alreadyApplied: Int
    }

    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> Report {
        guard DatabaseConfiguration.isValidSchemaName(schema) else {
            throw DatabaseError(.configuration, "invalid schema name '\(schema)'")
        }
        do {
            let report = try await client.withConnection { connection in
                try await connection.query("SELECT pg_advisory_lock(\(Self.lockNamespace), hashtext(\(schema)))", logger: logger)
                do {
                    let report = try await apply(migrations, on: connection)
                    try await connection.query("SELECT pg_advisory_unlock(\(Self.lockNamespace), hashtext(\(schema)))", logger: logger)
                    return report
                } catch {
                    _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockNamespace), hashtext(\(schema)))", logger: logger)
                    throw error
                }
            }
            // A migrate is what an operator runs after restoring a dump: new events must sort
            // after the restored ones from the first append on.
            _ = try await LogEpoch.realign(client, logger: logger)
            return report
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: "apply migrations")
        }
    }

    private func apply(_ migrations: [Migration], on connection: PostgresConnection) async throws -> Report {
        try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""), logger: logger)
        try await connection.query(PostgresQuery(unsafeSQL: """
            CREATE TABLE IF NOT EXISTS "\(schema)".topsail_migrations (
                version integer PRIMARY KEY, file_name text NOT NULL, checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """), logger: logger)
        var recorded: [Int: (fileName: String, checksum: String)] = [:]
        let rows = try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT version, file_name, checksum FROM \"\(schema)\".topsail_migrations"), logger: logger)
        for try await (version, fileName, checksum) in rows.decode((Int, String, String).self) {
            recorded[version] = (fileName, checksum)
        }
        var report = Report(applied: [], alreadyApplied: 0)
        for migration in migrations {
            let checksum = try await self.checksum(of: migration.sql, on: connection)
            if let stored = recorded[migration.version] {
                guard stored.checksum == checksum else {
                    throw DatabaseError(.migration, """
                        migration \(migration.fileName) was changed after it was applied (checksum \(checksum.prefix(12)), \
                        applied as \(stored.fileName) with \(stored.checksum.prefix(12))); restore the file and put the \
                        change in a new migration
                        """)
                }
                report.alreadyApplied += 1
                continue
            }
            logger.info("applying migration", metadata: ["migration.file": "\(migration.fileName)", "db.schema": "\(schema)"])
            try await Self.unwrappingTransactionError {
                try await connection.withTransaction(logger: logger) { connection in
                for statement in SQLScript.statements(in: migration.sql) {
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    } catch let error as PSQLError {
                        let text = error.serverInfo?[.message] ?? "\(error.code)"
                        throw DatabaseError(.migration, "migration \(migration.fileName) failed: \(text)", underlying: error)
                    }
                }
                try await connection.query(PostgresQuery(
                    unsafeSQL: "INSERT INTO \"\(schema)\".topsail_migrations (version, file_name, checksum) VALUES ($1, $2, $3)",
                    binds: try Self.binds(migration.version, migration.fileName, checksum)), logger: logger)
                }
            }
            report.applied.append(migration.fileName)
        }
        return report
    }

    /// `withTransaction` wraps what its closure throws; the closure's own error is the one to report.
    static func unwrappingTransactionError<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error.commitError ?? error.beginError ?? error
        }
    }

    private func checksum(of sql: String, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query("SELECT encode(sha256(convert_to(\(sql), 'UTF8')), 'hex')", logger: logger)
        for try await checksum in rows.decode(String.self) { return checksum }
        throw DatabaseError(.migration, "PostgreSQL returned no checksum")
    }

    private static func binds(_ version: Int, _ fileName: String, _ checksum: String) throws -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(version)
        binds.append(fileName)
        binds.append(checksum)
        return binds
    }
}
