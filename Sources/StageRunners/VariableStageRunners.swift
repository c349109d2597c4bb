import Access
import EventLog
import Orchestration
import PipelineEngine
import Pipelines

/// `evaluateVariables`: `variables` `[{key, value}]` (values already evaluated when the stage
/// started) become the stage's outputs, for later stages to read with `#stage(…).outputs`.
struct EvaluateVariablesStageRunner: StageRunner {
    func run(_ run: StageRun) async throws -> StageOutcome {
        var outputs: [String: JSONValue] = [:]
        for (index, variable) in (run.stage.json["variables"]?.arrayValue ?? []).enumerated() {
            guard let key = variable["key"]?.stringValue, !key.isEmpty else {
                return StageOutcome(status: run.stage.failureStatus, outputs: ["error": .string("variables[\(index)] has no key")])
            }
            outputs[key] = variable["value"] ?? .null
        }
        return StageOutcome(status: .succeeded, outputs: outputs)
    }
}

/// `checkPreconditions`: each `{type: "expression", context: {expression}, failPipeline}` must
/// hold. A failed one with `failPipeline` (default true) fails the stage with its failure
/// options; with `failPipeline: false` the stage ends FAILED_CONTINUE and the pipeline goes on.
/// An expression that did not evaluate counts as failed.
struct CheckPreconditionsStageRunner: StageRunner {
    func run(_ run: StageRun) async throws -> StageOutcome {
        var failed: [JSONValue] = []
        var fatal = false
        for (index, precondition) in (run.stage.json["preconditions"]?.arrayValue ?? []).enumerated() {
            guard precondition["type"]?.stringValue ?? "expression" == "expression" else {
                return StageOutcome(status: run.stage.failureStatus, outputs: [
                    "error": .string("preconditions[\(index)] has type '\(precondition["type"]?.stringValue ?? "")'; only 'expression' is supported"),
                ])
            }
            let value = precondition["context"]?["expression"] ?? .null
            let holds = value.boolValue ?? (value.stringValue?.lowercased() == "true")
            if !holds {
                failed.append(["index": .number(Double(index)), "expression": value])
                if precondition["failPipeline"]?.boolValue ?? true { fatal = true }
            }
        }
        if failed.isEmpty { return StageOutcome(status: .succeeded) }
        return StageOutcome(status: fatal ? run.stage.failureStatus : .failedContinue, outputs: ["failedPreconditions": .array(failed)])
    }
}
