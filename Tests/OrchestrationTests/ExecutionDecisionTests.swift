import EventLog
import Orchestration
import Pipelines
import Testing

@Suite("Execution decisions: scheduling", .timeLimit(.minutes(1)))
struct SchedulingTests {
    @Test func sequentialStagesRunInOrder() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:]), ("3", ["2"], [:])]))
        run.send(.startExecution)
        #expect(run.startedOrder == ["1", "2", "3"])
        #expect(run.state.status == .succeeded)
        #expect(run.maximumConcurrentStages == 1)
    }

    @Test func branchesRunInParallelAndJoinsWaitForAll() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:]), ("3", ["1"], [:]), ("4", ["2", "3"], [:])]))
        run.send(.startExecution)
        #expect(run.state.status == .succeeded)
        #expect(run.maximumConcurrentStages == 2)
        let started4 = run.events.firstIndex(of: .stageStarted(refID: "4", attempt: 1))!
        for ref in ["2", "3"] {
            let completed = run.events.firstIndex { if case .stageCompleted(ref, .succeeded, _) = $0 { true } else { false } }!
            #expect(completed < started4, "stage 4 started before \(ref) completed")
        }
    }

    @Test func initialStagesStartTogether() {
        let decision = ExecutionDecider.decide(.startExecution, state: ExecutionState([
            .triggered(pipeline: pipeline([("a", [], [:]), ("b", [], [:]), ("c", ["a", "b"], [:])]), trigger: .null, parameters: [:]),
        ]))
        #expect(decision.events == [.started])
        var after = ExecutionState([.triggered(pipeline: pipeline([("a", [], [:]), ("b", [], [:]), ("c", ["a", "b"], [:])]), trigger: .null, parameters: [:])])
        after.evolve(.started)
        #expect(ExecutionPolicy.actions(after: .started, state: after) == [.decide(.startStage(refID: "a")), .decide(.startStage(refID: "b"))])
    }

    @Test func duplicateAndStaleMessagesChangeNothing() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:])]))
        run.hanging = ["2"]
        run.send(.startExecution)
        #expect(run.status("2") == .running)
        #expect(ExecutionDecider.decide(.startExecution, state: run.state) == .none)
        #expect(ExecutionDecider.decide(.startStage(refID: "1"), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.startStage(refID: "2"), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.completeStage(refID: "1", status: .succeeded, outputs: [:]), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.completeExecution, state: run.state) == .none, "stage 2 still runs")
        #expect(ExecutionDecider.decide(.completeStage(refID: "2", status: .running, outputs: [:]), state: run.state) == .none)
    }

    @Test func disabledStagesAreSkippedAndDownstreamRuns() {
        var run = Simulation(pipeline([
            ("1", [], ["stageEnabled": ["type": "expression", "expression": "${false}"]]),
            ("2", ["1"], [:]),
        ]))
        run.send(.startExecution)
        #expect(run.status("1") == .skipped)
        #expect(run.status("2") == .succeeded)
        #expect(run.startedOrder == ["2"])
        #expect(run.state.status == .succeeded)
    }
}

@Suite("Execution decisions: failure options", .timeLimit(.minutes(1)))
struct FailureTests {
    /// 1 → (2, 3); 2 → 4; 3 → 5. Stage 2 fails with the given options while 3 hangs or runs.
    static func diamond(_ options: [String: JSONValue]) -> PipelineConfig {
        pipeline([("1", [], [:]), ("2", ["1"], options), ("3", ["1"], [:]), ("4", ["2"], [:]), ("5", ["3"], [:])])
    }

    @Test func failPipelineEndsTheExecutionAndCancelsOtherBranches() {
        var run = Simulation(Self.diamond([:]), outcomes: ["2": [.terminal]])
        run.hanging = ["3"]
        run.send(.startExecution)
        #expect(run.state.status == .terminal)
        #expect(run.status("2") == .terminal)
        #expect(run.status("3") == .canceled)
        #expect(run.status("4") == .notStarted)
        #expect(run.workerActions.contains(.stopWork(refID: "3")))
    }

    @Test func continuePipelineLetsDownstreamRun() {
        var run = Simulation(Self.diamond(["continuePipeline": true]), outcomes: ["2": [.failedContinue]])
        run.send(.startExecution)
        #expect(run.status("2") == .failedContinue)
        #expect(run.status("4") == .succeeded)
        #expect(run.state.status == .succeeded)
    }

