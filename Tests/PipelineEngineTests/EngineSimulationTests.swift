import EventLog
import Orchestration
@testable import PipelineEngine
import Pipelines
import Testing

/// The orchestrator and worker interpreters themselves, over the in-memory log.
@Suite("Engine simulation: the real interpreters over an in-memory log", .timeLimit(.minutes(1)))
struct EngineSimulationTests {
    static let diamond: [JSONValue] = [
        ["refId": "vars", "type": "evaluateVariables", "variables": [["key": "region", "value": "eu-west-1"]]],
        ["refId": "wait", "type": "wait", "waitTime": 30, "requisiteStageRefIds": ["vars"]],
        ["refId": "check", "type": "checkPreconditions", "requisiteStageRefIds": ["vars"],
         "preconditions": [["type": "expression", "context": ["expression": "${region == 'eu-west-1'}"]]]],
        ["refId": "done", "type": "noop", "requisiteStageRefIds": ["wait", "check"]],
    ]

    static func starts(_ events: [ExecutionEvent]) -> [String] {
        events.compactMap { if case let .stageStarted(ref, _) = $0 { ref } else { nil } }
    }

    static func completions(_ events: [ExecutionEvent]) -> [String] {
        events.compactMap { if case let .stageCompleted(ref, _, _) = $0 { ref } else { nil } }
    }

    @Test func aPipelineRunsThroughTheInterpretersAndItsWaitEndsWhenTheTimerFires() async throws {
        var engine = EngineSimulation()
        let id = try await engine.trigger(Self.diamond)
        try await engine.drain()
        var state = try await engine.repository.load(id)
        #expect(state.stage("wait").status == .running && state.stage("check").status == .succeeded)
        #expect(state.stage("done").status == .notStarted, "the join waits for the wait")
        #expect(engine.timers.pending.map(\.id) == ["\(id)/wait/1/waitElapsed"])
        try await engine.advance(by: .seconds(29))
        #expect(try await engine.repository.load(id).stage("wait").status == .running)
        try await engine.advance(by: .seconds(1))
        state = try await engine.repository.load(id)
        #expect(state.status == .succeeded)
        #expect(state.stage("vars").outputs["region"] == "eu-west-1")
        let events = try await engine.events(id)
        #expect(Set(Self.starts(events)) == ["vars", "wait", "check", "done"] && Self.starts(events).count == 4)
        #expect(Self.starts(events).last == "done")
    }

    @Test func everyEventDeliveredTwiceAndTheWholeLogAgainChangeNothing() async throws {
        var once = EngineSimulation()
        let first = try await once.trigger(Self.diamond)
        try await once.drain()
        try await once.advance(by: .seconds(30))
        var twice = EngineSimulation()
        twice.deliveries = 2
        let second = try await twice.trigger(Self.diamond)
        try await twice.drain()
        try await twice.advance(by: .seconds(30))
        let (a, b) = (try await once.events(first), try await twice.events(second))
        #expect(a.count == b.count, "\(a)\n\(b)")
        #expect(Self.completions(b).count == 4, "each stage completed once")
        #expect(try await twice.repository.load(second).status == .succeeded)
        // A republished log: everything delivered again, from the start.
        let before = twice.store.all.count
        try await twice.redeliverAll()
        #expect(twice.store.all.count == before, "old events delivered again appended \(twice.store.all.count - before) events")
        #expect(twice.timers.pending.isEmpty, "no timer set again for a finished execution")
    }

    @Test func cancelingStopsTheWaitAndItsTimerLaterChangesNothing() async throws {
        var engine = EngineSimulation()
        let id = try await engine.trigger(Self.diamond)
        try await engine.drain()
        _ = try await engine.repository.handle(.cancel(by: "ana", reason: "wrong build"), executionID: id, metadata: EventMetadata(source: "test"))
        try await engine.drain()
        let canceled = try await engine.events(id).count
        #expect(try await engine.repository.load(id).status == .canceled)
        try await engine.advance(by: .seconds(60))
        #expect(try await engine.events(id).count == canceled, "the fired timer appended events to a canceled execution")
    }

    @Test func theSupervisorsRedriveFinishesAWaitWhoseTimerWasLost() async throws {
        var engine = EngineSimulation()
        let id = try await engine.trigger(Self.diamond)
        try await engine.drain()
        engine.timers.lose("\(id)/wait/1/waitElapsed")
        try await engine.advance(by: .seconds(120))
        #expect(try await engine.repository.load(id).stage("wait").status == .running, "nothing moves it")
        _ = try await engine.repository.handle(
            .redrive(by: "supervisor", reasons: ["stage wait (wait) has run 120 s, expected within 30 s"], stages: ["wait"], timedOut: []),
            executionID: id, metadata: EventMetadata(actor: "supervisor", source: "supervisor"))
        try await engine.drain()
        try await engine.advance(by: .zero)
        let state = try await engine.repository.load(id)
        #expect(state.status == .succeeded && state.redrives == 1)
        #expect(Self.completions(try await engine.events(id)).filter { $0 == "wait" }.count == 1)
    }
}

@Suite("Execution commands: one way to start and control executions", .timeLimit(.minutes(1)))
struct ExecutionCommandsTests {
    @Test func controlsReturnTheStateAfterOrWhyNothingChanged() async throws {
        var engine = EngineSimulation()
        let id = try await engine.trigger(EngineSimulationTests.diamond)
        try await engine.drain()
        let commands = ExecutionCommands(repository: engine.repository)
        let metadata = EventMetadata(actor: "ana", source: "test")
        guard case .success(let paused) = try await commands.control(.pause(by: "ana"), executionID: id, metadata: metadata) else {
            Issue.record("pausing a running execution was refused")
            return
        }
        #expect(paused.status == .paused)
        let events = try await engine.events(id).count
        func refusal(_ message: ExecutionMessage, _ id: String) async throws -> Refusal? {
            if case .failure(let refusal) = try await commands.control(message, executionID: id, metadata: metadata) { return refusal }
            return nil
        }
        #expect(try await refusal(.pause(by: "ana"), id) == .alreadyDone("it is PAUSED already"))
        #expect(try await refusal(.skipWait(refID: "wait", by: "ana"), id) == .notAllowed("it is PAUSED, not RUNNING"))
        #expect(try await refusal(.cancel(by: nil, reason: nil), "nope") == .unknownExecution)
        #expect(try await engine.events(id).count == events, "refusals append nothing")
        _ = try await commands.control(.resume(by: "ana"), executionID: id, metadata: metadata)
        #expect(try await engine.events(id).count == events + 1, "only the resume was appended")
    }
}
