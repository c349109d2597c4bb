import EventLog
import Foundation
import Orchestration
import Pipelines

/// The one way executions are started and controlled from outside the engine: the HTTP API, the
/// CLI, child pipeline stages and the trigger intake all come through here. Who may ask is
/// checked by the caller (``ApplicationAccess``); what the execution's state allows is decided
/// here, and a control that changes nothing says why (``Refusal``).
public struct ExecutionCommands: Sendable {
    public let repository: ExecutionRepository

    public init(repository: ExecutionRepository) {
        self.repository = repository
    }

    /// Starts an execution of `pipeline` (a snapshot of it is kept with the execution); returns its id.
    public func trigger(
        _ pipeline: PipelineConfig, trigger: JSONValue, parameters: [String: JSONValue], metadata: EventMetadata,
        executionID: String = UUID().uuidString.lowercased()
    ) async throws -> String {
        try await repository.trigger(pipeline, trigger: trigger, parameters: parameters, metadata: metadata, executionID: executionID)
    }

    /// Carries out a control (cancel, pause, resume, restart a stage, judge, skip a wait) and
    /// returns the execution after it, or why it changed nothing.
    public func control(_ message: ExecutionMessage, executionID: String, metadata: EventMetadata) async throws -> Result<ExecutionState, Refusal> {
        let state = try await repository.load(executionID)
        if case .failure(let refusal) = ExecutionDecider.evaluate(message, state: state) { return .failure(refusal) }
        let events = try await repository.handle(message, executionID: executionID, metadata: metadata)
        let after = try await repository.load(executionID)
        // Someone else changed the execution between the look and the append.
        if events.isEmpty { return .failure(ExecutionDecider.refusal(message, state: after)) }
        return .success(after)
    }
}
