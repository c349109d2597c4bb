import Crypto
import EventLog
import Expressions
import Foundation
import Orchestration
import Pipelines
import PipelineEngine

/// One notification to send: which entry, for which event, and its message.
public struct PlannedNotification: Sendable, Hashable {
    /// Stable for (event, entry): the idempotency key receivers see and the stream of its outcome.
    public let key: String
    public let type: String
    public let address: String
    /// Echo's `when`: pipeline.starting, stage.failed, manualJudgment …
    public let when: String
    public let executionID: String
    public let application: String?
    public let pipeline: String?
    /// The stage, for stage notifications.
    public let stage: String?
    public let subject: String
    public let text: String
    /// The entry as configured (cc, customSubject … for the channels that use them).
    public let entry: JSONValue
    /// The event that caused it (its id), for the outcome's causation.
    public let eventID: String
}

/// Decides, purely, which notifications an execution event calls for (Echo's semantics): the
/// pipeline's `notifications[]` merged over the application's (an entry with the same type and
/// address overrides), and a stage's own `notifications[]` when it has `sendNotifications: true`;
/// each entry fires for the `when` values it lists. Canceled executions notify nothing.
public enum NotificationPlanner {
    /// The `when` values an event stands for, with the stage they are about (nil: the pipeline).
    /// `state` is the execution after the event.
    public static func occasions(of event: ExecutionEvent, state: ExecutionState) -> [(when: String, stage: String?)] {
        switch event {
        case .started:
            return [("pipeline.starting", nil)]
        case .completed(let status):
            switch status {
            case .succeeded: return [("pipeline.complete", nil)]
            case .canceled: return []
            default: return [("pipeline.failed", nil)]
            }
        case .stageStarted(let ref, _):
            if state.config(ref)?.type == "manualJudgment" { return [("manualJudgment", ref), ("stage.starting", ref)] }
            return [("stage.starting", ref)]
        case .stageCompleted(let ref, let status, let outputs):
            if state.status == .canceled || state.cancelRequested { return [] }
            var occasions: [(String, String?)] = []
            if state.config(ref)?.type == "manualJudgment" {
                switch outputs["judgmentStatus"]?.stringValue {
                case "continue": occasions.append(("manualJudgmentContinue", ref))
                case "stop": occasions.append(("manualJudgmentStop", ref))
                default: break
                }
            }
            switch status {
            case .succeeded, .skipped, .failedContinue: occasions.append(("stage.complete", ref))
            case .canceled: break
            default: occasions.append(("stage.failed", ref))
            }
            return occasions
        default:
            return []
        }
    }

    /// The notifications `event` (recorded with id `eventID`) calls for.
    public static func plan(
        _ event: ExecutionEvent, eventID: String, executionID: String, state: ExecutionState, applicationNotifications: [JSONValue]
    ) -> [PlannedNotification] {
        var planned: [PlannedNotification] = []
        for (when, stage) in occasions(of: event, state: state) {
            let entries: [JSONValue]
            if let stage {
                guard let config = state.config(stage), config.json["sendNotifications"]?.boolValue == true else { continue }
                entries = config.json["notifications"]?.arrayValue ?? []
            } else {
                entries = merged(pipeline: state.pipeline.json["notifications"]?.arrayValue ?? [], application: applicationNotifications)
            }
            for (index, entry) in entries.enumerated() {
                guard let type = entry["type"]?.stringValue, let address = entry["address"]?.stringValue ?? entry["repo"]?.stringValue ?? (type == "githubStatus" ? "" : nil),
                      (entry["when"]?.arrayValue ?? []).contains(.string(when)) else { continue }
                let (subject, text) = message(when: when, stage: stage, entry: entry, executionID: executionID, state: state)
                let key = Self.key(eventID: eventID, when: when, stage: stage, index: index, type: type, address: address)
                planned.append(PlannedNotification(
                    key: key, type: type, address: address, when: when, executionID: executionID, application: state.pipeline.application,
                    pipeline: state.pipeline.name, stage: stage, subject: subject, text: text, entry: entry, eventID: eventID))
            }
        }
        return planned
    }

    /// The application's entries with the pipeline's over them (same type and address: the pipeline's).
    static func merged(pipeline: [JSONValue], application: [JSONValue]) -> [JSONValue] {
        func identity(_ entry: JSONValue) -> String { "\(entry["type"]?.stringValue ?? "")\u{1F}\(entry["address"]?.stringValue ?? "")" }
        let overridden = Set(pipeline.map(identity))
        return application.filter { !overridden.contains(identity($0)) } + pipeline
    }

    static func key(eventID: String, when: String, stage: String?, index: Int, type: String, address: String) -> String {
        let digest = SHA256.hash(data: Array("\(eventID)\u{1F}\(when)\u{1F}\(stage ?? "")\u{1F}\(index)\u{1F}\(type)\u{1F}\(address)".utf8))
        return digest.prefix(20).map { String(format: "%02x", $0) }.joined()
    }

    /// The subject and text: the entry's `message[when].text` (and `customSubject`) with `${…}`
    /// evaluated against the execution, else Echo's defaults.
    static func message(when: String, stage: String?, entry: JSONValue, executionID: String, state: ExecutionState) -> (String, String) {
        let application = state.pipeline.application ?? "-", pipeline = state.pipeline.name ?? state.pipeline.id ?? "-"
        let stageName = stage.map { state.config($0)?.name ?? $0 } ?? ""
        let subject: String
        switch when {
        case "pipeline.starting": subject = "Pipeline \(pipeline) for \(application) is starting"
        case "pipeline.complete": subject = "Pipeline \(pipeline) for \(application) has completed successfully"
        case "pipeline.failed": subject = "Pipeline \(pipeline) for \(application) has failed"
        case "stage.starting": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline is starting"
        case "stage.complete": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline has completed successfully"
        case "stage.failed": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline has failed"
        case "manualJudgment": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline is awaiting manual judgment"
        case "manualJudgmentContinue": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline was judged to continue"
        case "manualJudgmentStop": subject = "Stage \(stageName) for \(application)'s \(pipeline) pipeline was judged to stop"
        default: subject = "\(when): \(pipeline) for \(application)"
        }
        let evaluator = ExpressionEvaluator(context: ExpressionScope.context(executionID: executionID, state: state, stage: stage))
        func render(_ template: String?) -> String? {
            guard let template else { return nil }
            guard template.contains("${") else { return template }
            return (try? Template.evaluate(template, with: evaluator))?.rendered ?? template
        }
        let custom = render(entry["message"]?[when]?["text"]?.stringValue)
        let text = custom ?? "\(subject). Execution \(executionID)."
        return (render(entry["customSubject"]?.stringValue) ?? subject, text)
    }
}
