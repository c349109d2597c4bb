import Logging
import PostgresNIO

extension PostgresClient {
    /// Runs `body` in one transaction on one connection: committed when it returns, rolled back
    /// when it throws. Errors other than ``DatabaseError`` come out wrapped, naming `action`.
    public func transaction<T: Sendable>(
        logger: Logger, doing action: String, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        do {
            return try await withConnection { connection in
                try await connection.query("BEGIN", logger: logger)
                do {
                    let result = try await body(connection)
                    try await connection.query("COMMIT", logger: logger)
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: action)
        }
    }
}
