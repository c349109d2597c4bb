import EventLog
import Pipelines

/// Routes a message to its handler. Every handler is a pure function of the execution's state.
public enum ExecutionDecider {
    public static func decide(_ message: ExecutionMessage, state: ExecutionState, context: DecisionContext = DecisionContext()) -> Decision {
        switch message {
        case .startExecution:
            StartExecutionHandler.handle(state: state, context: context)
        case .startStage(let ref):
            StartStageHandler.handle(ref, state: state, context: context)
        case let .completeStage(ref, status, outputs):
            CompleteStageHandler.handle(ref, status: status, outputs: outputs, state: state)
        case .completeExecution:
            CompleteExecutionHandler.handle(state: state)
        case let .cancel(by, reason):
            CancelExecutionHandler.handle(by: by, reason: reason, state: state)
        case .pause(let by):
            PauseExecutionHandler.handle(by: by, state: state)
        case .resume(let by):
            ResumeExecutionHandler.handle(by: by, state: state)
        case let .restartStage(ref, by):
            RestartStageHandler.handle(ref, by: by, state: state)
        case let .timerFired(ref, attempt, kind):
            TimerFiredHandler.handle(ref, attempt: attempt, kind: kind, state: state)
        case let .judge(ref, judgment, input, by):
            JudgeStageHandler.handle(ref, judgment: judgment, input: input, by: by, state: state)
        case let .skipWait(ref, by):
            SkipWaitHandler.handle(ref, by: by, state: state)
        case let .recordProgress(ref, attempt, poll, context, retryAfterMs):
            StageProgressHandler.record(ref, attempt: attempt, poll: poll, context: context, retryAfterMs: retryAfterMs, state: state)
        case let .pollDue(ref, attempt, poll):
            StageProgressHandler.pollDue(ref, attempt: attempt, poll: poll, state: state)
        case let .redrive(by, reasons, stages, timedOut):
            RedriveHandler.handle(by: by, reasons: reasons, stages: stages, timedOut: timedOut, state: state)
        }
    }
}

/// Starts a triggered execution, or buffers it when its pipeline has no free slot.
public enum StartExecutionHandler {
    public static func handle(state: ExecutionState, context: DecisionContext) -> Decision {
        guard state.status == .notStarted || state.status == .buffered, !state.cancelRequested else { return .none }
        let pipeline = state.pipeline
        let slots = max(1, pipeline.maxConcurrentExecutions)
        if pipeline.limitConcurrent && context.runningExecutionsOfPipeline >= slots {
            return state.status == .buffered ? .none : Decision(events: [.buffered])
        }
        return Decision(events: [.started])
    }
}

/// Starts one stage once every upstream stage let it; skips it when `stageEnabled` says so.
public enum StartStageHandler {
    public static func handle(_ ref: String, state: ExecutionState, context: DecisionContext) -> Decision {
        guard state.status == .running, !state.isPaused, !state.cancelRequested,
              let config = state.config(ref), state.stage(ref).status == .notStarted,
              state.upstreamComplete(ref), !state.upstreamHalted(ref)
        else { return .none }
        if !context.stageEnabled(config, state) {
            return Decision(events: [.stageCompleted(refID: ref, status: .skipped, outputs: [:])])
        }
        return Decision(events: [.stageStarted(refID: ref, attempt: state.stage(ref).attempt + 1)])
    }
}

/// Records a stage's outcome; what it unblocks follows from the event (``ExecutionPolicy``).
public enum CompleteStageHandler {
    public static func handle(_ ref: String, status: ExecutionStatus, outputs: [String: JSONValue], state: ExecutionState) -> Decision {
        guard state.stage(ref).status == .running, status.isComplete else { return .none }
        return Decision(events: [.stageCompleted(refID: ref, status: status, outputs: outputs)])
    }
}

/// Decides the final status once nothing more can run; a TERMINAL stage ends it at once.
public enum CompleteExecutionHandler {
    public static func handle(state: ExecutionState) -> Decision {
        guard state.status == .running || state.status == .paused else { return .none }
        let statuses = state.graph.order.map { state.stage($0).status }
        let failedFast = statuses.contains(.terminal)
        if !failedFast && !state.cancelRequested && (!state.runningStages.isEmpty || !state.readyStages.isEmpty) {
            return .none
        }
        var events: [ExecutionEvent] = state.runningStages.map { .stageCompleted(refID: $0, status: .canceled, outputs: [:]) }
        events.append(.completed(status: finalStatus(state)))
        return Decision(events: events)
    }

