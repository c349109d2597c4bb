import EventLog
import Foundation
import Logging
import Orchestration
import PostgresEventStore
import PostgresNIO

/// Where stages set their timers: durable ones in PostgreSQL (``TimerStore``), or a simulation's.
public protocol StageTimers: Sendable {
    /// Sets the timer unless one with the same id exists (a re-run of the same attempt keeps the
    /// first due time).
    func set(_ timer: TimerStore.StageTimer, dueIn delay: Duration) async throws
}

/// Durable timers in PostgreSQL (`migrations/0003_timers.sql`).
public struct TimerStore: StageTimers {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// A timer of a stage attempt.
    public struct StageTimer: Sendable, Hashable {
        public let executionID: String
        public let refID: String
        public let attempt: Int
        public let kind: StageTimerKind
        /// For poll timers: the progress record after which the check is due.
        public let poll: Int

        public init(executionID: String, refID: String, attempt: Int, kind: StageTimerKind, poll: Int = 0) {
            self.executionID = executionID
            self.refID = refID
            self.attempt = attempt
            self.kind = kind
            self.poll = poll
        }

        public var id: String { "\(executionID)/\(refID)/\(attempt)/\(kind.rawValue)" + (kind == .poll ? "/\(poll)" : "") }

        /// What the timer asks of its execution when it fires.
        public var message: ExecutionMessage {
            kind == .poll ? .pollDue(refID: refID, attempt: attempt, poll: poll) : .timerFired(refID: refID, attempt: attempt, kind: kind)
        }
    }

    /// Sets the timer unless one with the same id exists (a re-run of the same attempt keeps the
    /// first due time).
    public func set(_ timer: StageTimer, dueIn delay: Duration) async throws {
        let message: JSONValue = [
            "executionId": .string(timer.executionID), "refId": .string(timer.refID), "attempt": .number(Double(timer.attempt)),
            "kind": .string(timer.kind.rawValue), "poll": .number(Double(timer.poll)),
        ]
        let milliseconds = delay.wholeMilliseconds
        do {
            try await client.query("""
                INSERT INTO timers (timer_id, stream_id, due_at, message)
                VALUES (\(timer.id), \("execution-" + timer.executionID), now() + make_interval(secs => \(Double(milliseconds) / 1000)),
                        \(try JSONText(encoding: message).text)::jsonb)
                ON CONFLICT (timer_id) DO NOTHING
                """, logger: logger)
        } catch {
            throw DatabaseError.wrapping(error, doing: "set a timer")
        }
    }

    /// How long a claim keeps other schedulers off a timer: past it, a timer whose scheduler died
    /// before deleting it fires again.
    public static let claimLease = Duration.seconds(10)

    /// Fires due timers: a batch is claimed in one short statement (other schedulers skip it),
    /// each is handed to `fire` outside any transaction and deleted when `fire` returns. A crash
    /// leaves the claimed timers to fire again once the lease ran out. Returns how many fired.
    public func fireDue(limit: Int = 100, _ fire: @escaping @Sendable (StageTimer) async throws -> Void) async throws -> Int {
        let claim = UUID()
        var due: [(String, StageTimer)] = []
        do {
            let rows = try await client.query("""
                UPDATE timers SET claimed_until = now() + make_interval(secs => \(Double(Self.claimLease.wholeMilliseconds) / 1000)),
                                  claimed_by = \(claim)
                 WHERE timer_id IN (SELECT timer_id FROM timers
                                     WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                                     ORDER BY due_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING timer_id, message::text, due_at
                """, logger: logger)
            var claimed: [(String, String, Date)] = []
            for try await row in rows.decode((String, String, Date).self) { claimed.append(row) }
            for (id, text, _) in claimed.sorted(by: { $0.2 < $1.2 }) {
                let message = try JSONText(unchecked: text).decode(JSONValue.self)
                guard let execution = message["executionId"]?.stringValue, let ref = message["refId"]?.stringValue,
                      let attempt = message["attempt"]?.intValue,
                      let kind = message["kind"]?.stringValue.flatMap(StageTimerKind.init(rawValue:))
                else {
                    logger.error("malformed timer dropped", metadata: ["timer.id": "\(id)"])
                    try await delete(id, claim: claim)
                    continue
                }
                due.append((id, StageTimer(executionID: execution, refID: ref, attempt: attempt, kind: kind, poll: message["poll"]?.intValue ?? 0)))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "claim due timers")
        }
        do {
            for (id, timer) in due {
                try await fire(timer)
                try await delete(id, claim: claim)
            }
        } catch {
            // Let the rest go at once rather than after the lease (PostgreSQL may be the failure).
            _ = try? await client.query("UPDATE timers SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = \(claim)", logger: logger)
            throw error
        }
        return due.count
    }

    /// Deletes a fired timer, unless its claim ran out and another scheduler claimed it since.
    private func delete(_ id: String, claim: UUID) async throws {
        do {
            try await client.query("DELETE FROM timers WHERE timer_id = \(id) AND claimed_by = \(claim)", logger: logger)
        } catch {
            throw DatabaseError.wrapping(error, doing: "delete a fired timer")
        }
    }
}
