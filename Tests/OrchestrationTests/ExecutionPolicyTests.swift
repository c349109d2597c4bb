import EventLog
import Orchestration
import Pipelines
import Testing

/// Every reaction of every role comes from ``ExecutionPolicy``; these pin the ones the
/// interpreters used to work out for themselves.
@Suite("Execution policy: actions of every role", .timeLimit(.minutes(1)))
struct ExecutionPolicyTests {
    static func state(_ pipeline: PipelineConfig, trigger: JSONValue = ["type": "manual"], _ events: [ExecutionEvent]) -> ExecutionState {
        ExecutionState([.triggered(pipeline: pipeline, trigger: trigger, parameters: [:])] + events)
    }

    @Test func everyCompletedStageStopsItsWorkAndAFailedChildStageCancelsItsChild() {
        let config = pipeline([("child", [], ["type": "pipeline"]), ("2", ["child"], [:])])
        let running: [ExecutionEvent] = [.started, .stageStarted(refID: "child", attempt: 1),
                                         .stageProgressed(refID: "child", attempt: 1, poll: 0, context: ["executionId": "c-1"], retryAfterMs: 10)]
        let succeeded = ExecutionEvent.stageCompleted(refID: "child", status: .succeeded, outputs: [:])
        #expect(ExecutionPolicy.actions(after: succeeded, state: Self.state(config, running + [succeeded]))
            == [.stopWork(refID: "child"), .decide(.startStage(refID: "2"))])
        let timedOut = ExecutionEvent.stageCompleted(refID: "child", status: .terminal, outputs: ["error": "stage timed out"])
        #expect(ExecutionPolicy.actions(after: timedOut, state: Self.state(config, running + [timedOut]))
            == [.stopWork(refID: "child"), .cancelChild(refID: "child"), .decide(.completeExecution)])
    }

    @Test func aChildThatEndsWakesTheParentAndAGatedOneFreesItsSlot() {
        let trigger: JSONValue = ["type": "pipeline", "parentExecution": ["id": "parent-1"], "parentPipelineStageId": "deploy"]
        let gated = pipeline([("1", [], [:])], fields: ["limitConcurrent": true])
        let done = ExecutionEvent.completed(status: .succeeded)
        #expect(ExecutionPolicy.actions(after: done, state: Self.state(gated, trigger: trigger, [.started, done]))
            == [.releaseSlot, .wakeParent(executionID: "parent-1", refID: "deploy")])
        #expect(ExecutionPolicy.actions(after: .triggered(pipeline: gated, trigger: .null, parameters: [:]), state: Self.state(gated, []))
            == [.startWithSlot])
    }

    @Test func resumingStartsWhatBecameReadyAndMakesLapsedChecksDueWithoutRerunningWork() {
        let config = pipeline([("w", [], ["type": "wait", "waitTime": 1]), ("hook", [], ["type": "webhook"]), ("s", [], ["type": "script"]), ("2", ["w"], [:])])
        let state = Self.state(config, [
            .started, .stageStarted(refID: "w", attempt: 1), .stageStarted(refID: "hook", attempt: 1), .stageStarted(refID: "s", attempt: 1),
            .stageProgressed(refID: "hook", attempt: 1, poll: 0, context: [:], retryAfterMs: 100), .paused(by: "ana"),
            .stageCompleted(refID: "w", status: .succeeded, outputs: [:]), .resumed(by: "ana"),
        ])
        #expect(ExecutionPolicy.actions(after: .resumed(by: "ana"), state: state)
            == [.decide(.startStage(refID: "2")), .setTimer(refID: "hook", attempt: 1, kind: .poll, poll: 0, afterMs: 0)],
            "the script keeps running; it is not started a second time")
    }

    @Test func aRedriveMakesWhatEachOverdueStageWaitsForDueNow() {
        let config = pipeline([
            ("w", [], ["type": "wait", "waitTime": 5]), ("hook", [], ["type": "webhook"]), ("s", [], ["type": "script"]),
            ("j", [], ["type": "manualJudgment", "stageTimeoutMs": 1000]), ("k", [], ["type": "manualJudgment"]),
        ])
        let events: [ExecutionEvent] = [.started] + ["w", "hook", "s", "j", "k"].map { .stageStarted(refID: $0, attempt: 1) } + [
            .stageProgressed(refID: "hook", attempt: 1, poll: 0, context: [:], retryAfterMs: 100),
        ]
        let decision = ExecutionDecider.decide(
            .redrive(by: "supervisor", reasons: ["late"], stages: ["w", "hook", "s", "j", "k", "gone"], timedOut: ["j"]), state: Self.state(config, events))
        #expect(decision.events == [.redriven(by: "supervisor", reasons: ["late"], stages: ["w", "hook", "s", "j", "k"], timedOut: ["j"])],
                "only running stages are named")
        let redriven = decision.events[0]
        #expect(ExecutionPolicy.actions(after: redriven, state: Self.state(config, events + [redriven])) == [
            .setTimer(refID: "w", attempt: 1, kind: .waitElapsed, poll: 0, afterMs: 0),
            .setTimer(refID: "hook", attempt: 1, kind: .poll, poll: 0, afterMs: 0),
            .runWork(refID: "s", attempt: 1),
            .setTimer(refID: "j", attempt: 1, kind: .stageTimeout, poll: 0, afterMs: 0),
        ], "a judgment without a timeout waits for people")
        #expect(Self.state(config, events + [redriven]).redrives == 1)
    }

    @Test func aRedriveOfAnExecutionWithNothingRunningFinishesItOrStartsWhatIsReady() {
        let config = pipeline([("1", [], [:]), ("2", ["1"], [:])])
        let finished: [ExecutionEvent] = [.started, .stageStarted(refID: "1", attempt: 1), .stageCompleted(refID: "1", status: .succeeded, outputs: [:])]
        let redriven = ExecutionEvent.redriven(by: "supervisor", reasons: [], stages: [], timedOut: [])
        #expect(ExecutionPolicy.actions(after: redriven, state: Self.state(config, finished + [redriven])) == [.decide(.startStage(refID: "2"))])
        let all = finished + [.stageStarted(refID: "2", attempt: 1), .stageCompleted(refID: "2", status: .succeeded, outputs: [:])]
        #expect(ExecutionPolicy.actions(after: redriven, state: Self.state(config, all + [redriven])) == [.decide(.completeExecution)])
        #expect(ExecutionDecider.decide(.redrive(by: "supervisor", reasons: [], stages: [], timedOut: []),
                                        state: Self.state(config, all + [.completed(status: .succeeded)])) == .none, "a finished execution is left alone")
    }
}