    @Test func stoppedBranchHaltsWhileOthersFinish() {
        var run = Simulation(Self.diamond(["failPipeline": false]), outcomes: ["2": [.stopped]])
        run.send(.startExecution)
        #expect(run.status("2") == .stopped)
        #expect(run.status("4") == .notStarted)
        #expect(run.status("5") == .succeeded)
        #expect(run.state.status == .succeeded)
    }

    @Test func completeOtherBranchesThenFail() {
        var run = Simulation(Self.diamond(["completeOtherBranchesThenFail": true]), outcomes: ["2": [.stopped]])
        run.send(.startExecution)
        #expect(run.status("5") == .succeeded, "the other branch completes")
        #expect(run.status("4") == .notStarted)
        #expect(run.state.status == .terminal)
    }

    @Test func completionWaitsForRunningBranches() {
        var run = Simulation(Self.diamond(["failPipeline": false]), outcomes: ["2": [.stopped]])
        run.hanging = ["3"]
        run.send(.startExecution)
        #expect(run.state.status == .running, "branch 3 still runs")
        run.hanging = []
        run.send(.completeStage(refID: "3", status: .succeeded, outputs: [:]))
        #expect(run.state.status == .succeeded)
    }
}

@Suite("Execution decisions: cancel, pause, restart, concurrency", .timeLimit(.minutes(1)))
struct ControlTests {
    @Test func cancelStopsRunningWorkAndIsFinal() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:])]))
        run.hanging = ["1"]
        run.send(.startExecution)
        run.send(.cancel(by: "alice", reason: "wrong version"))
        #expect(run.state.status == .canceled)
        #expect(run.status("1") == .canceled)
        #expect(run.status("2") == .notStarted)
        #expect(run.workerActions.contains(.stopWork(refID: "1")))
        // The worker's late report and a second cancel change nothing.
        #expect(ExecutionDecider.decide(.completeStage(refID: "1", status: .succeeded, outputs: [:]), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.cancel(by: nil, reason: nil), state: run.state) == .none)
    }

    @Test func pausedExecutionsCanBeCanceled() {
        var run = Simulation(pipeline([("1", [], [:])]))
        run.hanging = ["1"]
        run.send(.startExecution)
        run.send(.pause(by: "bob"))
        #expect(run.state.status == .paused)
        run.send(.cancel(by: "bob", reason: nil))
        #expect(run.state.status == .canceled)
    }

    @Test func pauseHoldsNewStagesUntilResume() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:])]))
        run.hanging = ["1"]
        run.send(.startExecution)
        run.send(.pause(by: "bob"))
        run.hanging = []
        run.send(.completeStage(refID: "1", status: .succeeded, outputs: [:]))
        #expect(run.status("2") == .notStarted, "nothing starts while paused")
        #expect(run.state.status == .paused)
        run.send(.resume(by: "bob"))
        #expect(run.status("2") == .succeeded)
        #expect(run.state.status == .succeeded)
    }

    @Test func restartRunsTheStageAndItsDownstreamAgain() {
        var run = Simulation(pipeline([("1", [], [:]), ("2", ["1"], [:]), ("3", ["2"], [:]), ("4", ["1"], [:])]),
                             outcomes: ["2": [.terminal, .succeeded]])
        run.send(.startExecution)
        #expect(run.state.status == .terminal)
        run.send(.restartStage(refID: "2", by: "carol"))
        #expect(run.events.contains(.stageRestarted(refID: "2", reset: ["2", "3"])))
        #expect(run.state.stage("2").attempt == 2)
        #expect(run.status("3") == .succeeded)
        #expect(run.state.status == .succeeded)
        // The first attempt stays in the history.
        #expect(run.events.contains(.stageCompleted(refID: "2", status: .terminal, outputs: ["attempt": 1])))
    }

    @Test func restartRefusesStagesThatAreRunningOrUnknown() {
        var run = Simulation(pipeline([("1", [], [:])]))
        run.hanging = ["1"]
        run.send(.startExecution)
        #expect(ExecutionDecider.decide(.restartStage(refID: "1", by: nil), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.restartStage(refID: "9", by: nil), state: run.state) == .none)
    }

    @Test func limitConcurrentBuffersUntilASlotIsFree() {
        let limited = pipeline([("1", [], [:])], fields: ["limitConcurrent": true, "maxConcurrentExecutions": 2])
        let state = ExecutionState([.triggered(pipeline: limited, trigger: .null, parameters: [:])])
        #expect(ExecutionDecider.decide(.startExecution, state: state, context: DecisionContext(runningExecutionsOfPipeline: 2)).events == [.buffered])
        #expect(ExecutionDecider.decide(.startExecution, state: state, context: DecisionContext(runningExecutionsOfPipeline: 1)).events == [.started])
        let buffered = ExecutionState([.triggered(pipeline: limited, trigger: .null, parameters: [:]), .buffered])
        #expect(ExecutionDecider.decide(.startExecution, state: buffered, context: DecisionContext(runningExecutionsOfPipeline: 2)) == .none)
        #expect(ExecutionDecider.decide(.startExecution, state: buffered, context: DecisionContext(runningExecutionsOfPipeline: 0)).events == [.started])
        let unlimited = ExecutionState([.triggered(pipeline: pipeline([("1", [], [:])]), trigger: .null, parameters: [:])])
        #expect(ExecutionDecider.decide(.startExecution, state: unlimited, context: DecisionContext(runningExecutionsOfPipeline: 50)).events == [.started])
    }

    @Test("an absent limitConcurrent is false, as Orca reads it: executions run side by side")
    func absentLimitConcurrentRunsSideBySide() {
        let exported = PipelineConfig(json: ["id": "p1", "application": "web", "name": "from-elsewhere", "stages": [["refId": "1", "type": "noop"]]])
        #expect(!exported.limitConcurrent && !exported.keepWaitingPipelines)
        let state = ExecutionState([.triggered(pipeline: exported, trigger: .null, parameters: [:])])
        #expect(ExecutionDecider.decide(.startExecution, state: state, context: DecisionContext(runningExecutionsOfPipeline: 3)).events == [.started])
    }

    @Test func bufferedExecutionsCancelAtOnce() {
        let limited = pipeline([("1", [], [:])], fields: ["limitConcurrent": true])
        let state = ExecutionState([.triggered(pipeline: limited, trigger: .null, parameters: [:]), .buffered])
        let decision = ExecutionDecider.decide(.cancel(by: "dave", reason: nil), state: state)
        #expect(decision.events == [.cancelRequested(by: "dave", reason: nil), .completed(status: .canceled)])
        let after = ExecutionState([.triggered(pipeline: limited, trigger: .null, parameters: [:]), .buffered] + decision.events)
        #expect(ExecutionPolicy.actions(after: .completed(status: .canceled), state: after) == [.releaseSlot])
    }
}

