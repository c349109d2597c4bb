import Foundation
@testable import Access
import Testing

@Suite("Token ids and secrets", .timeLimit(.minutes(1)))
struct TokenFormatTests {
    @Test func idsAreHexSoNoCommandLineTakesThemForOptions() {
        for _ in 0..<1_000 {
            let id = Identities.randomHex(bytes: 8)
            #expect(id.count == 16 && id.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(id)")
        }
    }

    @Test func secretsAreComparedInConstantTimeAndHashed() {
        #expect(Identities.constantTimeEqual("abc", "abc"))
        #expect(!Identities.constantTimeEqual("abc", "abd"))
        #expect(!Identities.constantTimeEqual("abc", "abcd"))
        #expect(Identities.hash("secret") == "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b")
    }
}
