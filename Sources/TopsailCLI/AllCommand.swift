import ArgumentParser

struct AllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every role in one process: relay, plus the HTTP endpoint /health and /ready.",
        discussion: "SIGTERM or Ctrl-C shuts every role down gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var relay: RelayOptions

    @Option(help: "HTTP listen address.")
    var httpHost: String = "127.0.0.1"

    @Option(help: "HTTP port.")
    var httpPort: Int = 8084

    func run() async throws {
        let roles = try Roles(options: options)
        try await roles.run(relay: relay.configuration, http: (httpHost, httpPort))
    }
}
