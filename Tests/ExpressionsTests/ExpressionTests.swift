import EventLog
import Expressions
import Foundation
import Testing

@Suite("Expressions", .timeLimit(.minutes(1)))
struct ExpressionTests {
    static let context = ExpressionContext(
        roots: [
            "parameters": ["version": "1.2.3", "replicas": "3", "canary": "true", "regions": ["us-east-1", "eu-west-1"]],
            "trigger": ["type": "jenkins", "buildInfo": ["number": 42, "result": "SUCCESS", "scm": [["branch": "main", "sha1": "abc"]]]],
            "execution": ["id": "e1", "application": "web"],
        ],
        stages: [
            ["refId": "1", "name": "Bake", "type": "bake", "status": "SUCCEEDED", "outputs": ["imageId": "ami-123"]],
            ["refId": "2", "name": "Approve", "type": "manualJudgment", "status": "SUCCEEDED", "outputs": ["judgmentInput": "ship"]],
        ]
    )
    static let evaluator = ExpressionEvaluator(context: context)

    static func eval(_ text: String) throws -> JSONValue { try evaluator.evaluate(text) }

    @Test(arguments: [
        ("parameters.version", JSONValue.string("1.2.3")),
        ("parameters['version']", "1.2.3"),
        ("trigger.buildInfo.number", 42),
        ("trigger.buildInfo.scm[0].branch", "main"),
        ("parameters.regions[1]", "eu-west-1"),
        ("trigger.buildInfo.number > 40 && trigger.type == 'jenkins'", true),
        ("trigger.buildInfo.result != 'SUCCESS' or false", false),
        ("not (1 < 2)", false),
        ("parameters.canary ? 'canary' : 'full'", "canary"),
        ("'v' + parameters.version + '-' + trigger.buildInfo.number", "v1.2.3-42"),
        ("#toInt(parameters.replicas) * 2 + 1", 7),
        ("#toFloat('2.5') / 2", 1.25),
        ("#toBoolean('TRUE')", true),
        ("#toJson(trigger.buildInfo.scm[0])", #"{"branch":"main","sha1":"abc"}"#),
        ("#readJson('{\"a\": [1, 2]}').a[1]", 2),
        ("#fromBase64(#toBase64('héllo'))", "héllo"),
        ("#alphanumerical('feature/ABC-12_x')", "featureABC12x"),
        ("#stage('Bake').outputs.imageId", "ami-123"),
        ("#stageByRefId('1').status", "SUCCEEDED"),
        ("#stageExists('Approve') && !#stageExists('Deploy')", true),
        ("#judgment('Approve')", "ship"),
        ("7 % 4 - -1", 4),
        ("'it''s'", "it's"),
        ("null == null", true),
    ])
    func evaluates(_ expression: String, _ expected: JSONValue) throws {
        #expect(try Self.eval(expression) == expected)
    }

    @Test(arguments: [
        ("parameters.nope", "no property 'nope'"),
        ("secrets.key", "unknown name 'secrets'"),
        ("parameters.regions[5]", "outside 0..<2"),
        ("#exec('rm -rf /')", "unknown helper #exec"),
        ("T(java.lang.Runtime).getRuntime()", "unexpected '('"),
        ("1 / 0", "division by zero"),
        ("'a' < 1", "cannot compare string with number"),
        ("(1 + ", "unexpected the end"),
        ("'unterminated", "unterminated string"),
        ("#toInt('x')", "#toInt cannot read"),
        ("parameters.version ? 1 : 2", "expected a boolean"),
    ])
    func reportsErrors(_ expression: String, _ message: String) {
        #expect {
            try Self.eval(expression)
        } throws: { error in
            (error as? ExpressionError)?.message.contains(message) == true
        }
    }

    @Test func templatesKeepTypesOrJoinText() throws {
        #expect(try Template.evaluate("${trigger.buildInfo.number}", with: Self.evaluator) == 42)
        #expect(try Template.evaluate("build ${trigger.buildInfo.number} of ${execution.application}", with: Self.evaluator) == "build 42 of web")
        // Braces inside the expression's strings do not end it.
        #expect(try Template.evaluate("${#readJson('{\"a\": {\"b\": 1}}').a.b}", with: Self.evaluator) == 1)
        #expect(try Template.evaluate("no expressions", with: Self.evaluator) == "no expressions")
        #expect(throws: ExpressionError.self) { try Template.evaluate("broken ${parameters.version", with: Self.evaluator) }
    }

    @Test func treesReportEachFailureWithItsExpression() {
        let stage: JSONValue = ["command": "deploy ${parameters.version}", "env": ["A": "${parameters.missing}", "B": "plain"], "n": 3]
        let (value, failures) = Template.evaluate(stage, with: Self.evaluator)
        #expect(value["command"] == "deploy 1.2.3")
        #expect(value["env"]?["A"] == "${parameters.missing}", "a failed field stays as written")
        #expect(value["n"] == 3)
        #expect(failures.map(\.description) == ["$.env.A: ${parameters.missing}: no property 'missing'"])
    }

    @Test func limitsBoundHostileExpressions() {
        let deep = String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500)
        #expect(throws: ExpressionError.self) { try Self.eval(deep) }
        let long = String(repeating: "1 + ", count: 5_000) + "1"
        #expect(throws: ExpressionError.self) { try Self.eval(long) }
        // Doubling a string until it passes the output limit.
        var doubling = "'xxxxxxxxxxxxxxxx'"
        for _ in 0..<18 { doubling = "(\(doubling) + \(doubling))" }
        #expect(throws: ExpressionError.self) { try Self.eval(doubling) }
    }

    /// Random inputs: every one ends in a value or an ExpressionError, quickly.
    @Test func fuzzedInputsNeverCrashOrHang() {
        let alphabet = Array("parametersversion trigger.[]()'\"#toInt stage ?:!&|=<>+-*/%0123456789 ${}abcxyz,")
        var generator = SystemRandomNumberGenerator()
        let started = ContinuousClock.now
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...60, using: &generator)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            _ = try? Self.eval(text)
            _ = try? Template.evaluate(text, with: Self.evaluator)
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }
}
