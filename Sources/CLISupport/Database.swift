import Foundation
import Logging
import PostgresEventStore
import PostgresNIO

/// Runs `body` with a connected PostgreSQL client, failing fast when the server is unreachable.
public func withDatabase<T: Sendable>(
    _ configuration: DatabaseConfiguration, logger: Logger,
    _ body: @Sendable @escaping (PostgresClient) async throws -> T
) async throws -> T {
    let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        try await checkReachable(client, configuration: configuration)
        let result = try await body(client)
        return result
    }
}

/// Answers within `timeout` whether PostgreSQL takes queries; the pool would otherwise wait for
/// the server indefinitely.
public func checkReachable(_ client: PostgresClient, configuration: DatabaseConfiguration, timeout: Duration = .seconds(5)) async throws {
    let reached = try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await client.query("SELECT 1")
            return true
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return false
        }
        defer { group.cancelAll() }
        do {
            return try await group.next() ?? false
        } catch {
            throw DatabaseError.wrapping(error, doing: "connect")
        }
    }
    guard reached else {
        throw DatabaseError(.unavailable, "cannot reach PostgreSQL at \(configuration) within \(timeout); is it running? (ops/services start)")
    }
}

/// The migrations directory: `--migrations`, `$TOPSAIL_MIGRATIONS_DIR`, `./migrations`, or the one
/// beside the executable's checkout.
public func migrationsDirectory(_ explicit: String?) -> URL {
    if let explicit { return URL(fileURLWithPath: explicit) }
    if let fromEnvironment = ProcessInfo.processInfo.environment["TOPSAIL_MIGRATIONS_DIR"] {
        return URL(fileURLWithPath: fromEnvironment)
    }
    let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("migrations")
    if FileManager.default.fileExists(atPath: here.path) { return here }
    // .build/<config>/topsail → the checkout's migrations/
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    return executable.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("migrations")
}
