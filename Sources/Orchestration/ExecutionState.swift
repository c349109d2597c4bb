import EventLog
import Pipelines

/// An execution folded from its events: what the handlers decide on.
public struct ExecutionState: Sendable {
    public struct Stage: Sendable, Hashable {
        public var status: ExecutionStatus = .notStarted
        /// 0 before the first start; each start or restart counts one up.
        public var attempt = 0
        public var outputs: [String: JSONValue] = [:]
        /// Progress records of this attempt (task attempts that left it running).
        public var polls = 0
        /// Whether the check after the last progress record has been made due.
        public var pollDue = false
    }

    public private(set) var status: ExecutionStatus = .notStarted
    public private(set) var pipeline = PipelineConfig(json: [:])
    public private(set) var graph = StageGraph([])
    public private(set) var trigger: JSONValue = .null
    public private(set) var parameters: [String: JSONValue] = [:]
    public private(set) var stages: [String: Stage] = [:]
    public private(set) var isPaused = false
    public private(set) var cancelRequested = false
    /// How often the supervisor drove the execution again.
    public private(set) var redrives = 0
    /// The number of events folded in: the stream version the next append expects.
    public private(set) var version: Int64 = 0

    public init() {}

    public init(_ events: [ExecutionEvent]) {
        for event in events { evolve(event) }
    }

    public func stage(_ refID: String) -> Stage { stages[refID] ?? Stage() }

    public func config(_ refID: String) -> StageConfig? { pipeline.stage(refID) }

    /// Stages started and not yet complete.
    public var runningStages: [String] {
        graph.order.filter { stage($0).status == .running }
    }

    /// True when every upstream stage of `refID` is complete.
    public func upstreamComplete(_ refID: String) -> Bool {
        graph.upstream[refID, default: []].allSatisfy { stage($0).status.isComplete }
    }

    /// True when an upstream stage of `refID` ended in a way that halts its branch.
    public func upstreamHalted(_ refID: String) -> Bool {
        graph.upstream[refID, default: []].contains { !stage($0).status.letsDownstreamRun && stage($0).status.isComplete }
    }

    /// Stages that may start now: not started, every upstream complete and letting them run.
    public var readyStages: [String] {
        graph.order.filter { ref in
            stage(ref).status == .notStarted && upstreamComplete(ref) && !upstreamHalted(ref)
        }
    }

    public mutating func evolve(_ event: ExecutionEvent) {
        version += 1
        switch event {
        case let .triggered(pipeline, trigger, parameters):
            self.pipeline = pipeline
            self.graph = StageGraph(pipeline.stages)
            self.trigger = trigger
            self.parameters = parameters
            for ref in graph.order { stages[ref] = Stage() }
        case .buffered:
            status = .buffered
        case .started:
            status = .running
        case let .stageStarted(ref, attempt):
            stages[ref, default: Stage()].status = .running
            stages[ref, default: Stage()].attempt = attempt
            stages[ref, default: Stage()].polls = 0
            stages[ref, default: Stage()].pollDue = false
        case let .stageCompleted(ref, stageStatus, outputs):
            stages[ref, default: Stage()].status = stageStatus
            // What the stage's progress recorded stays, under what its completion reports.
            stages[ref, default: Stage()].outputs.merge(outputs) { _, completed in completed }
        case let .stageProgressed(ref, _, poll, context, _):
            stages[ref, default: Stage()].outputs.merge(context) { _, new in new }
            stages[ref, default: Stage()].polls = poll + 1
            stages[ref, default: Stage()].pollDue = false
        case .stagePollDue(let ref, _, _):
            stages[ref, default: Stage()].pollDue = true
        case let .stageRestarted(_, reset):
            for ref in reset {
                stages[ref, default: Stage()].status = .notStarted
                stages[ref, default: Stage()].outputs = [:]
            }
            status = .running
            cancelRequested = false
        case .paused:
            isPaused = true
            status = .paused
        case .resumed:
            isPaused = false
            status = .running
        case .cancelRequested:
            cancelRequested = true
        case let .completed(finalStatus):
            status = finalStatus
            isPaused = false
        case .redriven:
            redrives += 1
        }
    }
}
