import EventLog
import Foundation
import Pipelines
import Testing

@Suite("Pipeline JSON and validation", .timeLimit(.minutes(1)))
struct PipelineValidationTests {
    /// A pipeline as Spinnaker's Deck saves it, with fields Topsail does not know about.
    static let spinnakerJSON = """
        {
          "application": "web", "name": "deploy to prod", "id": "3f1b", "limitConcurrent": true,
          "keepWaitingPipelines": false, "spelEvaluator": "v4", "lastModifiedBy": "anonymous",
          "parameterConfig": [{"name": "version", "default": "1.0.0", "required": true}, {"name": "region", "default": ""}],
          "triggers": [{"type": "jenkins", "master": "ci", "job": "web-build", "enabled": true}],
          "stages": [
            {"refId": "1", "requisiteStageRefIds": [], "type": "wait", "name": "Soak", "waitTime": 30},
            {"refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment", "name": "Approve",
             "judgmentInputs": [{"value": "yes"}], "notifications": [], "instructions": "ship it?"},
            {"refId": 3, "requisiteStageRefIds": [1], "type": "script", "command": "echo ${parameters.version}",
             "failPipeline": false, "continuePipeline": true, "x-custom": {"kept": [1, 2, 3]}},
            {"refId": "4", "requisiteStageRefIds": ["2", "3"], "type": "noop",
             "stageEnabled": {"type": "expression", "expression": "${parameters.region != ''}"}}
          ]
        }
        """

