import ArgumentParser
import AsyncHTTPClient
import CLISupport
import EventLog
import Foundation
import NIOHTTP1
import Orchestration
import PipelineEngine
import PostgresEventStore
import ReadModels

struct ExecutionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "executions",
        abstract: "Look at and control executions.",
        subcommands: [
            ListExecutionsCommand.self, StuckExecutionsCommand.self, ShowExecutionCommand.self, CancelExecutionCommand.self, PauseExecutionCommand.self,
            ResumeExecutionCommand.self, RestartStageCommand.self, JudgeStageCommand.self, SkipWaitCommand.self,
        ]
    )
}

/// Runs one control message and reports what it changed: through the HTTP API (as the token's
/// user, with its permissions) when one is given, else through its handler on the database.
struct ExecutionControl {
    let options: CommonOptions
    let api: APIClientOptions

    /// `check` may refuse the message with a reason the person can act on, seeing the execution;
    /// `remote` is the same request to the API (which makes the same checks).
    func send(_ message: ExecutionMessage, to id: String, describing action: String,
              remote: (method: HTTPMethod, path: String, body: JSONValue?),
              check: @escaping @Sendable (ExecutionState) -> String? = { _ in nil }) async throws {
        if let api = try api.remote() {
            let view = try await api.call(remote.method, remote.path, body: remote.body)
            print("\(action): execution \(id) is \(view["status"]?.stringValue ?? "?")")
            return
        }
        let database = try options.database()
        let logger = options.logger("topsail.executions")
        let user = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        try await withDatabase(database, logger: logger) { client in
            let repository = ExecutionRepository(store: PostgresEventStore(client: client, logger: logger), logger: logger)
            let state = try await repository.load(id)
            guard state.version > 0 else { throw CLIError("no execution \(id)") }
            if let problem = check(state) { throw CLIError("cannot \(action) execution \(id): \(problem)") }
            switch try await ExecutionCommands(repository: repository).control(message, executionID: id, metadata: EventMetadata(actor: user, source: "cli")) {
            case .success(let after): print("\(action): execution \(id) is \(after.status.rawValue)")
            case .failure(.unknownExecution): throw CLIError("no execution \(id)")
            case .failure(let refusal): throw CLIError("cannot \(action) execution \(id): \(refusal)")
            }
        }
    }
}

struct ShowExecutionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print an execution: its status and each stage's.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let (id, json) = (self.id, self.json)
        if let api = try api.remote() {
            Self.show(id, try await api.call(.GET, "/pipelines/\(RemoteAPI.escape(id))"), json: json)
            return
        }
        let database = try options.database()
        let logger = options.logger("topsail.executions")
        try await withDatabase(database, logger: logger) { client in
            guard let view = try await ExecutionRepository(store: PostgresEventStore(client: client, logger: logger), logger: logger).view(id) else {
                throw CLIError("no execution \(id)")
            }
            Self.show(id, try JSONDecoder().decode(JSONValue.self, from: Data(try view.jsonText().utf8)), json: json)
        }
    }

    /// Prints an execution view (as the API serves it): JSON, or a line per stage.
    static func show(_ id: String, _ view: JSONValue, json: Bool) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: (try? encoder.encode(view)) ?? Data(), as: UTF8.self))
            return
        }
        func text(_ value: JSONValue?) -> String { value?.stringValue ?? "-" }
        print("execution \(id) \(text(view["status"])) (\(text(view["application"])) / \(text(view["pipeline"])))")
        for stage in view["stages"]?.arrayValue ?? [] {
            let attempt = stage["attempt"]?.intValue ?? 1
            print("  \(text(stage["refId"]))\t\(text(stage["status"]))\t\(text(stage["type"]))\t\(text(stage["name"]))" + (attempt > 1 ? "\tattempt \(attempt)" : ""))
        }
    }
}

struct CancelExecutionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel an execution: running stages are stopped, nothing new starts.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String
    @Option(help: "Why, recorded in the event.") var reason: String?

    func run() async throws {
        let user = ProcessInfo.processInfo.environment["USER"]
        let query = reason.map { "?reason=\(RemoteAPI.escape($0))" } ?? ""
        try await ExecutionControl(options: options, api: api).send(
            .cancel(by: user, reason: reason), to: id, describing: "cancel", remote: (.PUT, "/pipelines/\(RemoteAPI.escape(id))/cancel\(query)", nil))
    }
}

struct PauseExecutionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a running execution: no stage starts until it resumes.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String

    func run() async throws {
        try await ExecutionControl(options: options, api: api).send(
            .pause(by: ProcessInfo.processInfo.environment["USER"]), to: id, describing: "pause", remote: (.PUT, "/pipelines/\(RemoteAPI.escape(id))/pause", nil))
    }
}

