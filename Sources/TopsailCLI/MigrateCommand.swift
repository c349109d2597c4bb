import ArgumentParser
import CLISupport
import PostgresEventStore

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the numbered SQL migrations that are not applied yet.",
        discussion: "Each migration runs in its own transaction and is recorded with its checksum; a file changed after it was applied is refused. Concurrent runs are safe."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Directory of NNNN_name.sql files (default: $TOPSAIL_MIGRATIONS_DIR or ./migrations).")
    var migrations: String?

    func run() async throws {
        let database = try options.migrationDatabase()
        let logger = options.logger("topsail.migrate")
        let files = try Migration.load(from: migrationsDirectory(migrations))
        let report = try await withDatabase(database, logger: logger) { client in
            try await Migrator(client: client, schema: database.schema, logger: logger).migrate(files)
        }
        for name in report.applied { print("applied \(name)") }
        print("\(report.applied.count) applied, \(report.alreadyApplied) already applied (\(database))")
    }
}
