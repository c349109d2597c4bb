import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import ReadModels
import Relay
import Synchronization
import Testing

@Suite("Gap-free reading in commit order", .timeLimit(.minutes(5)))
struct GapFreeLogTests {
    /// Writers append inside explicit transactions that commit late or roll back at random while a
    /// subscriber tails the log. The subscriber must see exactly the committed events, each once,
    /// every stream in version order.
    @Test("12 concurrent writers with late commits and random rollbacks")
    func concurrentWritersWithRollbacks() async throws {
        try await TestDatabase.with(maximumConnections: 30) { db in
            let writers = 12
            let transactionsPerWriter = 40
            let streams = (0..<6).map { try! StreamID("gap-\($0)") }

            let committed = try await withThrowingTaskGroup(of: [UUID].self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        var generator = SystemRandomNumberGenerator()
                        var mine: [UUID] = []
                        for index in 0..<transactionsPerWriter {
                            let stream = streams.randomElement(using: &generator)!
                            let events = (0..<Int.random(in: 1...3, using: &generator)).map { n in
                                NewEvent(type: "gap.written", payload: JSONText(unchecked: "{\"writer\":\(writer),\"tx\":\(index),\"n\":\(n)}"))
                            }
                            let rollBack = Int.random(in: 0..<4, using: &generator) == 0
                            let hold = Duration.milliseconds(Int.random(in: 0...15, using: &generator))
                            try await db.client.withConnection { connection in
                                try await connection.query("BEGIN", logger: TestEnvironment.logger)
                                try await connection.query("""
                                    SELECT * FROM append_events(\(stream.description), NULL, \(events.map(\.id)),
                                        \(events.map(\.type)), \(events.map { _ in Int32(1) }), \(events.map(\.payload.text)),
                                        \(events.map { _ in "{}" }))
                                    """, logger: TestEnvironment.logger)
                                // Holding the transaction open lets later transactions commit first.
                                try await Task.sleep(for: hold)
                                try await connection.query(rollBack ? "ROLLBACK" : "COMMIT", logger: TestEnvironment.logger)
                            }
                            if !rollBack { mine += events.map(\.id) }
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: [UUID]()) { $0 += $1 }
            }

            // The subscriber ran concurrently in spirit; run one from the start too. Both must agree.
            var seen: [RecordedEvent] = []
            for try await event in LogSubscription(store: db.store, after: .start, batchSize: 37) {
                seen.append(event)
                if seen.count == committed.count { break }
            }
            // Nothing beyond the committed events may show up.
            let extra = try await db.store.readAll(after: seen.last!.logPosition, limit: 10)
            #expect(extra.isEmpty)
            #expect(Set(seen.map(\.id)) == Set(committed))
            #expect(seen.count == Set(seen.map(\.id)).count, "an event was delivered twice")
            for stream in streams {
                let versions = seen.filter { $0.streamID == stream }.map(\.streamVersion)
                #expect(versions == (0..<versions.count).map { Int64($0 + 1) }, "\(stream) out of order: \(versions)")
            }
        }
    }

    /// An execution's first event, as the engine writes it, for `append_events` by hand.
    static func triggered(_ name: String) throws -> (stream: StreamID, type: String, payload: String, id: UUID) {
        let (type, payload) = ExecutionEventCodec.encode(.triggered(
            pipeline: PipelineConfig(json: ["application": "held", "name": .string(name), "stages": [["refId": "1", "type": "noop"]]]),
            trigger: ["type": "manual"], parameters: [:]))
        return (try StreamID("execution-" + UUID().uuidString.lowercased()), type, try JSONText(encoding: payload).text, UUID())
    }