    /// Orca's rules: canceled wins, then any TERMINAL stage, then a STOPPED stage that asked to
    /// fail once the other branches completed; otherwise the execution succeeded.
    static func finalStatus(_ state: ExecutionState) -> ExecutionStatus {
        if state.cancelRequested { return .canceled }
        let stages = state.graph.order.map { (config: state.config($0), status: state.stage($0).status) }
        if stages.contains(where: { $0.status == .terminal }) { return .terminal }
        if stages.contains(where: { $0.status == .canceled }) { return .canceled }
        if stages.contains(where: { $0.status == .stopped && $0.config?.completeOtherBranchesThenFail == true }) { return .terminal }
        return .succeeded
    }
}

/// Cancels the execution: running stages are told to stop, nothing new starts. Always possible
/// while the execution is not complete, whatever state its stages are in.
public enum CancelExecutionHandler {
    public static func handle(by: String?, reason: String?, state: ExecutionState) -> Decision {
        guard !state.status.isComplete else { return .none }
        var after = state
        let request = ExecutionEvent.cancelRequested(by: by, reason: reason)
        after.evolve(request)
        if state.status == .notStarted || state.status == .buffered {
            return Decision(events: [request, .completed(status: .canceled)])
        }
        return Decision(events: [request] + CompleteExecutionHandler.handle(state: after).events)
    }
}

/// Pauses a running execution: no stage starts and no task is polled until it resumes.
public enum PauseExecutionHandler {
    public static func handle(by: String?, state: ExecutionState) -> Decision {
        guard state.status == .running else { return .none }
        return Decision(events: [.paused(by: by)])
    }
}

/// Resumes a paused execution and starts whatever became ready while it was paused.
public enum ResumeExecutionHandler {
    public static func handle(by: String?, state: ExecutionState) -> Decision {
        guard state.status == .paused else { return .none }
        return Decision(events: [.resumed(by: by)])
    }
}

/// Runs a completed stage again, with everything downstream of it; earlier attempts stay in the
/// history. The execution runs again if it had completed.
public enum RestartStageHandler {
    public static func handle(_ ref: String, by: String?, state: ExecutionState) -> Decision {
        guard state.config(ref) != nil, state.stage(ref).status.isComplete,
              state.status.isComplete || state.status == .running
        else { return .none }
        var reset: [String] = []
        var queue = [ref]
        while let current = queue.first {
            queue.removeFirst()
            guard !reset.contains(current) else { continue }
            reset.append(current)
            queue += state.graph.downstream[current, default: []]
        }
        let ordered = state.graph.order.filter(reset.contains)
        if ordered.contains(where: { state.stage($0).status == .running }) { return .none }
        return Decision(events: [.stageRestarted(refID: ref, reset: ordered)])
    }
}

/// Answers a running manual judgment stage: continue succeeds it; stop fails it with the stage's
/// failure options (TERMINAL by default). Only while the execution runs.
public enum JudgeStageHandler {
    public static func handle(_ ref: String, judgment: Judgment, input: String?, by: String?, state: ExecutionState) -> Decision {
        guard state.status == .running, state.stage(ref).status == .running,
              let config = state.config(ref), config.type == "manualJudgment", problem(ref, input: input, state: state) == nil
        else { return .none }
        var outputs: [String: JSONValue] = ["judgmentStatus": .string(judgment.rawValue)]
        if let input { outputs["judgmentInput"] = .string(input) }
        if let by { outputs["lastModifiedBy"] = .string(by) }
        let status: ExecutionStatus = judgment == .continue ? .succeeded : config.failureStatus
        return Decision(events: [.stageCompleted(refID: ref, status: status, outputs: outputs)])
    }
}

extension JudgeStageHandler {
    /// The choices a manual judgment stage offers (`judgmentInputs[].value`); empty when free.
    public static func choices(_ config: StageConfig) -> [String] {
        (config.json["judgmentInputs"]?.arrayValue ?? []).compactMap { $0["value"]?.stringValue ?? $0.stringValue }
    }

