import EventLog
import Testing

@Suite("Stream version deduplicator", .timeLimit(.minutes(1)))
struct DeduplicatorTests {
    @Test func dropsRepeatsAndOlderVersions() {
        var dedupe = StreamVersionDeduplicator()
        let deliveries: [(String, Int64)] = [("a-1", 1), ("a-1", 2), ("a-1", 2), ("a-1", 1), ("a-2", 1), ("a-1", 3)]
        let accepted = deliveries.map { dedupe.accept(stream: $0.0, version: $0.1) }
        #expect(accepted == [true, true, false, false, true, true])
    }

    /// A relay restart republishes a tail; the consumer must see each version once, in order.
    @Test func replayedTailIsDroppedOnce() {
        var dedupe = StreamVersionDeduplicator()
        let delivered: [Int64] = [1, 2, 3, 4, 2, 3, 4, 5, 6]
        let kept = delivered.filter { dedupe.accept(stream: "s-1", version: $0) }
        #expect(kept == [1, 2, 3, 4, 5, 6])
    }

    @Test func memoryStaysBounded() {
        var dedupe = StreamVersionDeduplicator(capacity: 100)
        for index in 0..<1_000 { _ = dedupe.accept(stream: "s-\(index)", version: 1) }
        #expect(dedupe.trackedStreams <= 100)
        // The most recently seen stream is still remembered.
        let again = dedupe.accept(stream: "s-999", version: 1)
        #expect(!again)
    }
}
