import EventLog
import Pipelines

/// Execution events to and from the log's (type, JSON payload) form.
public enum ExecutionEventCodec {
    public static let schemaVersion = 1

    public static func encode(_ event: ExecutionEvent) -> (type: String, payload: JSONValue) {
        let payload: JSONValue = switch event {
        case let .triggered(pipeline, trigger, parameters):
            ["pipeline": .object(pipeline.json), "trigger": trigger, "parameters": .object(parameters)]
        case .buffered, .started:
            [:]
        case let .stageStarted(ref, attempt):
            ["refId": .string(ref), "attempt": .number(Double(attempt))]
        case let .stageCompleted(ref, status, outputs):
            ["refId": .string(ref), "status": .string(status.rawValue), "outputs": .object(outputs)]
        case let .stageRestarted(ref, reset):
            ["refId": .string(ref), "reset": .array(reset.map(JSONValue.string))]
        case let .stageProgressed(ref, attempt, poll, context, retryAfterMs):
            ["refId": .string(ref), "attempt": .number(Double(attempt)), "poll": .number(Double(poll)), "context": .object(context),
             "retryAfterMs": .number(Double(retryAfterMs))]
        case let .stagePollDue(ref, attempt, poll):
            ["refId": .string(ref), "attempt": .number(Double(attempt)), "poll": .number(Double(poll))]
        case .paused(let by), .resumed(let by):
            ["by": by.map(JSONValue.string) ?? .null]
        case let .cancelRequested(by, reason):
            ["by": by.map(JSONValue.string) ?? .null, "reason": reason.map(JSONValue.string) ?? .null]
        case .completed(let status):
            ["status": .string(status.rawValue)]
        case let .redriven(by, reasons, stages, timedOut):
            ["by": .string(by), "reasons": .array(reasons.map(JSONValue.string)), "stages": .array(stages.map(JSONValue.string)),
             "timedOut": .array(timedOut.map(JSONValue.string))]
        }
        return (event.wireType, payload)
    }

    public static func decode(type: String, payload: JSONValue) throws(ExecutionEventDecodingError) -> ExecutionEvent {
        func field(_ name: String) throws(ExecutionEventDecodingError) -> JSONValue {
            guard let value = payload[name] else { throw ExecutionEventDecodingError(type: type, field: name) }
            return value
        }
        func string(_ name: String) throws(ExecutionEventDecodingError) -> String {
            guard let value = try field(name).stringValue else { throw ExecutionEventDecodingError(type: type, field: name) }
            return value
        }
        func status(_ name: String) throws(ExecutionEventDecodingError) -> ExecutionStatus {
            guard let value = ExecutionStatus(rawValue: try string(name)) else { throw ExecutionEventDecodingError(type: type, field: name) }
            return value
        }
        func int(_ name: String) throws(ExecutionEventDecodingError) -> Int {
            guard let value = try field(name).intValue else { throw ExecutionEventDecodingError(type: type, field: name) }
            return value
        }
        let by = payload["by"]?.stringValue
        switch type {
        case ExecutionEvent.WireType.triggered:
            guard let pipeline = try field("pipeline").objectValue else { throw ExecutionEventDecodingError(type: type, field: "pipeline") }
            return .triggered(pipeline: PipelineConfig(json: pipeline), trigger: payload["trigger"] ?? .null,
                              parameters: payload["parameters"]?.objectValue ?? [:])
        case ExecutionEvent.WireType.buffered: return .buffered
        case ExecutionEvent.WireType.started: return .started
        case ExecutionEvent.WireType.stageStarted:
            guard let attempt = try field("attempt").intValue else { throw ExecutionEventDecodingError(type: type, field: "attempt") }
            return .stageStarted(refID: try string("refId"), attempt: attempt)
        case ExecutionEvent.WireType.stageCompleted:
            return .stageCompleted(refID: try string("refId"), status: try status("status"), outputs: payload["outputs"]?.objectValue ?? [:])
        case ExecutionEvent.WireType.stageRestarted:
            return .stageRestarted(refID: try string("refId"), reset: try field("reset").arrayValue?.compactMap(\.stringValue) ?? [])
        case ExecutionEvent.WireType.stageProgressed:
            return .stageProgressed(refID: try string("refId"), attempt: try int("attempt"), poll: try int("poll"),
                                    context: payload["context"]?.objectValue ?? [:], retryAfterMs: try int("retryAfterMs"))
        case ExecutionEvent.WireType.stagePollDue:
            return .stagePollDue(refID: try string("refId"), attempt: try int("attempt"), poll: try int("poll"))
        case ExecutionEvent.WireType.paused: return .paused(by: by)
        case ExecutionEvent.WireType.resumed: return .resumed(by: by)
        case ExecutionEvent.WireType.cancelRequested: return .cancelRequested(by: by, reason: payload["reason"]?.stringValue)
        case ExecutionEvent.WireType.completed: return .completed(status: try status("status"))
        case ExecutionEvent.WireType.redriven:
            func strings(_ name: String) -> [String] { payload[name]?.arrayValue?.compactMap(\.stringValue) ?? [] }
            return .redriven(by: by ?? "supervisor", reasons: strings("reasons"), stages: strings("stages"), timedOut: strings("timedOut"))
        default: throw ExecutionEventDecodingError(type: type, field: nil)
        }
    }
}

/// A stored execution event that does not decode.
public struct ExecutionEventDecodingError: Error, Hashable, CustomStringConvertible {
    public let type: String
    public let field: String?

    public init(type: String, field: String?) {
        self.type = type
        self.field = field
    }

    public var description: String {
        guard let field else { return "unknown execution event type '\(type)'" }
        return "execution event '\(type)' has no valid '\(field)'"
    }
}
