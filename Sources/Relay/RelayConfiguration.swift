/// How the relay publishes the log to Kafka.
public struct RelayConfiguration: Sendable {
    /// Relays with the same name share one checkpoint and elect one leader among themselves.
    public var name: String = "default"
    /// Topics are `<prefix><category>`.
    public var topicPrefix: String = "topsail."
    /// Partitions of topics the relay creates.
    public var partitions: Int = 6
    /// Replication of topics the relay creates; -1 takes the cluster's default.
    public var replicationFactor: Int = -1
    /// Events read and published per round.
    public var batchSize: Int = 1000
    /// Batches produced but not yet acknowledged, at most.
    public var maximumBatchesInFlight: Int = 8
    /// The wait after finding nothing new in the log.
    public var pollInterval: Duration = .milliseconds(5)
    /// Where to start when the checkpoint does not belong to the connected Kafka cluster (first
    /// run, or a new or replaced cluster): the global position of the first event to publish;
    /// nil publishes the whole log.
    public var republishFrom: Int64? = nil
    /// The CloudEvents `source` of published events.
    public var source: String = "/topsail"
    /// How often the relay asks the brokers whether the cluster is still the same.
    public var clusterCheckInterval: Duration = .seconds(2)
    /// How often a standby relay tries to become the leader.
    public var standbyInterval: Duration = .seconds(1)
    /// The longest back-off after failures.
    public var maximumBackoff: Duration = .seconds(5)

    public init() {}

    public func topic(for category: String) -> String { topicPrefix + category }
}
