import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// `limitConcurrent`, `maxConcurrentExecutions` and `keepWaitingPipelines` through a `topsail all` process.
@Suite("Engine: concurrency limits", .serialized, .timeLimit(.minutes(5)))
struct ConcurrencyTests {
    typealias Engine = EngineTests.Engine

    static func gated(_ id: String, max: Int, keepWaiting: Bool, sleep: String = "0.4", holdForJudgment: Bool = false) -> JSONValue {
        let stage: JSONValue = holdForJudgment ? ["refId": "1", "type": "manualJudgment"] : EngineTests.script("1", "sleep \(sleep)")
        return ["id": .string(id), "application": "test", "name": .string(id), "limitConcurrent": true,
                "maxConcurrentExecutions": .number(Double(max)), "keepWaitingPipelines": .bool(keepWaiting), "stages": [stage]]
    }

    /// Lets a held execution (`holdForJudgment`) go on.
    static func release(_ engine: Engine, _ id: String) async throws {
        try await engine.repository.handle(.judge(refID: "1", judgment: .continue, input: nil, by: "tester"), executionID: id,
                                           metadata: EventMetadata(source: "test"))
    }

    /// When each execution started and completed, as the log recorded it.
    static func intervals(_ db: TestDatabase, _ ids: [String]) async throws -> [(start: Date, end: Date)] {
        var result: [(Date, Date)] = []
        for id in ids {
            let events = try await db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 100)
            guard let start = events.first(where: { $0.type == ExecutionEvent.WireType.started })?.recordedAt,
                  let end = events.last(where: { $0.type == ExecutionEvent.WireType.completed })?.recordedAt
            else { continue }
            result.append((start, end))
        }
        return result
    }

    /// The most executions running at one moment: the count at each start (where it can grow).
    static func maximumOverlap(_ intervals: [(start: Date, end: Date)]) -> Int {
        intervals.map { interval in intervals.filter { $0.start <= interval.start && interval.start < $0.end }.count }.max() ?? 0
    }

    @Test("the whole log published again (relay --from the start) while one execution runs and after others finished: nothing runs again, no slot is held by a finished execution, new executions start")
    func republishedLog() async throws {
        let marker = "/tmp/" + TestEnvironment.uniqueName("republish")
        defer { try? FileManager.default.removeItem(atPath: marker) }
        @Sendable func gated(_ stages: [JSONValue]) -> JSONValue {
            ["id": "gate", "application": "test", "name": "gate", "limitConcurrent": true, "keepWaitingPipelines": true, "stages": .array(stages)]
        }
        let noting = EngineTests.script("1", "echo ${execution.id} >> \(marker)")
        try await TestDatabase.with { db in
            var engine = try Engine(db)
            defer { engine.process.terminate() }
            var finished: [String] = []
            for _ in 0..<3 {
                let id = try await engine.run(gated([noting]))
                #expect(try await engine.finished(id).status == .succeeded)
                finished.append(id)
            }
            let running = try await engine.run(gated([noting, ["refId": "hold", "type": "manualJudgment", "requisiteStageRefIds": ["1"]]]))
            try await engine.until("the running execution to wait for its judgment") {
                try await engine.repository.load(running).stage("hold").status == .running
            }
            var versions: [String: Int64] = [:]
            for id in finished { versions[id] = try await engine.repository.load(id).version }

            // A restarted engine has forgotten which events it saw (as after the broker restarts
            // that made the relay publish everything again); a second relay publishes the whole
            // log again into its topics.
            _ = await engine.process.stopped()
            try engine.restart()
            let head = try await db.store.readAll(after: .start, limit: 100_000).last?.position ?? 0
            let name = TestEnvironment.uniqueName("again")
            let again = try ChildProcess(try TestEnvironment.topsailExecutable(), [
                "relay", "--database-url", db.url, "--relay-name", name, "--topic-prefix", engine.prefix, "--partitions", "2", "--from", "1",
                "--kafka-property", "message.timeout.ms=5000",
            ])
            defer { again.terminate() }
            try await engine.until("the second relay to publish the whole log again") {
                var position: Int64 = 0
                for try await value in try await db.client.query("SELECT position FROM relay_checkpoints WHERE relay_name = \(name)",
                                                                 logger: TestEnvironment.logger).decode(Int64.self) { position = value }
                return position >= head
            }
            // Executions of another pipeline, after the republished events in every partition,
            // completing only once the engine has worked through what came before them.
            for _ in 0..<4 { #expect(try await engine.finished(try await engine.run(EngineTests.pipeline([["refId": "n", "type": "noop"]]))).status == .succeeded) }

            try await engine.repository.handle(.judge(refID: "hold", judgment: .continue, input: nil, by: "tester"), executionID: running,
                                               metadata: EventMetadata(source: "test"))
            #expect(try await engine.finished(running).status == .succeeded)
            let fresh = try await engine.run(gated([noting]))
            #expect(try await engine.finished(fresh).status == .succeeded, "a new execution must start: no finished execution may hold the slot")
            // The last one releases its slot just after it completes.
            try await engine.until("the gate to hold nothing once every execution finished") {
                let gate = try await ConcurrencyGateProbe.slots(db, stream: "concurrency-gate")
                return gate.running.isEmpty && gate.waiting.isEmpty
            }
            for id in finished { #expect(try await engine.repository.load(id).version == versions[id], "finished execution \(id) changed") }
            let runs = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n")
            #expect(runs.count == 5 && Set(runs).count == 5, "scripts ran \(runs.count) times for 5 executions")
        }
    }

    @Test("the supervisor heals a gate whose slot a finished execution holds: it releases it with an event, and the waiting execution starts")
    func supervisorReleasesStaleSlots() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--supervise-every", "1"])
            defer { engine.process.terminate() }
            let finished = try await engine.run(Self.gated("healed", max: 1, keepWaiting: true))
            #expect(try await engine.finished(finished).status == .succeeded)
            let stream = try StreamID("concurrency-healed")
            try await engine.until("the finished execution to release its slot") {
                try await ConcurrencyGateProbe.slots(db, stream: "concurrency-healed").running.isEmpty
            }
            // The state an old start delivered again used to leave: the finished execution holds the slot.
            let version = try await ConcurrencyGateProbe.slots(db, stream: "concurrency-healed").version
            let (type, payload) = PipelineSlotsCodec.encode(.taken(executionID: finished))
            _ = try await db.store.append(to: stream, expected: .exact(version), events: [
                NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: EventMetadata(source: "test")),
            ])
            let waiting = try await engine.run(Self.gated("healed", max: 1, keepWaiting: true))
            #expect(try await engine.finished(waiting).status == .succeeded, "the supervisor did not free the slot")
            let released = try await db.store.readStream(stream, from: 1, direction: .forward, limit: 100).filter {
                $0.type == PipelineSlots.Event.WireType.released && $0.metadata.actor == "supervisor"
            }
            #expect(released.count == 1 && released.first?.payload.text.contains(finished) == true, "\(released.map(\.payload.text))")
        }
    }

    @Test("the supervisor drives a stuck execution again from its log: a wait whose timer was lost completes, with an event saying so")
    func supervisorRedrivesStuckExecutions() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--supervise-every", "1", "--stuck-grace", "1"])
            defer { engine.process.terminate() }
            let id = try await engine.run(EngineTests.pipeline([
                ["refId": "w", "type": "wait", "waitTime": 2],
                ["refId": "n", "type": "noop", "requisiteStageRefIds": ["w"]],
            ]))
            // The wait's timer is lost (a timers table restored from an older backup, say).
            let timer = "\(id)/w/1/waitElapsed"
            try await engine.until("the wait's timer to be stored") {
                try await db.client.query("SELECT 1 FROM timers WHERE timer_id = \(timer)", logger: TestEnvironment.logger)
                    .collect().count == 1
            }
            try await db.client.query("DELETE FROM timers WHERE timer_id = \(timer)", logger: TestEnvironment.logger)
            #expect(try await engine.finished(id, timeout: .seconds(30)).status == .succeeded, "the supervisor did not drive it again")
            let events = try await db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 100)
            let redriven = events.filter { $0.type == ExecutionEvent.WireType.redriven }
            #expect(redriven.count == 1 && redriven.first?.metadata.actor == "supervisor", "\(events.map(\.type))")
            #expect(redriven.first?.payload.text.contains("stage w (wait)") == true, "\(redriven.map(\.payload.text))")
            let completions = try await engine.repository.events(of: id).filter { if case .stageCompleted("w", _, _) = $0 { true } else { false } }
            #expect(completions.count == 1, "the wait completed once")
            // A finished execution is left alone.
            try await Task.sleep(for: .seconds(2.5))
            let after = try await db.store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 100)
            #expect(after.count == events.count, "\(after.map(\.type))")
        }
    }

    @Test("limitConcurrent with keepWaitingPipelines: executions wait (BUFFERED) and run one at a time, oldest first")
    func oneAtATime() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            // The first holds the only slot until the three triggered after it wait.
            var ids = [try await engine.run(Self.gated("serial", max: 1, keepWaiting: true, holdForJudgment: true))]
            try await engine.until("the first to run") { try await engine.repository.load(ids[0]).stage("1").status == .running }
            for _ in 0..<3 { ids.append(try await engine.run(Self.gated("serial", max: 1, keepWaiting: true))) }
            try await engine.until("the others to wait") {
                for id in ids.dropFirst() where try await engine.repository.load(id).status != .buffered { return false }
                return true
            }
            try await Self.release(engine, ids[0])
            for id in ids { #expect(try await engine.finished(id).status == .succeeded) }
            let intervals = try await Self.intervals(db, ids)
            #expect(intervals.count == 4)
            #expect(Self.maximumOverlap(intervals) == 1, "two executions of a limitConcurrent pipeline ran at once")
            // The first to ask may be any of those triggered together; the waiting ones then start
            // in the order they were triggered.
            var waitedStarts: [Date] = []
            for (id, interval) in zip(ids, intervals) where try await engine.repository.events(of: id).contains(.buffered) {
                waitedStarts.append(interval.start)
            }
            #expect(waitedStarts == waitedStarts.sorted(), "waiting executions did not start oldest first")
            let buffered = waitedStarts.count
            #expect(buffered == 3, "the later executions should have waited BUFFERED")
        }
    }

    @Test("maxConcurrentExecutions 2: never more than two at once")
    func twoAtATime() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            // Two hold both slots until three more wait; then all run, two at a time.
            var ids: [String] = []
            for _ in 0..<2 { ids.append(try await engine.run(Self.gated("pairs", max: 2, keepWaiting: true, holdForJudgment: true))) }
            try await engine.until("two to run") {
                for id in ids where try await engine.repository.load(id).stage("1").status != .running { return false }
                return true
            }
            for _ in 0..<3 { ids.append(try await engine.run(Self.gated("pairs", max: 2, keepWaiting: true))) }
            try await engine.until("three to wait") {
                for id in ids.suffix(3) where try await engine.repository.load(id).status != .buffered { return false }
                return true
            }
            for id in ids.prefix(2) { try await Self.release(engine, id) }
            for id in ids { #expect(try await engine.finished(id).status == .succeeded) }
            let overlap = Self.maximumOverlap(try await Self.intervals(db, ids))
            #expect(overlap == 2, "\(overlap) executions ran at once")
        }
    }

    @Test("without keepWaitingPipelines only the newest waiting execution runs; the older waiting ones are canceled")
    func newestWins() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            // The first holds the only slot until the test lets it go.
            let first = try await engine.run(Self.gated("newest", max: 1, keepWaiting: false, holdForJudgment: true))
            try await engine.until("the first execution to run") { try await engine.repository.load(first).stage("1").status == .running }
            var waiting: [String] = []
            for _ in 0..<3 { waiting.append(try await engine.run(Self.gated("newest", max: 1, keepWaiting: false))) }
            try await engine.until("the later executions to wait") {
                for id in waiting where try await engine.repository.load(id).status != .buffered { return false }
                return true
            }
            try await Self.release(engine, first)
            #expect(try await engine.finished(first).status == .succeeded)
            #expect(try await engine.finished(waiting[2]).status == .succeeded, "the newest runs")
            for id in waiting.prefix(2) {
                let state = try await engine.finished(id)
                #expect(state.status == .canceled, "an older waiting execution \(id) is \(state.status)")
            }
        }
    }

    @Test("canceling a waiting execution frees its place; the queue goes on")
    func cancelWhileWaiting() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let first = try await engine.run(Self.gated("cancel-queue", max: 1, keepWaiting: true, holdForJudgment: true))
            try await engine.until("the first execution to run") { try await engine.repository.load(first).stage("1").status == .running }
            let second = try await engine.run(Self.gated("cancel-queue", max: 1, keepWaiting: true))
            let third = try await engine.run(Self.gated("cancel-queue", max: 1, keepWaiting: true))
            try await engine.until("the second to wait") { try await engine.repository.load(second).status == .buffered }
            try await engine.repository.handle(.cancel(by: "tester", reason: nil), executionID: second, metadata: EventMetadata(source: "test"))
            #expect(try await engine.finished(second).status == .canceled)
            try await engine.until("the third to wait") { try await engine.repository.load(third).status == .buffered }
            try await Self.release(engine, first)
            #expect(try await engine.finished(first).status == .succeeded)
            #expect(try await engine.finished(third).status == .succeeded)
        }
    }
}

/// Reads a pipeline's concurrency gate from the log, as the engine folds it.
enum ConcurrencyGateProbe {
    static func slots(_ db: TestDatabase, stream: String) async throws -> PipelineSlots {
        var slots = PipelineSlots()
        for recorded in try await db.store.readStream(try StreamID(stream), from: 1, direction: .forward, limit: 10_000) {
            slots.evolve(try PipelineSlotsCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self)))
        }
        return slots
    }
}
