import EventLog
import Kafka
import Logging
import Orchestration
@testable import PipelineEngine
import Pipelines
import StageRunners
import Synchronization

/// The engine's real interpreters — the orchestrator's `advance` and the worker's `work` — over
/// an in-memory log and simulated timers: every event is delivered to both roles (as often as
/// asked), timers fire when the simulated clock passes them. No PostgreSQL, no Kafka.
struct EngineSimulation {
    let store = InMemoryEventStore()
    let repository: ExecutionRepository
    let timers = SimulatedTimers()
    let orchestrator: OrchestratorService
    let worker: WorkerService
    /// How many times each event reaches each role (at-least-once delivery).
    var deliveries = 1
    private var cursor = LogPosition.start

    init() {
        let logger = Logger(label: "simulation")
        repository = ExecutionRepository(store: store, logger: logger)
        let kafka = KafkaConfiguration(bootstrapServers: "unused:9092")
        orchestrator = OrchestratorService(repository: repository, kafka: kafka, topicPrefix: "sim.", partitions: 1, logger: logger)
        worker = WorkerService(repository: repository, timers: timers, kafka: kafka, topicPrefix: "sim.", partitions: 1,
                               runners: StageRunners.standard(repository: repository, timers: timers),
                               disabledStageTypes: ["script", "webhook"], logger: logger)
    }

    func trigger(_ stages: [JSONValue], id: String = "p1") async throws -> String {
        let pipeline = PipelineConfig(json: ["id": .string(id), "application": "sim", "name": "sim", "limitConcurrent": false, "stages": .array(stages)])
        return try await repository.trigger(pipeline, trigger: ["type": "manual"], parameters: [:], metadata: EventMetadata(source: "test"))
    }

    /// Delivers every event not delivered yet, and those they cause, until the log is quiet.
    mutating func drain() async throws {
        while true {
            let batch = try await store.readAll(after: cursor, limit: 1_000)
            guard let last = batch.last else { return }
            for event in batch {
                for _ in 0..<deliveries {
                    try await orchestrator.advance(after: event)
                    // A stage's work runs beyond its lane; here, at once.
                    for work in try await worker.work(after: event) { await work() }
                }
            }
            cursor = last.logPosition
        }
    }

    /// Delivers the whole log again from its start (a republished log), then what follows.
    mutating func redeliverAll() async throws {
        cursor = .start
        try await drain()
    }

    /// Moves the simulated clock on by `duration`, fires what fell due, and drains.
    mutating func advance(by duration: Duration) async throws {
        for timer in timers.pass(duration) {
            _ = try await repository.handle(timer.message, executionID: timer.executionID,
                                            metadata: EventMetadata(correlationID: timer.executionID, actor: "scheduler", source: "scheduler"))
            try await drain()
        }
        try await drain()
    }

    func events(_ id: String) async throws -> [ExecutionEvent] { try await repository.events(of: id) }
}

/// Timers on a simulated clock: set only when absent (as in PostgreSQL), fired in due order.
final class SimulatedTimers: StageTimers {
    private struct State {
        var now = Duration.zero
        var due: [String: (timer: TimerStore.StageTimer, at: Duration)] = [:]
        var lost: Set<String> = []
    }

    private let state = Mutex(State())

    func set(_ timer: TimerStore.StageTimer, dueIn delay: Duration) async throws {
        state.withLock { state in
            guard state.due[timer.id] == nil, !state.lost.contains(timer.id) else { return }
            state.due[timer.id] = (timer, state.now + delay)
        }
    }

    /// The timers stored now.
    var pending: [TimerStore.StageTimer] { state.withLock { $0.due.values.map(\.timer) } }

    /// Drops a stored timer (a timers table restored from an older backup, say); it may be set again.
    func lose(_ id: String) { state.withLock { _ = $0.due.removeValue(forKey: id) } }

    /// Moves the clock; returns the timers that fell due, in due order, and forgets them.
    func pass(_ duration: Duration) -> [TimerStore.StageTimer] {
        state.withLock { state in
            state.now += duration
            let due = state.due.values.filter { $0.at <= state.now }.sorted { $0.at < $1.at }
            for entry in due { state.due[entry.timer.id] = nil }
            return due.map(\.timer)
        }
    }
}
