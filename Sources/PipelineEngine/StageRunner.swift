import EventLog
import Orchestration
import Pipelines
import Synchronization

/// How a stage's work ended.
public struct StageOutcome: Sendable, Hashable {
    public var status: ExecutionStatus
    public var outputs: [String: JSONValue]
    /// For a RUNNING outcome: check again after this long (a durable timer), with `outputs` as
    /// the stage's context. Nil leaves the stage to something else (a judgment, a wait's timer).
    public var retryAfter: Duration?

    public init(status: ExecutionStatus, outputs: [String: JSONValue] = [:], retryAfter: Duration? = nil) {
        self.status = status
        self.outputs = outputs
        self.retryAfter = retryAfter
    }

    /// Still running: check again after `delay`, carrying `context`.
    public static func poll(after delay: Duration, context: [String: JSONValue]) -> StageOutcome {
        StageOutcome(status: .running, outputs: context, retryAfter: delay)
    }
}

/// One attempt of one stage, as a runner sees it.
public struct StageRun: Sendable {
    public let executionID: String
    public let refID: String
    public let attempt: Int
    public let stage: StageConfig
    public let execution: ExecutionState
    /// 0 for the first run of this attempt; then how many checks came before (each left it running).
    public var poll: Int = 0
    /// What earlier checks of this attempt recorded (the stage's outputs so far).
    public var context: [String: JSONValue] { execution.stage(refID).outputs }
    /// Tells the work when the stage is canceled.
    public let work: WorkHandle

    public init(
        executionID: String, refID: String, attempt: Int, stage: StageConfig, execution: ExecutionState, poll: Int = 0, work: WorkHandle
    ) {
        self.executionID = executionID
        self.refID = refID
        self.attempt = attempt
        self.stage = stage
        self.execution = execution
        self.poll = poll
        self.work = work
    }
}

/// Runs one stage type's work. A RUNNING outcome leaves the stage running for something else to
/// complete (a timer, a judgment); throwing means "try again later" (the event is re-handled).
public protocol StageRunner: Sendable {
    func run(_ run: StageRun) async throws -> StageOutcome
}

/// Lets the worker stop a stage's running work from outside (cancel) and the work react.
public final class WorkHandle: Sendable {
    private struct State {
        var canceled = false
        var onCancel: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    public init() {}

    public var isCanceled: Bool { state.withLock { $0.canceled } }

    /// Runs `action` when the work is canceled (at once if it already was).
    public func onCancel(_ action: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state in
            if state.canceled { return true }
            state.onCancel.append(action)
            return false
        }
        if runNow { action() }
    }

    public func cancel() {
        let actions = state.withLock { state in
            guard !state.canceled else { return [@Sendable () -> Void]() }
            state.canceled = true
            defer { state.onCancel = [] }
            return state.onCancel
        }
        for action in actions { action() }
    }
}
