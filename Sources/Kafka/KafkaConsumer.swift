import CRdKafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// A member of a consumer group with manual offset commits.
///
/// ``messages`` is pull-based: each `next()` polls librdkafka on a dedicated queue, so a slow
/// reader slows fetching rather than buffering without bound. Offsets are committed only when the
/// caller says so (``commit(_:)``), after it has handled a message.
public final class KafkaConsumer: Sendable {
    private let handle: KafkaHandle
    private let pollQueue = DispatchQueue(label: "topsail.kafka.consumer")
    private let closed = StopFlag()
    private let logger: Logger

    /// A member of `groupID` that subscribes to `topics`: the group's coordinator assigns it
    /// partitions.
    public convenience init(configuration: KafkaConfiguration, groupID: String, topics: [String], logger: Logger) throws(KafkaError) {
        try self.init(configuration: configuration, groupID: groupID, logger: logger)
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(handle.pointer, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "cannot subscribe to \(topics.joined(separator: ", "))") }
    }

    /// A consumer that takes the partitions it is given (``assign(_:)``) and joins no group:
    /// ownership is decided elsewhere. `groupID` still names where ``commit(_:)`` records
    /// offsets, so that Kafka's tools show the consumer's lag.
    public init(configuration: KafkaConfiguration, groupID: String, logger: Logger) throws(KafkaError) {
        self.logger = logger
        handle = try KafkaHandle(kind: RD_KAFKA_CONSUMER, properties: configuration.consumerProperties(groupID: groupID), logger: logger)
        rd_kafka_poll_set_consumer(handle.pointer)
    }

    /// A partition to read and where to begin: an offset, or nil for the beginning.
    public struct Start: Sendable, Hashable {
        public let topic: String
        public let partition: Int32
        public let offset: Int64?

        public init(topic: String, partition: Int32, offset: Int64?) {
            self.topic = topic
            self.partition = partition
            self.offset = offset
        }
    }

    /// Adds partitions to what this consumer reads.
    public func assign(_ starts: [Start]) async throws {
        guard !starts.isEmpty else { return }
        let handle = self.handle
        try await handle.blocking { () throws(KafkaError) in
            let list = rd_kafka_topic_partition_list_new(Int32(starts.count))
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for start in starts {
                let entry = rd_kafka_topic_partition_list_add(list, start.topic, start.partition)
                entry?.pointee.offset = start.offset ?? Int64(RD_KAFKA_OFFSET_BEGINNING)
            }
            if let error = rd_kafka_incremental_assign(handle.pointer, list) {
                let code = rd_kafka_error_code(error)
                rd_kafka_error_destroy(error)
                throw KafkaError(code, "cannot assign \(starts.map { "\($0.topic)[\($0.partition)]" }.joined(separator: ", "))")
            }
        }
    }

    /// Stops reading partitions.
    public func unassign(topic: String, partitions: [Int32]) async throws {
        guard !partitions.isEmpty else { return }
        let handle = self.handle
        try await handle.blocking { () throws(KafkaError) in
            let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for partition in partitions { rd_kafka_topic_partition_list_add(list, topic, partition) }
            if let error = rd_kafka_incremental_unassign(handle.pointer, list) {
                let code = rd_kafka_error_code(error)
                rd_kafka_error_destroy(error)
                throw KafkaError(code, "cannot unassign \(topic) partitions \(partitions)")
            }
        }
    }

    /// Records the offset after `message` in Kafka without waiting for the answer (for lag
    /// monitoring by Kafka's tools; the offset that matters lives elsewhere).
    public func commitInBackground(_ message: KafkaMessage) {
        let list = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let entry = rd_kafka_topic_partition_list_add(list, message.topic, message.partition)
        entry?.pointee.offset = message.offset + 1
        _ = rd_kafka_commit(handle.pointer, list, 1)
    }

    /// Messages of the subscribed topics, until the consumer is closed or the task cancelled.
    public var messages: Messages { Messages(consumer: self) }

    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = KafkaMessage
        let consumer: KafkaConsumer

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer) }

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: KafkaConsumer
            public mutating func next() async throws -> KafkaMessage? {
                try await consumer.poll()
            }
        }
    }

    /// The next message; nil once closed.
    func poll() async throws -> KafkaMessage? {
        while !closed.isSet {
            try Task.checkCancellation()
            let handle = self.handle
            let closed = self.closed
            let result: Result<KafkaMessage, KafkaError>? = await withCheckedContinuation { continuation in
                pollQueue.async {
                    guard !closed.isSet else { return continuation.resume(returning: nil) }
                    guard let message = rd_kafka_consumer_poll(handle.pointer, 100) else {
                        return continuation.resume(returning: nil)
                    }
                    defer { rd_kafka_message_destroy(message) }
                    continuation.resume(returning: Self.convert(message))
                }
            }
            switch result {
            case nil: continue
            case .success(let message): return message
            case .failure(let error):
                // Partition EOF and transient broker errors are informational for a consumer.
                logger.debug("kafka consumer event", metadata: ["kafka.error": "\(error)"])
                if !error.isRetriable, case .librdkafka(let raw) = error.code, raw != RD_KAFKA_RESP_ERR__PARTITION_EOF.rawValue {
                    logger.warning("kafka consumer error", metadata: ["kafka.error": "\(error)"])
                }
            }
        }
        return nil
    }

    /// Commits the offset after `message`: the group resumes after it.
    public func commit(_ message: KafkaMessage) async throws {
        let handle = self.handle
        try await handle.blocking { () throws(KafkaError) in
            let list = rd_kafka_topic_partition_list_new(1)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let entry = rd_kafka_topic_partition_list_add(list, message.topic, message.partition)
            entry?.pointee.offset = message.offset + 1
            let err = rd_kafka_commit(handle.pointer, list, 0)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "cannot commit offset \(message.offset + 1) of \(message.topic)[\(message.partition)]") }
        }
    }

    /// The partitions the group gave this member, per topic (empty before the first assignment).
    public func assignment() -> [String: Set<Int32>] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle.pointer, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [:] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        var result: [String: Set<Int32>] = [:]
        for index in 0..<Int(list.pointee.cnt) {
            let entry = list.pointee.elems[index]
            result[String(cString: entry.topic), default: []].insert(entry.partition)
        }
        return result
    }

    /// How many partitions `topic` has, asked of the brokers.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(5)) async throws -> Int {
        let handle = self.handle
        return try await handle.blocking { () throws(KafkaError) -> Int in
            guard let topicHandle = rd_kafka_topic_new(handle.pointer, topic, nil) else {
                throw KafkaError(code: .configuration, message: "cannot describe topic \(topic)")
            }
            defer { rd_kafka_topic_destroy(topicHandle) }
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(handle.pointer, 0, topicHandle, &metadata, Int32(clamping: timeout.milliseconds))
            defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata, metadata.pointee.topic_cnt > 0 else {
                throw KafkaError(err, "cannot read the metadata of topic \(topic)")
            }
            let described = metadata.pointee.topics[0]
            guard described.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(described.err, "topic \(topic)") }
            return Int(described.partition_cnt)
        }
    }

    /// ``close()`` without blocking a cooperative thread while librdkafka leaves the group.
    public func shutdown() async {
        await offCooperativeThreads { self.close() }
    }

    /// Leaves the group (committing nothing) and stops polling. Blocks until librdkafka is done:
    /// from async code, use ``shutdown()``.
    public func close() {
        guard !closed.set() else { return }
        let handle = self.handle
        pollQueue.sync {
            _ = rd_kafka_consumer_close(handle.pointer)
        }
    }

    deinit {
        close()
    }

    private static func convert(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> Result<KafkaMessage, KafkaError> {
        let m = message.pointee
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .failure(KafkaError(m.err, "consumer (\(topic))"))
        }
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8] {
            guard let pointer, count > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        var headers: [KafkaHeader] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let valueBytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                headers.append(KafkaHeader(name: name.map { String(cString: $0) } ?? "", value: valueBytes))
                index += 1
            }
        }
        return .success(KafkaMessage(
            topic: topic, partition: m.partition, offset: m.offset,
            key: bytes(m.key, m.key_len), value: bytes(m.payload, m.len), headers: headers
        ))
    }
}
