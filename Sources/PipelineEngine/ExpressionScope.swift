import EventLog
import Expressions
import Orchestration
import Pipelines

/// What `${…}` expressions see of an execution: `execution`, `trigger`, `parameters`, and the
/// stages for `#stage(…)` and friends.
enum ExpressionScope {
    static func context(executionID: String, state: ExecutionState) -> ExpressionContext {
        let stages: [JSONValue] = state.graph.order.map { ref in
            let config = state.config(ref)
            return [
                "refId": .string(ref), "name": .string(config?.name ?? ref), "type": .string(config?.type ?? ""),
                "status": .string(state.stage(ref).status.rawValue), "outputs": .object(state.stage(ref).outputs),
                "context": .object(config?.json ?? [:]),
            ]
        }
        let execution: JSONValue = [
            "id": .string(executionID), "application": state.pipeline.application.map(JSONValue.string) ?? .null,
            "name": state.pipeline.name.map(JSONValue.string) ?? .null, "status": .string(state.status.rawValue),
            "trigger": state.trigger, "stages": .array(stages),
        ]
        return ExpressionContext(roots: ["execution": execution, "trigger": state.trigger, "parameters": .object(state.parameters)], stages: stages)
    }

    /// `stageEnabled`: a stage runs unless its expression evaluates to false; an expression that
    /// fails to evaluate skips the stage too, as in Spinnaker.
    static func decisionContext(executionID: String) -> DecisionContext {
        DecisionContext(stageEnabled: { stage, state in
            guard let expression = stage.enabledExpression else { return true }
            let evaluator = ExpressionEvaluator(context: context(executionID: executionID, state: state))
            guard let value = try? Template.evaluate(expression, with: evaluator) else { return false }
            switch value {
            case .bool(let enabled): return enabled
            case .string(let text): return text.lowercased() == "true"
            default: return false
            }
        })
    }
}
