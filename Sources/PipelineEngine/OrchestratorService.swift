import EventLog
import Kafka
import Logging
import Orchestration
import Pipelines
import PostgresNIO
import ServiceLifecycle

/// The `orchestrator` role: advances executions. For every execution event it derives what
/// follows (``ExecutionPolicy``) and lets the handlers decide, appending their events.
public final class OrchestratorService: Service {
    let repository: ExecutionRepository
    let kafka: KafkaConfiguration
    let topicPrefix: String
    let partitions: Int
    /// Partitions are held by leases in this database (decision 0011); nil: a Kafka consumer group.
    let leaseClient: PostgresClient?
    /// How long a graceful shutdown lets running handlers finish before cancelling them.
    let drainTimeout: Duration
    let logger: Logger

    public init(
        repository: ExecutionRepository, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, leaseClient: PostgresClient? = nil,
        drainTimeout: Duration = .seconds(10), logger: Logger
    ) {
        self.drainTimeout = drainTimeout
        self.repository = repository
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.leaseClient = leaseClient
        self.logger = logger
    }

    public func run() async throws {
        try await ExecutionTopic.consume(
            kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "orchestrator", concurrency: 64,
            handoff: repository.handoff, leaseClient: leaseClient, drainTimeout: drainTimeout, logger: logger
        ) { event in
            try await self.advance(after: event)
            return []
        }
    }

    /// Carries out the orchestrator's actions for one event (``ExecutionPolicy``).
    func advance(after recorded: RecordedEvent) async throws {
        let executionID = recorded.streamID.id
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        let history = try await repository.events(of: executionID, atLeast: recorded.streamVersion)
        guard history.count >= recorded.streamVersion else { return }
        let stateAtEvent = ExecutionState(Array(history.prefix(Int(recorded.streamVersion))))
        let metadata = EventMetadata(
            correlationID: recorded.metadata.correlationID ?? executionID, causationID: recorded.id.uuidString.lowercased(),
            actor: "orchestrator", source: "orchestrator")
        let gate = ConcurrencyGate(store: repository.store)
        for action in ExecutionPolicy.actions(after: event, state: stateAtEvent) where action.role == .orchestrator {
            switch action {
            case .decide(let message):
                try await repository.handle(message, executionID: executionID, metadata: metadata,
                                            context: ExpressionScope.decisionContext(executionID: executionID))
            case .startWithSlot:
                // The state acted on is the execution's now, not at the event: a start delivered
                // again (a republished log) for an execution that started or ended long ago must
                // not take a slot.
                let now = ExecutionState(try await repository.events(of: executionID))
                guard now.status == .notStarted || now.status == .buffered else { continue }
                let admitted = try await gate.admit(executionID, triggeredAt: recorded.position, of: stateAtEvent.pipeline, metadata: metadata)
                var context = ExpressionScope.decisionContext(executionID: executionID)
                context.runningExecutionsOfPipeline = admitted ? 0 : Int.max
                try await repository.handle(.startExecution, executionID: executionID, metadata: metadata, context: context)
            case .releaseSlot:
                try await gate.releaseAndStartNext(after: executionID, pipeline: stateAtEvent.pipeline, repository: repository, metadata: metadata)
            case let .wakeParent(parentID, ref):
                try await wakeParent(parentID, stage: ref, childID: executionID, metadata: metadata)
            case .cancelChild(let ref):
                try await cancelChild(of: ref, in: stateAtEvent, executionID: executionID, cause: recorded)
            case .runWork, .stopWork, .setTimer:
                break
            }
        }
    }

    /// The parent is taken from the child's trigger, which a client's trigger body could name
    /// too: only a parent whose stage recorded this very child is woken.
    private func wakeParent(_ parentID: String, stage ref: String, childID: String, metadata: EventMetadata) async throws {
        let stage = try await repository.load(parentID).stage(ref)
        guard stage.status == .running, stage.polls > 0, !stage.pollDue, stage.outputs["executionId"]?.stringValue == childID else { return }
        try await repository.handle(.pollDue(refID: ref, attempt: stage.attempt, poll: stage.polls - 1), executionID: parentID, metadata: metadata)
    }

    /// A child pipeline stage that ended without success (canceled, timed out, failed) cancels
    /// its child execution; a child that already completed stays as it is.
    private func cancelChild(of ref: String, in state: ExecutionState, executionID: String, cause: RecordedEvent) async throws {
        guard let child = state.stage(ref).outputs["executionId"]?.stringValue else { return }
        try await repository.handle(
            .cancel(by: "execution \(executionID)", reason: "its pipeline stage \(ref) ended \(state.stage(ref).status.rawValue)"),
            executionID: child,
            metadata: EventMetadata(correlationID: child, causationID: cause.id.uuidString.lowercased(), actor: "orchestrator", source: "orchestrator"))
    }
}

