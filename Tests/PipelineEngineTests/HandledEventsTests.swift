import EventLog
import Foundation
@testable import PipelineEngine
import Testing

@Suite("One handler per event across the in-process and Kafka copies", .timeLimit(.minutes(1)))
struct HandledEventsTests {
    static func key(_ version: Int64, stream: String = "e1") throws -> HandledEvents.Key {
        let event = RecordedEvent(
            id: UUID(), streamID: try StreamID(category: "execution", id: stream), streamVersion: version, logPosition: .start,
            type: "execution.started", schemaVersion: 1, recordedAt: Date(), payload: try JSONText(encoding: JSONValue.object([:])),
            metadata: EventMetadata())
        return HandledEvents.Key(event)
    }

    @Test func theFirstCopyHandlesAndTheSecondWaitsForIt() async throws {
        let handled = HandledEvents()
        let key = try Self.key(1)
        #expect(handled.claim(key))
        #expect(!handled.claim(key), "the second copy must not run the handler")
        let waiter = Task { await handled.waitUntilFinished(key); return ContinuousClock.now }
        try await Task.sleep(for: .milliseconds(50))
        let finishedAt = ContinuousClock.now
        handled.finish(key)
        let resumedAt = await waiter.value
        #expect(resumedAt >= finishedAt, "the waiter went on before the handler finished")
        handled.forget(key)
        #expect(handled.count == 0)
        // A copy that comes after the last one was accounted for is handled again (handlers are
        // idempotent; this only happens when a copy went elsewhere).
        #expect(handled.claim(key))
    }

    @Test func waitingForAFinishedOrUnknownEventReturnsAtOnce() async throws {
        let handled = HandledEvents()
        await handled.waitUntilFinished(try Self.key(7))
        let key = try Self.key(1)
        #expect(handled.claim(key))
        handled.finish(key)
        await handled.waitUntilFinished(key)
        #expect(!handled.claim(key))
    }

    @Test func aCanceledWaiterStopsWaiting() async throws {
        let handled = HandledEvents()
        let key = try Self.key(1)
        #expect(handled.claim(key))
        let waiter = Task { await handled.waitUntilFinished(key) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await waiter.value
        // The handler is still running: its entry stays until it finishes.
        handled.forget(key)
        #expect(handled.count == 1)
        handled.finish(key)
        handled.forget(key)
        #expect(handled.count == 0)
    }

    @Test func memoryIsBoundedByDroppingTheOldestFinished() throws {
        let handled = HandledEvents(capacity: 100)
        for version in Int64(1)...1_000 {
            let key = try Self.key(version)
            #expect(handled.claim(key))
            handled.finish(key)
        }
        #expect(handled.count <= 100)
        // Unfinished entries are never dropped.
        let running = try Self.key(5_000, stream: "e2")
        #expect(handled.claim(running))
        for version in Int64(1_001)...1_300 {
            let key = try Self.key(version)
            _ = handled.claim(key)
            handled.finish(key)
        }
        #expect(!handled.claim(running))
    }
}

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
