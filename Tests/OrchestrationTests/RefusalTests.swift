import EventLog
import Orchestration
import Pipelines
import Testing

/// A control that changes nothing says why, so callers need not guess.
@Suite("Execution decisions: refusals with reasons", .timeLimit(.minutes(1)))
struct RefusalTests {
    static let config = pipeline([("w", [], ["type": "wait", "waitTime": 60]), ("j", [], ["type": "manualJudgment"]), ("2", ["w"], [:])])

    static func running() -> ExecutionState {
        ExecutionState([.triggered(pipeline: config, trigger: .null, parameters: [:]), .started,
                        .stageStarted(refID: "w", attempt: 1), .stageStarted(refID: "j", attempt: 1)])
    }

    static func reason(_ message: ExecutionMessage, _ state: ExecutionState) -> Refusal? {
        if case .failure(let refusal) = ExecutionDecider.evaluate(message, state: state) { return refusal }
        return nil
    }

    @Test func eachControlSaysWhyItChangesNothing() {
        let running = Self.running()
        #expect(Self.reason(.cancel(by: nil, reason: nil), running) == nil, "a running execution can be canceled")
        #expect(Self.reason(.resume(by: nil), running) == .alreadyDone("it is RUNNING, not PAUSED"))
        #expect(Self.reason(.restartStage(refID: "w", by: nil), running) == .notAllowed("stage w is RUNNING; only a completed stage restarts"))
        #expect(Self.reason(.restartStage(refID: "x", by: nil), running) == .notAllowed("the execution has no stage x"))
        #expect(Self.reason(.skipWait(refID: "j", by: nil), running) == .notAllowed("stage j is a manualJudgment stage, not a wait"))
        #expect(Self.reason(.judge(refID: "w", judgment: .continue, input: nil, by: nil), running)
            == .notAllowed("stage w is a wait stage, not a manual judgment"))

        var paused = running
        paused.evolve(.paused(by: "ana"))
        #expect(Self.reason(.pause(by: nil), paused) == .alreadyDone("it is PAUSED already"))
        #expect(Self.reason(.skipWait(refID: "w", by: nil), paused) == .notAllowed("it is PAUSED, not RUNNING"))

        var done = running
        for event in ExecutionDecider.decide(.cancel(by: "ana", reason: nil), state: running).events { done.evolve(event) }
        #expect(Self.reason(.cancel(by: nil, reason: nil), done) == .alreadyDone("it is CANCELED"))
        #expect(Self.reason(.pause(by: nil), done) == .notAllowed("it is CANCELED, not RUNNING"))
        #expect(Self.reason(.cancel(by: nil, reason: nil), ExecutionState()) == .unknownExecution)
    }
}
