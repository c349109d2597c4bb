@testable import EventLog
import Foundation
import Testing

@Suite("JSONWriter: Topsail's JSON text")
struct JSONWriterTests {
    /// What Foundation reads back from the writer's text, as a JSONValue.
    static func foundationReads(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test(arguments: [0, -0.0, 1, -1, 0.1, 1.5, 1e15 - 1, 1e15, 1e20, -1e20, 5e-324, 1.7976931348623157e308, 123456789.125, 2.5e-7])
    func numbersReadBackExactly(_ number: Double) throws {
        let text = try JSONValue.number(number).jsonText()
        #expect(try Self.foundationReads(text) == .number(number), "\(number) written as \(text)")
        #expect(try JSONParser.parse(text) == .number(number), "\(number) written as \(text)")
    }

    @Test func integralNumbersAreWrittenAsIntegers() throws {
        #expect(try JSONValue.number(3).jsonText() == "3")
        #expect(try JSONValue.number(-42).jsonText() == "-42")
        #expect(try JSONValue.number(0.5).jsonText() == "0.5")
    }

    @Test func numbersJSONCannotHoldAreRefused() {
        #expect(throws: JSONWriter.NotRepresentable.self) { try JSONValue.number(.nan).jsonText() }
        #expect(throws: JSONWriter.NotRepresentable.self) { try JSONValue.array([.number(.infinity)]).jsonText() }
    }

    @Test func stringsEscapeWhatJSONRequires() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t return \r nul \u{0} bell \u{7} unit \u{1f} del \u{7f} é 🚀 /"
        let text = try JSONValue.string(tricky).jsonText()
        #expect(try Self.foundationReads(text) == .string(tricky))
        #expect(text.contains("\\u0000") && text.contains("\\u001f") && text.contains("\\u0007"))
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 }, "a control character went out unescaped")
        #expect(tricky.jsonQuoted == text)
    }

    @Test func objectsHaveSortedKeysSoTheSameValueIsTheSameText() throws {
        let value: JSONValue = ["b": 1, "a": ["z": true, "y": .null], "c": [1, "two", 3.5]]
        #expect(try value.jsonText() == #"{"a":{"y":null,"z":true},"b":1,"c":[1,"two",3.5]}"#)
    }

    @Test func randomDocumentsAgreeWithFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2: return .number(Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &generator)).isFinite
                ? Double(Int64.random(in: -1_000_000_000...1_000_000_000, using: &generator)) / 1_024 : 0)
            case 3: return .string(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in "aé\"\\\n\u{1}🚀x/\u{7f}".randomElement(using: &generator)! }))
            case 4: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in random(depth + 1) })
            default: return .object(Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0...4, using: &generator)).map { ("k\($0)", random(depth + 1)) }))
            }
        }
        for _ in 0..<500 {
            let value = random(0)
            let text = try value.jsonText()
            #expect(try Self.foundationReads(text) == value, "\(text)")
        }
    }
}
