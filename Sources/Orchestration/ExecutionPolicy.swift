import Pipelines

/// What follows from an execution event: the messages the orchestrator and workers act on.
///
/// A pure function of the event and the execution's state just after it, so a consumer that
/// sees the event again (at-least-once delivery, a restart) derives the same messages, and the
/// version-checked handlers turn the repeats into nothing.
public enum ExecutionPolicy {
    public static func reactions(to event: ExecutionEvent, after state: ExecutionState) -> [ExecutionMessage] {
        switch event {
        case .triggered:
            return [.startExecution]
        case .started:
            return state.graph.initialStages.map { .startStage(refID: $0) }
        case let .stageStarted(ref, attempt):
            return [.runStage(refID: ref, attempt: attempt)]
        case let .stageCompleted(ref, status, _):
            // A canceled stage may still have work running: workers stop it.
            let stopWork: [ExecutionMessage] = status == .canceled ? [.cancelStageWork(refID: ref)] : []
            if state.status.isComplete { return stopWork }
            if status == .terminal || status == .canceled || state.cancelRequested {
                return stopWork + [.completeExecution]
            }
            let ready = state.graph.downstream[ref, default: []].filter { state.readyStages.contains($0) }
            if !ready.isEmpty { return ready.map { .startStage(refID: $0) } }
            if state.runningStages.isEmpty && state.readyStages.isEmpty { return [.completeExecution] }
            return []
        case let .stageProgressed(ref, attempt, poll, _, retryAfterMs):
            return [.schedulePoll(refID: ref, attempt: attempt, poll: poll, afterMs: retryAfterMs)]
        case let .stagePollDue(ref, attempt, _):
            return [.runStage(refID: ref, attempt: attempt)]
        case .stageRestarted(let ref, _):
            return [.startStage(refID: ref)]
        case .resumed:
            var next: [ExecutionMessage] = state.readyStages.map { .startStage(refID: $0) }
            next += state.runningStages.map { .runStage(refID: $0, attempt: state.stage($0).attempt) }
            return next.isEmpty ? [.completeExecution] : next
        case .completed:
            // A gated pipeline's slot is free: the concurrency gate starts whoever waits for it.
            guard state.pipeline.limitConcurrent else { return [] }
            return [.startWaitingExecutions(pipelineID: state.pipeline.id ?? "")]
        case .buffered, .paused, .cancelRequested:
            return []
        }
    }
}
