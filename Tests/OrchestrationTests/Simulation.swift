import EventLog
import Orchestration
import Pipelines

/// Runs an execution's messages through the decider without I/O: a FIFO of messages, workers
/// that finish a stage with a scripted status. Records every event in order.
struct Simulation {
    var state = ExecutionState()
    var events: [ExecutionEvent] = []
    var queue: [ExecutionAction] = []
    /// The worker's actions, and the orchestrator's on other executions and gates, in order.
    var workerActions: [ExecutionAction] = []
    var otherActions: [ExecutionAction] = []
    /// Stage outcomes by refId and attempt (missing: SUCCEEDED).
    var outcomes: [String: [ExecutionStatus]] = [:]
    /// Stages whose work never finishes (stay RUNNING until canceled).
    var hanging: Set<String> = []
    var context = DecisionContext()
    /// The most stages seen running at once.
    var maximumConcurrentStages = 0

    init(_ pipeline: PipelineConfig, outcomes: [String: [ExecutionStatus]] = [:]) {
        self.outcomes = outcomes
        apply(Decision(events: [.triggered(pipeline: pipeline, trigger: ["type": "manual"], parameters: [:])]))
        queue.removeAll()
    }

    mutating func apply(_ decision: Decision) {
        for event in decision.events {
            state.evolve(event)
            events.append(event)
            maximumConcurrentStages = max(maximumConcurrentStages, state.runningStages.count)
            queue += ExecutionPolicy.actions(after: event, state: state)
        }
    }

    mutating func send(_ message: ExecutionMessage) {
        queue.append(.decide(message))
        drain()
    }

    mutating func drain() {
        while !queue.isEmpty {
            let action = queue.removeFirst()
            switch action {
            case let .runWork(ref, attempt):
                workerActions.append(action)
                guard !hanging.contains(ref) else { continue }
                let scripted = outcomes[ref] ?? []
                let status = attempt - 1 < scripted.count ? scripted[attempt - 1] : .succeeded
                queue.append(.decide(.completeStage(refID: ref, status: status, outputs: ["attempt": .number(Double(attempt))])))
            case .stopWork, .setTimer:
                workerActions.append(action)
            case .decide(let message):
                apply(ExecutionDecider.decide(message, state: state, context: context))
            case .startWithSlot:
                apply(ExecutionDecider.decide(.startExecution, state: state, context: context))
            case .releaseSlot, .wakeParent, .cancelChild:
                otherActions.append(action)
            }
        }
    }

    var startedOrder: [String] {
        events.compactMap { if case let .stageStarted(ref, _) = $0 { ref } else { nil } }
    }

    func status(_ ref: String) -> ExecutionStatus { state.stage(ref).status }
}

/// A pipeline from (refId, requisites, extra fields).
func pipeline(_ stages: [(String, [String], [String: JSONValue])], fields: [String: JSONValue] = [:]) -> PipelineConfig {
    var json: [String: JSONValue] = ["id": "p1", "application": "web", "name": "test", "limitConcurrent": false]
    json.merge(fields) { $1 }
    json["stages"] = .array(stages.map { ref, requisites, extra in
        var stage: [String: JSONValue] = ["refId": .string(ref), "type": "noop", "requisiteStageRefIds": .array(requisites.map(JSONValue.string))]
        stage.merge(extra) { $1 }
        return .object(stage)
    })
    return PipelineConfig(json: json)
}