    /// T1 appends and stays open; T2 appends and commits. Every reader must stop before T2 —
    /// checked after a positive signal that it looked (a read made after T2 committed, the
    /// relay reporting an idle read) — and once T1 commits, both arrive, T1 first.
    @Test("a transaction held open after its append holds back the subscription, the relay, the projector and audit paging; then both arrive, it first")
    func heldTransaction() async throws {
        try await TestDatabase.with { db in
            let prefix = TestEnvironment.uniqueName("held") + "."
            let topic = prefix + "execution"
            try await createTopic(topic, partitions: 1)
            var configuration = RelayConfiguration()
            configuration.name = prefix
            configuration.topicPrefix = prefix
            configuration.partitions = 1
            let idleReads = Mutex(0)
            let relay = RelayService(configuration: configuration, kafka: try TestEnvironment.kafka(), client: db.client, logger: TestEnvironment.logger,
                                     onIdle: { idleReads.withLock { $0 += 1 } })
            let running = Task { try await relay.run() }
            defer { running.cancel() }
            let projector = ExecutionProjector(client: db.client, logger: TestEnvironment.logger)
            let audit = AuditLog(client: db.client, logger: TestEnvironment.logger)
            func auditPage(after position: Int64) async throws -> [AuditLog.Entry] {
                var filter = AuditLog.Filter()
                filter.after = position
                filter.includeSystem = true
                return try await audit.page(filter).entries
            }
            func summary(_ stream: StreamID) async throws -> Bool {
                var found = false
                for try await _ in try await db.client.query("SELECT 1 FROM execution_summaries WHERE execution_id = \(stream.id)",
                                                             logger: TestEnvironment.logger).decode(Int.self) { found = true }
                return found
            }

            let before = try Self.triggered("before")
            let committed = try await db.store.append(to: before.stream, expected: .noStream, events: [
                NewEvent(id: before.id, type: before.type, payload: JSONText(unchecked: before.payload)),
            ])
            let beforeEvents = try await readLog(db.store, expecting: 1)
            let (t1, t2) = (try Self.triggered("t1"), try Self.triggered("t2"))
            try await db.client.withConnection { held in
                try await held.query("BEGIN", logger: TestEnvironment.logger)
                #expect(try await held.query("""
                    SELECT * FROM append_events(\(t1.stream.description), 0, \([t1.id]), \([t1.type]), \([Int32(1)]), \([t1.payload]), \(["{}"]))
                    """, logger: TestEnvironment.logger).collect().count == 1)
                _ = try await db.store.append(to: t2.stream, expected: .noStream, events: [
                    NewEvent(id: t2.id, type: t2.type, payload: JSONText(unchecked: t2.payload)),
                ])
                // Every read below starts after T2 committed: a reader that skipped T1 would return T2 now.
                #expect(try await db.store.readAll(after: beforeEvents[0].logPosition, limit: 10).isEmpty, "the log read passed the open T1")
                #expect(try await auditPage(after: committed.positions[0]).isEmpty, "audit paging passed the open T1")
                _ = try await projector.catchUp()
                #expect(try await summary(before.stream), "the projector runs")
                #expect(try await !summary(t2.stream), "the projector passed the open T1")
                let seen = idleReads.withLock { $0 }
                try await eventually("the relay to read the log twice after T2 committed") { idleReads.withLock { $0 } >= seen + 2 }
                try await held.query("COMMIT", logger: TestEnvironment.logger)
            }
            // Both arrive, T1 first: in the log, the audit log, the projection and Kafka's one partition.
            let after = try await readLog(db.store, after: beforeEvents[0].logPosition, expecting: 2)
            #expect(after.map(\.id) == [t1.id, t2.id])
            var subscribed: [UUID] = []
            for try await event in LogSubscription(store: db.store, after: .start) {
                subscribed.append(event.id)
                if subscribed.count == 3 { break }
            }
            #expect(subscribed == [before.id, t1.id, t2.id])
            #expect(try await auditPage(after: committed.positions[0]).map(\.id) == [t1.id, t2.id].map { $0.uuidString.lowercased() })
            _ = try await projector.catchUp()
            #expect(try await summary(t1.stream))
            #expect(try await summary(t2.stream))
            let messages = try await consume(topic: topic) { $0.count >= 3 }
            #expect(try decodeEvents(messages).map(\.id) == [before.id, t1.id, t2.id], "the relay published out of log order")
        }
    }

    static func liveStream(_ writer: Int) -> StreamID { try! StreamID("live-\(writer % 3)") }

    /// A live subscriber tails while writers run; checked against what committed.
    @Test("a live subscriber never skips a transaction that commits late")
    func liveSubscriber() async throws {
        try await TestDatabase.with(maximumConnections: 30) { db in
            let writers = 8
            let perWriter = 30
            let subscriber = Task {
                var seen: [RecordedEvent] = []
                for try await event in LogSubscription(store: db.store, after: .start, batchSize: 5, pollInterval: .milliseconds(1)) {
                    seen.append(event)
                    if event.type == "live.done" { break }
                }
                return seen
            }
            let committed = try await withThrowingTaskGroup(of: [UUID].self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        var mine: [UUID] = []
                        for index in 0..<perWriter {
                            let event = NewEvent(type: "live.written", payload: JSONText(unchecked: "{\"w\":\(writer),\"i\":\(index)}"))
                            let rollBack = (writer + index) % 5 == 0
                            let late = (writer * 7 + index) % 4 == 0
                            try await db.client.withConnection { connection in
                                try await connection.query("BEGIN", logger: TestEnvironment.logger)
                                let rows = try await connection.query("""
                                    SELECT * FROM append_events(\(Self.liveStream(writer).description), NULL, \([event.id]),
                                        \([event.type]), \([Int32(1)]), \([event.payload.text]), \(["{}"]))
                                    """, logger: TestEnvironment.logger)
                                for try await _ in rows {}
                                if late { try await Task.sleep(for: .milliseconds(20)) }
                                try await connection.query(rollBack ? "ROLLBACK" : "COMMIT", logger: TestEnvironment.logger)
                            }
                            if !rollBack { mine.append(event.id) }
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: [UUID]()) { $0 += $1 }
            }
            let done = NewEvent(type: "live.done", payload: .emptyObject)
            _ = try await db.store.append(to: try StreamID("live-done"), expected: .any, events: [done])
            let all = try await subscriber.value
            let seen = all.filter { $0.type == "live.written" }
            #expect(seen.count == committed.count)
            #expect(Set(seen.map(\.id)) == Set(committed))
            for index in 0..<3 {
                let versions = seen.filter { $0.streamID == Self.liveStream(index) }.map(\.streamVersion)
                #expect(versions == (0..<versions.count).map { Int64($0 + 1) }, "stream \(index) out of order: \(versions)")
            }
        }
    }
}
