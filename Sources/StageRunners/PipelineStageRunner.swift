import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// `pipeline`: runs another saved pipeline (`pipeline`: its id) as a child execution with
/// `pipelineParameters`; with `waitForCompletion` (the default) the stage ends as the child does.
///
/// The parent keeps a reference, never a copy: its outputs hold the child's `executionId`. The
/// child's id is chosen and recorded before the child is triggered (a first progress record), and
/// the trigger appends with "no stream yet", so a worker that crashes and runs the stage again
/// finds the same child instead of starting a second one. The child is checked after each
/// back-off, and at once when it completes (the orchestrator makes the parent's check due).
struct PipelineStageRunner: StageRunner {
    let children: ChildPipelines

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        let pollInterval = Duration.milliseconds(max(100, stage["backoffPeriodMs"]?.intValue ?? 1000))
        guard let childID = run.context["executionId"]?.stringValue else {
            // Record the child's id first: the trigger below is then idempotent.
            return .poll(after: .zero, context: ["executionId": .string(UUID().uuidString.lowercased())])
        }
        let child: ExecutionState
        switch try await children.start(childID, pipeline: stage["pipeline"]?.stringValue ?? "", parameters: stage["pipelineParameters"]?.objectValue ?? [:], from: run) {
        case .success(let started):
            child = started
        case .failure(let refusal):
            var outputs: [String: JSONValue] = ["error": .string(refusal.reason)]
            if refusal.denied { outputs["executionId"] = .null }
            return StageOutcome(status: refusal.denied ? .terminal : run.stage.failureStatus, outputs: outputs)
        }
        var outputs: [String: JSONValue] = [
            "executionId": .string(childID), "executionName": child.pipeline.name.map(JSONValue.string) ?? .null,
            "application": child.pipeline.application.map(JSONValue.string) ?? .null, "status": .string(child.status.rawValue),
        ]
        guard stage["waitForCompletion"]?.boolValue ?? true else {
            return StageOutcome(status: .succeeded, outputs: outputs)
        }
        guard child.status.isComplete else { return .poll(after: pollInterval, context: outputs) }
        switch child.status {
        case .succeeded:
            return StageOutcome(status: .succeeded, outputs: outputs)
        default:
            outputs["error"] = .string("child pipeline execution \(childID) ended \(child.status.rawValue)")
            return StageOutcome(status: run.stage.failureStatus, outputs: outputs)
        }
    }
}

/// Saved pipelines started as children of a running stage: the `pipeline` stage, and a deploy's
/// `custom` strategy.
struct ChildPipelines: Sendable {
    let repository: ExecutionRepository
    let configs: PipelineConfigStore

    /// Why a child could not be started; `denied` when the trigger identity may not run it.
    struct Refusal: Error {
        let reason: String
        var denied = false
    }

    /// The child execution `childID`, triggered now from `pipelineID` with `parameters` unless it
    /// was already (by an earlier run of the same stage): the caller records `childID` first.
    func start(_ childID: String, pipeline pipelineID: String, parameters given: [String: JSONValue], from run: StageRun) async throws -> Result<ExecutionState, Refusal> {
        let existing = try await repository.load(childID)
        guard existing.version == 0 else { return .success(existing) }
        guard !pipelineID.isEmpty else { return .failure(Refusal(reason: "the stage names no pipeline to run")) }
        guard let config = try await configs.load(pipelineID) else {
            return .failure(Refusal(reason: "no saved pipeline \(pipelineID) (application \(run.stage.json["application"]?.stringValue ?? "-"))"))
        }
        guard !config.disabled else { return .failure(Refusal(reason: "pipeline \(pipelineID) is disabled")) }
        let parameters: [String: JSONValue]
        do {
            parameters = try config.parameters(with: given)
        } catch {
            return .failure(Refusal(reason: "child pipeline \(pipelineID): \(error)"))
        }
        // A child trigger is a trigger: it runs as the parent's trigger identity, which needs
        // EXECUTE on the child's application now, whatever it had when the parent was saved.
        let parent = run.execution
        let identity = try await TriggerIdentity.caller(of: parent.trigger, identities: Identities(store: repository.eventStore))
        if let refusal = try await ApplicationAccess(store: repository.eventStore).refusal(identity, .execute, application: config.application) {
            return .failure(Refusal(reason: "not permitted to start pipeline \(pipelineID): \(refusal)", denied: true))
        }
        let trigger: JSONValue = [
            "type": "pipeline", "parameters": .object(parameters),
            "user": parent.trigger["user"] ?? .null,
            "parentExecution": [
                "id": .string(run.executionID), "application": parent.pipeline.application.map(JSONValue.string) ?? .null,
                "name": parent.pipeline.name.map(JSONValue.string) ?? .null,
            ],
            "parentPipelineStageId": .string(run.refID),
        ]
        do {
            _ = try await ExecutionCommands(repository: repository).trigger(
                config, trigger: TriggerIdentity.recording(identity, in: trigger), parameters: parameters,
                metadata: EventMetadata(correlationID: childID, causationID: run.executionID, actor: "worker", source: "pipeline-stage"),
                executionID: childID)
        } catch EventStoreError.versionConflict {
            // Triggered by an earlier run of this stage that did not get to report it.
        }
        return .success(try await repository.load(childID))
    }

    /// The child execution as it stands.
    func load(_ childID: String) async throws -> ExecutionState {
        try await repository.load(childID)
    }
}
