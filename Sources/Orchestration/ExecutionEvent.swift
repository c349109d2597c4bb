import EventLog
import Pipelines

/// What happens to an execution, appended to its stream `execution-<id>`.
/// Wire names are stable; payloads only grow.
public enum ExecutionEvent: Sendable, Hashable {
    /// A trigger asked for a run; carries a snapshot of the pipeline as it was then.
    case triggered(pipeline: PipelineConfig, trigger: JSONValue, parameters: [String: JSONValue])
    /// Waiting for a concurrency slot (`limitConcurrent`).
    case buffered
    case started
    case stageStarted(refID: String, attempt: Int)
    case stageCompleted(refID: String, status: ExecutionStatus, outputs: [String: JSONValue])
    /// A stage's work ran and is still running (a task attempt): `context` is what it carries to
    /// its next check (merged into the stage's outputs), due after `retryAfterMs`.
    case stageProgressed(refID: String, attempt: Int, poll: Int, context: [String: JSONValue], retryAfterMs: Int)
    /// The back-off after progress `poll` of the stage is over: workers check on it again.
    case stagePollDue(refID: String, attempt: Int, poll: Int)
    /// The stage and everything downstream of it go back to NOT_STARTED for another attempt.
    case stageRestarted(refID: String, reset: [String])
    case paused(by: String?)
    case resumed(by: String?)
    case cancelRequested(by: String?, reason: String?)
    case completed(status: ExecutionStatus)
    /// The supervisor found the execution making no progress beyond its stages' limits and drives
    /// it again from its log: `stages` are the overdue ones, `timedOut` those past `stageTimeoutMs`.
    case redriven(by: String, reasons: [String], stages: [String], timedOut: [String])

    public enum WireType {
        public static let triggered = "execution.triggered"
        public static let buffered = "execution.buffered"
        public static let started = "execution.started"
        public static let stageStarted = "execution.stage.started"
        public static let stageCompleted = "execution.stage.completed"
        public static let stageRestarted = "execution.stage.restarted"
        public static let stageProgressed = "execution.stage.progressed"
        public static let stagePollDue = "execution.stage.poll.due"
        public static let paused = "execution.paused"
        public static let resumed = "execution.resumed"
        public static let cancelRequested = "execution.cancel.requested"
        public static let completed = "execution.completed"
        public static let redriven = "execution.redriven"
    }

    public var wireType: String {
        switch self {
        case .triggered: WireType.triggered
        case .buffered: WireType.buffered
        case .started: WireType.started
        case .stageStarted: WireType.stageStarted
        case .stageCompleted: WireType.stageCompleted
        case .stageRestarted: WireType.stageRestarted
        case .stageProgressed: WireType.stageProgressed
        case .stagePollDue: WireType.stagePollDue
        case .paused: WireType.paused
        case .resumed: WireType.resumed
        case .cancelRequested: WireType.cancelRequested
        case .completed: WireType.completed
        case .redriven: WireType.redriven
        }
    }
}
