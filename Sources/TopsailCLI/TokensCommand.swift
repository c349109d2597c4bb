import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PipelineEngine
import PostgresEventStore
import PostgresNIO

struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Create, list and revoke API tokens (stored hashed; a token is shown once, when created).",
        subcommands: [CreateTokenCommand.self, ListTokensCommand.self, RevokeTokenCommand.self, BootstrapTokenCommand.self]
    )
}

struct CreateTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Issue a token for a user and print it (only this once).")
    @OptionGroup var options: CommonOptions
    @Option(help: "The user (or service account) the token acts as.") var user: String
    @Option(help: "A label to recognise the token by.") var name: String?
    @Option(help: "Set the user's roles (comma-separated; 'admin' may do everything).") var roles: String?

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.tokens")
        let (user, name) = (self.user, self.name)
        let roles = self.roles.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let actor = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        try await withDatabase(database, logger: logger) { client in
            let issued = try await Identities(store: PostgresEventStore(client: client, logger: logger))
                .issue(user: user, name: name, roles: roles, metadata: EventMetadata(actor: actor, source: "cli"))
            Output.line(issued.token)
            FileHandle.standardError.write(Data("tokens: token \(issued.id) for \(user) created; it is not shown again\n".utf8))
        }
    }
}

struct ListTokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens: id, user, label, when created, whether revoked.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.tokens")
        try await withDatabase(database, logger: logger) { client in
            let tokens = try await TokenListing(client: client, logger: logger).all()
            if tokens.isEmpty { Output.line("no tokens; create one with topsail tokens create --user NAME") }
            for token in tokens {
                Output.line([token.id, token.user, token.name ?? "-", token.created.formatted(Date.ISO8601FormatStyle()), token.revoked ? "revoked" : "active"]
                    .joined(separator: "\t"))
            }
        }
    }
}

struct RevokeTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token: requests with it get 401 from now on.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "The token's id (the part after tsk_, as tokens list shows it).") var id: String

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.tokens")
        let id = self.id
        let actor = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        try await withDatabase(database, logger: logger) { client in
            guard try await Identities(store: PostgresEventStore(client: client, logger: logger))
                .revoke(id: id, metadata: EventMetadata(actor: actor, source: "cli"))
            else { throw CLIError("no active token \(id) (topsail tokens list shows them)") }
            Output.line("revoked token \(id)")
        }
    }
}

struct BootstrapTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "On a fresh installation, issue an admin token and print it; when any token exists, do nothing.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.tokens")
        try await withDatabase(database, logger: logger) { client in
            guard try await TokenListing(client: client, logger: logger).all().isEmpty else {
                Output.line("tokens exist already; create more with topsail tokens create --user NAME")
                return
            }
            let issued = try await Identities(store: PostgresEventStore(client: client, logger: logger))
                .issue(user: "admin", name: "bootstrap", roles: [Caller.adminRole], metadata: EventMetadata(actor: "bootstrap", source: "cli"))
            Output.line("bootstrap admin token (shown once): \(issued.token)")
        }
    }
}
