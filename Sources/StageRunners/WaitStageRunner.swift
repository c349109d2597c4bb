import EventLog
import Orchestration
import PipelineEngine
import Pipelines

/// `wait`: sets a durable timer for `waitTime` seconds; the scheduler completes the stage when it
/// fires. Nothing waits in memory, so a restart loses no wait.
struct WaitStageRunner: StageRunner {
    /// The longest wait accepted (30 days).
    static let maximumSeconds = 30.0 * 24 * 3600

    let timers: any StageTimers

    func run(_ run: StageRun) async throws -> StageOutcome {
        let value = run.stage.json["waitTime"]
        guard let seconds = value?.doubleValue ?? value?.stringValue.flatMap(Double.init), seconds >= 0, seconds <= Self.maximumSeconds else {
            return StageOutcome(status: run.stage.failureStatus, outputs: [
                "error": .string("waitTime must be a number of seconds from 0 to \(Int(Self.maximumSeconds))"),
            ])
        }
        try await timers.set(TimerStore.StageTimer(executionID: run.executionID, refID: run.refID, attempt: run.attempt, kind: .waitElapsed),
                             dueIn: .milliseconds(Int64(seconds * 1000)))
        return StageOutcome(status: .running)
    }
}
