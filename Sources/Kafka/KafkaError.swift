import CRdKafka

/// An error of the Kafka adapter, with librdkafka's code kept for decisions and logs.
public struct KafkaError: Error, Hashable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        case configuration
        /// librdkafka's `rd_kafka_resp_err_t`.
        case librdkafka(Int32)
        case closed
    }

    public let code: Code
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, _ context: String) {
        let text = String(cString: rd_kafka_err2str(err))
        self.init(code: .librdkafka(err.rawValue), message: "\(context): \(text)")
    }

    /// True when the same operation may succeed later (broker down, timeouts, leader moves).
    public var isRetriable: Bool {
        guard case .librdkafka(let raw) = code else { return false }
        let err = rd_kafka_resp_err_t(rawValue: raw)
        switch err {
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
             RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE,
             RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
             RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
             RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
             RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
            return true
        default:
            return false
        }
    }

    public var description: String { message }
}
