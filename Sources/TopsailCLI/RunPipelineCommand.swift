import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import ReadModels

struct RunPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Trigger a run of a pipeline (a file, or a saved one by id) and print the execution id; --wait follows it to the end.",
        discussion: """
            The orchestrator and worker roles (topsail all) run the execution. With --wait each stage's \
            status is printed as it changes and the exit status is 0 only when the execution SUCCEEDED \
            (1 otherwise); Ctrl-C stops following, not the execution.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var policy: StagePolicyOptions

    @Option(name: .shortAndLong, help: "The pipeline JSON file ('-' reads standard input).")
    var file: String?

    @Option(help: "The id of a pipeline saved with `topsail pipeline save` (instead of -f).")
    var id: String?

    @Option(name: .customLong("param"), help: ArgumentHelp("A pipeline parameter, repeatable.", valueName: "name=value"))
    var parameters: [String] = []

    @Flag(help: "Follow the execution until it completes.")
    var wait = false

    func validate() throws {
        guard (file == nil) != (id == nil) else { throw ValidationError("give exactly one of -f FILE and --id ID") }
    }

    @Flag(help: "Print JSON: the execution reference, or with --wait the final execution.")
    var json = false

    func run() async throws {
        var given: [String: JSONValue] = [:]
        for item in parameters {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, !pair[0].isEmpty else { throw CLIError("--param '\(item)' is not name=value") }
            given[String(pair[0])] = .string(String(pair[1]))
        }
        let disabled = policy.disabledStageTypes
        let file = try self.file.map { try PipelineFile.load($0, disabledStageTypes: disabled) }
        let database = try options.database()
        let logger = options.logger("topsail.pipeline")
        let user = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        let (wait, json, savedID, givenParameters) = (self.wait, self.json, self.id, given)
        try await withDatabase(database, logger: logger) { client in
            let store = PostgresEventStore(client: client, logger: logger)
            let repository = ExecutionRepository(store: store, logger: logger)
            let pipeline: PipelineConfig
            if let file {
                pipeline = file
            } else {
                let id = savedID ?? ""
                guard let saved = try await PipelineConfigStore(store: store).load(id) else {
                    throw CLIError("no saved pipeline \(id); save one with topsail pipeline save -f FILE")
                }
                guard !saved.disabled else { throw CLIError("pipeline \(id) is disabled") }
                if let problem = PipelineValidation.disabledStages(of: saved, disabled).first {
                    throw CLIError("pipeline \(id) cannot run here: \(problem)")
                }
                pipeline = saved
            }
            let parameterValues: [String: JSONValue]
            do {
                parameterValues = try pipeline.parameters(with: givenParameters)
            } catch {
                throw CLIError("\(error) (pass --param name=value)")
            }
            let id = try await ExecutionCommands(repository: repository).trigger(
                pipeline,
                // An operator with database access may do anything; its children run as such.
                trigger: TriggerIdentity.recording(
                    Caller(user: user, roles: [Caller.adminRole]), in: ["type": "manual", "user": .string(user), "parameters": .object(parameterValues)]),
                parameters: parameterValues, metadata: EventMetadata(actor: user, source: "cli"))
            guard wait else {
                print(json ? "{\"id\":\(id.jsonQuoted)}" : id)
                return
            }
            if !json { Output.line("execution \(id)") }
            let final = try await ExecutionFollower(repository: repository, executionID: id).follow { line in
                if !json { Output.line(line) }
            }
            if json { print(try ExecutionView(id: id, state: final).jsonText()) }
            guard final.status == .succeeded else { throw ExitCode(1) }
        }
    }
}

/// Follows an execution's stream, reporting each change, until it completes.
struct ExecutionFollower {
    let repository: ExecutionRepository
    let executionID: String

    func follow(_ report: (String) -> Void) async throws -> ExecutionState {
        var seen = 0
        var state = ExecutionState()
        while true {
            let events = try await repository.events(of: executionID)
            for event in events.dropFirst(seen) {
                state.evolve(event)
                if let line = Self.describe(event, state) { report(line) }
            }
            seen = events.count
            if state.status.isComplete { return state }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func describe(_ event: ExecutionEvent, _ state: ExecutionState) -> String? {
        func stage(_ ref: String) -> String {
            let config = state.config(ref)
            return "stage \(ref) (\(config?.name ?? ref), \(config?.type ?? "?"))"
        }
        switch event {
        case .triggered: return nil
        case .buffered: return "waiting for a free slot (BUFFERED)"
        case .started: return "RUNNING"
        case let .stageStarted(ref, attempt): return "\(stage(ref)) RUNNING" + (attempt > 1 ? " (attempt \(attempt))" : "")
        case let .stageCompleted(ref, status, outputs):
            let error = outputs["error"]?.stringValue.map { ": \($0)" } ?? ""
            return "\(stage(ref)) \(status.rawValue)\(error)"
        case .stageRestarted(let ref, _): return "\(stage(ref)) restarted"
        case let .stageProgressed(ref, _, poll, context, retryAfterMs):
            // A progress message the stage reports (a webhook's progressJsonPath), else the check count.
            let note = context["progressMessage"]?.stringValue ?? context["error"]?.stringValue ?? "check \(poll + 1) still running"
            return "\(stage(ref)) RUNNING: \(note); next check in \(retryAfterMs) ms"
        case .stagePollDue: return nil
        case .paused(let by): return "PAUSED" + (by.map { " by \($0)" } ?? "")
        case .resumed(let by): return "resumed" + (by.map { " by \($0)" } ?? "")
        case let .cancelRequested(by, reason): return "cancel requested" + (by.map { " by \($0)" } ?? "") + (reason.map { ": \($0)" } ?? "")
        case .completed(let status): return "execution \(status.rawValue)"
        case let .redriven(by, reasons, _, _): return "driven again by \(by): \(reasons.joined(separator: "; "))"
        }
    }
}