@Suite("Execution decisions: manual judgment", .timeLimit(.minutes(1)))
struct JudgmentTests {
    static func waitingForJudgment(_ options: [String: JSONValue] = [:]) -> Simulation {
        var stage: [String: JSONValue] = ["type": "manualJudgment"]
        stage.merge(options) { $1 }
        var run = Simulation(pipeline([("approve", [], stage), ("deploy", ["approve"], [:])]))
        run.hanging = ["approve"]
        run.send(.startExecution)
        return run
    }

    @Test func continueLetsThePipelineGoOn() {
        var run = Self.waitingForJudgment()
        run.send(.judge(refID: "approve", judgment: .continue, input: "ship", by: "erin"))
        #expect(run.status("approve") == .succeeded)
        #expect(run.state.stage("approve").outputs == ["judgmentStatus": "continue", "judgmentInput": "ship", "lastModifiedBy": "erin"])
        #expect(run.status("deploy") == .succeeded)
        #expect(run.state.status == .succeeded)
    }

    @Test func stopFailsTheStageWithItsOptions() {
        var run = Self.waitingForJudgment()
        run.send(.judge(refID: "approve", judgment: .stop, input: nil, by: "erin"))
        #expect(run.status("approve") == .terminal)
        #expect(run.state.status == .terminal)
        var lenient = Self.waitingForJudgment(["failPipeline": false])
        lenient.send(.judge(refID: "approve", judgment: .stop, input: nil, by: "erin"))
        #expect(lenient.status("approve") == .stopped)
        #expect(lenient.status("deploy") == .notStarted)
        #expect(lenient.state.status == .succeeded)
    }

    @Test func onlyRunningJudgmentStagesTakeAnswers() {
        var run = Self.waitingForJudgment()
        run.send(.judge(refID: "approve", judgment: .continue, input: nil, by: nil))
        #expect(ExecutionDecider.decide(.judge(refID: "approve", judgment: .stop, input: nil, by: nil), state: run.state) == .none)
        var scripted = Simulation(pipeline([("1", [], ["type": "script", "command": "true"])]))
        scripted.hanging = ["1"]
        scripted.send(.startExecution)
        #expect(ExecutionDecider.decide(.judge(refID: "1", judgment: .continue, input: nil, by: nil), state: scripted.state) == .none)
    }
}