/// The Kafka topic of execution events, consumed by each role in a group of its own.
public enum ExecutionTopic {
    /// Consumes the execution events as `<prefix><role>` until graceful shutdown, together with
    /// the events this process appends to partitions the role owns (``LocalHandoff``).
    public static func consume(
        kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, role: String, concurrency: Int, handoff: LocalHandoff,
        leaseClient: PostgresClient?, drainTimeout: Duration, logger: Logger, _ handle: @escaping LaneHandler
    ) async throws {
        let leases = leaseClient.map { PartitionLeases(client: $0, group: topicPrefix + role, logger: logger) }
        // A broker that is away or slow (a lost group membership, a topic that cannot be created
        // yet) stops this consumer, not the role: it starts over after a back-off, and whatever it
        // had not committed comes again.
        do {
            try await retrying(initial: .seconds(1), maximum: .seconds(30), onFailure: { error, delay in
                logger.warning("consuming execution events failed; starting over", metadata: [
                    "role": "\(role)", "error": "\(error)", "retry.delay": "\(delay)",
                ])
            }) {
                try await consumeOnce(kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: role, concurrency: concurrency,
                                      handoff: handoff, leases: leases, drainTimeout: drainTimeout, logger: logger, handle)
            }
        } catch is CancellationError {
            // Cancelled outright: the role is stopping.
        }
    }

    private static func consumeOnce(
        kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, role: String, concurrency: Int, handoff: LocalHandoff,
        leases: PartitionLeases?, drainTimeout: Duration, logger: Logger, _ handle: @escaping LaneHandler
    ) async throws {
        let topic = topicPrefix + ExecutionRepository.category
        // Created up front so that the consumer is assigned partitions before the first event.
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        do {
            try await producer.createTopic(topic, partitions: partitions)
        } catch {
            await producer.shutdown()
            throw error
        }
        await producer.shutdown()
        // With leases, partitions are taken by leases in PostgreSQL and the consumer joins no
        // group (decision 0011); without, the group's coordinator assigns them.
        let consumer = leases == nil
            ? try KafkaConsumer(configuration: kafka, groupID: topicPrefix + role, topics: [topic], logger: logger)
            : try KafkaConsumer(configuration: kafka, groupID: topicPrefix + role, logger: logger)
        let inbox = handoff.open(role: role)
        defer { handoff.close(inbox) }
        do {
            try await consume(consumer, topic: topic, partitions: partitions, concurrency: concurrency, inbox: inbox, leases: leases,
                              drainTimeout: drainTimeout, logger: logger, handle)
        } catch {
            await consumer.shutdown()
            throw error
        }
        await consumer.shutdown()
    }

    private static func consume(
        _ consumer: KafkaConsumer, topic: String, partitions: Int, concurrency: Int, inbox: LocalInbox, leases: PartitionLeases?,
        drainTimeout: Duration, logger: Logger, _ handle: @escaping LaneHandler
    ) async throws {
        let partitionCount = leases == nil ? partitions : max(partitions, (try? await consumer.partitionCount(of: topic)) ?? partitions)
        // Graceful shutdown stops the consumer's intake and lets it drain (bounded by
        // `drainTimeout`); the partitions stay held until then, and are given back after.
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let leases {
                    // The in-process handoff follows the leases the moment they change (not at the
                    // next look), so a restarted role takes its own events in process at once.
                    group.addTask {
                        await leases.follow(consumer, topic: topic, partitions: partitionCount) { held in
                            logger.info("partitions assigned", metadata: [
                                "role": "\(inbox.role)", "kafka.topic": "\(topic)", "kafka.partitions": "\(held.sorted())",
                            ])
                            inbox.update(held.isEmpty ? nil : LocalInbox.Ownership(topic: topic, partitionCount: partitionCount, partitions: held))
                        }
                    }
                } else {
                    group.addTask { try await followAssignment(of: consumer, topic: topic, into: inbox, logger: logger) }
                }
                defer { group.cancelAll() }
                try await ExecutionEventConsumer(
                    consumer: consumer, concurrency: concurrency, logger: logger, inbox: inbox, leases: leases, drainTimeout: drainTimeout
                ).run(handle)
            }
        } catch is CancellationError {
            // Cancelled outright: offsets of unfinished events stay unstored; they come again.
        }
    }

    /// Keeps the inbox's idea of the partitions this member owns current. Between a rebalance and
    /// the next look (at most `interval`), an in-process event may be handled here while its Kafka
    /// copy goes to the new owner: the same at-least-once as any rebalance.
    static func followAssignment(
        of consumer: KafkaConsumer, topic: String, into inbox: LocalInbox, interval: Duration = .milliseconds(250), logger: Logger
    ) async throws {
        var partitionCount = 0
        var countCheckedAt = ContinuousClock.now
        var reported: Set<Int32>?
        while !Task.isCancelled {
            let owned = consumer.assignment()[topic] ?? []
            if owned != reported {
                logger.info("partitions assigned", metadata: [
                    "role": "\(inbox.role)", "kafka.topic": "\(topic)", "kafka.partitions": "\(owned.sorted())",
                ])
                reported = owned
            }
            if !owned.isEmpty, partitionCount == 0 || ContinuousClock.now - countCheckedAt > .seconds(30) {
                do {
                    partitionCount = try await consumer.partitionCount(of: topic)
                    countCheckedAt = .now
                } catch {
                    logger.debug("cannot read the partition count; events go through Kafka only", metadata: ["error": "\(error)"])
                }
            }
            inbox.update(owned.isEmpty || partitionCount == 0 ? nil : LocalInbox.Ownership(topic: topic, partitionCount: partitionCount, partitions: owned))
            try await Task.sleep(for: interval)
        }
    }
}
