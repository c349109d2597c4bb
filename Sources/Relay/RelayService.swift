import EventLog
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle

/// Publishes every committed event, in log order, to `topsail.<category>` with the stream id as key.
///
/// - One leader per relay name: the leader holds a PostgreSQL session advisory lock on a
///   connection of its own; a standby polls for the lock and takes over when the leader's
///   connection dies (including kill -9). The checkpoint is written on that same connection, so a
///   relay that lost the lock can no longer move it.
/// - At-least-once: the checkpoint moves only after the broker acknowledged the whole batch.
///   After a crash the unacknowledged tail is published again; consumers dedupe by
///   (stream, version).
/// - The checkpoint records the Kafka cluster id. On another cluster (a fresh development broker,
///   a replaced cluster) the relay publishes again from the start of the log or from
///   ``RelayConfiguration/republishFrom``.
public final class RelayService: Service {
    static let lockNamespace: Int32 = 1953721091

    let configuration: RelayConfiguration
    let kafka: KafkaConfiguration
    let client: PostgresClient
    let store: PostgresEventStore
    let logger: Logger
    /// Called each time the leader read the log and found nothing it may publish yet: the
    /// positive signal that it has looked (tests wait for it instead of sleeping).
    let onIdle: @Sendable () -> Void

    public init(
        configuration: RelayConfiguration, kafka: KafkaConfiguration, client: PostgresClient, logger: Logger,
        onIdle: @escaping @Sendable () -> Void = {}
    ) {
        self.configuration = configuration
        self.kafka = kafka
        self.client = client
        self.store = PostgresEventStore(client: client, logger: logger)
        self.logger = logger
        self.onIdle = onIdle
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await self.runUntilCancelled()
        }
    }

    func runUntilCancelled() async throws {
        var backoff = Backoff(maximum: configuration.maximumBackoff)
        var announcedStandby = false
        while !Task.isCancelled {
            do {
                let led = try await client.withConnection { connection in
                    try await self.leadIfElected(on: connection) { backoff.reset() }
                }
                if led {
                    announcedStandby = false
                } else {
                    if !announcedStandby {
                        logger.info("relay standing by: another relay leads", metadata: ["relay.name": "\(configuration.name)"])
                        announcedStandby = true
                    }
                    try await Task.sleep(for: configuration.standbyInterval)
                }
            } catch is CancellationError where Task.isCancelled {
                // This task was cancelled: the role is stopping. (A CancellationError from a
                // dependency while it goes on is a failure like any other, retried below.)
                return
            } catch {
                if Task.isCancelled { return }
                let delay = backoff.next()
                logger.warning("relay interrupted; retrying", metadata: [
                    "relay.name": "\(configuration.name)", "error": "\(error)", "retry.delay": "\(delay)",
                ])
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// Returns false when another relay holds the leadership.
    private func leadIfElected(on connection: PostgresConnection, onProgress: () -> Void) async throws -> Bool {
        let name = configuration.name
        let rows = try await connection.query("SELECT pg_try_advisory_lock(\(Self.lockNamespace), hashtext(current_schema() || '/' || \(name)))", logger: logger)
        var acquired = false
        for try await locked in rows.decode(Bool.self) { acquired = locked }
        guard acquired else { return false }
        do {
            // Losing a checkpoint write to a crash only republishes a few events.
            try await connection.query("SET synchronous_commit TO off", logger: logger)
            try await lead(on: connection, onProgress: onProgress)
        } catch {
            await release(connection)
            throw error
        }
        await release(connection)
        return true
    }

    private func release(_ connection: PostgresConnection) async {
        // A closed connection's session is gone, and its lock with it.
        guard !connection.isClosed else { return }
        let (name, logger) = (configuration.name, self.logger)
        do {
            try await abandoning(after: .seconds(5), doing: "release the relay's leadership") {
                try await connection.query("RESET synchronous_commit", logger: logger)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockNamespace), hashtext(current_schema() || '/' || \(name)))", logger: logger)
            }
        } catch {
            // A pooled connection must never keep the lock.
            _ = try? await abandoning(after: .seconds(5), doing: "close the relay's connection") { try await connection.close() }
        }
    }

    private func lead(on connection: PostgresConnection, onProgress: () -> Void) async throws {
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        do {
            try await lead(on: connection, producer: producer, onProgress: onProgress)
        } catch {
            await producer.shutdown(timeout: .seconds(1))
            throw error
        }
        await producer.shutdown(timeout: .seconds(1))
    }

    private func lead(on connection: PostgresConnection, producer: KafkaProducer, onProgress: () -> Void) async throws {
        var publisher = BatchPublisher(configuration: configuration, producer: producer)
        var checkpoint = try await startingCheckpoint(on: connection, producer: producer)
        logger.info("relay leading", metadata: [
            "relay.name": "\(configuration.name)", "kafka.cluster_id": "\(checkpoint.clusterID)", "relay.position": "\(checkpoint.position)",
        ])
        let clock = ContinuousClock()
        var lastClusterCheck = clock.now
        var inFlight = InFlightBatches(capacity: configuration.maximumBatchesInFlight)
        var readPosition = checkpoint.position
        while true {
            try Task.checkCancellation()
            // The lock lives with the session: without it another relay may lead already.
            try connection.ensureOpen(doing: "hold the relay's leadership")
            // Checked under load too: a broker replaced between two batches must not receive
            // only the log's tail.
            if clock.now - lastClusterCheck >= configuration.clusterCheckInterval {
                lastClusterCheck = clock.now
                let cluster = try await producer.clusterID()
                if cluster != checkpoint.clusterID {
                    checkpoint = try await restart(on: connection, newCluster: cluster, previous: checkpoint.clusterID)
                    readPosition = checkpoint.position
                    inFlight.abandon()
                    publisher.forgetTopics()
                }
            }
            if let acknowledged = try await inFlight.takeAcknowledged() {
                checkpoint.position = acknowledged
                try await save(checkpoint, on: connection)
                onProgress()
            }
            if inFlight.isFull {
                try await inFlight.waitForOldest()
                continue
            }
            let batch = try await store.readAll(after: readPosition, limit: configuration.batchSize)
            if let last = batch.last {
                inFlight.append(last: last.logPosition, ticket: try await publisher.enqueue(batch))
                readPosition = last.logPosition
                continue
            }
            onIdle()
            try await Task.sleep(for: configuration.pollInterval)
        }
    }

    private func startingCheckpoint(on connection: PostgresConnection, producer: KafkaProducer) async throws -> RelayCheckpoint {
        let cluster = try await producer.clusterID()
        let rows = try await connection.query(
            "SELECT cluster_id, transaction_id, position FROM relay_checkpoints WHERE relay_name = \(configuration.name)",
            logger: logger)
        for try await (storedCluster, transaction, position) in rows.decode((String, Int64, Int64).self) {
            if storedCluster == cluster {
                return RelayCheckpoint(clusterID: cluster, position: LogPosition(transaction: transaction, position: position))
            }
            return try await restart(on: connection, newCluster: cluster, previous: storedCluster)
        }
        return try await restart(on: connection, newCluster: cluster, previous: nil)
    }

    /// Starts over on `newCluster` from the beginning of the log or from `republishFrom`.
    private func restart(on connection: PostgresConnection, newCluster: String, previous: String?) async throws -> RelayCheckpoint {
        var position = LogPosition.start
        if let from = configuration.republishFrom { position = try await store.logPosition(before: from) }
        logger.notice("relay publishing from \(configuration.republishFrom.map { "position \($0)" } ?? "the start of the log")", metadata: [
            "relay.name": "\(configuration.name)", "kafka.cluster_id": "\(newCluster)",
            "relay.reason": "\(previous.map { "the Kafka cluster changed from \($0)" } ?? "no checkpoint yet")",
        ])
        let checkpoint = RelayCheckpoint(clusterID: newCluster, position: position)
        try await save(checkpoint, on: connection)
        return checkpoint
    }

    private func save(_ checkpoint: RelayCheckpoint, on connection: PostgresConnection) async throws {
        try connection.ensureOpen(doing: "save the relay's checkpoint")
        let (name, logger) = (configuration.name, self.logger)
        try await abandoning(after: .seconds(5), doing: "save the relay's checkpoint") {
            try await Self.save(checkpoint, relay: name, on: connection, logger: logger)
        }
    }

    private static func save(_ checkpoint: RelayCheckpoint, relay name: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            INSERT INTO relay_checkpoints (relay_name, cluster_id, transaction_id, position, updated_at)
            VALUES (\(name), \(checkpoint.clusterID), \(checkpoint.position.transaction), \(checkpoint.position.position), now())
            ON CONFLICT (relay_name) DO UPDATE SET cluster_id = EXCLUDED.cluster_id,
                transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, updated_at = now()
            """, logger: logger)
    }
}
