import Logging
import PostgresNIO

extension PostgresClient {
    /// Runs `body` in one transaction on one connection: committed when it returns, rolled back
    /// when it throws. Errors other than ``DatabaseError`` come out wrapped, naming `action`.
    ///
    /// A connection the server closes mid-transaction never answers a query written to it
    /// afterwards, so the connection is checked before each statement of ours, and the whole
    /// transaction is given up (as unavailable) after `timeout` rather than waited on for ever.
    public func transaction<T: Sendable>(
        logger: Logger, doing action: String, timeout: Duration = .seconds(30),
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        do {
            return try await abandoning(after: timeout, doing: action) {
                try await self.withConnection { connection in
                    try connection.ensureOpen(doing: action)
                    try await connection.query("BEGIN", logger: logger)
                    do {
                        let result = try await body(connection)
                        try connection.ensureOpen(doing: action)
                        try await connection.query("COMMIT", logger: logger)
                        return result
                    } catch {
                        if !connection.isClosed { _ = try? await connection.query("ROLLBACK", logger: logger) }
                        throw error
                    }
                }
            }
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: action)
        }
    }
}
