import Logging
import PostgresNIO

/// Checks the events' hash chains (migration 0008): every event's stored hash must be the hash of
/// its content and of the stored hash before it in its stream, and stream versions must run
/// 1, 2, 3 … without a hole. The whole check is one query in PostgreSQL, reading each stream in
/// version order through its unique index.
///
/// What a chain cannot show: events removed from the end of a stream leave an intact, shorter
/// chain. The relay's Kafka topics and the read models' checkpoints remember further than that.
public struct ChainVerifier: Sendable {
    public struct BrokenLink: Sendable, Hashable, CustomStringConvertible {
        public let streamID: String
        public let streamVersion: Int64
        public let position: Int64
        public let problem: String

        public var description: String { "stream \(streamID) version \(streamVersion) (position \(position)): \(problem)" }
    }

    public struct Report: Sendable {
        public let events: Int64
        public let streams: Int64
        /// The broken links found, in log position order (at most the limit asked for); the first
        /// is where the log stops being trustworthy.
        public let broken: [BrokenLink]
    }

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func verify(stream: String? = nil, limit: Int = 20) async throws -> Report {
        do {
            var broken: [BrokenLink] = []
            let rows = try await client.query("""
                WITH chained AS (
                    SELECT position, stream_id, stream_version, hash,
                           event_hash(lag(hash) OVER w, event_id, stream_id, stream_version, event_type, schema_version,
                                      recorded_at, payload, metadata) AS expected,
                           coalesce(lag(stream_version) OVER w, 0) AS previous_version
                      FROM events
                     WHERE \(stream)::text IS NULL OR stream_id = \(stream)
                    WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)
                )
                SELECT stream_id, stream_version, position,
                       CASE WHEN stream_version <> previous_version + 1
                            THEN 'the version before it is ' || previous_version || ': events are missing'
                            ELSE 'its stored hash does not match its content and the hash before it: changed, or its predecessor was'
                       END
                  FROM chained
                 WHERE hash IS DISTINCT FROM expected OR stream_version <> previous_version + 1
                 ORDER BY position
                 LIMIT \(limit)
                """, logger: logger)
            for try await (streamID, version, position, problem) in rows.decode((String, Int64, Int64, String).self) {
                broken.append(BrokenLink(streamID: streamID, streamVersion: version, position: position, problem: problem))
            }
            var counts: (Int64, Int64) = (0, 0)
            for try await row in try await client.query("""
                SELECT count(*), count(DISTINCT stream_id) FROM events WHERE \(stream)::text IS NULL OR stream_id = \(stream)
                """, logger: logger).decode((Int64, Int64).self) {
                counts = row
            }
            return Report(events: counts.0, streams: counts.1, broken: broken)
        } catch {
            throw DatabaseError.wrapping(error, doing: "verify the event chains")
        }
    }
}
