import Pipelines

/// Who carries out an action.
public enum EngineRole: String, Sendable, Hashable {
    /// Decides: appends the execution's (and other executions') next events.
    case orchestrator
    /// Works: runs and stops stages' work and sets their timers.
    case worker
}

/// One thing a role does because of an execution event. The policy names every reaction of the
/// engine; the orchestrator and the worker are small interpreters of these.
public enum ExecutionAction: Sendable, Hashable {
    /// A handler decides on this execution (``ExecutionDecider``).
    case decide(ExecutionMessage)
    /// Start a gated execution (`limitConcurrent`): take a slot of its pipeline, else buffer it.
    case startWithSlot
    /// This execution ended: give its slot back and start whoever waits for one.
    case releaseSlot
    /// This child ended: the parent's pipeline stage `refID` checks on it now.
    case wakeParent(executionID: String, refID: String)
    /// A pipeline stage ended without success: its child execution is canceled.
    case cancelChild(refID: String)
    /// Run the stage's work (attempt numbers make a repeat harmless).
    case runWork(refID: String, attempt: Int)
    /// Stop the stage's running work, if any (kill a script, stop a call).
    case stopWork(refID: String)
    /// Set a durable timer of the stage's attempt, due after `afterMs`.
    case setTimer(refID: String, attempt: Int, kind: StageTimerKind, poll: Int, afterMs: Int)

    public var role: EngineRole {
        switch self {
        case .decide, .startWithSlot, .releaseSlot, .wakeParent, .cancelChild: .orchestrator
        case .runWork, .stopWork, .setTimer: .worker
        }
    }
}

/// What follows from an execution event: every action of every role.
///
/// A pure function of the event and the execution's state just after it, so a consumer that
/// sees the event again (at-least-once delivery, a restart, a republished log) derives the same
/// actions, and the version-checked handlers turn the repeats into nothing.
public enum ExecutionPolicy {
    public static func actions(after event: ExecutionEvent, state: ExecutionState) -> [ExecutionAction] {
        switch event {
        case .triggered:
            return [state.pipeline.limitConcurrent ? .startWithSlot : .decide(.startExecution)]
        case .started:
            return state.graph.initialStages.map { .decide(.startStage(refID: $0)) }
        case let .stageStarted(ref, attempt):
            return [.runWork(refID: ref, attempt: attempt)]
        case let .stageCompleted(ref, status, _):
            // Completed from outside (canceled, timed out, judged) while work still runs: stop it.
            var actions: [ExecutionAction] = [.stopWork(refID: ref)]
            if status != .succeeded, state.config(ref)?.type == "pipeline", state.stage(ref).outputs["executionId"]?.stringValue != nil {
                actions.append(.cancelChild(refID: ref))
            }
            if state.status.isComplete { return actions }
            if status == .terminal || status == .canceled || state.cancelRequested {
                return actions + [.decide(.completeExecution)]
            }
            let ready = state.graph.downstream[ref, default: []].filter { state.readyStages.contains($0) }
            if !ready.isEmpty { return actions + ready.map { .decide(.startStage(refID: $0)) } }
            if state.runningStages.isEmpty && state.readyStages.isEmpty { return actions + [.decide(.completeExecution)] }
            return actions
        case let .stageProgressed(ref, attempt, poll, _, retryAfterMs):
            return [.setTimer(refID: ref, attempt: attempt, kind: .poll, poll: poll, afterMs: retryAfterMs)]
        case let .stagePollDue(ref, attempt, _):
            return [.runWork(refID: ref, attempt: attempt)]
        case .stageRestarted(let ref, _):
            return [.decide(.startStage(refID: ref))]
        case .resumed:
            // Work that was running keeps running (timers fall due while paused); checks that
            // fell due while paused lapsed and are made due again.
            var actions = nextStages(state)
            for ref in state.runningStages where state.stage(ref).polls > 0 && !state.stage(ref).pollDue {
                let stage = state.stage(ref)
                actions.append(.setTimer(refID: ref, attempt: stage.attempt, kind: .poll, poll: stage.polls - 1, afterMs: 0))
            }
            return actions
        case let .redriven(_, _, stages, timedOut):
            guard state.status == .running else { return [] }
            var actions = nextStages(state)
            for ref in stages where state.stage(ref).status == .running {
                actions += redrive(ref, timedOut: timedOut.contains(ref), state: state)
            }
            return actions
        case .completed:
            var actions: [ExecutionAction] = []
            // A gated pipeline's slot is free: the gate starts whoever waits for it.
            if state.pipeline.limitConcurrent { actions.append(.releaseSlot) }
            if state.trigger["type"]?.stringValue == "pipeline", let parent = state.trigger["parentExecution"]?["id"]?.stringValue,
               let ref = state.trigger["parentPipelineStageId"]?.stringValue {
                actions.append(.wakeParent(executionID: parent, refID: ref))
            }
            return actions
        case .buffered, .paused, .cancelRequested:
            return []
        }
    }

    /// The stages that may start now, or the end of the execution when nothing is left to run.
    static func nextStages(_ state: ExecutionState) -> [ExecutionAction] {
        let ready = state.readyStages
        if !ready.isEmpty { return ready.map { .decide(.startStage(refID: $0)) } }
        return state.runningStages.isEmpty ? [.decide(.completeExecution)] : []
    }

    /// How an overdue running stage is driven again: what it was waiting for is made due now,
    /// or its work is run again when nothing else would move it.
    static func redrive(_ ref: String, timedOut: Bool, state: ExecutionState) -> [ExecutionAction] {
        let stage = state.stage(ref)
        if timedOut { return [.setTimer(refID: ref, attempt: stage.attempt, kind: .stageTimeout, poll: 0, afterMs: 0)] }
        if stage.polls > 0 && !stage.pollDue {
            return [.setTimer(refID: ref, attempt: stage.attempt, kind: .poll, poll: stage.polls - 1, afterMs: 0)]
        }
        switch state.config(ref)?.type {
        case "wait": return [.setTimer(refID: ref, attempt: stage.attempt, kind: .waitElapsed, poll: 0, afterMs: 0)]
        case "manualJudgment": return []
        default: return [.runWork(refID: ref, attempt: stage.attempt)]
        }
    }
}