    /// Why this judgment cannot be given, in words for the person giving it; nil when it can.
    public static func problem(_ ref: String, input: String?, state: ExecutionState) -> String? {
        guard let config = state.config(ref) else { return "the execution has no stage \(ref)" }
        guard config.type == "manualJudgment" else { return "stage \(ref) is a \(config.type ?? "?") stage, not a manual judgment" }
        guard state.stage(ref).status == .running else { return "stage \(ref) is \(state.stage(ref).status.rawValue), not waiting for a judgment" }
        let choices = choices(config)
        if let input, !choices.isEmpty, !choices.contains(input) {
            return "'\(input)' is not one of the stage's judgment inputs: \(choices.joined(separator: ", "))"
        }
        return nil
    }
}

/// "Skip remaining wait": a running wait stage succeeds now; its timer later finds it done.
public enum SkipWaitHandler {
    public static func handle(_ ref: String, by: String?, state: ExecutionState) -> Decision {
        guard state.status == .running, state.stage(ref).status == .running, state.config(ref)?.type == "wait" else { return .none }
        var outputs: [String: JSONValue] = ["skipRemainingWait": true]
        if let by { outputs["lastModifiedBy"] = .string(by) }
        return Decision(events: [.stageCompleted(refID: ref, status: .succeeded, outputs: outputs)])
    }
}

/// A stage's timer fired: a wait is over, or the stage ran out of time. A timer of an earlier
/// attempt (the stage was restarted) or of a stage that no longer runs changes nothing.
public enum TimerFiredHandler {
    public static func handle(_ ref: String, attempt: Int, kind: StageTimerKind, state: ExecutionState) -> Decision {
        // Time passes while an execution is paused: a wait or a timeout that falls due completes
        // its stage (the timer is gone after firing), and the next stages wait for the resume.
        guard state.status == .running || state.status == .paused, state.stage(ref).status == .running, state.stage(ref).attempt == attempt,
              let config = state.config(ref)
        else { return .none }
        switch kind {
        case .waitElapsed:
            return Decision(events: [.stageCompleted(refID: ref, status: .succeeded, outputs: [:])])
        case .poll:
            // Poll timers arrive as pollDue messages, which know which check is due.
            return .none
        case .stageTimeout:
            let status: ExecutionStatus = config.markSuccessfulOnTimeout ? .succeeded : config.failureStatus
            let limit = config.stageTimeoutMs.map { "\($0) ms" } ?? "its time limit"
            return Decision(events: [.stageCompleted(refID: ref, status: status, outputs: ["error": .string("stage timed out after \(limit)")])])
        }
    }
}

/// Task attempts of a stage whose work keeps running (a webhook being monitored, a call being
/// retried): each records its context, then a durable timer makes the next check due.
public enum StageProgressHandler {
    /// Records progress `poll` of the running attempt; a repeat of an already recorded poll, or
    /// progress of an attempt or stage that has moved on, changes nothing.
    public static func record(
        _ ref: String, attempt: Int, poll: Int, context: [String: JSONValue], retryAfterMs: Int, state: ExecutionState
    ) -> Decision {
        let stage = state.stage(ref)
        guard !state.status.isComplete, stage.status == .running, stage.attempt == attempt, stage.polls == poll else { return .none }
        return Decision(events: [.stageProgressed(refID: ref, attempt: attempt, poll: poll, context: context, retryAfterMs: max(0, retryAfterMs))])
    }

    /// Makes the check after progress `poll` due, once, while the execution runs. A paused
    /// execution lets it lapse: resuming runs every running stage's work again.
    public static func pollDue(_ ref: String, attempt: Int, poll: Int, state: ExecutionState) -> Decision {
        let stage = state.stage(ref)
        guard state.status == .running, stage.status == .running, stage.attempt == attempt, stage.polls == poll + 1, !stage.pollDue
        else { return .none }
        return Decision(events: [.stagePollDue(refID: ref, attempt: attempt, poll: poll)])
    }
}

/// Records that the supervisor drives a running execution again; what is re-derived follows from
/// the event (``ExecutionPolicy``). A finished, paused or not yet started execution is left alone.
public enum RedriveHandler {
    public static func handle(by: String, reasons: [String], stages: [String], timedOut: [String], state: ExecutionState) -> Decision {
        guard state.status == .running else { return .none }
        let running = Set(state.runningStages)
        return Decision(events: [.redriven(by: by, reasons: reasons, stages: stages.filter(running.contains), timedOut: timedOut.filter(running.contains))])
    }
}
