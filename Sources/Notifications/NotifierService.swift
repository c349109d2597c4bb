import Access
import AsyncHTTPClient
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
/// own, one lane per execution, and for each event
/// - publishes its CDEvent (v0.4.1) to `<prefix>cdevents` with the CloudEvents Kafka binding;
/// - sends the notifications it calls for (``NotificationPlanner``), each exactly once as far as
///   its receiver can tell: a notification whose outcome (`notification.sent` or
///   `notification.failed`, on the stream of its key) is recorded is not sent again, and one sent
///   again after a crash carries the same idempotency key (or Message-ID); failures are retried
///   with exponential back-off, and the last one is recorded for the execution's view;
/// - on completion, offers the execution to the pipeline triggers that follow it, through a
///   receipt keyed by the execution.
public final class NotifierService: Service {
    public struct Retry: Sendable {
        public var attempts: Int
        public var initialDelay: Duration
        public var maximumDelay: Duration

        public init(attempts: Int = 5, initialDelay: Duration = .seconds(1), maximumDelay: Duration = .seconds(60)) {
            self.attempts = attempts
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
        }
    }

    public static let sentType = "notification.sent"
    public static let failedType = "notification.failed"

    let repository: ExecutionRepository
    let intake: TriggerIntake
    let kafka: KafkaConfiguration
    let topicPrefix: String
    let partitions: Int
    let leaseClient: PostgresClient?
    let channels: NotificationChannels.Configuration
    let retry: Retry
    let drainTimeout: Duration
    let logger: Logger

    public init(
        repository: ExecutionRepository, intake: TriggerIntake, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int,
        leaseClient: PostgresClient?, channels: NotificationChannels.Configuration = .init(), retry: Retry = Retry(),
        drainTimeout: Duration = .seconds(10), logger: Logger
    ) {
        self.repository = repository
        self.intake = intake
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.leaseClient = leaseClient
        self.channels = channels
        self.retry = retry
        self.drainTimeout = drainTimeout
        self.logger = logger
    }

    public var cdeventsTopic: String { topicPrefix + "cdevents" }

