/// How to reach the Kafka cluster, typed; it becomes librdkafka's string properties only at the
/// C edge. `properties` passes anything else (TLS, SASL, …) through to librdkafka unchanged.
public struct KafkaConfiguration: Sendable, Hashable {
    /// `host:port` list (`TOPSAIL_KAFKA_BROKERS`).
    public var bootstrapServers: String
    /// The longest a fetch waits on the broker. Brokers that answer a fetch only when this runs
    /// out (such as the development broker) need it low; Apache Kafka answers as soon as data
    /// arrives, so it only bounds idle polling there.
    public var fetchWaitMax: Duration = .milliseconds(5)
    /// How long a produced message may wait for delivery before it is reported failed.
    public var messageTimeout: Duration = .seconds(30)
    /// How long the producer waits to fill a batch.
    public var linger: Duration = .milliseconds(1)
    public var sessionTimeout: Duration = .seconds(6)
    public var heartbeatInterval: Duration = .milliseconds(1500)
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, `ssl.ca.location` …).
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// Parses `key=value` pairs separated by commas or newlines (`TOPSAIL_KAFKA_PROPERTIES`).
    public static func parseProperties(_ text: String) throws(KafkaError) -> [String: String] {
        var result: [String: String] = [:]
        for item in text.split(whereSeparator: { $0 == "," || $0 == "\n" }) {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, !pair[0].isEmpty else {
                throw KafkaError(code: .configuration, message: "Kafka property '\(item)' is not key=value")
            }
            result[String(pair[0]).trimmingSpaces] = String(pair[1]).trimmingSpaces
        }
        return result
    }

    func common() -> [String: String] {
        var values = ["bootstrap.servers": bootstrapServers, "client.id": "topsail"]
        for (key, value) in properties { values[key] = value }
        return values
    }

    func producerProperties() -> [String: String] {
        var values = [
            "enable.idempotence": "true",
            "acks": "all",
            // Kafka's own hash, so that Topsail can tell which partition a stream's events go to.
            "partitioner": "murmur2_random",
            "linger.ms": String(linger.milliseconds),
            "message.timeout.ms": String(messageTimeout.milliseconds),
            "topic.metadata.refresh.interval.ms": "10000",
        ]
        for (key, value) in common() { values[key] = value }
        return values
    }

    func consumerProperties(groupID: String) -> [String: String] {
        var values = [
            "group.id": groupID,
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": String(fetchWaitMax.milliseconds),
            "session.timeout.ms": String(sessionTimeout.milliseconds),
            "heartbeat.interval.ms": String(heartbeatInterval.milliseconds),
            "topic.metadata.refresh.interval.ms": "5000",
        ]
        for (key, value) in common() { values[key] = value }
        return values
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

extension String {
    var trimmingSpaces: String {
        var scalars = unicodeScalars[...]
        while scalars.first?.properties.isWhitespace == true { scalars.removeFirst() }
        while scalars.last?.properties.isWhitespace == true { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
