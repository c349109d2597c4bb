import Foundation
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO

/// Partition ownership for one consumer group by leases in PostgreSQL (migration 0011, decision
/// 0011). Each member heartbeats; every `interval` it renews its leases and moves toward its fair
/// share (the partitions divided by the live members, rounded up): it gives back what it holds
/// beyond that and takes free or expired partitions below it. A member killed with `kill -9`
/// leaves leases that expire after `ttl`, and the others take its partitions from the offsets it
/// stored. Offsets are written only by the partition's current owner.
public struct PartitionLeases: Sendable {
    public let client: PostgresClient
    public let group: String
    public let member = UUID()
    public var ttl: Duration = .seconds(10)
    public var interval: Duration = .seconds(1)
    let logger: Logger

    public init(client: PostgresClient, group: String, logger: Logger) {
        self.client = client
        self.group = group
        self.logger = logger
    }

    /// What one tick changed: partitions taken (with where to begin) and partitions let go.
    struct Change: Sendable {
        var taken: [(partition: Int32, offset: Int64?)] = []
        var lost: [Int32] = []
    }

    /// One round: heartbeat, renew, then give back or take toward the fair share.
    func tick(topic: String, partitions: Int, holding: Set<Int32>) async throws -> Change {
        let seconds = Double(ttl.components.seconds)
        var change = Change()
        do {
            try await client.query("""
                INSERT INTO consumer_members (group_name, member, expires_at) VALUES (\(group), \(member), now() + make_interval(secs => \(seconds)))
                ON CONFLICT (group_name, member) DO UPDATE SET expires_at = excluded.expires_at
                """, logger: logger)
            try await client.query("DELETE FROM consumer_members WHERE group_name = \(group) AND expires_at < now()", logger: logger)
            var renewed: Set<Int32> = []
            for try await partition in try await client.query("""
                UPDATE partition_leases SET expires_at = now() + make_interval(secs => \(seconds))
                 WHERE group_name = \(group) AND topic = \(topic) AND owner = \(member)
                RETURNING partition
                """, logger: logger).decode(Int32.self) {
                renewed.insert(partition)
            }
            // Held here but no longer ours (this member stalled past its lease): stop at once.
            change.lost = holding.subtracting(renewed).sorted()
            var members = 1
            for try await count in try await client.query(
                "SELECT count(*)::int FROM consumer_members WHERE group_name = \(group) AND expires_at >= now()", logger: logger
            ).decode(Int.self) { members = max(1, count) }
            let share = (partitions + members - 1) / members
            if renewed.count > share {
                let extra = Array(renewed.sorted().suffix(renewed.count - share))
                try await client.query("""
                    UPDATE partition_leases SET owner = NULL, expires_at = NULL
                     WHERE group_name = \(group) AND topic = \(topic) AND owner = \(member) AND partition = ANY(\(extra))
                    """, logger: logger)
                change.lost += extra.filter { holding.contains($0) }
            } else if renewed.count < share {
                for try await (partition, offset) in try await client.query("""
                    UPDATE partition_leases SET owner = \(member), expires_at = now() + make_interval(secs => \(seconds))
                     WHERE (group_name, topic, partition) IN (
                         SELECT group_name, topic, partition FROM partition_leases
                          WHERE group_name = \(group) AND topic = \(topic) AND partition < \(partitions)
                            AND (owner IS NULL OR expires_at < now())
                          ORDER BY partition LIMIT \(share - renewed.count) FOR UPDATE SKIP LOCKED)
                    RETURNING partition, next_offset
                    """, logger: logger).decode((Int32, Int64?).self) {
                    change.taken.append((partition, offset))
                }
            }
            // Renewed but not read yet (taken in a round whose assignment failed): read them now.
            for partition in renewed.subtracting(holding) where !change.taken.contains(where: { $0.partition == partition }) {
                change.taken.append((partition, try await storedOffset(topic: topic, partition: partition)))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "renew the partition leases of \(group)")
        }
        return change
    }

    /// A lease row for every partition of `topic` (once per start: rows are never removed).
    func prepare(topic: String, partitions: Int) async throws {
        do {
            try await client.query("""
                INSERT INTO partition_leases (group_name, topic, partition)
                SELECT \(group), \(topic), p FROM generate_series(0, \(partitions - 1)) AS p
                ON CONFLICT DO NOTHING
                """, logger: logger)
        } catch {
            throw DatabaseError.wrapping(error, doing: "prepare the partition leases of \(group)")
        }
    }

    private func storedOffset(topic: String, partition: Int32) async throws -> Int64? {
        var offset: Int64?
        for try await value in try await client.query("""
            SELECT next_offset FROM partition_leases WHERE group_name = \(group) AND topic = \(topic) AND partition = \(partition)
            """, logger: logger).decode(Int64?.self) { offset = value }
        return offset
    }

    /// Records that everything before `next` was handled, if this member still owns the partition.
    func store(topic: String, partition: Int32, next: Int64) async throws {
        do {
            try await client.query("""
                UPDATE partition_leases SET next_offset = \(next)
                 WHERE group_name = \(group) AND topic = \(topic) AND partition = \(partition) AND owner = \(member)
                   AND (next_offset IS NULL OR next_offset < \(next))
                """, logger: logger)
        } catch {
            throw DatabaseError.wrapping(error, doing: "store the offset of \(topic)[\(partition)]")
        }
    }

    /// Gives everything back at once (graceful shutdown), so others need not wait for the leases to expire.
    func leave() async {
        _ = try? await client.query(
            "UPDATE partition_leases SET owner = NULL, expires_at = NULL WHERE group_name = \(group) AND owner = \(member)", logger: logger)
        _ = try? await client.query("DELETE FROM consumer_members WHERE group_name = \(group) AND member = \(member)", logger: logger)
    }

    /// Keeps `consumer`'s assignment to the partitions this member holds, until cancelled; then
    /// gives them back. `changed` hears what is held after every change, at once.
    func follow(_ consumer: KafkaConsumer, topic: String, partitions: Int, changed: @Sendable (Set<Int32>) -> Void = { _ in }) async {
        var holding: Set<Int32> = []
        var prepared = false
        while !Task.isCancelled {
            do {
                if !prepared {
                    try await prepare(topic: topic, partitions: partitions)
                    prepared = true
                }
                let change = try await tick(topic: topic, partitions: partitions, holding: holding)
                if !change.lost.isEmpty {
                    // Handed over in process no longer, before the consumer lets them go.
                    holding.subtract(change.lost)
                    changed(holding)
                    try await consumer.unassign(topic: topic, partitions: change.lost)
                }
                if !change.taken.isEmpty {
                    try await consumer.assign(change.taken.map { KafkaConsumer.Start(topic: topic, partition: $0.partition, offset: $0.offset) })
                    holding.formUnion(change.taken.map(\.partition))
                    changed(holding)
                }
            } catch {
                if Task.isCancelled { break }
                // PostgreSQL or the brokers away: keep reading what is held; the leases outlive a
                // short outage, and a long one lets others take over.
                logger.warning("renewing partition leases failed", metadata: ["consumer.group": "\(group)", "error": "\(error)"])
            }
            do { try await Task.sleep(for: interval) } catch { break }
        }
        // Shut down: give the partitions back now rather than after the leases expire. A task of
        // its own, as this one is cancelled.
        await Task { await self.leave() }.value
    }
}
