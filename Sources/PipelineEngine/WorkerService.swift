import EventLog
import Expressions
import Kafka
import Logging
import Orchestration
import Pipelines
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
    let timers: TimerStore
    let logger: Logger
    private let running = Mutex<[String: WorkHandle]>([:])

    public init(
        repository: ExecutionRepository, timers: TimerStore, kafka: KafkaConfiguration, topicPrefix: String, partitions: Int,
        concurrency: Int = 64, logger: Logger
    ) {
        self.repository = repository
        self.kafka = kafka
        self.topicPrefix = topicPrefix
        self.partitions = partitions
        self.concurrency = concurrency
        self.timers = timers
        self.runners = [
            "noop": NoopStageRunner(), "script": ScriptStageRunner(), "manualJudgment": ManualJudgmentStageRunner(),
            "wait": WaitStageRunner(timers: timers), "evaluateVariables": EvaluateVariablesStageRunner(),
            "checkPreconditions": CheckPreconditionsStageRunner(),
        ]
        self.logger = logger
    }

    public func run() async throws {
        try await ExecutionTopic.consume(
            kafka: kafka, topicPrefix: topicPrefix, partitions: partitions, role: "worker", concurrency: concurrency,
            handoff: repository.handoff, logger: logger
        ) { event in
            try await self.work(after: event)
        }
    }

    func work(after recorded: RecordedEvent) async throws {
        let executionID = recorded.streamID.id
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        switch event {
        case let .stageStarted(ref, attempt):
            try await runStage(ref, attempt: attempt, executionID: executionID, cause: recorded)
        case .stageCompleted(let ref, _, _):
            // Canceled, timed out, or judged while work still runs: stop it. (Work that completed
            // the stage itself is no longer registered.)
            running.withLock { $0[Self.key(executionID, ref)] }?.cancel()
        default:
            break
        }
    }

    private func runStage(_ ref: String, attempt: Int, executionID: String, cause: RecordedEvent) async throws {
        let state = ExecutionState(try await repository.events(of: executionID, atLeast: cause.streamVersion))
        // A re-delivered or superseded start: the stage has moved on.
        guard state.stage(ref).status == .running, state.stage(ref).attempt == attempt, let stage = state.config(ref) else { return }
        let metadata = EventMetadata(
            correlationID: cause.metadata.correlationID ?? executionID, causationID: cause.id.uuidString.lowercased(),
            actor: "worker", source: "worker")
        guard let type = stage.type, let runner = runners[type] else {
            try await repository.handle(
                .completeStage(refID: ref, status: .terminal, outputs: ["error": .string("this worker cannot run stage type '\(stage.type ?? "")'")]),
                executionID: executionID, metadata: metadata)
            return
        }
        if let timeout = stage.stageTimeoutMs {
            try await timers.set(TimerStore.StageTimer(executionID: executionID, refID: ref, attempt: attempt, kind: .stageTimeout),
                                 dueIn: .milliseconds(timeout))
        }
        let work = WorkHandle()
        let key = Self.key(executionID, ref)
        running.withLock { $0[key] = work }
        defer { running.withLock { _ = $0.removeValue(forKey: key) } }
        // A cancel handled between the load above and the registration found nothing to stop;
        // looking again now that the work is registered closes that gap.
        let current = try await repository.load(executionID).stage(ref)
        guard current.status == .running, current.attempt == attempt else { return }
        logger.debug("stage running", metadata: ["execution.id": "\(executionID)", "stage.ref": "\(ref)", "stage.type": "\(type)"])
        // Expressions are evaluated when the stage starts; a field whose expression fails stays as
        // written and is reported in the stage's outputs.
        let scope = ExpressionEvaluator(context: ExpressionScope.context(executionID: executionID, state: state))
        let (evaluated, failures) = Template.evaluate(.object(stage.json), with: scope)
        let summary: [String: JSONValue] = failures.isEmpty ? [:] : [
            "expressionEvaluationSummary": .array(failures.map { ["path": .string($0.path), "expression": .string($0.expression), "error": .string($0.error)] }),
        ]
        var outcome: StageOutcome
        if !failures.isEmpty && stage.json["failOnFailedExpressions"]?.boolValue == true {
            outcome = StageOutcome(status: stage.failureStatus, outputs: ["error": "expressions failed to evaluate"])
        } else {
            let evaluatedStage = StageConfig(json: evaluated.objectValue ?? stage.json)
            outcome = try await runner.run(StageRun(executionID: executionID, refID: ref, attempt: attempt, stage: evaluatedStage, execution: state, work: work))
        }
        outcome.outputs.merge(summary) { current, _ in current }
        // A canceled stage was already completed by the cancel; a RUNNING outcome waits for
        // someone else to complete the stage (a judgment, a timer).
        guard outcome.status.isComplete, outcome.status != .canceled else { return }
        try await repository.handle(.completeStage(refID: ref, status: outcome.status, outputs: outcome.outputs), executionID: executionID, metadata: metadata)
    }

    static func key(_ executionID: String, _ ref: String) -> String { "\(executionID)/\(ref)" }
}