@Suite("Execution decisions: timers", .timeLimit(.minutes(1)))
struct TimerTests {
    @Test func aTimerCompletesOnlyTheAttemptThatSetIt() {
        var run = Simulation(pipeline([("w", [], ["type": "wait", "waitTime": 5]), ("next", ["w"], [:])]))
        run.hanging = ["w"]
        run.send(.startExecution)
        #expect(ExecutionDecider.decide(.timerFired(refID: "w", attempt: 2, kind: .waitElapsed), state: run.state) == .none, "a timer of another attempt")
        run.send(.timerFired(refID: "w", attempt: 1, kind: .waitElapsed))
        #expect(run.status("w") == .succeeded)
        #expect(run.state.status == .succeeded)
        #expect(ExecutionDecider.decide(.timerFired(refID: "w", attempt: 1, kind: .waitElapsed), state: run.state) == .none, "a timer that fires twice")
    }
}

@Suite("Execution decisions: stage timeouts", .timeLimit(.minutes(1)))
struct StageTimeoutTests {
    static func running(_ options: [String: JSONValue]) -> Simulation {
        var stage: [String: JSONValue] = ["type": "script", "command": "sleep 60", "stageTimeoutMs": 1000]
        stage.merge(options) { $1 }
        var run = Simulation(pipeline([("1", [], stage), ("2", ["1"], [:])]))
        run.hanging = ["1"]
        run.send(.startExecution)
        return run
    }

    @Test func aTimeoutFailsTheStageWithItsOptions() {
        var run = Self.running([:])
        run.send(.timerFired(refID: "1", attempt: 1, kind: .stageTimeout))
        #expect(run.status("1") == .terminal)
        #expect(run.state.stage("1").outputs["error"] == "stage timed out after 1000 ms")
        #expect(run.state.status == .terminal)
        var lenient = Self.running(["continuePipeline": true])
        lenient.send(.timerFired(refID: "1", attempt: 1, kind: .stageTimeout))
        #expect(lenient.status("1") == .failedContinue)
        #expect(lenient.status("2") == .succeeded)
    }

    @Test func markSuccessfulOnTimeout() {
        var run = Self.running(["markSuccessfulOnTimeout": true])
        run.send(.timerFired(refID: "1", attempt: 1, kind: .stageTimeout))
        #expect(run.status("1") == .succeeded)
        #expect(run.state.status == .succeeded)
    }
}

@Suite("Execution decisions: task attempts and polling", .timeLimit(.minutes(1)))
struct StageProgressTests {
    static func running() -> Simulation {
        var run = Simulation(pipeline([("hook", [], ["type": "webhook", "url": "http://example.test"]), ("2", ["hook"], [:])]))
        run.hanging = ["hook"]
        run.send(.startExecution)
        return run
    }

