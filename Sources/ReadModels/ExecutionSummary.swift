import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// An execution as the read model shows it: statuses and times, no outputs. Folded from the
/// recorded events (their times are the log's), so the projector and a rebuild agree.
public struct ExecutionSummary: Sendable, Hashable {
    public struct Stage: Sendable, Hashable {
        public var refID: String
        public var name: String?
        public var type: String?
        public var status: ExecutionStatus
        public var attempt: Int
        public var startedAt: Date?
        public var completedAt: Date?
    }

    public let id: String
    public var application: String?
    public var pipelineName: String?
    public var pipelineID: String?
    public var status: ExecutionStatus
    public var triggerType: String?
    public var triggeredBy: String?
    public var triggeredAt: Date
    public var startedAt: Date?
    public var completedAt: Date?
    public var updatedAt: Date
    public var version: Int64
    /// In the pipeline's stage order.
    public var stages: [Stage]

    public init(
        id: String, application: String?, pipelineName: String?, pipelineID: String?, status: ExecutionStatus, triggerType: String?,
        triggeredBy: String?, triggeredAt: Date, startedAt: Date?, completedAt: Date?, updatedAt: Date, version: Int64, stages: [Stage]
    ) {
        self.id = id
        self.application = application
        self.pipelineName = pipelineName
        self.pipelineID = pipelineID
        self.status = status
        self.triggerType = triggerType
        self.triggeredBy = triggeredBy
        self.triggeredAt = triggeredAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.updatedAt = updatedAt
        self.version = version
        self.stages = stages
    }
}

/// Folds one execution's recorded events into its ``ExecutionSummary``, event by event. The
/// summary's stage list is assembled when asked for, not at every event.
public struct ExecutionSummaryFold: Sendable {
    public private(set) var state = ExecutionState()
    private var head: ExecutionSummary?
    private var stageTimes: [String: (started: Date?, completed: Date?)] = [:]

    public init() {}

    /// The version of the last event folded in.
    public var version: Int64 { state.version }

    /// The execution as folded so far; nil before its first event.
    public var summary: ExecutionSummary? {
        guard var summary = head else { return nil }
        summary.status = state.status
        summary.version = state.version
        summary.stages = state.graph.order.map { ref in
            let config = state.config(ref)
            let stage = state.stage(ref)
            return ExecutionSummary.Stage(
                refID: ref, name: config?.name, type: config?.type, status: stage.status, attempt: stage.attempt,
                startedAt: stageTimes[ref]?.started, completedAt: stageTimes[ref]?.completed)
        }
        return summary
    }

    /// Folds in the next event of the stream; events must come in version order.
    public mutating func apply(_ recorded: RecordedEvent) throws {
        precondition(recorded.streamVersion == state.version + 1, "events of a stream are folded in version order")
        let event = try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self))
        state.evolve(event)
        let at = recorded.recordedAt
        var summary = head ?? ExecutionSummary(
            id: recorded.streamID.id, application: nil, pipelineName: nil, pipelineID: nil, status: .notStarted, triggerType: nil,
            triggeredBy: nil, triggeredAt: at, startedAt: nil, completedAt: nil, updatedAt: at, version: 0, stages: [])
        switch event {
        case .triggered(let pipeline, let trigger, _):
            summary.application = pipeline.application
            summary.pipelineName = pipeline.name
            summary.pipelineID = pipeline.id
            summary.triggerType = trigger["type"]?.stringValue
            summary.triggeredBy = trigger["user"]?.stringValue ?? recorded.metadata.actor
            summary.triggeredAt = at
        case .started:
            summary.startedAt = summary.startedAt ?? at
        case .stageStarted(let ref, _):
            stageTimes[ref] = (at, nil)
        case .stageCompleted(let ref, _, _):
            stageTimes[ref, default: (nil, nil)].completed = at
        case .stageRestarted(_, let reset):
            for ref in reset { stageTimes[ref] = nil }
            summary.completedAt = nil
        case .completed:
            summary.completedAt = at
        case .buffered, .paused, .resumed, .cancelRequested, .stageProgressed, .stagePollDue, .redriven:
            break
        }
        summary.updatedAt = at
        head = summary
    }
}
