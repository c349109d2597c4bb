import EventLog
import Orchestration
import Pipelines

/// Runs an execution's messages through the decider without I/O: a FIFO of messages, workers
/// that finish a stage with a scripted status. Records every event in order.
struct Simulation {
    var state = ExecutionState()
    var events: [ExecutionEvent] = []
    var queue: [ExecutionMessage] = []
    var workerMessages: [ExecutionMessage] = []
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
            queue += ExecutionPolicy.reactions(to: event, after: state)
        }
    }

    mutating func send(_ message: ExecutionMessage) {
        queue.append(message)
        drain()
    }

    mutating func drain() {
        while !queue.isEmpty {
            let message = queue.removeFirst()
            switch message {
            case let .runStage(ref, attempt):
                workerMessages.append(message)
                guard !hanging.contains(ref) else { continue }
                let scripted = outcomes[ref] ?? []
                let status = attempt - 1 < scripted.count ? scripted[attempt - 1] : .succeeded
                queue.append(.completeStage(refID: ref, status: status, outputs: ["attempt": .number(Double(attempt))]))
            case .cancelStageWork:
                workerMessages.append(message)
            default:
                apply(ExecutionDecider.decide(message, state: state, context: context))
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