struct ResumeExecutionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused execution.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String

    func run() async throws {
        try await ExecutionControl(options: options, api: api).send(
            .resume(by: ProcessInfo.processInfo.environment["USER"]), to: id, describing: "resume", remote: (.PUT, "/pipelines/\(RemoteAPI.escape(id))/resume", nil))
    }
}

struct RestartStageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart", abstract: "Run a completed stage again, with everything downstream of it; earlier attempts stay in the history.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String
    @Option(help: "The stage's refId.") var stage: String

    func run() async throws {
        try await ExecutionControl(options: options, api: api).send(
            .restartStage(refID: stage, by: ProcessInfo.processInfo.environment["USER"]), to: id, describing: "restart stage \(stage) of",
            remote: (.PUT, "/pipelines/\(RemoteAPI.escape(id))/stages/\(RemoteAPI.escape(stage))/restart", nil))
    }
}

struct JudgeStageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge", abstract: "Answer a manual judgment stage: --continue lets the pipeline go on, --stop fails the stage.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String
    @Option(help: "The manual judgment stage's refId.") var stage: String
    @Flag(name: .customLong("continue"), help: "Continue the pipeline.") var proceed = false
    @Flag(help: "Stop: the stage fails with its failure options.") var stop = false
    @Option(help: "The chosen judgment input (one of the stage's judgmentInputs).") var input: String?

    func validate() throws {
        guard proceed != stop else { throw ValidationError("give exactly one of --continue and --stop") }
    }

    func run() async throws {
        let judgment: Judgment = proceed ? .continue : .stop
        let (ref, input) = (stage, self.input)
        var body: [String: JSONValue] = ["judgmentStatus": .string(judgment.rawValue)]
        if let input { body["judgmentInput"] = .string(input) }
        try await ExecutionControl(options: options, api: api).send(
            .judge(refID: stage, judgment: judgment, input: input, by: ProcessInfo.processInfo.environment["USER"]),
            to: id, describing: "judge stage \(stage) of",
            remote: (.PATCH, "/pipelines/\(RemoteAPI.escape(id))/stages/\(RemoteAPI.escape(stage))", .object(body))) { state in
            JudgeStageHandler.problem(ref, input: input, state: state)
        }
    }
}

struct SkipWaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skip-wait", abstract: "Skip the remaining wait of a running wait stage: it succeeds now and the pipeline goes on.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The execution id.") var id: String
    @Option(help: "The wait stage's refId.") var stage: String

    func run() async throws {
        let ref = stage
        try await ExecutionControl(options: options, api: api).send(
            .skipWait(refID: stage, by: ProcessInfo.processInfo.environment["USER"]), to: id, describing: "skip the wait of stage \(stage) of",
            remote: (.PATCH, "/pipelines/\(RemoteAPI.escape(id))/stages/\(RemoteAPI.escape(stage))", ["skipRemainingWait": true])
        ) { state in
            guard let config = state.config(ref) else { return "the execution has no stage \(ref)" }
            guard config.type == "wait" else { return "stage \(ref) is a \(config.type ?? "?") stage, not a wait" }
            guard state.stage(ref).status == .running else { return "stage \(ref) is \(state.stage(ref).status.rawValue), not waiting" }
            return nil
        }
    }
}

struct StuckExecutionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stuck",
        abstract: "List running executions that made no progress beyond their stages' limits.",
        discussion: "Exit status 0 when there are none, 2 when some are stuck (for monitoring scripts)."
    )
    @OptionGroup var options: CommonOptions
    @Option(help: "Seconds an execution may overrun its stages' limits before it counts.") var grace: Int = 60
    @Flag(help: "Print JSON lines.") var json = false

    func validate() throws {
        guard grace >= 0 else { throw ValidationError("--grace must not be negative") }
    }

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.executions")
        let (grace, json) = (self.grace, self.json)
        let count = try await withDatabase(database, logger: logger) { client in
            let stuck = try await Supervisor(client: client, logger: logger).stuck(grace: .seconds(grace))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            for execution in stuck {
                if json {
                    Output.line(String(decoding: try encoder.encode(execution), as: UTF8.self))
                } else {
                    Output.line("\(execution.id) \(execution.application ?? "-")/\(execution.pipeline ?? "-"): \(execution.reasons.joined(separator: "; "))")
                }
            }
            if stuck.isEmpty && !json { Output.line("no stuck executions") }
            return stuck.count
        }
        if count > 0 { throw ExitCode(2) }
    }
}
