import EventLog
import Orchestration
import PipelineEngine
@testable import StageRunners
import Pipelines
import Testing

@Suite("evaluateVariables and checkPreconditions", .timeLimit(.minutes(1)))
struct VariableStageRunnerTests {
    static func run(_ runner: some StageRunner, _ stage: [String: JSONValue]) async throws -> StageOutcome {
        try await runner.run(StageRun(executionID: "e", refID: "1", attempt: 1, stage: StageConfig(json: stage), execution: ExecutionState(), work: WorkHandle()))
    }

    @Test func variablesBecomeOutputs() async throws {
        let outcome = try await Self.run(EvaluateVariablesStageRunner(), [
            "type": "evaluateVariables", "variables": [["key": "image", "value": "ami-1"], ["key": "count", "value": 3]],
        ])
        #expect(outcome == StageOutcome(status: .succeeded, outputs: ["image": "ami-1", "count": 3]))
        let broken = try await Self.run(EvaluateVariablesStageRunner(), ["type": "evaluateVariables", "variables": [["value": 1]]])
        #expect(broken.status == .terminal)
    }

    @Test func preconditions() async throws {
        func check(_ preconditions: JSONValue, _ extra: [String: JSONValue] = [:]) async throws -> StageOutcome {
            var stage: [String: JSONValue] = ["type": "checkPreconditions", "preconditions": preconditions]
            stage.merge(extra) { $1 }
            return try await Self.run(CheckPreconditionsStageRunner(), stage)
        }
        #expect(try await check([["type": "expression", "context": ["expression": true]], ["context": ["expression": "true"]]]).status == .succeeded)
        #expect(try await check([["type": "expression", "context": ["expression": false]]]).status == .terminal)
        #expect(try await check([["type": "expression", "context": ["expression": false]]], ["failPipeline": false]).status == .stopped)
        #expect(try await check([["type": "expression", "context": ["expression": false], "failPipeline": false]]).status == .failedContinue)
        // An expression left unevaluated (it failed) does not hold.
        #expect(try await check([["type": "expression", "context": ["expression": "${parameters.nope}"]]]).status == .terminal)
        #expect(try await check([["type": "clusterSize", "context": [:]]]).outputs["error"] != nil)
    }
}
