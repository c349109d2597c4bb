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
        let consumer = try await ExecutionTopic.consumer(kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "orchestrator", logger: logger)
        defer { consumer.close() }
        do {
            try await cancelWhenGracefulShutdown {
                try await ExecutionEventConsumer(consumer: consumer, concurrency: 16, logger: self.logger).run { event in
                    try await self.advance(after: event)
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: offsets of unfinished events stay uncommitted; they come again.
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
        for message in ExecutionPolicy.reactions(to: event, after: stateAtEvent) where message.isForOrchestrator {
            try await repository.handle(message, executionID: executionID, metadata: metadata)
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

/// The Kafka topic of execution events, and consumers of it for each role.
enum ExecutionTopic {
    static func consumer(kafka: KafkaConfiguration, topicPrefix: String, partitions: Int, role: String, logger: Logger) async throws -> KafkaConsumer {
        let topic = topicPrefix + ExecutionRepository.category
        // Created up front so that the consumer is assigned partitions before the first event.
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        try await producer.createTopic(topic, partitions: partitions)
        producer.close()
        return try KafkaConsumer(configuration: kafka, groupID: topicPrefix + role, topics: [topic], logger: logger)
    }
}
