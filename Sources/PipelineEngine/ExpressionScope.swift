import EventLog
import Expressions
import Orchestration
import Pipelines

/// What `${…}` expressions see of an execution: `execution`, `trigger`, `parameters`, and the
/// stages for `#stage(…)` and friends. For a stage, as in Orca, bare names also reach the stage's
/// own context and then the outputs of its completed ancestors, the nearest first (an
/// `evaluateVariables` stage that sets `target` lets every later stage write `${target}`).
public enum ExpressionScope {
    static let reservedRoots: Set<String> = ["execution", "trigger", "parameters"]

    public static func context(executionID: String, state: ExecutionState, stage ref: String? = nil) -> ExpressionContext {
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
        var roots: [String: JSONValue] = [:]
        if let ref {
            // Farthest first, so that nearer stages overwrite; then the stage's own context.
            for ancestor in ancestors(of: ref, in: state.graph).reversed() where state.stage(ancestor).status.isComplete {
                roots.merge(state.stage(ancestor).outputs) { $1 }
            }
            roots.merge(state.config(ref)?.json ?? [:]) { $1 }
        }
        roots.merge(["execution": execution, "trigger": state.trigger, "parameters": .object(state.parameters)]) { $1 }
        return ExpressionContext(roots: roots, stages: stages)
    }

    /// `ref`'s ancestors, nearest first (breadth-first over `requisiteStageRefIds`).
    static func ancestors(of ref: String, in graph: StageGraph) -> [String] {
        var seen: Set<String> = [ref]
        var order: [String] = []
        var frontier = graph.upstream[ref] ?? []
        while !frontier.isEmpty {
            var next: [String] = []
            for parent in frontier where seen.insert(parent).inserted {
                order.append(parent)
                next += graph.upstream[parent] ?? []
            }
            frontier = next
        }
        return order
    }

    /// `stageEnabled`: a stage runs unless its expression evaluates to false; an expression that
    /// fails to evaluate skips the stage too, as in Spinnaker.
    static func decisionContext(executionID: String) -> DecisionContext {
        DecisionContext(stageEnabled: { stage, state in
            guard let expression = stage.enabledExpression else { return true }
            let evaluator = ExpressionEvaluator(context: context(executionID: executionID, state: state, stage: stage.refID))
            guard let value = try? Template.evaluate(expression, with: evaluator) else { return false }
            switch value {
            case .bool(let enabled): return enabled
            case .string(let text): return text.lowercased() == "true"
            default: return false
            }
        })
    }
}
