import EventLog
import Foundation
import Kafka
@testable import PipelineEngine
import Synchronization
import Testing

@Suite("One lane per execution", .timeLimit(.minutes(1)))
struct LaneDispatcherTests {
    static func event(_ execution: String, _ version: Int64) throws -> RecordedEvent {
        RecordedEvent(
            id: UUID(), streamID: try StreamID(category: "execution", id: execution), streamVersion: version, logPosition: .start,
            type: "execution.started", schemaVersion: 1, recordedAt: Date(), payload: try JSONText(encoding: JSONValue.object([:])),
            metadata: EventMetadata())
    }

    /// The event as the relay publishes it; `named` adds the headers that name its stream and version.
    static func message(_ event: RecordedEvent, offset: Int64, partition: Int32 = 0, named: Bool = false) -> KafkaMessage {
        var message = KafkaMessage.placeholder
        message.topic = "t"
        message.partition = partition
        message.offset = offset
        message.value = Array(EventEnvelopeCodec.encode(event).utf8)
        if named { message.headers = CloudEventHeaders.make(for: event, source: "test").map { KafkaHeader($0.0, $0.1) } }
        return message
    }

    /// What the handler saw: per execution, the versions in the order handled, and how many ran at once.
    final class Recorder: Sendable {
        struct State {
            var order: [String: [Int64]] = [:]
            var active: [String: Int] = [:]
            var overlapWithinExecution = false
            var running = 0
            var mostAtOnce = 0
        }

        let state = Mutex(State())

        func begin(_ event: RecordedEvent) {
            state.withLock { state in
                let id = event.streamID.id
                state.order[id, default: []].append(event.streamVersion)
                state.active[id, default: 0] += 1
                if state.active[id]! > 1 { state.overlapWithinExecution = true }
                state.running += 1
                state.mostAtOnce = max(state.mostAtOnce, state.running)
            }
        }

        func end(_ event: RecordedEvent) {
            state.withLock { state in
                state.active[event.streamID.id]! -= 1
                state.running -= 1
            }
        }
    }

    final class Stored: Sendable {
        let offsets = Mutex<[Int32: Int64]>([:])

        func store(_ message: KafkaMessage) { offsets.withLock { $0[message.partition] = max($0[message.partition] ?? -1, message.offset) } }

        var value: [Int32: Int64] { offsets.withLock { $0 } }
    }

    @Test func eventsOfOneExecutionRunInOrderOneAtATimeAndExecutionsConcurrently() async throws {
        let recorder = Recorder()
        let stored = Stored()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        let executions = (0..<8).map { "e\($0)" }
        var offset: Int64 = 0
        for version in Int64(1)...25 {
            for execution in executions {
                intake.yield(.kafka(Self.message(try Self.event(execution, version), offset: offset)))
                offset += 1
            }
        }
        intake.finish()
        await LaneDispatcher(concurrency: 4, drainTimeout: .seconds(5), logger: .init(label: "test"))
            .run(items, store: { stored.store($0) }) { event in
                recorder.begin(event)
                try await Task.sleep(for: .microseconds(Int.random(in: 100...1_500)))
                recorder.end(event)
                return []
            }
        let state = recorder.state.withLock { $0 }
        #expect(!state.overlapWithinExecution, "two events of one execution were handled at once")
        for execution in executions {
            #expect(state.order[execution] == Array(1...25), "\(execution) handled as \(state.order[execution] ?? [])")
        }
        #expect(state.mostAtOnce > 1 && state.mostAtOnce <= 4, "\(state.mostAtOnce) lanes at once, with 4 allowed")
        #expect(stored.value == [0: offset - 1], "every offset is stored once all are handled")
    }

