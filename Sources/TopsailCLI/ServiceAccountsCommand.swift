import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PipelineEngine
import PostgresEventStore

struct ServiceAccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service-accounts",
        abstract: "Service accounts: the users automated triggers run as (a trigger's runAsUser).",
        discussion: """
            A caller may run things as a service account (save a pipeline whose trigger names it, or \
            trigger with "runAsUser") only when it holds every role the account has, or is an admin. \
            Triggering as one checks the account's own EXECUTE permission on the application.
            """,
        subcommands: [CreateServiceAccountCommand.self]
    )
}

struct CreateServiceAccountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a service account, or set its roles.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "The account's name (letters, digits, '.', '_', '@', '-').") var name: String
    @Option(help: "Its roles, comma-separated.") var roles: String

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.service-accounts")
        let name = self.name
        let roles = self.roles.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !roles.isEmpty else { throw CLIError("give the account at least one role: --roles deployers") }
        let actor = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        try await withDatabase(database, logger: logger) { client in
            do {
                try await Identities(store: PostgresEventStore(client: client, logger: logger))
                    .saveServiceAccount(name, roles: roles, metadata: EventMetadata(actor: actor, source: "cli"))
            } catch let error as AccessError {
                throw CLIError(error.description)
            }
            Output.line("service account \(name): roles \(roles.sorted().joined(separator: ", "))")
        }
    }
}
