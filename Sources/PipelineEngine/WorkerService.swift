import EventLog
import Expressions
import Kafka
import Logging
import Orchestration
import Pipelines
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The `worker` role: runs stages' work when they start and stops it when they are canceled,
/// then reports the outcome through the CompleteStage handler.
public final class WorkerService: Service {
    let repository: ExecutionRepository
    let kafka: KafkaConfiguration
    let topicPrefix: String
    let partitions: Int
    let concurrency: Int
    let runners: [String: any StageRunner]
    /// Stage types this installation does not run (e.g. `script`): such a stage ends TERMINAL.
    let disabledStageTypes: Set<String>
    let timers: any StageTimers
    /// Masks the installation's secrets in everything a stage reports.
    let redactor: SecretRedactor
    /// Partitions are held by leases in this database (decision 0011); nil: a Kafka consumer group.
    let leaseClient: PostgresClient?
    /// How long a graceful shutdown lets running stages finish before cancelling them.
    let drainTimeout: Duration
    let logger: Logger
    /// Stages' work running at once, at most `concurrency`.
    private let workSlots: AsyncSemaphore
    /// Work running in this process, one entry per check of a stage attempt (the next check may
    /// begin before the last one's entry is gone).
    private let running = Mutex<[WorkKey: WorkHandle]>([:])

    struct WorkKey: Hashable {
        let executionID: String
        let refID: String
        let attempt: Int
        let poll: Int
    }

    public init(
        repository: ExecutionRepository, timers: any StageTimers, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int,
        runners: [String: any StageRunner], concurrency: Int = 64, disabledStageTypes: Set<String> = [],
        redactor: SecretRedactor = .none, leaseClient: PostgresClient? = nil, drainTimeout: Duration = .seconds(10), logger: Logger
    ) {
        self.leaseClient = leaseClient
        self.drainTimeout = drainTimeout
        self.workSlots = AsyncSemaphore(concurrency)
        self.repository = repository
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.concurrency = concurrency
        self.timers = timers
        self.runners = runners.filter { !disabledStageTypes.contains($0.key) }
        self.disabledStageTypes = disabledStageTypes
        self.redactor = redactor
        self.logger = logger
    }

    public func run() async throws {
        try await ExecutionTopic.consume(
            kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "worker", concurrency: concurrency,
            handoff: repository.handoff, leaseClient: leaseClient, drainTimeout: drainTimeout, logger: logger
        ) { event in
            try await self.work(after: event)
        }
    }

    /// Carries out the worker's actions for one event (``ExecutionPolicy``). A stage's work is
    /// returned, to run beyond the execution's lane: its next events (a cancel) must not wait
    /// for it, nor its other stages' work.
    func work(after recorded: RecordedEvent) async throws -> [DetachedWork] {
        var detached: [DetachedWork] = []
        let executionID = recorded.streamID.id
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        let history = try await repository.events(of: executionID, atLeast: recorded.streamVersion)
        guard history.count >= recorded.streamVersion else { return [] }
        let stateAtEvent = ExecutionState(Array(history.prefix(Int(recorded.streamVersion))))
        for action in ExecutionPolicy.actions(after: event, state: stateAtEvent) where action.role == .worker {
            switch action {
            case let .runWork(ref, attempt):
                if let work = try await startStage(ref, attempt: attempt, executionID: executionID, cause: recorded) { detached.append(work) }
            case .stopWork(let ref):
                // Work that completed the stage itself is no longer registered.
                let works = running.withLock { $0.filter { $0.key.executionID == executionID && $0.key.refID == ref }.map(\.value) }
                for work in works { work.cancel() }
            case let .setTimer(ref, attempt, kind, poll, afterMs):
                try await timers.set(TimerStore.StageTimer(executionID: executionID, refID: ref, attempt: attempt, kind: kind, poll: poll),
                                     dueIn: .milliseconds(afterMs))
            case .decide, .startWithSlot, .releaseSlot, .wakeParent, .cancelChild:
                break
            }
        }
        return detached
    }

