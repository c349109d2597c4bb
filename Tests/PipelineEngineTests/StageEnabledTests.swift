import EventLog
import Orchestration
@testable import PipelineEngine
import Pipelines
import Testing

@Suite("stageEnabled expressions", .timeLimit(.minutes(1)))
struct StageEnabledTests {
    static func state(parameters: [String: JSONValue]) -> ExecutionState {
        let pipeline = PipelineConfig(json: ["application": "web", "stages": [["refId": "1", "type": "noop"]]])
        return ExecutionState([.triggered(pipeline: pipeline, trigger: ["type": "manual", "user": "ann"], parameters: parameters)])
    }

    static func stage(_ expression: String) -> StageConfig {
        StageConfig(json: ["refId": "1", "type": "noop", "stageEnabled": ["type": "expression", "expression": .string(expression)]])
    }

    @Test(arguments: [
        ("${parameters.deploy == 'yes'}", true),
        ("${parameters.deploy == 'no'}", false),
        ("${trigger.user == 'ann' and execution.application == 'web'}", true),
        ("parameters.deploy == 'yes'", false),   // not an expression: the string is not "true"
        ("true", true),
        ("${parameters.missing}", false),         // a failing expression skips, as in Spinnaker
        ("${#stageExists('1')}", true),
    ])
    func decides(_ expression: String, _ enabled: Bool) {
        let context = ExpressionScope.decisionContext(executionID: "e1")
        #expect(context.stageEnabled(Self.stage(expression), Self.state(parameters: ["deploy": "yes"])) == enabled)
    }

    @Test func stagesWithoutAnExpressionRun() {
        let context = ExpressionScope.decisionContext(executionID: "e1")
        #expect(context.stageEnabled(StageConfig(json: ["refId": "1", "type": "noop"]), Self.state(parameters: [:])))
    }
}
