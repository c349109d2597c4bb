import EventLog
import Foundation
import PostgresEventStore
import Testing

@Suite("Event store against PostgreSQL", .timeLimit(.minutes(5)))
struct EventStoreTests {
    @Test("append and read a stream forward and backward", arguments: [false, true])
    func appendAndRead(sharedCommits: Bool) async throws {
        try await TestDatabase.with { database in
            let db = database.sharing(commits: sharedCommits)
            let stream = try StreamID("deploy-1")
            let first = try await db.store.append(to: stream, expected: .noStream, events: [
                NewEvent(type: "deploy.requested", payload: try JSONText(#"{"version":"1.2.3"}"#),
                         metadata: EventMetadata(correlationID: "c1", actor: "alice", source: "cli")),
                NewEvent(type: "deploy.started", payload: .emptyObject),
            ])
            #expect(first.streamVersion == 2)
            #expect(first.positions.count == 2 && first.positions[0] < first.positions[1])
            #expect(!first.alreadyStored)
            _ = try await db.store.append(to: stream, expected: .exact(2), events: [NewEvent(type: "deploy.finished", payload: .emptyObject)])

            let forward = try await db.store.readStream(stream, from: 1, direction: .forward, limit: 10)
            #expect(forward.map(\.streamVersion) == [1, 2, 3])
            #expect(forward.map(\.type) == ["deploy.requested", "deploy.started", "deploy.finished"])
            #expect(forward[0].metadata == EventMetadata(correlationID: "c1", actor: "alice", source: "cli"))
            #expect(try forward[0].payload.decode([String: String].self) == ["version": "1.2.3"])
            let backward = try await db.store.readStream(stream, from: .max, direction: .backward, limit: 2)
            #expect(backward.map(\.streamVersion) == [3, 2])
            let all = try await readLog(db.store, expecting: 3)
            #expect(all.map(\.id) == forward.map(\.id))
        }
    }

    @Test("a stale expected version is a typed conflict carrying the actual version", arguments: [false, true])
    func versionConflict(sharedCommits: Bool) async throws {
        try await TestDatabase.with { database in
            let db = database.sharing(commits: sharedCommits)
            let stream = try StreamID("app-web")
            _ = try await db.store.append(to: stream, expected: .noStream, events: [NewEvent(type: "a", payload: .emptyObject)])
            await #expect(throws: EventStoreError.versionConflict(stream: stream, expected: .noStream, actual: 1)) {
                try await db.store.append(to: stream, expected: .noStream, events: [NewEvent(type: "a", payload: .emptyObject)])
            }
            await #expect(throws: EventStoreError.versionConflict(stream: stream, expected: .exact(5), actual: 1)) {
                try await db.store.append(to: stream, expected: .exact(5), events: [NewEvent(type: "a", payload: .emptyObject)])
            }
        }
    }

    @Test("concurrent writers at the same expected version: exactly one wins each version", arguments: [false, true])
    func concurrentConflicts(sharedCommits: Bool) async throws {
        try await TestDatabase.with { database in
            let db = database.sharing(commits: sharedCommits)
            let stream = try StreamID("race-1")
            let writers = 8
            let rounds = 10
            for round in 0..<rounds {
                let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for writer in 0..<writers {
                        group.addTask {
                            do {
                                _ = try await db.store.append(to: stream, expected: round == 0 ? .noStream : .exact(Int64(round)), events: [
                                    NewEvent(type: "race.won", payload: try JSONText("{\"writer\":\(writer)}")),
                                ])
                                return true
                            } catch EventStoreError.versionConflict(_, _, let actual) {
                                #expect(actual == Int64(round) + 1)
                                return false
                            }
                        }
                    }
                    return try await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(outcomes.filter { $0 }.count == 1, "round \(round): \(outcomes)")
            }
            let events = try await db.store.readStream(stream, from: 1, direction: .forward, limit: 100)
            #expect(events.map(\.streamVersion) == Array(1...Int64(rounds)))
        }
    }

    @Test("shared commits: 64 concurrent appenders over 8 streams share transactions, every stream stays in version order in the log, every chain verifies")
    func sharedCommitsKeepStreamOrder() async throws {
        try await TestDatabase.with(maximumConnections: 8) { database in
            let db = database.sharing(commits: true)
            let streams = try (0..<8).map { try StreamID("shared-\($0)") }
            try await withThrowingDiscardingTaskGroup { group in
                for writer in 0..<64 {
                    group.addTask {
                        for round in 0..<20 {
                            _ = try await db.store.append(to: streams[(writer + round) % streams.count], expected: .any, events: [
                                NewEvent(type: "shared.appended", payload: try JSONText("{\"writer\":\(writer),\"round\":\(round)}")),
                            ])
                        }
                    }
                }
            }
            var byStream: [String: [Int64]] = [:]
            var transactions: Set<Int64> = []
            for try await (stream, version, transaction) in try await db.client.query(
                "SELECT stream_id, stream_version, transaction_id FROM events ORDER BY transaction_id, position", logger: TestEnvironment.logger
            ).decode((String, Int64, Int64).self) {
                byStream[stream, default: []].append(version)
                transactions.insert(transaction)
            }
            #expect(byStream.values.map(\.count).reduce(0, +) == 64 * 20)
            for (stream, versions) in byStream {
                #expect(versions == Array(1...Int64(versions.count)), "\(stream) is out of version order in the log")
            }
            #expect(transactions.count < 64 * 20 / 2, "appends were not grouped: \(transactions.count) transactions for \(64 * 20) appends")
            let report = try await ChainVerifier(client: db.client, logger: TestEnvironment.logger).verify()
            #expect(report.broken.isEmpty && report.events == 64 * 20, "\(report.broken)")
        }
    }

    @Test("re-appending stored event ids returns the stored positions and stores nothing", arguments: [false, true])
    func idempotentReappend(sharedCommits: Bool) async throws {
        try await TestDatabase.with { database in
            let db = database.sharing(commits: sharedCommits)
            let stream = try StreamID("build-7")
            let events = [NewEvent(type: "build.started", payload: .emptyObject), NewEvent(type: "build.finished", payload: .emptyObject)]
            let first = try await db.store.append(to: stream, expected: .noStream, events: events)
            // The retry carries the same stale expectation; it must still succeed as a no-op.
            let retry = try await db.store.append(to: stream, expected: .noStream, events: events)
            #expect(retry.positions == first.positions)
            #expect(retry.streamVersion == 2)
            #expect(retry.alreadyStored)
            #expect(try await db.store.readStream(stream, from: 1, direction: .forward, limit: 10).count == 2)

            // Concurrent retries of one new event store it once.
            let event = NewEvent(type: "build.tagged", payload: .emptyObject)
            let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for _ in 0..<6 { group.addTask { try await db.store.append(to: stream, expected: .any, events: [event]) } }
                return try await group.reduce(into: [AppendResult]()) { $0.append($1) }
            }
            #expect(Set(results.map(\.positions)).count == 1)
            #expect(try await db.store.readStream(stream, from: 1, direction: .forward, limit: 10).count == 3)
        }
    }

    @Test("ids stored in part, or in another stream, are refused", arguments: [false, true])
    func reusedIDs(sharedCommits: Bool) async throws {
        try await TestDatabase.with { database in
            let db = database.sharing(commits: sharedCommits)
            let stored = NewEvent(type: "a", payload: .emptyObject)
            _ = try await db.store.append(to: try StreamID("x-1"), expected: .any, events: [stored])
            await #expect(throws: EventStoreError.self) {
                try await db.store.append(to: try StreamID("x-1"), expected: .any, events: [stored, NewEvent(type: "b", payload: .emptyObject)])
            }
            await #expect(throws: EventStoreError.self) {
                try await db.store.append(to: try StreamID("x-2"), expected: .any, events: [stored])
            }
        }
    }

    @Test("a payload over the limit is refused with the sizes named")
    func payloadLimit() async throws {
        try await TestDatabase.with { db in
            let store = PostgresEventStore(client: db.client, payloadLimit: 1000, logger: TestEnvironment.logger)
            let big = try JSONText("\"" + String(repeating: "x", count: 1200) + "\"")
            await #expect(throws: EventStoreError.payloadTooLarge(eventType: "big.event", bytes: 1202, limit: 1000)) {
                try await store.append(to: try StreamID("p-1"), expected: .any, events: [NewEvent(type: "big.event", payload: big)])
            }
            #expect(try await store.readStream(try StreamID("p-1"), from: 1, direction: .forward, limit: 10).isEmpty)
        }
    }

    @Test("reading the log from a global position starts at that event")
    func readFromPosition() async throws {
        try await TestDatabase.with { db in
            _ = try await appendSpread(db.store, category: "pos", streams: 3, count: 9)
            let all = try await readLog(db.store, expecting: 9)
            let from = try await db.store.logPosition(before: all[4].position)
            let tail = try await readLog(db.store, after: from, expecting: 5)
            #expect(tail.map(\.id) == Array(all[4...]).map(\.id))
            await #expect(throws: EventStoreError.unknownPosition(999_999)) {
                try await db.store.logPosition(before: 999_999)
            }
        }
    }
}
