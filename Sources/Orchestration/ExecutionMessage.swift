import EventLog
import Pipelines

/// What a handler is asked to decide about one execution (the commands of ``ExecutionDecider``).
public enum ExecutionMessage: Sendable, Hashable {
    case startExecution
    case startStage(refID: String)
    case completeStage(refID: String, status: ExecutionStatus, outputs: [String: JSONValue])
    case completeExecution
    case cancel(by: String?, reason: String?)
    case pause(by: String?)
    case resume(by: String?)
    case restartStage(refID: String, by: String?)
    /// A stage's durable timer fired for the given attempt.
    case timerFired(refID: String, attempt: Int, kind: StageTimerKind)
    /// A person ends a running wait stage early ("skip remaining wait"): it succeeds now.
    case skipWait(refID: String, by: String?)
    /// A person's answer to a manual judgment stage.
    case judge(refID: String, judgment: Judgment, input: String?, by: String?)
    /// A worker's stage work is still running: record `context` and check again after the back-off.
    case recordProgress(refID: String, attempt: Int, poll: Int, context: [String: JSONValue], retryAfterMs: Int)
    /// The poll timer fired: the stage's work is checked again.
    case pollDue(refID: String, attempt: Int, poll: Int)
    /// The supervisor drives an execution that makes no progress again (``ExecutionEvent/redriven(by:reasons:stages:timedOut:)``).
    case redrive(by: String, reasons: [String], stages: [String], timedOut: [String])
}

/// A handler's answer: the events to append, in one version-checked append. What happens next
/// follows from the events themselves (``ExecutionPolicy``), so it survives any crash.
public struct Decision: Sendable, Hashable {
    public var events: [ExecutionEvent]

    public init(events: [ExecutionEvent] = []) {
        self.events = events
    }

    /// Nothing to do: the message is stale or a duplicate.
    public static let none = Decision()
}

/// What a handler may know beyond the execution's own events.
public struct DecisionContext: Sendable {
    /// Whether a stage's `stageEnabled` expression lets it run (false → SKIPPED).
    public var stageEnabled: @Sendable (StageConfig, ExecutionState) -> Bool
    /// How many other executions of the same pipeline are running now.
    public var runningExecutionsOfPipeline: Int

    public init(
        stageEnabled: @escaping @Sendable (StageConfig, ExecutionState) -> Bool = { stage, _ in stage.enabledExpression == nil },
        runningExecutionsOfPipeline: Int = 0
    ) {
        self.stageEnabled = stageEnabled
        self.runningExecutionsOfPipeline = runningExecutionsOfPipeline
    }
}

/// A manual judgment's answer.
public enum Judgment: String, Sendable, Hashable {
    case `continue`
    case stop
}

/// What a stage's durable timer stands for.
public enum StageTimerKind: String, Sendable, Hashable {
    /// A wait stage's time is up: the stage succeeds.
    case waitElapsed
    /// `stageTimeoutMs` ran out: the stage fails with its failure options, or succeeds with
    /// `markSuccessfulOnTimeout`.
    case stageTimeout
    /// A running stage's back-off is over: its work is checked again (``ExecutionMessage/pollDue(refID:attempt:poll:)``).
    case poll
}
