import EventLog
import Foundation
import Orchestration
@testable import ReadModels
import Pipelines
import Testing

@Suite("Execution summaries folded from recorded events", .timeLimit(.minutes(1)))
struct ExecutionSummaryFoldTests {
    static let pipeline = PipelineConfig(json: [
        "application": "shop", "name": "api", "stages": [
            ["refId": "a", "type": "noop"], ["refId": "b", "type": "script", "name": "Tests", "requisiteStageRefIds": ["a"]],
        ],
    ])

    static func recorded(_ events: [ExecutionEvent]) throws -> [RecordedEvent] {
        let start = Date(timeIntervalSince1970: 1_000_000)
        return try events.enumerated().map { index, event in
            let (type, payload) = ExecutionEventCodec.encode(event)
            return RecordedEvent(
                id: UUID(), streamID: try StreamID(category: "execution", id: "x1"), streamVersion: Int64(index + 1),
                logPosition: LogPosition(transaction: 1, position: Int64(index + 1)), type: type, schemaVersion: 1,
                recordedAt: start.addingTimeInterval(Double(index)), payload: try JSONText(encoding: payload),
                metadata: EventMetadata(actor: "ci-bot"))
        }
    }

    @Test func statusesTimesAndARestart() throws {
        var fold = ExecutionSummaryFold()
        let events = try Self.recorded([
            .triggered(pipeline: Self.pipeline, trigger: ["type": "webhook"], parameters: [:]), .started,
            .stageStarted(refID: "a", attempt: 1), .stageCompleted(refID: "a", status: .succeeded, outputs: [:]),
            .stageStarted(refID: "b", attempt: 1), .stageCompleted(refID: "b", status: .terminal, outputs: [:]),
            .completed(status: .terminal),
        ])
        for event in events { try fold.apply(event) }
        var summary = try #require(fold.summary)
        #expect(summary.status == .terminal)
        #expect(summary.triggeredBy == "ci-bot", "no trigger user: the event's actor")
        #expect(summary.triggerType == "webhook")
        #expect(summary.stages.map(\.refID) == ["a", "b"])
        #expect(summary.stages.map(\.name) == ["a", "Tests"])
        #expect(summary.stages[1].startedAt == events[4].recordedAt && summary.stages[1].completedAt == events[5].recordedAt)
        #expect(summary.completedAt == events[6].recordedAt && summary.startedAt == events[1].recordedAt)
        #expect(summary.version == 7)

        let restart = try Self.recorded(Array(repeating: .started, count: 7) + [.stageRestarted(refID: "b", reset: ["b"])])[7]
        try fold.apply(restart)
        summary = try #require(fold.summary)
        #expect(summary.status == .running)
        #expect(summary.completedAt == nil)
        #expect(summary.stages[1].status == .notStarted && summary.stages[1].startedAt == nil)
        #expect(summary.stages[1].attempt == 1, "the attempt counts up when the stage starts again")
    }
}

@Suite("Stuck executions", .timeLimit(.minutes(1)))
struct OverdueTests {
    static func fold(_ stages: [JSONValue], _ events: [ExecutionEvent], at start: Date) throws -> ExecutionSummaryFold {
        let pipeline = PipelineConfig(json: ["application": "shop", "name": "api", "stages": .array(stages)])
        var fold = ExecutionSummaryFold()
        for (index, event) in ([.triggered(pipeline: pipeline, trigger: [:], parameters: [:]), .started] + events).enumerated() {
            let (type, payload) = ExecutionEventCodec.encode(event)
            try fold.apply(RecordedEvent(
                id: UUID(), streamID: try StreamID(category: "execution", id: "x"), streamVersion: Int64(index + 1),
                logPosition: .start, type: type, schemaVersion: 1, recordedAt: start, payload: try JSONText(encoding: payload),
                metadata: EventMetadata()))
        }
        return fold
    }

    static let start = Date(timeIntervalSince1970: 1_000_000)

    @Test func stagesAreOverdueByTheirOwnLimits() throws {
        let stages: [JSONValue] = [
            ["refId": "w", "type": "wait", "waitTime": 30], ["refId": "s", "type": "script", "command": "x", "timeoutSeconds": 10],
            ["refId": "j", "type": "manualJudgment"], ["refId": "t", "type": "manualJudgment", "stageTimeoutMs": 5000],
        ]
        let fold = try Self.fold(stages, ["w", "s", "j", "t"].map { .stageStarted(refID: $0, attempt: 1) }, at: Self.start)
        #expect(Overdue.reasons(fold, now: Self.start.addingTimeInterval(20), grace: 5).map { $0.prefix(9) } == ["stage s (", "stage t ("])
        let later = Overdue.reasons(fold, now: Self.start.addingTimeInterval(3600), grace: 5)
        #expect(later.count == 3, "a manual judgment without a timeout waits for people: \(later)")
        #expect(later.contains("stage w (wait) has run 3600 s, expected within 30 s"))
    }

    @Test func anExecutionWithNothingRunningIsStuckAfterTheGrace() throws {
        let fold = try Self.fold([["refId": "a", "type": "noop"], ["refId": "b", "type": "noop", "requisiteStageRefIds": ["a"]]],
                                 [.stageStarted(refID: "a", attempt: 1), .stageCompleted(refID: "a", status: .succeeded, outputs: [:])], at: Self.start)
        #expect(Overdue.reasons(fold, now: Self.start.addingTimeInterval(30), grace: 60).isEmpty)
        #expect(Overdue.reasons(fold, now: Self.start.addingTimeInterval(90), grace: 60) == ["no stage runs and nothing happened for 90 s"])
    }

    @Test func pollingStagesAreOverdueWhenChecksStop() throws {
        let fold = try Self.fold([["refId": "h", "type": "webhook", "url": "http://x", "backoffPeriodMs": 10_000]],
                                 [.stageStarted(refID: "h", attempt: 1)], at: Self.start)
        #expect(Overdue.reasons(fold, now: Self.start.addingTimeInterval(30), grace: 60).isEmpty)
        #expect(Overdue.reasons(fold, now: Self.start.addingTimeInterval(100), grace: 60).count == 1)
    }
}
