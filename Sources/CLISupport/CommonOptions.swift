import ArgumentParser
import Foundation
import Kafka
import Logging
import PostgresEventStore

/// Where PostgreSQL and Kafka are, and how loud to be.
public struct CommonOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (default: $TOPSAIL_DATABASE_URL).")
    public var databaseURL: String?

    @Option(name: .customLong("kafka-brokers"), help: "Kafka bootstrap servers, host:port[,host:port] (default: $TOPSAIL_KAFKA_BROKERS).")
    public var kafkaBrokers: String?

    @Option(name: .customLong("kafka-property"), help: ArgumentHelp(
        "A librdkafka property key=value, repeatable (TLS, SASL …); adds to $TOPSAIL_KAFKA_PROPERTIES.",
        valueName: "key=value"))
    public var kafkaProperties: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: Logger.Level = .info

    public func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = logLevel
        return logger
    }

    public func database() throws -> DatabaseConfiguration {
        guard let url = databaseURL ?? environment("TOPSAIL_DATABASE_URL") else {
            throw CLIError("no database: pass --database-url or set TOPSAIL_DATABASE_URL (ops/services start writes .topsail/services.env)")
        }
        return try DatabaseConfiguration(url: url)
    }

    /// The database as its owner, for what changes the schema (`migrate`, benchmarks that make
    /// schemas of their own): `--database-url`, else `$TOPSAIL_MIGRATION_DATABASE_URL`, else
    /// `$TOPSAIL_DATABASE_URL` (an installation with one role for both).
    public func migrationDatabase() throws -> DatabaseConfiguration {
        if databaseURL == nil, let owner = environment("TOPSAIL_MIGRATION_DATABASE_URL") { return try DatabaseConfiguration(url: owner) }
        return try database()
    }

    public func kafka() throws -> KafkaConfiguration {
        guard let brokers = kafkaBrokers ?? environment("TOPSAIL_KAFKA_BROKERS") else {
            throw CLIError("no Kafka brokers: pass --kafka-brokers or set TOPSAIL_KAFKA_BROKERS (ops/services start writes .topsail/services.env)")
        }
        var properties = try KafkaConfiguration.parseProperties(environment("TOPSAIL_KAFKA_PROPERTIES") ?? "")
        for (key, value) in try KafkaConfiguration.parseProperties(kafkaProperties.joined(separator: "\n")) {
            properties[key] = value
        }
        // Properties given here override the typed defaults (fetch.wait.max.ms, linger.ms …).
        return KafkaConfiguration(bootstrapServers: brokers, properties: properties)
    }
}

public func commaSeparated(_ name: String) -> [String] {
    (environment(name) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// A configuration variable; set but empty counts as unset.
public func environment(_ name: String) -> String? {
    guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
    return value
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