    @Test func progressIsRecordedOncePerPollAndSchedulesTheNextCheck() {
        var run = Self.running()
        let record = ExecutionMessage.recordProgress(refID: "hook", attempt: 1, poll: 0, context: ["webhook": ["statusEndpoint": "x"]], retryAfterMs: 500)
        let decision = ExecutionDecider.decide(record, state: run.state)
        #expect(decision.events == [.stageProgressed(refID: "hook", attempt: 1, poll: 0, context: ["webhook": ["statusEndpoint": "x"]], retryAfterMs: 500)])
        run.send(record)
        #expect(run.state.stage("hook").polls == 1)
        #expect(run.state.stage("hook").outputs["webhook"]?["statusEndpoint"] == "x", "the context is the stage's outputs so far")
        #expect(ExecutionDecider.decide(record, state: run.state) == .none, "a repeated progress record")
        #expect(ExecutionDecider.decide(.recordProgress(refID: "hook", attempt: 2, poll: 1, context: [:], retryAfterMs: 1), state: run.state) == .none,
                "progress of another attempt")
        var after = run.state
        let progressed = ExecutionEvent.stageProgressed(refID: "hook", attempt: 1, poll: 0, context: [:], retryAfterMs: 500)
        after.evolve(progressed)
        #expect(ExecutionPolicy.actions(after: progressed, state: after) == [.setTimer(refID: "hook", attempt: 1, kind: .poll, poll: 0, afterMs: 500)])
    }

    @Test func aCheckFallsDueOnceAndWorkersRunIt() {
        var run = Self.running()
        run.send(.recordProgress(refID: "hook", attempt: 1, poll: 0, context: [:], retryAfterMs: 10))
        #expect(ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 1), state: run.state) == .none, "a check not yet recorded")
        let due = ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 0), state: run.state)
        #expect(due.events == [.stagePollDue(refID: "hook", attempt: 1, poll: 0)])
        run.send(.pollDue(refID: "hook", attempt: 1, poll: 0))
        #expect(run.state.stage("hook").pollDue)
        #expect(ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 0), state: run.state) == .none, "a timer that fires twice")
        #expect(ExecutionPolicy.actions(after: .stagePollDue(refID: "hook", attempt: 1, poll: 0), state: run.state) == [.runWork(refID: "hook", attempt: 1)])
        // The check's outcome: still running (next progress), then done.
        run.send(.recordProgress(refID: "hook", attempt: 1, poll: 1, context: ["n": 2], retryAfterMs: 10))
        #expect(run.state.stage("hook").polls == 2 && !run.state.stage("hook").pollDue)
        run.send(.completeStage(refID: "hook", status: .succeeded, outputs: ["final": true]))
        #expect(run.state.stage("hook").outputs == ["n": 2, "final": true], "completion outputs merge over the progress context")
        #expect(run.state.status == .succeeded)
    }

    @Test func checksLapseWhilePausedAndStopWhenTheStageCompletes() {
        var run = Self.running()
        run.send(.recordProgress(refID: "hook", attempt: 1, poll: 0, context: [:], retryAfterMs: 10))
        run.send(.pause(by: "ana"))
        #expect(ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 0), state: run.state) == .none)
        run.send(.resume(by: "ana"))
        #expect(ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 0), state: run.state).events.count == 1)
        run.send(.cancel(by: "ana", reason: nil))
        #expect(ExecutionDecider.decide(.pollDue(refID: "hook", attempt: 1, poll: 0), state: run.state) == .none)
        #expect(ExecutionDecider.decide(.recordProgress(refID: "hook", attempt: 1, poll: 1, context: [:], retryAfterMs: 1), state: run.state) == .none)
    }
}

@Suite("Concurrency gate of a pipeline", .timeLimit(.minutes(1)))
struct PipelineSlotsTests {
    static func gate(_ events: [PipelineSlots.Event]) -> PipelineSlots { PipelineSlots(events) }

    @Test func admissionTakesFreeSlotsThenQueues() {
        var gate = PipelineSlots()
        for (id, position) in [("a", 1), ("b", 2), ("e", 9), ("c", 3), ("d", 4)] {
            for event in gate.admit(id, position: Int64(position), slots: 2) { gate.evolve(event) }
        }
        #expect(gate.running == ["a", "b"])
        #expect(gate.waiting == ["c", "d", "e"], "the queue keeps trigger order, whatever order they asked in")
        #expect(gate.admit("a", position: 1, slots: 2).isEmpty, "asking again changes nothing")
        #expect(gate.admit("c", position: 3, slots: 2).isEmpty)
    }

    @Test("an execution that released what it held never takes a slot again (an old start delivered again)")
    func releasedExecutionsStayOut() {
        let gate = Self.gate([.taken(executionID: "a"), .released(executionID: "a"), .queued(executionID: "b", position: 2), .released(executionID: "b")])
        #expect(gate.admit("a", position: 1, slots: 1).isEmpty)
        #expect(gate.admit("b", position: 2, slots: 1).isEmpty)
        #expect(gate.admit("c", position: 3, slots: 1) == [.taken(executionID: "c")])
    }

    @Test func keepWaitingStartsTheOldestFirst() {
        let gate = Self.gate([.taken(executionID: "a"), .queued(executionID: "b", position: 2), .queued(executionID: "c", position: 3)])
        let (events, drop) = gate.release("a", slots: 1, keepWaiting: true)
        #expect(events == [.released(executionID: "a"), .taken(executionID: "b")])
        #expect(drop.isEmpty)
        #expect(gate.release("zzz", slots: 1, keepWaiting: true) == ([], []), "an execution the gate does not hold")
    }

    @Test func withoutKeepWaitingOnlyTheNewestStartsAndTheOthersAreDropped() {
        var gate = Self.gate([.taken(executionID: "a"), .queued(executionID: "b", position: 2), .queued(executionID: "c", position: 3), .queued(executionID: "d", position: 4)])
        let (events, drop) = gate.release("a", slots: 1, keepWaiting: false)
        #expect(drop == ["b", "c"])
        #expect(events == [.released(executionID: "a"), .released(executionID: "b"), .released(executionID: "c"), .taken(executionID: "d")])
        for event in events { gate.evolve(event) }
        #expect(gate.running == ["d"] && gate.waiting.isEmpty)
    }

