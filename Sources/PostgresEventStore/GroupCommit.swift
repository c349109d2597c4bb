import EventLog
import Logging
import PostgresNIO
import Synchronization

/// Group commit (decision 0012): appends made while earlier ones are committing wait and are then
/// written together — one statement, one commit — so concurrent handlers share the cost of a
/// durable commit instead of paying it one by one. A lone append goes out at once: group commit
/// adds no latency when there is nothing to group.
///
/// Each append keeps its own expected-version check (`append_batch`, migration 0012): one that
/// conflicts writes nothing and its caller gets the conflict, the others commit.
public final class GroupCommit: Sendable {
    /// Batches committing at once; more appends wait for one of them to finish.
    public let maximumInFlight: Int
    /// Appends in one batch.
    public let maximumAppends: Int
    /// Events in one batch, all appends together.
    public let maximumEvents: Int

    struct Pending: Sendable {
        let stream: StreamID
        let expected: ExpectedVersion
        let events: [NewEvent]
        let reply: CheckedContinuation<Outcome, any Error>
    }

    /// One append's part of a batch's answer.
    enum Outcome: Sendable {
        case stored(positions: [Int64], version: Int64)
        case conflict(detail: String?)
        /// Append alone: the batch held only this append, or an event id of the batch is stored
        /// already (a retry, or a reused id) and the batch wrote nothing; alone, the append tells
        /// the two apart.
        case alone
    }

    private struct State {
        var waiting: [Pending] = []
        var inFlight = 0
        var commits = 0
        var appends = 0
        var committing = Duration.zero
    }

    /// Shared commits made so far, the appends they carried and the time their statements took.
    public var statistics: (commits: Int, appends: Int, committing: Duration) { state.withLock { ($0.commits, $0.appends, $0.committing) } }

    private let state = Mutex(State())

    public init(maximumInFlight: Int = 2, maximumAppends: Int = 48, maximumEvents: Int = 2_000) {
        self.maximumInFlight = max(1, maximumInFlight)
        self.maximumAppends = max(1, maximumAppends)
        self.maximumEvents = max(1, maximumEvents)
    }

    /// Appends through a shared commit; throws what the batch's statement threw.
    func append(_ stream: StreamID, expected: ExpectedVersion, events: [NewEvent], client: PostgresClient, logger: Logger) async throws -> Outcome {
        try await withCheckedThrowingContinuation { reply in
            let batch: [Pending]? = state.withLock { state in
                state.waiting.append(Pending(stream: stream, expected: expected, events: events, reply: reply))
                guard state.inFlight < maximumInFlight else { return nil }
                state.inFlight += 1
                return take(&state)
            }
            if let batch {
                Task { await self.drive(batch, client: client, logger: logger) }
            }
        }
    }

    /// The oldest waiting appends, up to the batch limits (always at least one).
    private func take(_ state: inout State) -> [Pending] {
        var count = 0
        var events = 0
        for pending in state.waiting {
            if count > 0 && (count == maximumAppends || events + pending.events.count > maximumEvents) { break }
            count += 1
            events += pending.events.count
        }
        state.commits += 1
        state.appends += count
        defer { state.waiting.removeFirst(count) }
        return Array(state.waiting.prefix(count))
    }

    /// Commits `batch`, then whatever waited meanwhile, until nothing waits.
    private func drive(_ first: [Pending], client: PostgresClient, logger: Logger) async {
        var batch = first
        while true {
            let began = ContinuousClock.now
            await commit(batch, client: client, logger: logger)
            let took = ContinuousClock.now - began
            let next: [Pending]? = state.withLock { state in
                state.committing += took
                if state.waiting.isEmpty {
                    state.inFlight -= 1
                    return nil
                }
                return take(&state)
            }
            guard let next else { return }
            batch = next
        }
    }

    private func commit(_ batch: [Pending], client: PostgresClient, logger: Logger) async {
        // Nothing to share: the single-append path is cheaper than the batch function.
        if batch.count == 1 {
            batch[0].reply.resume(returning: .alone)
            return
        }
        let events = batch.flatMap(\.events)
        let query: PostgresQuery = """
            SELECT out_append, out_position, out_version, out_error, out_detail FROM append_batch(
                \(batch.map(\.stream.description)), \(batch.map { $0.expected.requiredCurrentVersion ?? -1 }), \(batch.map { Int32($0.events.count) }),
                \(events.map(\.id)), \(events.map(\.type)), \(events.map { Int32(clamping: $0.schemaVersion) }),
                \(events.map(\.payload.text)), \(events.map { EventEnvelopeCodec.encodeMetadata($0.metadata) }))
            """
        var outcomes = [Outcome?](repeating: nil, count: batch.count)
        do {
            let rows = try await client.query(query, logger: logger).decode((Int32, Int64?, Int64?, String?, String?).self)
            for try await (index, position, version, error, detail) in rows {
                let slot = Int(index) - 1
                guard batch.indices.contains(slot) else { continue }
                switch error {
                case "conflict": outcomes[slot] = .conflict(detail: detail)
                default:
                    guard let position, let version else { continue }
                    if case .stored(var positions, let highest) = outcomes[slot] {
                        positions.append(position)
                        outcomes[slot] = .stored(positions: positions, version: max(highest, version))
                    } else {
                        outcomes[slot] = .stored(positions: [position], version: version)
                    }
                }
            }
        } catch let error as PSQLError where error.sqlState == "23505" {
            for pending in batch { pending.reply.resume(returning: .alone) }
            return
        } catch {
            for pending in batch { pending.reply.resume(throwing: error) }
            return
        }
        for (pending, outcome) in zip(batch, outcomes) {
            if let outcome {
                pending.reply.resume(returning: outcome)
            } else {
                pending.reply.resume(throwing: DatabaseError(.query, "a shared commit returned nothing for an append to \(pending.stream)"))
            }
        }
    }
}
