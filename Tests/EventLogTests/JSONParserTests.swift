import Foundation
import Testing
@testable import EventLog

/// Topsail's JSON parser against Foundation's, document by document: the same values for what
/// both accept, a refusal for what Foundation refuses.
@Suite("JSON parser", .timeLimit(.minutes(1)))
struct JSONParserTests {
    static func foundation(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    static let accepted: [String] = [
        "null", "true", "false", "0", "-0", "1", "-1", "12.5", "1e3", "1E-3", "-2.5e+10", "123456789012", "0.1",
        #""""#, #""plain""#, #""caf\u00e9 \u2603 \ud83d\ude00""#, #""tab\tnew\nline \"quoted\" back\\slash \/ \b\f\r""#,
        "\"ünïcødé 🚀 直接\"", "[]", "{}", " [ 1 , 2 ,3 ] ", #"{"a":{"b":[{"c":null}]}}"#,
        #"{"pipeline":{"id":"p","stages":[{"refId":"1","type":"wait","waitTime":30,"requisiteStageRefIds":[]}]},"trigger":{"type":"manual","user":"ana"},"parameters":{}}"#,
        #"{"dup":1,"dup":2}"#, "\n\t{\"x\" :\r\n true}\n",
    ]

    static let refused: [String] = [
        "", " ", "nul", "tru", "01", "1.", ".5", "-", "+1", "1e", "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "'x'",
        "\"unterminated", "\"bad \\x escape\"", "\"lone \\ud800\"", "\"\u{01}\"", "[1] 2", "{\"a\":1}}", "NaN", "1e999",
    ]

    @Test(arguments: accepted)
    func sameValuesAsFoundation(_ text: String) throws {
        let ours = try JSONParser.parse(text)
        #expect(ours == Self.foundation(text), "\(text)")
        #expect(try JSONText(unchecked: text).decode(JSONValue.self) == ours)
    }

    @Test(arguments: refused)
    func refusesWhatIsNotJSON(_ text: String) {
        #expect(throws: JSONParser.Failure.self, "\(text)") { try JSONParser.parse(text) }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect((try? JSONParser.parse(fine)) != nil)
    }

    @Test func randomDocumentsRoundTripLikeFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2: return .number(Double(Int.random(in: -1_000_000...1_000_000, using: &generator)) / 8)
            case 3: return .string(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in "aé\"\\\n🚀x/\u{7f}".randomElement(using: &generator)! }))
            case 4: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in random(depth + 1) })
            default: return .object(Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0...4, using: &generator)).map { ("k\($0)", random(depth + 1)) }))
            }
        }
        for _ in 0..<500 {
            let value = random(0)
            let text = try JSONText(encoding: value).text
            #expect(try JSONParser.parse(text) == value, "\(text)")
        }
    }
}
