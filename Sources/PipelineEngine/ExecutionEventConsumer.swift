import EventLog
import Kafka
import Logging
import PostgresEventStore
import ServiceLifecycle

/// Work a handler started that outlasts it, such as a stage's script: the execution's lane moves
/// on to its next event while this runs, and the message's offset waits for it.
public typealias DetachedWork = @Sendable () async -> Void

/// How a role reacts to one execution event; what it returns runs beyond the lane.
public typealias LaneHandler = @Sendable (RecordedEvent) async throws -> [DetachedWork]

/// Consumes one role's view of the execution events, one lane per execution: the events of an
/// execution are handled in order and one at a time, different executions concurrently (up to
/// `concurrency` lanes at once). Both copies of an event this process appended, the one handed
/// over in process and the one from Kafka, go through the same lane, so the second finds the
/// first handled and only waits for its work before the offset moves.
///
/// Offsets move only below the oldest message whose handling (and detached work) is unfinished,
/// so a crash re-delivers whatever was not finished. On graceful shutdown the consumer stops
/// taking messages, lets running lanes and work finish for up to `drainTimeout`, then cancels what
/// is left (scripts and webhook calls stop cooperatively) and stores the offsets reached.
struct ExecutionEventConsumer {
    let consumer: KafkaConsumer
    let concurrency: Int
    let logger: Logger
    /// Events this process appended, handed over without the trip through Kafka.
    var inbox: LocalInbox?
    /// Where handled offsets are recorded: the partition leases in PostgreSQL (and Kafka in the
    /// background, for its tools), or the consumer group in Kafka.
    var leases: PartitionLeases?
    var drainTimeout: Duration = .seconds(10)
    /// Messages taken from Kafka and not finished, at most: back-pressure on the broker.
    var maximumInFlight: Int { max(1_024, concurrency * 16) }

    func run(_ handle: @escaping LaneHandler) async throws {
        let inFlight = SharedCount()
        let (items, intake) = AsyncStream.makeStream(of: LaneIntake.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The sources stop at graceful shutdown (or a broker's failure); the lanes and the
            // detached work then drain.
            group.addTask {
                defer { intake.finish() }
                do {
                    try await cancelWhenGracefulShutdown {
                        try await withThrowingDiscardingTaskGroup { sources in
                            if let inbox {
                                sources.addTask {
                                    for await event in inbox.events { intake.yield(.inProcess(event)) }
                                }
                            }
                            sources.addTask {
                                for try await message in consumer.messages {
                                    while inFlight.value >= maximumInFlight { try await Task.sleep(for: .milliseconds(1)) }
                                    inFlight.add(1)
                                    intake.yield(.kafka(message))
                                }
                            }
                        }
                    }
                } catch is CancellationError {}
            }
            await LaneDispatcher(concurrency: concurrency, drainTimeout: drainTimeout, logger: logger)
                .run(items, inFlight: inFlight, store: store, handle)
            try await group.waitForAll()
        }
    }

    private func store(_ commit: KafkaMessage) async {
        do {
            if let leases {
                try await leases.store(topic: commit.topic, partition: commit.partition, next: commit.offset + 1)
                consumer.commitInBackground(commit)
            } else {
                try await consumer.commit(commit)
            }
        } catch {
            // The events are handled; whoever reads the partition next may see them again.
            logger.warning("storing an offset failed; its events may come again", metadata: [
                "kafka.topic": "\(commit.topic)", "kafka.partition": "\(commit.partition)", "error": "\(error)",
            ])
        }
    }
}