    static func parse(_ text: String) throws -> Result<PipelineConfig, PipelineProblems> {
        PipelineValidation.parse(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))
    }

    static func problems(_ text: String) throws -> [PipelineProblem] {
        switch try parse(text) {
        case .success: return []
        case .failure(let problems): return problems.problems
        }
    }

    @Test func acceptsSpinnakerPipelineJSONAndKeepsUnknownFields() throws {
        let pipeline = try Self.parse(Self.spinnakerJSON).get()
        #expect(pipeline.application == "web")
        #expect(pipeline.stages.map(\.refID) == ["1", "2", "3", "4"])
        #expect(pipeline.stages[2].requisiteStageRefIDs == ["1"])
        #expect(pipeline.stages[3].enabledExpression == "${parameters.region != ''}")
        #expect(pipeline.parameterDefaults == ["version": "1.0.0", "region": ""])
        #expect(pipeline.requiredParameters == ["version"])

        // Round trip: every field, known or not, comes back out.
        let encoded = try JSONEncoder().encode(JSONValue.object(pipeline.json))
        let original = try JSONDecoder().decode(JSONValue.self, from: Data(Self.spinnakerJSON.utf8))
        #expect(try JSONDecoder().decode(JSONValue.self, from: encoded) == original)
        #expect(pipeline.json["spelEvaluator"] == "v4")
        #expect(pipeline.stages[2].json["x-custom"] == ["kept": [1, 2, 3]])
    }

    @Test func reportsDuplicateAndUnknownRefIDs() throws {
        let problems = try Self.problems("""
            {"stages": [
              {"refId": "a", "type": "noop"},
              {"refId": "a", "type": "noop"},
              {"refId": "b", "type": "noop", "requisiteStageRefIds": ["zzz"]}
            ]}
            """)
        #expect(problems.contains(PipelineProblem(path: "stages[1].refId", stage: "a", message: "duplicate refId 'a', also used by stages[0]")))
        #expect(problems.contains(PipelineProblem(path: "stages[2].requisiteStageRefIds[0]", stage: "b", message: "unknown refId 'zzz'")))
    }

    @Test func reportsCyclesWithThePath() throws {
        let problems = try Self.problems("""
            {"stages": [
              {"refId": "1", "type": "noop"},
              {"refId": "2", "type": "noop", "requisiteStageRefIds": ["1", "4"]},
              {"refId": "3", "type": "noop", "requisiteStageRefIds": ["2"]},
              {"refId": "4", "type": "noop", "requisiteStageRefIds": ["3"]}
            ]}
            """)
        #expect(problems.count == 1)
        #expect(problems.first?.message.contains("form a cycle") == true)
        for ref in ["2", "3", "4"] { #expect(problems.first?.message.contains(ref) == true) }
        #expect(problems.first?.message.contains("1 →") == false)
    }

    @Test func reportsSelfReference() throws {
        let problems = try Self.problems(#"{"stages": [{"refId": "1", "type": "noop", "requisiteStageRefIds": ["1"]}]}"#)
        #expect(problems.map(\.message) == ["a stage cannot require itself"])
    }

    @Test func reportsUnknownTypesAndMissingFields() throws {
        let problems = try Self.problems("""
            {"stages": [
              {"refId": "1", "type": "canaryAnalysis"},
              {"refId": "2", "type": "script"},
              {"refId": "3", "type": "webhook", "url": 42},
              {"refId": "4", "type": "wait", "waitTime": "${parameters.soak}"},
              {"refId": "5"},
              {"refId": "6", "type": "noop", "stageTimeoutMs": -1, "failPipeline": "no"}
            ]}
            """)
        let byPath = Dictionary(problems.map { ($0.path, $0) }) { first, _ in first }
        #expect(byPath["stages[0].type"]?.message.hasPrefix("unknown stage type 'canaryAnalysis' (supported: ") == true)
        #expect(byPath["stages[1].command"]?.message == "a script stage needs 'command' (a non-empty string)")
        #expect(byPath["stages[2].url"]?.message == "'url' must be a non-empty string, not number")
        #expect(byPath["stages[3].waitTime"] == nil, "an expression may stand for any field")
        #expect(byPath["stages[4].type"]?.stage == "5")
        #expect(byPath["stages[5].stageTimeoutMs"] != nil)
        #expect(byPath["stages[5].failPipeline"] != nil)
        #expect(problems.count == 6)
    }

    @Test func rejectsShapesThatAreNotPipelines() throws {
        #expect(try Self.problems("[]").map(\.message) == ["a pipeline must be a JSON object, not array"])
        #expect(try Self.problems("{}").map(\.path) == ["stages"])
        #expect(try Self.problems(#"{"stages": []}"#).map(\.message) == ["a pipeline needs at least one stage"])
        #expect(try Self.problems(#"{"stages": [1]}"#).map(\.message) == ["a stage must be an object, not number"])
        #expect(try Self.problems(#"{"stages": [{"type": "noop"}]}"#).map(\.path) == ["stages[0].refId"])
    }

    @Test func describesProblemsWithStageAndField() {
        let problem = PipelineProblem(path: "stages[1].command", stage: "2", message: "a script stage needs 'command' (a non-empty string)")
        #expect(PipelineProblems([problem]).description == "invalid pipeline: stage '2' (stages[1].command): a script stage needs 'command' (a non-empty string)")
    }
}

@Suite("Stage graph", .timeLimit(.minutes(1)))
struct StageGraphTests {
    @Test func initialStagesAndEdges() throws {
        let pipeline = try PipelineValidationTests.parse(PipelineValidationTests.spinnakerJSON).get()
        let graph = StageGraph(pipeline.stages)
        #expect(graph.initialStages == ["1"])
        #expect(graph.downstream["1"] == ["2", "3"])
        #expect(graph.upstream["4"] == ["2", "3"])
        #expect(graph.cycle() == nil)
    }
}

@Suite("Statuses and failure options", .timeLimit(.minutes(1)))
struct StatusTests {
    @Test func orcaStatusPredicates() {
        #expect(ExecutionStatus.allCases.filter(\.isComplete) == [.succeeded, .failedContinue, .terminal, .canceled, .stopped, .skipped])
        #expect(ExecutionStatus.allCases.filter(\.isHalt) == [.terminal, .canceled, .stopped])
        #expect(ExecutionStatus.allCases.filter(\.letsDownstreamRun) == [.succeeded, .failedContinue, .skipped])
        #expect(ExecutionStatus.notStarted.rawValue == "NOT_STARTED")
        #expect(ExecutionStatus.failedContinue.rawValue == "FAILED_CONTINUE")
    }

    @Test(arguments: [
        ([:], ExecutionStatus.terminal),
        (["continuePipeline": true], .failedContinue),
        (["failPipeline": false], .stopped),
        (["failPipeline": false, "continuePipeline": true], .failedContinue),
        (["completeOtherBranchesThenFail": true], .stopped),
    ] as [([String: JSONValue], ExecutionStatus)])
    func failureStatus(_ options: [String: JSONValue], _ expected: ExecutionStatus) {
        var json: [String: JSONValue] = ["refId": "1", "type": "noop"]
        json.merge(options) { $1 }
        #expect(StageConfig(json: json).failureStatus == expected)
    }
}

@Suite("JSON paths for webhook responses", .timeLimit(.minutes(1)))
struct JSONPathTests {
    static let body: JSONValue = ["status": ["state": "DONE", "steps": [["name": "a"], ["name": "b"]]], "odd key": 1, "list": [1, 2, 3]]

    @Test func readsKeysIndexesAndQuotedNames() throws {
        #expect(try JSONPath("$.status.state").value(in: Self.body) == "DONE")
        #expect(try JSONPath("status.state").value(in: Self.body) == "DONE")
        #expect(try JSONPath("$.status.steps[1].name").value(in: Self.body) == "b")
        #expect(try JSONPath("$.list[-1]").value(in: Self.body) == 3)
        #expect(try JSONPath("$['odd key']").value(in: Self.body) == 1)
        #expect(try JSONPath(#"$["status"]['state']"#).value(in: Self.body) == "DONE")
        #expect(try JSONPath("$").value(in: Self.body) == Self.body)
    }

    @Test func missingStepsAreNil() throws {
        #expect(try JSONPath("$.status.nope").value(in: Self.body) == nil)
        #expect(try JSONPath("$.list[7]").value(in: Self.body) == nil)
        #expect(try JSONPath("$.status[0]").value(in: Self.body) == nil)
    }

    @Test func malformedPathsSayWhy() {
        #expect(throws: JSONPathError(path: "$.a[", reason: "a '[' is not closed")) { try JSONPath("$.a[") }
        #expect(throws: JSONPathError(path: "$..a", reason: "a '.' is not followed by a name")) { try JSONPath("$..a") }
        #expect(throws: JSONPathError(path: "$[x]", reason: "'[x]' is neither a quoted name nor an index")) { try JSONPath("$[x]") }
        #expect(throws: JSONPathError(path: "", reason: "it is empty")) { try JSONPath("") }
    }
}