    public func run() async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        defer { Task { try? await http.shutdown() } }
        do {
            try? await producer.createTopic(cdeventsTopic, partitions: partitions)
            let sender = Sender(channels: NotificationChannels(client: http, configuration: channels), store: repository.eventStore, retry: retry, logger: logger)
            try await ExecutionTopic.consume(
                kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "notifier", concurrency: 32,
                handoff: repository.handoff, leaseClient: leaseClient, drainTimeout: drainTimeout, logger: logger
            ) { event in
                try await self.react(to: event, producer: producer, sender: sender)
            }
        } catch {
            await producer.shutdown()
            throw error
        }
        await producer.shutdown()
    }

    /// What one execution event calls for; the sends run beyond the execution's lane.
    func react(to recorded: RecordedEvent, producer: KafkaProducer, sender: Sender) async throws -> [DetachedWork] {
        let executionID = recorded.streamID.id
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        let history = try await repository.events(of: executionID, atLeast: recorded.streamVersion)
        guard history.count >= recorded.streamVersion else { return [] }
        let state = ExecutionState(Array(history.prefix(Int(recorded.streamVersion))))
        let eventID = recorded.id.uuidString.lowercased()
        let source = "/topsail/\(state.pipeline.application ?? "-")"
        let url = channels.publicURL.map { "\($0)/pipelines/\(executionID)" }
        let cdevent = CDEvents.event(for: event, id: eventID, executionID: executionID, state: state, time: recorded.recordedAt, source: source, url: url)
        if let cdevent {
            // Published before the offset moves: a redelivery publishes the same event (same id) again.
            try await producer.send([KafkaOutgoingMessage(
                topic: cdeventsTopic, key: Array(executionID.utf8), value: Array(try JSONText(encoding: cdevent.data).text.utf8),
                headers: [
                    KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", cdevent.id), KafkaHeader("ce_source", cdevent.source),
                    KafkaHeader("ce_type", cdevent.type), KafkaHeader("ce_subject", cdevent.subject),
                    KafkaHeader("ce_time", cdevent.time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
                    KafkaHeader("content-type", "application/json"),
                ])])
        }
        // The execution as the API shows it, read once for what needs it.
        var view: ExecutionView?
        if case .completed = event {
            view = try await repository.view(executionID)
            if let view { try await firePipelineTriggers(after: view) }
        }
        var applicationNotifications: [JSONValue] = []
        if let application = state.pipeline.application {
            applicationNotifications = try await ApplicationStore(store: repository.eventStore).documents.latest(application)?.document["notifications"]?.arrayValue ?? []
        }
        let planned = NotificationPlanner.plan(event, eventID: eventID, executionID: executionID, state: state, applicationNotifications: applicationNotifications)
        guard !planned.isEmpty else { return [] }
        if view == nil { view = try await repository.view(executionID) }
        let execution = try view.map { try JSONText($0.jsonText(pretty: false)).decode(JSONValue.self) } ?? .null
        return planned.map { notification in { await sender.deliver(notification, execution: execution, cdevent: cdevent) } }
    }

    /// Offers the completed execution to the pipeline triggers that name its pipeline.
    func firePipelineTriggers(after view: ExecutionView) async throws {
        let executionID = view.id
        guard let pipelineID = view.pipelineConfigId else { return }
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

    /// Sends notifications and records each one's outcome.
    struct Sender: Sendable {
        let channels: NotificationChannels
        let store: any EventStore
        let retry: Retry
        let logger: Logger

        static func stream(_ notification: PlannedNotification) throws -> StreamID {
            try StreamID(category: "notification", id: notification.key)
        }

        func deliver(_ notification: PlannedNotification, execution: JSONValue, cdevent: CDEvents.Event?) async {
            do {
                let stream = try Self.stream(notification)
                // Sent (or given up on) before: a redelivered event sends nothing again.
                guard try await store.readStream(stream, from: 1, direction: .forward, limit: 1).isEmpty else { return }
                var delay = retry.initialDelay
                var attempt = 0
                while true {
                    attempt += 1
                    let failure: SendFailure?
                    do {
                        try await channels.send(notification, execution: execution, cdevent: cdevent)
                        failure = nil
                    } catch {
                        failure = error
                    }
                    guard let failure else {
                        try await record(NotifierService.sentType, notification, attempts: attempt, error: nil, stream: stream)
                        return
                    }
                    guard failure.retriable, attempt < retry.attempts, !Task.isCancelled else {
                        logger.warning("a notification could not be sent", metadata: [
                            "execution.id": "\(notification.executionID)", "notification.type": "\(notification.type)",
                            "notification.when": "\(notification.when)", "attempts": "\(attempt)", "error": "\(failure.description)"])
                        try await record(NotifierService.failedType, notification, attempts: attempt, error: failure.description, stream: stream)
                        return
                    }
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, retry.maximumDelay)
                }
            } catch {
                // Cancelled by a shutdown, or the log away: the event comes again and so does this.
                logger.debug("a notification's delivery stopped; it is tried again when its event comes again", metadata: ["error": "\(error)"])
            }
        }

        private func record(_ type: String, _ notification: PlannedNotification, attempts: Int, error: String?, stream: StreamID) async throws {
            var payload: [String: JSONValue] = [
                "executionId": .string(notification.executionID), "type": .string(notification.type), "when": .string(notification.when),
                "address": .string(Self.shown(notification.address)), "attempts": .number(Double(attempts)),
                "stage": notification.stage.map(JSONValue.string) ?? .null,
            ]
            if let error { payload["error"] = .string(error) }
            do {
                _ = try await store.append(to: stream, expected: .noStream, events: [NewEvent(
                    type: type, payload: try JSONText(encoding: JSONValue.object(payload)),
                    metadata: EventMetadata(correlationID: notification.executionID, causationID: notification.eventID, actor: "notifier", source: "notifier"))])
            } catch EventStoreError.versionConflict {
                // Another notifier recorded it first (a partition that moved mid-send).
            }
        }

        /// An address as the log shows it: a URL only by scheme and host (its path may be the
        /// credential, as a Slack webhook's is); a mail address as it is.
        static func shown(_ address: String) -> String {
            guard let url = URL(string: address), let scheme = url.scheme, let host = url.host, ["http", "https"].contains(scheme) else { return address }
            return "\(scheme)://\(host)/…"
        }
    }
}
