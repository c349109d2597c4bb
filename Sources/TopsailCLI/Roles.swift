import API
import CLISupport
import Clouds
import Foundation
import Hummingbird
import Kafka
import Logging
import PipelineEngine
import PostgresEventStore
import PostgresNIO
import ReadModels
import Relay
import ServiceLifecycle
import StageRunners
import Notifications
import Triggers
import Access

/// Assembles long-lived roles into one service group with graceful shutdown on SIGTERM/SIGINT.
struct Roles {
    /// Where the notifier sends, and how often it tries.
    struct Notifier {
        var channels: NotificationChannels.Configuration
        var retry: NotifierService.Retry
    }

    /// How the scheduler's cron clock reads cron triggers.
    struct Cron {
        var zone: TimeZone
        var zoneName: String
        var misfireThreshold: Duration
    }

    enum Role {
        case relay(RelayConfiguration)
        case orchestrator
        case worker
        case scheduler(Cron)
        case projector
        case notifier(Notifier)
        case supervisor(interval: Duration, grace: Duration)
        case observer(interval: Duration, unhealthyGrace: Duration)
        case http(APIServer.Configuration)
    }

    let database: DatabaseConfiguration
    let kafka: KafkaConfiguration
    let topics: TopicOptions
    let disabledStageTypes: Set<String>
    let scriptSandbox: ScriptSandbox
    /// How long a graceful shutdown lets the orchestrator's and worker's running work finish.
    let drainTimeout: Duration
    let logger: Logger

    init(
        options: CommonOptions, topics: TopicOptions, disabledStageTypes: Set<String> = installationDisabledStageTypes(),
        scriptSandbox: ScriptSandbox = ScriptSandbox(), drainTimeout: Duration = .seconds(10)
    ) throws {
        self.drainTimeout = drainTimeout
        database = try options.database()
        kafka = try options.kafka()
        self.topics = topics
        self.disabledStageTypes = disabledStageTypes
        self.scriptSandbox = scriptSandbox
        logger = options.logger("topsail")
    }

    /// The installation's secrets, masked wherever a stage could echo them.
    var redactor: SecretRedactor {
        SecretRedactor(secrets: [database.password].compactMap { $0 } + SecretRedactor.kafkaSecrets(kafka.properties))
    }

    func run(_ roles: [Role]) async throws {
        // Before anything appends: new events must sort after every stored one (decision 0010).
        let (database, logger) = (self.database, self.logger)
        try await withDatabase(database, logger: logger) { client in
            guard try await LogEpoch.realign(client, logger: logger) != nil else {
                throw CLIError("the database at \(database) is not migrated for this version of Topsail: run topsail migrate")
            }
        }
        let client = PostgresClient(configuration: database.clientConfiguration, backgroundLogger: logger)
        // Concurrent handlers' appends share commits (decision 0012).
        let repository = ExecutionRepository(store: PostgresEventStore(client: client, groupCommit: GroupCommit(), logger: logger), logger: logger)
        let timers = TimerStore(client: client, logger: logger)
        var services: [any Service] = [client]
        TopsailMetrics.bootstrap()
        for role in roles {
            switch role {
            case .relay(let configuration):
                services.append(RelayService(configuration: configuration, kafka: kafka, client: client, logger: logger))
            case .orchestrator:
                services.append(OrchestratorService(
                    repository: repository, kafka: kafka, topicPrefix: topics.topicPrefix, partitions: topics.partitions, leaseClient: client,
                    drainTimeout: drainTimeout, logger: logger))
            case .worker:
                if !disabledStageTypes.contains("script") {
                    try scriptSandbox.check()
                    logger.notice("script stages are enabled, each in a sandbox", metadata: [
                        "script.user": "\(scriptSandbox.user)", "script.network": "\(scriptSandbox.network)",
                        "script.binds": "\(scriptSandbox.binds + scriptSandbox.readOnlyBinds)"])
                }
                services.append(WorkerService(
                    repository: repository, timers: timers, kafka: kafka, topicPrefix: topics.topicPrefix, partitions: topics.partitions,
                    runners: StageRunners.standard(repository: repository, timers: timers, scriptSandbox: scriptSandbox, disabled: disabledStageTypes),
                    disabledStageTypes: disabledStageTypes, redactor: redactor, leaseClient: client,
                    drainTimeout: drainTimeout, logger: logger))
            case .scheduler(let cron):
                services.append(SchedulerService(timers: timers, repository: repository, logger: logger))
                services.append(CronClock(
                    intake: TriggerIntake(client: client, repository: repository, seal: nil, logger: logger), client: client,
                    defaultZone: cron.zoneName, misfireThreshold: cron.misfireThreshold, logger: logger))
            case .projector:
                services.append(ExecutionProjector(client: client, logger: logger))
            case .notifier(let notifier):
                services.append(NotifierService(
                    repository: repository, intake: TriggerIntake(client: client, repository: repository, seal: try SecretSeal.configured(file: nil), logger: logger),
                    kafka: kafka, topicPrefix: topics.topicPrefix, partitions: topics.partitions, leaseClient: client,
                    channels: notifier.channels, retry: notifier.retry, drainTimeout: drainTimeout, logger: logger))
                services.append(PubsubListener(
                    intake: TriggerIntake(client: client, repository: repository, seal: nil, logger: logger), client: client, kafka: kafka,
                    groupID: topics.topicPrefix + "pubsub", logger: logger))
            case let .supervisor(interval, grace):
                services.append(SupervisorService(client: client, repository: repository, interval: interval, grace: grace, logger: logger))
            case let .observer(interval, unhealthyGrace):
                services.append(CloudObserverService(
                    client: client, store: repository.eventStore, operations: CloudOperations.standard(store: repository.eventStore, logger: logger),
                    interval: interval, unhealthyGrace: unhealthyGrace, logger: logger))
            case .http(var configuration):
                configuration.disabledStageTypes.formUnion(disabledStageTypes)
                services.append(try await APIServer(client: client, repository: repository, configuration: configuration, logger: logger).application())
                services.append(OpenReceiptsService(
                    intake: TriggerIntake(client: client, repository: repository, seal: configuration.secretSeal, logger: logger), logger: logger))
            }
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        logger.info("topsail starting", metadata: ["db": "\(database)", "kafka.brokers": "\(kafka.bootstrapServers)"])
        try await group.run()
        logger.info("topsail stopped")
    }
}

