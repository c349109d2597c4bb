import Access
import ArgumentParser
import CLISupport
import Clouds
import EventLog
import Foundation
import PostgresEventStore

struct AccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accounts",
        abstract: "Cloud accounts: where server groups run (podman on this machine), and who may see and change them.",
        discussion: """
            An account's permissions work as an application's: READ lets a role see what runs in it, WRITE \
            lets it create, resize and destroy server groups there (pipelines' cloud stages run as their \
            trigger's identity and need WRITE); an account without permissions is open to every caller.
            """,
        subcommands: [SaveAccountCommand.self, ShowAccountsCommand.self]
    )
}

struct SaveAccountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "save", abstract: "Create an account, or change it.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "The account's name (lowercase letters, digits and '-').") var name: String
    @Option(help: "The provider: podman.") var type: String = "podman"
    @Option(name: .customLong("region"), help: "A region (repeatable; default: local).") var regions: [String] = []
    @Option(name: .customLong("read"), help: "A role that may see the account (repeatable).") var readers: [String] = []
    @Option(name: .customLong("write"), help: "A role that may change what runs in the account (repeatable).") var writers: [String] = []

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.accounts")
        var document: [String: JSONValue] = [
            "name": .string(name), "type": .string(type), "regions": .array((regions.isEmpty ? ["local"] : regions).map(JSONValue.string)),
        ]
        if !readers.isEmpty || !writers.isEmpty {
            document["permissions"] = ["READ": .array(readers.map(JSONValue.string)), "WRITE": .array(writers.map(JSONValue.string))]
        }
        if let problem = CloudAccounts.problem(.object(document)) { throw CLIError(problem) }
        let actor = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        let (name, saved) = (self.name, JSONValue.object(document))
        try await withDatabase(database, logger: logger) { client in
            let version = try await CloudAccounts(store: PostgresEventStore(client: client, logger: logger)).save(saved, metadata: EventMetadata(actor: actor, source: "cli"))
            Output.line("account \(name): version \(version)")
        }
    }
}

struct ShowAccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Accounts by name, each as a JSON line.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "Accounts to show.") var names: [String]

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.accounts")
        let names = self.names
        try await withDatabase(database, logger: logger) { client in
            let accounts = CloudAccounts(store: PostgresEventStore(client: client, logger: logger))
            for name in names {
                guard let account = try await accounts.account(name) else { throw CLIError("there is no account \(name)") }
                Output.line(try JSONText(encoding: account.document).text)
            }
        }
    }
}