    /// Checks that the stage is still to run, registers its work (so that a cancel handled next in
    /// the lane finds it) and returns that work.
    private func startStage(_ ref: String, attempt: Int, executionID: String, cause: RecordedEvent) async throws -> DetachedWork? {
        let state = ExecutionState(try await repository.events(of: executionID, atLeast: cause.streamVersion))
        let current = state.stage(ref)
        // A re-delivered or superseded start, or a check that is not due: the stage has moved on.
        guard current.status == .running, current.attempt == attempt, current.polls == 0 || current.pollDue,
              let stage = state.config(ref)
        else { return nil }
        let poll = current.polls
        let metadata = EventMetadata(
            correlationID: cause.metadata.correlationID ?? executionID, causationID: cause.id.uuidString.lowercased(),
            actor: "worker", source: "worker")
        guard let type = stage.type, let runner = runners[type] else {
            let reason = disabledStageTypes.contains(stage.type ?? "")
                ? PipelineValidation.disabledMessage(stage.type ?? "")
                : "this worker cannot run stage type '\(stage.type ?? "")'"
            try await repository.handle(
                .completeStage(refID: ref, status: .terminal, outputs: ["error": .string(reason)]),
                executionID: executionID, metadata: metadata)
            return nil
        }
        if poll == 0, let timeout = stage.stageTimeoutMs {
            try await timers.set(TimerStore.StageTimer(executionID: executionID, refID: ref, attempt: attempt, kind: .stageTimeout),
                                 dueIn: .milliseconds(timeout))
        }
        let work = WorkHandle()
        let key = WorkKey(executionID: executionID, refID: ref, attempt: attempt, poll: poll)
        // This very check already running here (a copy of its event that overtook the other) is
        // left to finish.
        guard running.withLock({ running in
            guard running[key] == nil else { return false }
            running[key] = work
            return true
        }) else { return nil }
        let run = StageRun(executionID: executionID, refID: ref, attempt: attempt, stage: stage, execution: state, poll: poll, work: work)
        return { [self] in
            defer { running.withLock { _ = $0.removeValue(forKey: key) } }
            await workSlots.acquire()
            defer { workSlots.release() }
            // A shutdown that cancels the work stops it as a cancel would; the stage stays RUNNING
            // and its event comes again to whoever reads the partition next.
            await withTaskCancellationHandler {
                await self.perform(run, type: type, runner: runner, metadata: metadata)
            } onCancel: {
                work.cancel()
            }
        }
    }

    /// Runs the stage's work and reports its outcome.
    private func perform(_ run: StageRun, type: String, runner: any StageRunner, metadata: EventMetadata) async {
        let (executionID, ref, attempt, poll, stage) = (run.executionID, run.refID, run.attempt, run.poll, run.stage)
        guard !run.work.isCanceled else { return }
        logger.debug("stage running", metadata: ["execution.id": "\(executionID)", "stage.ref": "\(ref)", "stage.type": "\(type)", "stage.poll": "\(poll)"])
        // Expressions are evaluated when the stage runs; a field whose expression fails stays as
        // written and is reported in the stage's outputs.
        let scope = ExpressionEvaluator(context: ExpressionScope.context(executionID: executionID, state: run.execution, stage: ref))
        let (evaluated, failures) = Template.evaluate(.object(stage.json), with: scope)
        let summary: [String: JSONValue] = failures.isEmpty ? [:] : [
            "expressionEvaluationSummary": .array(failures.map { ["path": .string($0.path), "expression": .string($0.expression), "error": .string($0.error)] }),
        ]
        var outcome: StageOutcome
        if !failures.isEmpty && stage.json["failOnFailedExpressions"]?.boolValue == true {
            outcome = StageOutcome(status: stage.failureStatus, outputs: ["error": "expressions failed to evaluate"])
        } else {
            let evaluatedStage = StageConfig(json: evaluated.objectValue ?? stage.json)
            do {
                outcome = try await runner.run(StageRun(
                    executionID: executionID, refID: ref, attempt: attempt, stage: evaluatedStage, execution: run.execution, poll: poll, work: run.work))
            } catch {
                // A runner's own failure fails the stage (with its failure options) rather than
                // leaving it running with nothing to complete it.
                outcome = StageOutcome(status: stage.failureStatus, outputs: ["error": .string(redactor.redact("\(error)"))])
            }
        }
        outcome.outputs.merge(summary) { current, _ in current }
        outcome.outputs = redactor.redact(outcome.outputs)
        let message: ExecutionMessage
        if outcome.status == .running, let delay = outcome.retryAfter {
            message = .recordProgress(refID: ref, attempt: attempt, poll: poll, context: outcome.outputs, retryAfterMs: Int(delay.wholeMilliseconds))
        } else {
            // Canceled work belongs to a stage that was completed from outside (cancel, timeout,
            // shutdown); a RUNNING outcome waits for someone else to complete the stage.
            guard outcome.status.isComplete, !run.work.isCanceled else { return }
            message = .completeStage(refID: ref, status: outcome.status, outputs: outcome.outputs)
        }
        do {
            _ = try await retrying(maximum: .seconds(5), when: LaneDispatcher.mayPass, onFailure: { error, _ in
                logger.warning("reporting a stage's outcome failed; retrying", metadata: ["execution.id": "\(executionID)", "stage.ref": "\(ref)", "error": "\(error)"])
            }) {
                try await repository.handle(message, executionID: executionID, metadata: metadata)
            }
        } catch {
            if Task.isCancelled { return }
            logger.error("reporting a stage's outcome failed; the supervisor will find the stage overdue", metadata: [
                "execution.id": "\(executionID)", "stage.ref": "\(ref)", "error": "\(error)",
            ])
        }
    }
}
