import EventLog
import Foundation
import Kafka
import Logging
import Orchestration
import PipelineEngine
import PostgresNIO
import ReadModels
import ServiceLifecycle
import Triggers

/// The `notifier` role (Echo's outbound half): consumes the execution events in a group of its
/// own and reacts to completions — pipeline triggers of other pipelines fire through the trigger
/// intake, whose receipts (keyed by the completed execution) make a redelivered completion start
/// nothing new.
public final class NotifierService: Service {
    let repository: ExecutionRepository
    let intake: TriggerIntake
    let kafka: KafkaConfiguration
    let topicPrefix: String
    let partitions: Int
    let leaseClient: PostgresClient?
    let drainTimeout: Duration
    let logger: Logger

    public init(
        repository: ExecutionRepository, intake: TriggerIntake, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int,
        leaseClient: PostgresClient?, drainTimeout: Duration = .seconds(10), logger: Logger
    ) {
        self.repository = repository
        self.intake = intake
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.leaseClient = leaseClient
        self.drainTimeout = drainTimeout
        self.logger = logger
    }

    public func run() async throws {
        try await ExecutionTopic.consume(
            kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "notifier", concurrency: 16,
            handoff: repository.handoff, leaseClient: leaseClient, drainTimeout: drainTimeout, logger: logger
        ) { event in
            try await self.react(to: event)
            return []
        }
    }

    func react(to event: RecordedEvent) async throws {
        guard event.type == ExecutionEvent.WireType.completed else { return }
        try await firePipelineTriggers(after: event.streamID.id)
    }

    /// Offers the completed execution to the pipeline triggers that name its pipeline.
    func firePipelineTriggers(after executionID: String) async throws {
        guard let view = try await repository.view(executionID), let pipelineID = view.pipelineConfigId else { return }
        let execution = try JSONText(view.jsonText(pretty: false)).decode(JSONValue.self)
        let chain = view.trigger["chain"]?.intValue ?? 0
        let completion = PipelineCompletion(
            executionID: executionID, pipelineID: pipelineID, application: view.application, status: view.status, chain: chain, execution: execution)
        let delivery = Delivery(origin: .pipeline(completion), payload: .object([:]), eventID: UUID().uuidString.lowercased(),
                                dedupeKey: "pipeline/\(executionID)")
        let receipt = try await intake.receive(delivery, body: [], proof: Signatures.Proof(), headers: [:], sender: "notifier", recordUnheard: false)
        if !receipt.duplicate, !receipt.started.isEmpty {
            logger.info("pipeline triggers fired", metadata: [
                "execution.id": "\(executionID)", "executions": "\(receipt.started.compactMap(\.executionID))"])
        }
    }
}
