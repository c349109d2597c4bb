import EventLog

/// Where a relay got to, and on which Kafka cluster.
public struct RelayCheckpoint: Sendable, Hashable {
    public var clusterID: String
    public var position: LogPosition

    public init(clusterID: String, position: LogPosition) {
        self.clusterID = clusterID
        self.position = position
    }
}
