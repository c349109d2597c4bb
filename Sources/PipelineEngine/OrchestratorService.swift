import EventLog
import Kafka
import Logging
import Orchestration
import ServiceLifecycle

/// The `orchestrator` role: advances executions. For every execution event it derives what
/// follows (``ExecutionPolicy``) and lets the handlers decide, appending their events.
public final class OrchestratorService: Service {
    let repository: ExecutionRepository
    let kafka: KafkaConfiguration
    let topicPrefix: String
    let partitions: Int
    let logger: Logger

    public init(repository: ExecutionRepository, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, logger: Logger) {
        self.repository = repository
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.logger = logger
    }

    public func run() async throws {
        try await ExecutionTopic.consume(
            kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "orchestrator", concurrency: 16, logger: logger
        ) { event in
            try await self.advance(after: event)
        }
    }

    func advance(after recorded: RecordedEvent) async throws {
        let executionID = recorded.streamID.id
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        let history = try await repository.events(of: executionID)
        guard history.count >= recorded.streamVersion else { return }
        let stateAtEvent = ExecutionState(Array(history.prefix(Int(recorded.streamVersion))))
        let metadata = EventMetadata(
            correlationID: recorded.metadata.correlationID ?? executionID, causationID: recorded.id.uuidString.lowercased(),
            actor: "orchestrator", source: "orchestrator")
        let context = ExpressionScope.decisionContext(executionID: executionID)
        for message in ExecutionPolicy.reactions(to: event, after: stateAtEvent) where message.isForOrchestrator {
            try await repository.handle(message, executionID: executionID, metadata: metadata, context: context)
        }
    }
}

extension ExecutionMessage {
    var isForOrchestrator: Bool {
        switch self {
        case .runStage, .cancelStageWork: false
        // Waiting executions are started by the concurrency queue, which needs a read model.
        case .startWaitingExecutions: false
        default: true
        }
    }
}

/// The Kafka topic of execution events, consumed by each role in a group of its own.
enum ExecutionTopic {
    /// Consumes the execution events as `<prefix><role>` until graceful shutdown.
    static func consume(
        kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, role: String, concurrency: Int, logger: Logger,
        _ handle: @escaping @Sendable (RecordedEvent) async throws -> Void
    ) async throws {
        let topic = topicPrefix + ExecutionRepository.category
        // Created up front so that the consumer is assigned partitions before the first event.
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        try await producer.createTopic(topic, partitions: partitions)
        producer.close()
        let consumer = try KafkaConsumer(configuration: kafka, groupID: topicPrefix + role, topics: [topic], logger: logger)
        defer { consumer.close() }
        do {
            try await cancelWhenGracefulShutdown {
                try await ExecutionEventConsumer(consumer: consumer, concurrency: concurrency, logger: logger).run(handle)
            }
        } catch is CancellationError {
            // Graceful shutdown: offsets of unfinished events stay uncommitted; they come again.
        }
    }
}
