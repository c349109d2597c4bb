import Pipelines

/// Why a message changes nothing: the callers of a control (the API, the CLI, triggers) say this
/// instead of guessing.
public enum Refusal: Error, Hashable, Sendable, CustomStringConvertible {
    /// No such execution.
    case unknownExecution
    /// The execution is already as the message would leave it (a repeat, or someone was first).
    case alreadyDone(String)
    /// The execution's state does not allow it now.
    case notAllowed(String)

    public var description: String {
        switch self {
        case .unknownExecution: "there is no such execution"
        case .alreadyDone(let why), .notAllowed(let why): why
        }
    }
}

extension ExecutionDecider {
    /// The events `message` leads to, or why it leads to none.
    public static func evaluate(_ message: ExecutionMessage, state: ExecutionState, context: DecisionContext = DecisionContext()) -> Result<[ExecutionEvent], Refusal> {
        guard state.version > 0 else { return .failure(.unknownExecution) }
        let decision = decide(message, state: state, context: context)
        return decision.events.isEmpty ? .failure(refusal(message, state: state)) : .success(decision.events)
    }

    /// Why `message` changes nothing in `state`, in words for the person who asked.
    public static func refusal(_ message: ExecutionMessage, state: ExecutionState) -> Refusal {
        let status = state.status.rawValue
        func stage(_ ref: String) -> Refusal? {
            guard state.config(ref) != nil else { return .notAllowed("the execution has no stage \(ref)") }
            return nil
        }
        switch message {
        case .cancel:
            // A cancel changes every execution that has not completed.
            return .alreadyDone("it is \(status)")
        case .pause:
            if state.status == .paused { return .alreadyDone("it is PAUSED already") }
            return .notAllowed("it is \(status), not RUNNING")
        case .resume:
            if state.status == .running { return .alreadyDone("it is RUNNING, not PAUSED") }
            return .notAllowed("it is \(status), not PAUSED")
        case let .restartStage(ref, _):
            if let missing = stage(ref) { return missing }
            let current = state.stage(ref).status
            guard current.isComplete else { return .notAllowed("stage \(ref) is \(current.rawValue); only a completed stage restarts") }
            guard state.status.isComplete || state.status == .running else { return .notAllowed("it is \(status)") }
            return .notAllowed("a stage downstream of \(ref) is still running")
        case let .judge(ref, _, input, _):
            guard state.status == .running else { return .notAllowed("it is \(status), not RUNNING") }
            return .notAllowed(JudgeStageHandler.problem(ref, input: input, state: state) ?? "stage \(ref) cannot be judged now")
        case let .skipWait(ref, _):
            if let missing = stage(ref) { return missing }
            guard state.status == .running else { return .notAllowed("it is \(status), not RUNNING") }
            guard state.config(ref)?.type == "wait" else { return .notAllowed("stage \(ref) is a \(state.config(ref)?.type ?? "?") stage, not a wait") }
            let current = state.stage(ref).status
            return current.isComplete ? .alreadyDone("stage \(ref) is \(current.rawValue) already") : .notAllowed("stage \(ref) is \(current.rawValue), not RUNNING")
        case .redrive:
            return .notAllowed("it is \(status), not RUNNING")
        case .startExecution, .startStage, .completeStage, .completeExecution, .timerFired, .recordProgress, .pollDue:
            // The engine's own messages: a repeat, or a message the execution has moved past.
            return .alreadyDone("the execution has moved past it (it is \(status))")
        }
    }
}
