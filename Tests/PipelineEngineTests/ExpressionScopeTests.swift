import EventLog
import Expressions
import Orchestration
@testable import PipelineEngine
import Pipelines
import Testing

/// Bare names in a stage's expressions, as in Orca: the stage's own context, then the outputs of
/// its completed ancestors, the nearest first.
@Suite("Expression scope: upstream outputs as bare names", .timeLimit(.minutes(1)))
struct ExpressionScopeTests {
    /// 1 → 2 → 3, and 1 → 4 (a branch beside 2 and 3); 1, 2 and 4 have completed with outputs.
    static func state() -> ExecutionState {
        let pipeline = PipelineConfig(json: ["application": "web", "stages": [
            ["refId": "1", "type": "evaluateVariables"],
            ["refId": "2", "type": "evaluateVariables", "requisiteStageRefIds": ["1"]],
            ["refId": "3", "type": "noop", "requisiteStageRefIds": ["2"], "region": "eu-west-1"],
            ["refId": "4", "type": "evaluateVariables", "requisiteStageRefIds": ["1"]],
        ]])
        return ExecutionState([
            .triggered(pipeline: pipeline, trigger: ["type": "manual"], parameters: ["target": "from-parameters"]),
            .started,
            .stageStarted(refID: "1", attempt: 1), .stageCompleted(refID: "1", status: .succeeded, outputs: ["target": "far", "only1": "one"]),
            .stageStarted(refID: "2", attempt: 1), .stageCompleted(refID: "2", status: .succeeded, outputs: ["target": "near"]),
            .stageStarted(refID: "4", attempt: 1), .stageCompleted(refID: "4", status: .succeeded, outputs: ["branch": "not an ancestor of 3"]),
            .stageStarted(refID: "3", attempt: 1),
        ])
    }

    static func evaluate(_ text: String, in ref: String) throws -> JSONValue {
        let evaluator = ExpressionEvaluator(context: ExpressionScope.context(executionID: "e1", state: state(), stage: ref))
        return try Template.evaluate(text, with: evaluator)
    }

    @Test func nearestAncestorWins() throws {
        #expect(try Self.evaluate("${target}", in: "3") == "near")
        #expect(try Self.evaluate("${only1}", in: "3") == "one")
        #expect(try Self.evaluate("${target}", in: "2") == "far", "a stage does not see its own outputs before it ran, only its ancestors'")
    }

    @Test func ownContextComesFirstAndRootsStayRoots() throws {
        #expect(try Self.evaluate("${region}", in: "3") == "eu-west-1")
        #expect(try Self.evaluate("${parameters.target}", in: "3") == "from-parameters")
    }

    @Test func siblingsAndUnknownNamesAreNotInScope() {
        #expect(throws: ExpressionError.self) { try Self.evaluate("${branch}", in: "3") }
        #expect(throws: ExpressionError.self) { try Self.evaluate("${nowhere}", in: "3") }
    }
}
