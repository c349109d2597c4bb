import PostgresNIO

/// An error of Topsail's PostgreSQL adapter. ``description`` is safe to show to anyone;
/// ``debugDescription`` carries the driver's detail for logs.
public struct DatabaseError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Code: String, Sendable {
        case configuration
        case unavailable
        case migration
        case query
    }

    public let code: Code
    public let message: String
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// True when trying again later may succeed (the server is down or restarting).
    public var isRetriable: Bool { code == .unavailable }

    public var description: String { message }

    public var debugDescription: String {
        guard let underlying else { return "\(code.rawValue): \(message)" }
        return "\(code.rawValue): \(message) (\(String(reflecting: underlying)))"
    }

    /// Wraps a driver error into a safe message, keeping the driver's text for logs.
    public static func wrapping(_ error: any Error, doing action: String) -> DatabaseError {
        if let error = error as? DatabaseError { return error }
        if let error = error as? PSQLError {
            if let state = error.serverInfo?[.sqlState] {
                // Class 08 (connection), 57P (shutdown), 53 (resources) are worth retrying.
                let unavailable = state.hasPrefix("08") || state.hasPrefix("57P") || state.hasPrefix("53")
                let text = error.serverInfo?[.message] ?? "server error"
                return DatabaseError(unavailable ? .unavailable : .query, "PostgreSQL refused to \(action): \(text) (SQLSTATE \(state))", underlying: error)
            }
            return DatabaseError(.unavailable, "PostgreSQL is unreachable while trying to \(action) (\(error.code))", underlying: error)
        }
        return DatabaseError(.unavailable, "PostgreSQL is unreachable while trying to \(action)", underlying: error)
    }
}

extension PSQLError {
    var sqlState: String? { serverInfo?[.sqlState] }
}
