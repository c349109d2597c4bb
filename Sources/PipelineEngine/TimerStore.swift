import EventLog
import Foundation
import Logging
import Orchestration
import PostgresEventStore
import PostgresNIO

/// Durable timers in PostgreSQL (`migrations/0003_timers.sql`).
public struct TimerStore: Sendable {
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

        var id: String { "\(executionID)/\(refID)/\(attempt)/\(kind.rawValue)" + (kind == .poll ? "/\(poll)" : "") }
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

    /// Fires due timers: each is locked (other schedulers skip it), handed to `fire`, and deleted
    /// when `fire` returns — all in one transaction, so a crash leaves it to fire again.
    /// Returns how many fired.
    public func fireDue(limit: Int = 100, _ fire: @escaping @Sendable (StageTimer) async throws -> Void) async throws -> Int {
        try await client.transaction(logger: logger, doing: "fire timers") { connection in
            var due: [(String, StageTimer)] = []
            let rows = try await connection.query("""
                SELECT timer_id, message::text FROM timers WHERE due_at <= now()
                 ORDER BY due_at LIMIT \(limit) FOR UPDATE SKIP LOCKED
                """, logger: logger)
            for try await (id, text) in rows.decode((String, String).self) {
                let message = try JSONText(unchecked: text).decode(JSONValue.self)
                guard let execution = message["executionId"]?.stringValue, let ref = message["refId"]?.stringValue,
                      let attempt = message["attempt"]?.intValue,
                      let kind = message["kind"]?.stringValue.flatMap(StageTimerKind.init(rawValue:))
                else {
                    logger.error("malformed timer dropped", metadata: ["timer.id": "\(id)"])
                    try await connection.query("DELETE FROM timers WHERE timer_id = \(id)", logger: logger)
                    continue
                }
                due.append((id, StageTimer(executionID: execution, refID: ref, attempt: attempt, kind: kind, poll: message["poll"]?.intValue ?? 0)))
            }
            for (id, timer) in due {
                try await fire(timer)
                try await connection.query("DELETE FROM timers WHERE timer_id = \(id)", logger: logger)
            }
            return due.count
        }
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down).
    var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