    @Test(arguments: [false, true])
    func theKafkaCopyWaitsForTheInProcessCopyAndItsDetachedWork(named: Bool) async throws {
        let handled = Mutex(0)
        let stored = Stored()
        let release = Completion()
        let workEnded = Completion()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        let event = try Self.event("e1", 1)
        let dispatcher = Task {
            await LaneDispatcher(concurrency: 4, drainTimeout: .seconds(5), logger: .init(label: "test"))
                .run(items, store: { stored.store($0) }) { _ in
                    handled.withLock { $0 += 1 }
                    // The stage's work outlasts the handler.
                    return [{ await release.wait(); workEnded.complete(true) }]
                }
        }
        intake.yield(.inProcess(event))
        intake.yield(.kafka(Self.message(event, offset: 0, named: named)))
        // A later event of the same execution is not held up by the running work.
        let next = try Self.event("e1", 2)
        intake.yield(.kafka(Self.message(next, offset: 1, named: named)))
        // Both events handled (not a third time: the Kafka copy of the first only waits), while
        // the first one's work still runs.
        let deadline = ContinuousClock.now + .seconds(20)
        while handled.withLock({ $0 }) < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(handled.withLock { $0 } == 2, "the copy ran the handler again, or the next event waited for the work")
        #expect(stored.value.isEmpty, "the offset moved while the first event's work still ran")
        release.complete(true)
        await workEnded.wait()
        intake.finish()
        await dispatcher.value
        #expect(stored.value == [0: 1])
    }

    @Test func shutdownCancelsWorkStillRunningAfterTheDrainTimeout() async throws {
        let stored = Stored()
        let sawCancel = Completion()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        intake.yield(.kafka(Self.message(try Self.event("quick", 1), offset: 0)))
        intake.yield(.kafka(Self.message(try Self.event("slow", 1), offset: 1)))
        intake.finish()
        let started = ContinuousClock.now
        await LaneDispatcher(concurrency: 4, drainTimeout: .milliseconds(200), logger: .init(label: "test"))
            .run(items, store: { stored.store($0) }) { event in
                guard event.streamID.id == "slow" else { return [] }
                return [{
                    await withTaskCancellationHandler {
                        try? await Task.sleep(for: .seconds(30))
                    } onCancel: {
                        sawCancel.complete(true)
                    }
                }]
            }
        let took = ContinuousClock.now - started
        // The work would take 30 s; a loaded machine may be slow to cancel, but not that slow.
        #expect(took < .seconds(20), "the drain took \(took), as if it waited for the work")
        #expect(await sawCancel.wait(), "the slow work was not cancelled")
        // The quick event's offset is stored; the cancelled one stays for whoever reads next.
        #expect(stored.value == [0: 0])
    }

    @Test func theNamedKafkaCopyOfAHandedOverEventIsNotDecoded() async throws {
        let stored = Stored()
        let release = Completion()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        let event = try Self.event("e1", 1)
        let dispatcher = Task {
            await LaneDispatcher(concurrency: 2, drainTimeout: .seconds(5), logger: .init(label: "test"))
                .run(items, store: { stored.store($0) }) { _ in [{ await release.wait() }] }
        }
        intake.yield(.inProcess(event))
        // Its headers name the handed-over event; its value would not decode (and, decoded, would
        // be skipped with its offset stored at once).
        var copy = Self.message(event, offset: 0, named: true)
        copy.value = Array("not read".utf8)
        intake.yield(.kafka(copy))
        try await Task.sleep(for: .milliseconds(100))
        #expect(stored.value.isEmpty, "the copy was decoded, or did not wait for the in-process copy's work")
        release.complete(true)
        intake.finish()
        await dispatcher.value
        #expect(stored.value == [0: 0])
    }

    @Test func anUndecodableMessageIsSkippedAndItsOffsetMoves() async throws {
        let stored = Stored()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        var garbage = KafkaMessage.placeholder
        garbage.topic = "t"
        garbage.value = Array("not an event".utf8)
        intake.yield(.kafka(garbage))
        intake.finish()
        await LaneDispatcher(concurrency: 1, drainTimeout: .seconds(1), logger: .init(label: "test"))
            .run(items, store: { stored.store($0) }) { _ in
                Issue.record("an undecodable message reached the handler")
                return []
            }
        #expect(stored.value == [0: 0])
    }

    @Test func recentlyUsedKeepsAtMostItsCapacity() {
        var cache = RecentlyUsed<Int, Int>(capacity: 100)
        cache.set(-1, for: -1)
        for key in 0..<1_000 {
            cache.set(key, for: key)
            // Keep one entry in use: it must survive every eviction.
            _ = cache.value(for: -1)
        }
        #expect(cache.count <= 100)
        #expect(cache.value(for: -1) == -1)
        #expect(cache.value(for: 999) == 999)
        #expect(cache.value(for: 0) == nil)
    }
}
