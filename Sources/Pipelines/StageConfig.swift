import EventLog

/// One stage of a pipeline, as Spinnaker's pipeline JSON gives it. The whole JSON object is kept
/// (type-specific and unknown fields included); the common fields are read from it.
public struct StageConfig: Sendable, Hashable {
    /// The stage's JSON object exactly as given.
    public var json: [String: JSONValue]

    public init(json: [String: JSONValue]) {
        self.json = json
    }

    /// The stage's id within the pipeline; Spinnaker writes it as a string or a number.
    public var refID: String? { json["refId"].flatMap(Self.refText) }

    /// The stages that must complete first (the DAG's edges).
    public var requisiteStageRefIDs: [String] {
        json["requisiteStageRefIds"]?.arrayValue?.compactMap(Self.refText) ?? []
    }

    public var type: String? { json["type"]?.stringValue }
    public var name: String { json["name"]?.stringValue ?? refID ?? "stage" }

    /// On failure, fail the whole execution (default true).
    public var failPipeline: Bool { json["failPipeline"]?.boolValue ?? true }
    /// On failure, let downstream stages run (FAILED_CONTINUE).
    public var continuePipeline: Bool { json["continuePipeline"]?.boolValue ?? false }
    /// On failure, stop this branch, let other branches finish, then fail the execution.
    public var completeOtherBranchesThenFail: Bool { json["completeOtherBranchesThenFail"]?.boolValue ?? false }
    /// `stageEnabled.expression`: when it evaluates to false the stage is SKIPPED.
    public var enabledExpression: String? {
        guard json["stageEnabled"]?["type"]?.stringValue == "expression" else { return nil }
        return json["stageEnabled"]?["expression"]?.stringValue
    }
    public var stageTimeoutMs: Int? { json["stageTimeoutMs"]?.intValue }
    public var markSuccessfulOnTimeout: Bool { json["markSuccessfulOnTimeout"]?.boolValue ?? false }
    public var backoffPeriodMs: Int? { json["backoffPeriodMs"]?.intValue }

    /// What a failure of this stage becomes.
    public var failureStatus: ExecutionStatus {
        if continuePipeline { return .failedContinue }
        if completeOtherBranchesThenFail || !failPipeline { return .stopped }
        return .terminal
    }

    static func refText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text
        case .number: value.intValue.map(String.init)
        default: nil
        }
    }
}
