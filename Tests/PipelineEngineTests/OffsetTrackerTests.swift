import Kafka
@testable import PipelineEngine
import Testing

@Suite("Offset tracking under concurrent handling", .timeLimit(.minutes(1)))
struct OffsetTrackerTests {
    static func message(_ offset: Int64, partition: Int32 = 0) -> KafkaMessage {
        var message = KafkaMessage.placeholder
        message.partition = partition
        message.offset = offset
        return message
    }

    @Test func commitsOnlyBelowTheOldestUnfinishedMessage() {
        var tracker = OffsetTracker()
        for offset in Int64(0)...3 { tracker.started(Self.message(offset)) }
        // 2 finishes first: 0 and 1 are still running, nothing may be committed.
        #expect(tracker.finished(Self.message(2)) == nil)
        // 0 finishes: committed up to 0 (1 is still running).
        #expect(tracker.finished(Self.message(0))?.offset == 0)
        // 1 finishes: 0, 1, 2 done; 3 runs.
        #expect(tracker.finished(Self.message(1))?.offset == 2)
        #expect(tracker.finished(Self.message(3))?.offset == 3)
    }

    @Test func partitionsAreIndependent() {
        var tracker = OffsetTracker()
        tracker.started(Self.message(10, partition: 0))
        tracker.started(Self.message(5, partition: 1))
        #expect(tracker.finished(Self.message(5, partition: 1))?.offset == 5)
        #expect(tracker.finished(Self.message(10, partition: 0))?.offset == 10)
    }
}
