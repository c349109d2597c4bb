import ArgumentParser

struct AllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every role in one process: relay, orchestrator, worker, scheduler, projector, supervisor and the HTTP API.",
        discussion: "SIGTERM or Ctrl-C shuts every role down gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var relay: RelayOptions

    @OptionGroup var http: HTTPOptions

    @OptionGroup var supervision: SupervisionOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([
            .relay(relay.configuration(topics: topics)), .orchestrator, .worker, .scheduler, .projector,
            supervision.role, .http(host: http.httpHost, port: http.httpPort),
        ])
    }
}

struct OrchestratorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orchestrator",
        abstract: "Advance executions: consume execution events (group <prefix>orchestrator) and append what follows.",
        discussion: "Any number may run; Kafka splits the executions between them. SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([.orchestrator])
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run stages' work (noop, script, wait, manualJudgment, evaluateVariables, checkPreconditions, webhook, pipeline): consume execution events (group <prefix>worker) and report outcomes.",
        discussion: "Any number may run. SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([.worker])
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Fire due durable timers (waits, stage timeouts, polling back-offs) into events.",
        discussion: "Any number may run; each timer is locked by one. SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([.scheduler])
    }
}

struct ProjectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projector",
        abstract: "Keep the read models (execution and stage statuses) current from the log.",
        discussion: """
            Follows the log in commit order and moves its checkpoint with the rows it writes. Several             may run; one advances at a time. `topsail projections rebuild` starts them over. SIGTERM             or Ctrl-C stops it gracefully.
            """
    )

    @OptionGroup var options: CommonOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([.projector])
    }
}

struct SupervisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervisor",
        abstract: "Report executions that make no progress beyond their stages' limits (a warning each, once).",
        discussion: """
            Reads the executions read model (kept by the projector) for running executions that have \
            been quiet longer than --stuck-grace, checks each against its stages' limits (stageTimeoutMs, \
            waitTime, a script's timeoutSeconds, a polling stage's back-off) and logs the ones overdue \
            with what to do. `topsail executions stuck` prints the same list once.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var supervision: SupervisionOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([supervision.role])
    }
}

struct SupervisionOptions: ParsableArguments {
    @Option(help: "Seconds between looks for stuck executions.")
    var superviseEvery: Int = 30

    @Option(help: "Seconds an execution may overrun its stages' limits before it counts as stuck.")
    var stuckGrace: Int = 60

    func validate() throws {
        guard superviseEvery > 0 else { throw ValidationError("--supervise-every must be positive") }
        guard stuckGrace >= 0 else { throw ValidationError("--stuck-grace must not be negative") }
    }

    var role: Roles.Role { .supervisor(interval: .seconds(superviseEvery), grace: .seconds(stuckGrace)) }
}

struct HTTPOptions: ParsableArguments {
    @Option(help: "HTTP listen address of the API.")
    var httpHost: String = "127.0.0.1"

    @Option(help: "HTTP port of the API (Spinnaker's Gate uses 8084).")
    var httpPort: Int = 8084

    func validate() throws {
        guard (1...65_535).contains(httpPort) else { throw ValidationError("--http-port must be 1…65535") }
    }
}

struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the HTTP API: executions (Gate's /pipelines and /executions paths), triggers of saved pipelines, /health and /ready.",
        discussion: "Errors are JSON: {\"error\", \"message\", \"status\"}. SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var http: HTTPOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([.http(host: http.httpHost, port: http.httpPort)])
    }
}
