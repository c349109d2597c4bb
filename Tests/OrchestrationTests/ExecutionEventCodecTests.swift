import EventLog
import Foundation
import Orchestration
import Pipelines
import Testing

@Suite("Execution event codec", .timeLimit(.minutes(1)))
struct ExecutionEventCodecTests {
    static let events: [ExecutionEvent] = [
        .triggered(pipeline: pipeline([("1", [], ["x-unknown": [1, 2]])]), trigger: ["type": "manual", "user": "alice"], parameters: ["version": "1.2"]),
        .buffered, .started,
        .stageStarted(refID: "1", attempt: 2),
        .stageCompleted(refID: "1", status: .failedContinue, outputs: ["exitCode": 3]),
        .stageRestarted(refID: "1", reset: ["1", "2"]),
        .stageProgressed(refID: "hook", attempt: 1, poll: 2, context: ["webhook": ["statusEndpoint": "http://x/status"]], retryAfterMs: 1500),
        .stagePollDue(refID: "hook", attempt: 1, poll: 2),
        .paused(by: "bob"), .resumed(by: nil),
        .cancelRequested(by: "carol", reason: "wrong build"),
        .completed(status: .terminal),
        .redriven(by: "supervisor", reasons: ["stage w (wait) has run 90 s, expected within 5 s"], stages: ["w"], timedOut: []),
    ]

    @Test(arguments: events)
    func roundTrips(_ event: ExecutionEvent) throws {
        let (type, payload) = ExecutionEventCodec.encode(event)
        // Through JSON text, as the log stores it.
        let text = try JSONEncoder().encode(payload)
        let decoded = try ExecutionEventCodec.decode(type: type, payload: try JSONDecoder().decode(JSONValue.self, from: text))
        #expect(decoded == event)
    }

    /// Stored events decode forever: these are the version-1 wire forms.
    @Test func decodesVersionOneFixtures() throws {
        let fixtures: [(String, String, ExecutionEvent)] = [
            ("execution.stage.started", #"{"refId":"deploy","attempt":1}"#, .stageStarted(refID: "deploy", attempt: 1)),
            ("execution.stage.completed", #"{"refId":"2","status":"SUCCEEDED","outputs":{"a":"b"}}"#,
             .stageCompleted(refID: "2", status: .succeeded, outputs: ["a": "b"])),
            ("execution.completed", #"{"status":"CANCELED"}"#, .completed(status: .canceled)),
            ("execution.cancel.requested", #"{"by":"x","reason":null}"#, .cancelRequested(by: "x", reason: nil)),
            ("execution.stage.progressed", #"{"refId":"h","attempt":1,"poll":0,"context":{"n":1},"retryAfterMs":1000}"#,
             .stageProgressed(refID: "h", attempt: 1, poll: 0, context: ["n": 1], retryAfterMs: 1000)),
            ("execution.stage.poll.due", #"{"refId":"h","attempt":1,"poll":0}"#, .stagePollDue(refID: "h", attempt: 1, poll: 0)),
        ]
        for (type, json, expected) in fixtures {
            let payload = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
            #expect(try ExecutionEventCodec.decode(type: type, payload: payload) == expected)
        }
    }

    @Test func reportsWhatIsWrong() {
        #expect(throws: ExecutionEventDecodingError(type: "execution.unknown", field: nil)) {
            try ExecutionEventCodec.decode(type: "execution.unknown", payload: [:])
        }
        #expect(throws: ExecutionEventDecodingError(type: "execution.completed", field: "status")) {
            try ExecutionEventCodec.decode(type: "execution.completed", payload: ["status": "DONE"])
        }
    }
}
