import ArgumentParser
import Foundation
import Kafka
import Logging
import PostgresEventStore

/// Where PostgreSQL and Kafka are, and how loud to be.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (default: $TOPSAIL_DATABASE_URL).")
    var databaseURL: String?

    @Option(name: .customLong("kafka-brokers"), help: "Kafka bootstrap servers, host:port[,host:port] (default: $TOPSAIL_KAFKA_BROKERS).")
    var kafkaBrokers: String?

    @Option(name: .customLong("kafka-property"), help: ArgumentHelp(
        "A librdkafka property key=value, repeatable (TLS, SASL …); adds to $TOPSAIL_KAFKA_PROPERTIES.",
        valueName: "key=value"))
    var kafkaProperties: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = logLevel
        return logger
    }

    func database() throws -> DatabaseConfiguration {
        guard let url = databaseURL ?? environment("TOPSAIL_DATABASE_URL") else {
            throw CLIError("no database: pass --database-url or set TOPSAIL_DATABASE_URL (ops/services start writes .topsail/services.env)")
        }
        return try DatabaseConfiguration(url: url)
    }

    func kafka() throws -> KafkaConfiguration {
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

/// Stage types disabled on this installation: refused when a pipeline is saved, applied or
/// triggered, and ended TERMINAL by the worker if one still reaches it.
struct StagePolicyOptions: ParsableArguments {
    @Option(name: .customLong("disable-stage-type"), help: ArgumentHelp(
        "A stage type this installation does not run or accept (e.g. script), repeatable; adds to $TOPSAIL_DISABLED_STAGE_TYPES (comma-separated).",
        valueName: "type"))
    var disabledStageTypeOptions: [String] = []

    var disabledStageTypes: Set<String> { installationDisabledStageTypes().union(disabledStageTypeOptions) }
}

/// `$TOPSAIL_DISABLED_STAGE_TYPES`: stage types (comma-separated) this installation disables.
func installationDisabledStageTypes() -> Set<String> {
    Set((environment("TOPSAIL_DISABLED_STAGE_TYPES") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
}

/// A configuration variable; set but empty counts as unset.
func environment(_ name: String) -> String? {
    guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
    return value
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
