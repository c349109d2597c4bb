import Foundation
import PostgresEventStore
import PostgresNIO
import Testing

@Suite("Migrations", .timeLimit(.minutes(5)))
struct MigrationTests {
    @Test("a fresh schema gets every migration; a second run applies nothing")
    func freshAndRerun() async throws {
        try await TestDatabase.with(migrate: false) { db in
            let migrations = try Migration.load(from: TestEnvironment.migrationsDirectory)
            let migrator = Migrator(client: db.client, schema: db.configuration.schema, logger: TestEnvironment.logger)
            let first = try await migrator.migrate(migrations)
            #expect(first.applied == migrations.map(\.fileName))
            #expect(first.alreadyApplied == 0)
            let second = try await migrator.migrate(migrations)
            #expect(second.applied.isEmpty)
            #expect(second.alreadyApplied == migrations.count)
        }
    }

    @Test("concurrent runs apply each migration once")
    func concurrentRuns() async throws {
        try await TestDatabase.with(migrate: false) { db in
            let migrations = try Migration.load(from: TestEnvironment.migrationsDirectory)
            let reports = try await withThrowingTaskGroup(of: Migrator.Report.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await Migrator(client: db.client, schema: db.configuration.schema, logger: TestEnvironment.logger).migrate(migrations)
                    }
                }
                return try await group.reduce(into: [Migrator.Report]()) { $0.append($1) }
            }
            #expect(reports.flatMap(\.applied).sorted() == migrations.map(\.fileName).sorted())
            var count = 0
            for try await n in try await db.client.query("SELECT count(*)::int FROM topsail_migrations").decode(Int.self) { count = n }
            #expect(count == migrations.count)
        }
    }

    @Test("a migration changed after it was applied is refused, naming the file")
    func tamperedFile() async throws {
        try await TestDatabase.with(migrate: false) { db in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("migrations-"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("0001_first.sql")
            try "CREATE TABLE first (id int);\nCREATE TABLE second (id int);".write(to: file, atomically: true, encoding: .utf8)
            let migrator = Migrator(client: db.client, schema: db.configuration.schema, logger: TestEnvironment.logger)
            #expect(try await migrator.migrate(Migration.load(from: directory)).applied == ["0001_first.sql"])

            try "CREATE TABLE first (id bigint);\nCREATE TABLE second (id int);".write(to: file, atomically: true, encoding: .utf8)
            do {
                try await migrator.migrate(Migration.load(from: directory))
                Issue.record("a changed migration was accepted")
            } catch let error as DatabaseError {
                #expect(error.code == .migration)
                #expect(error.description.contains("0001_first.sql was changed after it was applied"))
            }
        }
    }

    @Test("a failing migration leaves nothing behind and names the file")
    func failingMigration() async throws {
        try await TestDatabase.with(migrate: false) { db in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("migrations-"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            try "CREATE TABLE half (id int);\nCREATE TABLE broken (id nosuchtype);".write(
                to: directory.appendingPathComponent("0001_broken.sql"), atomically: true, encoding: .utf8)
            let migrator = Migrator(client: db.client, schema: db.configuration.schema, logger: TestEnvironment.logger)
            await #expect(throws: DatabaseError.self) { try await migrator.migrate(Migration.load(from: directory)) }
            var tables = 0
            for try await n in try await db.client.query(
                "SELECT count(*)::int FROM information_schema.tables WHERE table_schema = \(db.configuration.schema) AND table_name = 'half'"
            ).decode(Int.self) { tables = n }
            #expect(tables == 0)
        }
    }
}
