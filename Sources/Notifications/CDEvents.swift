import EventLog
import Foundation
import Orchestration
import Pipelines

/// CDEvents v0.4.1 for executions and stages (pipelineRun queued/started/finished, taskRun
/// started/finished), as a CloudEvent's `type` and data.
public enum CDEvents {
    public static let specVersion = "0.4.1"

    public struct Event: Sendable, Hashable {
        public let id: String
        public let type: String
        public let source: String
        public let time: Date
        public let subject: String
        public let data: JSONValue
    }

    /// The CDEvent an execution event stands for, if any. `id` must be stable for the event (a
    /// redelivery produces the same event, which consumers dedupe on).
    public static func event(
        for event: ExecutionEvent, id: String, executionID: String, state: ExecutionState, time: Date, source: String, url: String?
    ) -> Event? {
        let pipelineName = state.pipeline.name ?? state.pipeline.id ?? executionID
        func make(_ subjectType: String, _ predicate: String, subjectID: String, content: [String: JSONValue]) -> Event {
            let type = "dev.cdevents.\(subjectType.lowercased()).\(predicate).0.2.0"
            let timestamp = time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
            let data: JSONValue = [
                "context": ["version": .string(specVersion), "id": .string(id), "source": .string(source), "type": .string(type),
                            "timestamp": .string(timestamp)],
                "subject": ["id": .string(subjectID), "source": .string(source), "type": .string(subjectType), "content": .object(content)],
            ]
            return Event(id: id, type: type, source: source, time: time, subject: subjectID, data: data)
        }
        let runURL = url.map(JSONValue.string)
        switch event {
        case .triggered:
            var content: [String: JSONValue] = ["pipelineName": .string(pipelineName)]
            if let runURL { content["url"] = runURL }
            return make("pipelineRun", "queued", subjectID: executionID, content: content)
        case .started:
            var content: [String: JSONValue] = ["pipelineName": .string(pipelineName)]
            if let runURL { content["url"] = runURL }
            return make("pipelineRun", "started", subjectID: executionID, content: content)
        case .completed(let status):
            var content: [String: JSONValue] = ["pipelineName": .string(pipelineName), "outcome": .string(outcome(status))]
            if let runURL { content["url"] = runURL }
            if status != .succeeded { content["errors"] = .string("the execution ended \(status.rawValue)") }
            return make("pipelineRun", "finished", subjectID: executionID, content: content)
        case .stageStarted(let ref, _):
            var content: [String: JSONValue] = ["taskName": .string(state.config(ref)?.name ?? ref),
                                                "pipelineRun": ["id": .string(executionID), "source": .string(source)]]
            if let runURL { content["url"] = runURL }
            return make("taskRun", "started", subjectID: "\(executionID)/\(ref)", content: content)
        case .stageCompleted(let ref, let status, _):
            var content: [String: JSONValue] = ["taskName": .string(state.config(ref)?.name ?? ref), "outcome": .string(outcome(status)),
                                                "pipelineRun": ["id": .string(executionID), "source": .string(source)]]
            if let runURL { content["url"] = runURL }
            if status != .succeeded && status != .skipped { content["errors"] = .string("the stage ended \(status.rawValue)") }
            return make("taskRun", "finished", subjectID: "\(executionID)/\(ref)", content: content)
        default:
            return nil
        }
    }

    /// CDEvents' outcome: success, failure (the work failed) or error (it could not run to an end).
    static func outcome(_ status: ExecutionStatus) -> String {
        switch status {
        case .succeeded, .skipped, .failedContinue: "success"
        case .canceled, .stopped: "error"
        default: "failure"
        }
    }
}
