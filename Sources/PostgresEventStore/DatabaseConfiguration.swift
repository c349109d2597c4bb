import Foundation
import PostgresNIO

/// Where Topsail's PostgreSQL is, read from a `postgres://user:password@host:port/database` URL
/// (`TOPSAIL_DATABASE_URL`). `?sslmode=disable|prefer|require` chooses TLS; `?schema=NAME` puts
/// every table in that schema (tests use one schema each).
public struct DatabaseConfiguration: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tlsMode: TLSMode
    public var schema: String
    public var maximumConnections: Int

    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public init(
        host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil,
        database: String = "topsail", tlsMode: TLSMode = .disable, schema: String = "public",
        maximumConnections: Int = 20
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tlsMode = tlsMode
        self.schema = schema
        self.maximumConnections = maximumConnections
    }

    /// Parses a `postgres://` or `postgresql://` URL.
    public init(url text: String) throws(DatabaseError) {
        guard let url = URLComponents(string: text), let scheme = url.scheme,
              scheme == "postgres" || scheme == "postgresql", let host = url.host, !host.isEmpty
        else {
            throw DatabaseError(.configuration, "database URL must look like postgres://user@host:port/database")
        }
        self.init(host: host, port: url.port ?? 5432, username: url.user ?? "postgres", password: url.password)
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        if !path.isEmpty { database = path }
        for item in url.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = TLSMode(rawValue: value) else {
                    throw DatabaseError(.configuration, "sslmode must be disable, prefer or require")
                }
                tlsMode = mode
            case "schema":
                guard let value = item.value, Self.isValidSchemaName(value) else {
                    throw DatabaseError(.configuration, "schema must be lowercase letters, digits and '_', starting with a letter")
                }
                schema = value
            case "pool":
                guard let value = item.value.flatMap(Int.init), value > 0 else {
                    throw DatabaseError(.configuration, "pool must be a positive number of connections")
                }
                maximumConnections = value
            default:
                throw DatabaseError(.configuration, "unknown database URL parameter '\(item.name)' (known: sslmode, schema, pool)")
            }
        }
    }

    public static func isValidSchemaName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.utf8.count <= 63 else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// The same configuration in another schema.
    public func inSchema(_ schema: String) -> DatabaseConfiguration {
        var copy = self
        copy.schema = schema
        return copy
    }

    /// The client configuration for PostgresNIO; every connection uses ``schema`` as search path.
    public var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS = switch tlsMode {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tls
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("search_path", schema), ("application_name", "topsail")]
        return configuration
    }

    /// The URL without the password, for logs and messages.
    public var description: String {
        "postgres://\(username)@\(host):\(port)/\(database)" + (schema == "public" ? "" : "?schema=\(schema)")
    }
}
