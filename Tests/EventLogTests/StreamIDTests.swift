import EventLog
import Testing

@Suite("Stream ids", .timeLimit(.minutes(1)))
struct StreamIDTests {
    @Test(arguments: ["execution-6f1c2a", "application-web", "servergroup-prod.us-east-1.web-v003", "a1-x", "pipeline-a-b-c"])
    func valid(_ text: String) throws {
        let id = try StreamID(text)
        #expect(id.description == text)
    }

    @Test func splitsAtTheFirstDash() throws {
        let id = try StreamID("servergroup-prod.us-east-1.web-v003")
        #expect(id.category == "servergroup")
        #expect(id.id == "prod.us-east-1.web-v003")
    }

    @Test(arguments: [
        ("nodash", "no '-'"),
        ("-abc", "category is empty"),
        ("abc-", "id after '-' is empty"),
        ("Exec-1", "lowercase letters and digits"),
        ("1exec-1", "lowercase letters and digits"),
        ("ex_ec-1", "lowercase letters and digits"),
        ("exec-a b", "whitespace"),
        ("exec-a\tb", "whitespace"),
    ])
    func invalid(_ text: String, _ reason: String) {
        #expect {
            try StreamID(text)
        } throws: { error in
            (error as? StreamIDError)?.description.contains(reason) == true
        }
    }

    @Test func limitsLengths() {
        #expect(throws: StreamIDError.self) { try StreamID(category: String(repeating: "a", count: 65), id: "1") }
        #expect(throws: StreamIDError.self) { try StreamID(category: "a", id: String(repeating: "x", count: 201)) }
        #expect(throws: Never.self) { try StreamID(category: "a", id: String(repeating: "x", count: 200)) }
    }
}
