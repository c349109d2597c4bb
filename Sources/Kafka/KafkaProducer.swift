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
                let ticket = Unmanaged<DeliveryTicket>.fromOpaque(opaque).takeRetainedValue()
                let err = message.pointee.err
                ticket.complete(err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, "delivery failed"))
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
        try await enqueue(messages).wait()
    }

    /// Hands `messages` to librdkafka in order without waiting for the broker; the ticket tells
    /// when all of them were acknowledged. Later batches may be enqueued before earlier ones are
    /// acknowledged: the idempotent producer keeps each partition in order.
    ///
    /// A full local queue (`queue.buffering.max.messages`) is waited out by suspending, never by
    /// blocking one of Swift's cooperative threads.
    public func enqueue(_ messages: [KafkaOutgoingMessage]) async throws -> DeliveryTicket {
        if let fatal = handle.context.fatalError.withLock({ $0 }) {
            throw KafkaError(code: .librdkafka(RD_KAFKA_RESP_ERR__FATAL.rawValue), message: "producer is unusable: \(fatal)")
        }
        guard !stopped.isSet else { throw KafkaError(code: .closed, message: "producer is closed") }
        let ticket = DeliveryTicket(count: messages.count)
        for (index, message) in messages.enumerated() {
            // The local queue drains as the poll thread serves delivery reports.
            while !enqueue(message, ticket: ticket) {
                do {
                    try await Task.sleep(for: .milliseconds(1))
                } catch {
                    // Cancelled while the queue is full: this message and the rest fail, as on a close.
                    for _ in index..<messages.count {
                        ticket.complete(KafkaError(code: .closed, message: "cancelled while the producer's queue was full"))
                    }
                    return ticket
                }
            }
        }
        return ticket
    }

    /// Hands one message over; false when librdkafka's queue is full (nothing was handed over).
    private func enqueue(_ message: KafkaOutgoingMessage, ticket: DeliveryTicket) -> Bool {
        let opaque = Unmanaged.passRetained(ticket).toOpaque()
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
        if err == RD_KAFKA_RESP_ERR_NO_ERROR { return true }
        rd_kafka_headers_destroy(headers)
        Unmanaged<DeliveryTicket>.fromOpaque(opaque).release()
        if err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stopped.isSet { return false }
        ticket.complete(KafkaError(err, "cannot enqueue message for \(message.topic)"))
        return true
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

    /// ``close(timeout:)`` without blocking a cooperative thread while librdkafka flushes.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        await offCooperativeThreads { self.close(timeout: timeout) }
    }

    /// Waits up to `timeout` for queued messages, then stops the delivery thread. Blocks: from
    /// async code, use ``shutdown(timeout:)``.
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

/// The delivery reports of one batch of messages: finished when every message was acknowledged
/// or failed.
public final class DeliveryTicket: Sendable {
    private struct State {
        var remaining: Int
        var firstError: KafkaError?
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(remaining: count, firstError: nil))
    }

    /// True once every message of the batch was reported.
    public var isFinished: Bool { state.withLock { $0.remaining <= 0 } }

    /// Returns when every message was reported; throws the first delivery error.
    public func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome: KafkaError?? = state.withLock { state in
                guard state.remaining <= 0 else {
                    state.waiters.append(continuation)
                    return .none
                }
                return .some(state.firstError)
            }
            switch outcome {
            case .none: break
            case .some(nil): continuation.resume()
            case .some(let error?): continuation.resume(throwing: error)
            }
        }
    }

    func complete(_ error: KafkaError?) {
        let finished: ([CheckedContinuation<Void, any Error>], KafkaError?)? = state.withLock { state in
            state.remaining -= 1
            if state.firstError == nil, let error { state.firstError = error }
            guard state.remaining == 0 else { return nil }
            defer { state.waiters = [] }
            return (state.waiters, state.firstError)
        }
        guard let (waiters, error) = finished else { return }
        for waiter in waiters {
            if let error { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }
}