    @Test func aWaitingExecutionThatIsCanceledLeavesTheQueue() {
        let gate = Self.gate([.taken(executionID: "a"), .queued(executionID: "b", position: 2), .queued(executionID: "c", position: 3)])
        let (events, drop) = gate.release("b", slots: 1, keepWaiting: true)
        #expect(events == [.released(executionID: "b")], "no slot was freed")
        #expect(drop.isEmpty)
    }

    @Test func slotEventsRoundTrip() throws {
        for event: PipelineSlots.Event in [.taken(executionID: "x"), .queued(executionID: "y", position: 7), .released(executionID: "z")] {
            let (type, payload) = PipelineSlotsCodec.encode(event)
            #expect(try PipelineSlotsCodec.decode(type: type, payload: payload) == event)
        }
    }
}

@Suite("Execution decisions: skipping waits and judgment inputs", .timeLimit(.minutes(1)))
struct PeopleTests {
    @Test func skipRemainingWaitSucceedsARunningWaitOnly() {
        var run = Simulation(pipeline([("w", [], ["type": "wait", "waitTime": 3600]), ("j", [], ["type": "manualJudgment"]), ("2", ["w"], [:])]))
        run.hanging = ["w", "j"]
        run.send(.startExecution)
        #expect(ExecutionDecider.decide(.skipWait(refID: "j", by: "ana"), state: run.state) == .none, "not a wait stage")
        run.send(.pause(by: "ana"))
        #expect(ExecutionDecider.decide(.skipWait(refID: "w", by: "ana"), state: run.state) == .none, "paused")
        run.send(.resume(by: "ana"))
        run.send(.skipWait(refID: "w", by: "ana"))
        #expect(run.status("w") == .succeeded)
        #expect(run.state.stage("w").outputs["skipRemainingWait"] == true)
        #expect(run.status("2") == .succeeded, "the pipeline goes on")
        #expect(ExecutionDecider.decide(.timerFired(refID: "w", attempt: 1, kind: .waitElapsed), state: run.state) == .none, "its timer finds it done")
    }

    @Test func judgmentInputsMustBeOneOfTheChoices() {
        var run = Simulation(pipeline([("j", [], ["type": "manualJudgment", "judgmentInputs": [["value": "ship"], ["value": "hold"]]])]))
        run.hanging = ["j"]
        run.send(.startExecution)
        #expect(JudgeStageHandler.problem("j", input: "maybe", state: run.state) == "'maybe' is not one of the stage's judgment inputs: ship, hold")
        #expect(ExecutionDecider.decide(.judge(refID: "j", judgment: .continue, input: "maybe", by: nil), state: run.state) == .none)
        #expect(JudgeStageHandler.problem("j", input: "ship", state: run.state) == nil)
        #expect(JudgeStageHandler.problem("j", input: nil, state: run.state) == nil, "no input is allowed")
        #expect(JudgeStageHandler.problem("x", input: nil, state: run.state) == "the execution has no stage x")
        run.send(.judge(refID: "j", judgment: .continue, input: "ship", by: "ana"))
        #expect(run.state.stage("j").outputs["judgmentInput"] == "ship")
        #expect(JudgeStageHandler.problem("j", input: nil, state: run.state) == "stage j is SUCCEEDED, not waiting for a judgment")
    }
}

@Suite("Execution decisions: time while paused", .timeLimit(.minutes(1)))
struct PausedTimeTests {
    @Test func aWaitThatFallsDueWhilePausedCompletesAndTheNextStageWaitsForResume() {
        var run = Simulation(pipeline([("w", [], ["type": "wait", "waitTime": 1]), ("2", ["w"], [:])]))
        run.hanging = ["w"]
        run.send(.startExecution)
        run.send(.pause(by: "ana"))
        run.send(.timerFired(refID: "w", attempt: 1, kind: .waitElapsed))
        #expect(run.status("w") == .succeeded, "the timer fires once; refusing it would leave the wait running forever")
        #expect(run.status("2") == .notStarted, "nothing starts while paused")
        run.send(.resume(by: "ana"))
        #expect(run.status("2") == .succeeded)
        #expect(run.state.status == .succeeded)
    }
}
