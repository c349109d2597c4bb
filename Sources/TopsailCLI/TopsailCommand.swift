import ArgumentParser
import Benchmarks
import Foundation
import PostgresEventStore
import PostgresNIO

/// `topsail`: every role and tool of Topsail in one binary.
public struct TopsailCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "topsail",
        abstract: "Topsail: continuous delivery as an event-sourced service.",
        discussion: """
            Configuration comes from TOPSAIL_DATABASE_URL, TOPSAIL_KAFKA_BROKERS and \
            TOPSAIL_KAFKA_PROPERTIES (flags override them); `ops/services start` writes them to \
            .topsail/services.env.
            """,
        subcommands: [
            MigrateCommand.self, EventsCommand.self, PipelineCommand.self, ExecutionsCommand.self, RelayCommand.self, OrchestratorCommand.self, NotifierCommand.self, AccountsCommand.self,
            WorkerCommand.self, SchedulerCommand.self, ProjectorCommand.self, SupervisorCommand.self, ObserverCommand.self, ClustersCommand.self, ServerGroupsCommand.self, LoadBalancersCommand.self, BakeCommand.self, APICommand.self, AuditCommand.self, ApplyCommand.self, ExportCommand.self, TokensCommand.self, ServiceAccountsCommand.self, ProjectionsCommand.self, AllCommand.self, BenchCommand.self,
        ]
    )

    public init() {}

    /// Runs the command line; errors are one line on standard error and exit status 1.
    public static func runMain() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            // librdkafka's and the dispatch threads outlive an async main; end the process here.
            Foundation.exit(0)
        } catch let error as CleanExit {
            exit(withError: error)
        } catch let error as ExitCode {
            exit(withError: error)
        } catch where Self.isArgumentError(error) {
            exit(withError: error)
        } catch {
            // Driver errors are wrapped into a message that names the failure without leaking detail.
            let shown: any Error = error is PSQLError ? DatabaseError.wrapping(error, doing: "run the command") : error
            FileHandle.standardError.write(Data("topsail: \(shown)\n".utf8))
            Foundation.exit(1)
        }
    }

    static func isArgumentError(_ error: any Error) -> Bool {
        // ArgumentParser's own errors print their usage text through exit(withError:).
        String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
    }
}
