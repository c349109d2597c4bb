import ArgumentParser
import CLISupport
import Relay

/// Options of the relay role, shared by `topsail relay` and `topsail all`.
struct RelayOptions: ParsableArguments {
    @Option(name: .customLong("relay-name"), help: "Relays with the same name share a checkpoint; one of them publishes.")
    var name: String = "default"

    @Option(help: "Replication factor of the topics the relay creates (-1: the cluster's default).")
    var replicationFactor: Int = -1

    @Option(help: "When the Kafka cluster is new to the relay, publish from this global position instead of the start of the log.")
    var from: Int64?

    func validate() throws {
        if let from, from < 1 { throw ValidationError("--from must be a global position, 1 or more") }
    }

    func configuration(topics: TopicOptions) -> RelayConfiguration {
        var configuration = RelayConfiguration()
        configuration.name = name
        configuration.partitions = topics.partitions
        configuration.topicPrefix = topics.topicPrefix
        configuration.replicationFactor = replicationFactor
        configuration.republishFrom = from
        return configuration
    }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Publish every committed event to Kafka, topic topsail.<category>, key = stream id.",
        discussion: """
            At-least-once and in log order; the checkpoint advances only after the broker acknowledged. \
            Several relays may run: one publishes, the others stand by and take over when it dies. \
            SIGTERM or Ctrl-C stops it gracefully.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var relay: RelayOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([.relay(relay.configuration(topics: topics))])
    }
}

/// Where the Kafka topics are, shared by every role.
struct DrainOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Seconds a graceful shutdown (SIGTERM, SIGINT) lets running handlers and stages finish before cancelling them; cancelled work runs again after the restart.",
        valueName: "seconds"))
    var drainTimeout: Double = 10

    var duration: Duration { .milliseconds(Int(drainTimeout * 1000)) }

    func validate() throws {
        guard drainTimeout >= 0, drainTimeout <= 3_600 else { throw ValidationError("--drain-timeout must be between 0 and 3600 seconds") }
    }
}

struct TopicOptions: ParsableArguments {
    @Option(help: "Topics are <prefix><category> (execution events: <prefix>execution); consumer groups are <prefix><role>.")
    var topicPrefix: String = "topsail."

    @Option(help: "Partitions of the topics Topsail creates.")
    var partitions: Int = 6

    func validate() throws {
        guard partitions > 0 else { throw ValidationError("--partitions must be positive") }
        let allowed = topicPrefix.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || $0 == "." || $0 == "_" || $0 == "-" }
        guard allowed, topicPrefix.count <= 100 else { throw ValidationError("--topic-prefix may hold letters, digits, '.', '_' and '-' (at most 100)") }
    }
}
