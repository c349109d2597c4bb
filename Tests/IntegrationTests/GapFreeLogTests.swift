import EventLog
import Foundation
import PostgresEventStore
import PostgresNIO
import Testing

@Suite("Gap-free reading in commit order")
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
