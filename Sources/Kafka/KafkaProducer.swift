import CRdKafka
import Foundation
import Logging
import Synchronization

/// An idempotent producer (`enable.idempotence=true`, `acks=all`) whose sends complete when the
/// broker has acknowledged every message, or report the first failure.
///
/// A dedicated thread serves librdkafka's delivery reports; ``close()`` flushes and stops it.
public final class KafkaProducer: Sendable {
    private let handle: KafkaHandle
    private let stopped = StopFlag()
    private let logger: Logger

    public init(configuration: KafkaConfiguration, logger: Logger) throws(KafkaError) {
        self.logger = logger
        handle = try KafkaHandle(kind: RD_KAFKA_PRODUCER, properties: configuration.producerProperties(), logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                let batch = Unmanaged<DeliveryBatch>.fromOpaque(opaque).takeRetainedValue()
                let err = message.pointee.err
                batch.complete(err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, "delivery failed"))
            }
        }
        let handle = self.handle
        let stopped = self.stopped
        let thread = Thread {
            while !stopped.isSet {
                rd_kafka_poll(handle.pointer, 50)
            }
        }
        thread.name = "topsail.kafka.producer"
        thread.start()
    }

    /// Publishes `messages` in order and returns when all were acknowledged. Throws the first
    /// delivery error after every message has been reported, so a caller that retries the whole
    /// batch never races messages still in flight.
    public func send(_ messages: [KafkaOutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        if let fatal = handle.context.fatalError.withLock({ $0 }) {
            throw KafkaError(code: .librdkafka(RD_KAFKA_RESP_ERR__FATAL.rawValue), message: "producer is unusable: \(fatal)")
        }
        guard !stopped.isSet else { throw KafkaError(code: .closed, message: "producer is closed") }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let batch = DeliveryBatch(count: messages.count, continuation: continuation)
            for message in messages {
                enqueue(message, batch: batch)
            }
        }
    }

    private func enqueue(_ message: KafkaOutgoingMessage, batch: DeliveryBatch) {
        let opaque = Unmanaged.passRetained(batch).toOpaque()
        while true {
            let headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                _ = header.value.withUnsafeBytes { value in
                    rd_kafka_header_add(headers, header.name, -1, value.baseAddress, value.count)
                }
            }
            let err = message.key.withUnsafeBytes { key in
                message.value.withUnsafeBytes { value in
                    topsail_produce(handle.pointer, message.topic, key.baseAddress, key.count,
                                    value.baseAddress, value.count, headers, opaque)
                }
            }
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            rd_kafka_headers_destroy(headers)
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stopped.isSet {
                // The local queue drains as the poll thread serves delivery reports.
                usleep(1000)
                continue
            }
            Unmanaged<DeliveryBatch>.fromOpaque(opaque).release()
            batch.complete(KafkaError(err, "cannot enqueue message for \(message.topic)"))
            return
        }
    }

    /// The id of the cluster the producer is connected to (asks the brokers).
    public func clusterID(timeout: Duration = .seconds(10)) async throws -> String {
        try await handle.clusterID(timeout: timeout)
    }

    /// Creates `topic` unless it exists. `replicationFactor` -1 takes the broker's default.
    public func createTopic(_ topic: String, partitions: Int, replicationFactor: Int = -1, timeout: Duration = .seconds(10)) async throws {
        try await handle.createTopic(topic, partitions: partitions, replicationFactor: replicationFactor, timeout: timeout)
    }

    /// True once librdkafka reported a fatal error; a new producer is needed.
    public var isFatallyFailed: Bool { handle.context.fatalError.withLock { $0 != nil } }

    /// Waits up to `timeout` for queued messages, then stops the delivery thread.
    public func close(timeout: Duration = .seconds(5)) {
        guard !stopped.set() else { return }
        let err = rd_kafka_flush(handle.pointer, Int32(clamping: timeout.milliseconds))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("kafka producer closed with undelivered messages", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2str(err)))"])
        }
        // Report what is still queued as failed so that no sender waits forever.
        rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        for _ in 0..<100 where rd_kafka_outq_len(handle.pointer) > 0 {
            rd_kafka_poll(handle.pointer, 10)
        }
    }

    deinit {
        close(timeout: .zero)
    }
}

/// Counts the delivery reports of one ``KafkaProducer/send(_:)``.
final class DeliveryBatch: Sendable {
    private struct State {
        var remaining: Int
        var firstError: KafkaError?
        var continuation: CheckedContinuation<Void, any Error>?
    }

    private let state: Mutex<State>

    init(count: Int, continuation: CheckedContinuation<Void, any Error>) {
        state = Mutex(State(remaining: count, firstError: nil, continuation: continuation))
    }

    func complete(_ error: KafkaError?) {
        let finished: (CheckedContinuation<Void, any Error>, KafkaError?)? = state.withLock { state in
            state.remaining -= 1
            if state.firstError == nil, let error { state.firstError = error }
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.firstError)
        }
        guard let (continuation, error) = finished else { return }
        if let error { continuation.resume(throwing: error) } else { continuation.resume() }
    }
}
