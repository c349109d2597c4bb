import Logging
import PostgresNIO

/// Keeps the log's transaction ids ahead of every stored one (migration 0007): after a restore
/// into another PostgreSQL cluster, whose transaction counter may be lower than the ids the
/// restored events carry, new events would sort before them and readers with checkpoints in the
/// restored part would stall without a word. `realign` detects that and raises the offset the
/// log adds to the server's ids, so that positions are derived anew from the restored log.
public enum LogEpoch {
    /// Realigns when needed; returns the offset added (0: none was needed), or nil when the
    /// database is not migrated that far yet.
    @discardableResult
    public static func realign(_ client: PostgresClient, logger: Logger) async throws -> Int64? {
        do {
            // First the stored maximum, then (in a later statement) a new transaction id: every
            // transaction visible to the first read got its id before the second.
            var storedMax: Int64?
            for try await value in try await client.query("SELECT max(transaction_id) FROM events", logger: logger).decode(Int64?.self) {
                storedMax = value
            }
            var gap: Int64 = 0
            for try await value in try await client.query("SELECT realign_log_epoch(\(storedMax))", logger: logger).decode(Int64.self) {
                gap = value
            }
            if gap > 0 {
                logger.warning("the log's transaction ids were behind the stored ones (a restore into another cluster?); new events now sort after them", metadata: [
                    "log.offset_added": "\(gap)", "log.stored_max_transaction": "\(storedMax ?? 0)"])
            }
            return gap
        } catch let error as PSQLError where ["42883", "42P01"].contains(error.serverInfo?[.sqlState] ?? "") {
            return nil
        } catch {
            throw DatabaseError.wrapping(error, doing: "check the log's transaction ids")
        }
    }
}
