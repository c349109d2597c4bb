import CRdKafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// State the C callbacks reach through librdkafka's opaque pointer.
final class KafkaCallbackContext: Sendable {
    let logger: Logger
    /// Set when librdkafka reports a fatal error: the instance must be replaced.
    let fatalError = Mutex<String?>(nil)

    init(logger: Logger) {
        self.logger = logger
    }
}

/// Owns one `rd_kafka_t`. `@unchecked Sendable` because it wraps C pointers: librdkafka's
/// handle is thread-safe for every call made through this type, and `destroy()` runs once.
final class KafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let context: KafkaCallbackContext
    private let unmanagedContext: Unmanaged<KafkaCallbackContext>
    /// Blocking C calls (metadata, admin requests, commits) run here, never on the cooperative pool.
    let blockingQueue = DispatchQueue(label: "topsail.kafka.blocking", attributes: .concurrent)

    init(kind: rd_kafka_type_t, properties: [String: String], logger: Logger,
         configure: (OpaquePointer) -> Void = { _ in }) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(code: .configuration, message: "librdkafka could not allocate a configuration")
        }
        var errstr = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(code: .configuration, message: "Kafka property \(key): \(string(fromCBuffer: errstr))")
            }
        }
        let context = KafkaCallbackContext(logger: logger)
        let unmanaged = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, unmanaged.toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            let context = Unmanaged<KafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
            let text = message.map { String(cString: $0) } ?? ""
            let facilityText = facility.map { String(cString: $0) } ?? ""
            context.logger.log(level: KafkaHandle.logLevel(syslog: level), "\(text)", metadata: ["kafka.facility": "\(facilityText)"])
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let opaque else { return }
            let context = Unmanaged<KafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
            let text = reason.map { String(cString: $0) } ?? ""
            if rd_kafka_resp_err_t(rawValue: err) == RD_KAFKA_RESP_ERR__FATAL, let rk {
                var buffer = [CChar](repeating: 0, count: 512)
                let original = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                let detail = "\(String(cString: rd_kafka_err2str(original))): \(string(fromCBuffer: buffer))"
                context.fatalError.withLock { $0 = detail }
                context.logger.error("kafka fatal error", metadata: ["kafka.error": "\(detail)"])
            } else {
                context.logger.warning("kafka error", metadata: ["kafka.error": "\(text)"])
            }
        }
        configure(conf)
        guard let rk = rd_kafka_new(kind, conf, &errstr, errstr.count) else {
            unmanaged.release()
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .configuration, message: "cannot create Kafka client: \(string(fromCBuffer: errstr))")
        }
        self.pointer = rk
        self.context = context
        self.unmanagedContext = unmanaged
    }

    deinit {
        rd_kafka_destroy(pointer)
        unmanagedContext.release()
    }

    /// Runs a blocking C call off the cooperative thread pool.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws(KafkaError) -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            blockingQueue.async {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// The id of the cluster the client is talking to, refreshed from the brokers.
    func clusterID(timeout: Duration) async throws -> String {
        try await blocking { [self] () throws(KafkaError) -> String in
            let timeoutMs = Int32(clamping: timeout.milliseconds)
            // A metadata request refreshes the cached cluster id (a restarted broker may be new).
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(pointer, 0, nil, &metadata, timeoutMs)
            if let metadata { rd_kafka_metadata_destroy(metadata) }
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "cannot read cluster metadata") }
            guard let id = rd_kafka_clusterid(pointer, timeoutMs) else {
                throw KafkaError(code: .librdkafka(RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue), message: "the broker did not report a cluster id")
            }
            defer { rd_kafka_mem_free(pointer, id) }
            return String(cString: id)
        }
    }

    /// Creates a topic unless it exists.
    func createTopic(_ name: String, partitions: Int, replicationFactor: Int, timeout: Duration) async throws {
        try await blocking { [self] () throws(KafkaError) in
            var errstr = [CChar](repeating: 0, count: 512)
            let err = topsail_create_topic(pointer, name, Int32(partitions), Int32(replicationFactor),
                                           Int32(clamping: timeout.milliseconds), &errstr, errstr.count)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(code: .librdkafka(err.rawValue), message: "cannot create topic \(name): \(string(fromCBuffer: errstr))")
            }
        }
    }

    static func logLevel(syslog level: Int32) -> Logger.Level {
        switch level {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
    }
}
