import EventLog
import Pipelines

/// The concurrency gate of one pipeline (`limitConcurrent`, `maxConcurrentExecutions`,
/// `keepWaitingPipelines`): which executions hold a slot and which wait for one, kept as the
/// stream `concurrency-<pipeline>`. Admissions are version-checked appends to that one stream, so
/// two executions starting at the same moment can never both take the last slot.
public struct PipelineSlots: Sendable, Hashable {
    /// Executions holding a slot, in the order they took it.
    public private(set) var running: [String] = []
    /// Executions waiting for a slot (BUFFERED), oldest trigger first.
    public private(set) var waiting: [String] = []
    /// Where each waiting execution's trigger sits in the log: the queue's order.
    private var triggeredAt: [String: Int64] = [:]
    /// Executions that held or awaited a slot and let it go: they never take one again, so an
    /// old start delivered again (a relay republishing the log) cannot hold a slot for good.
    public private(set) var done: Set<String> = []
    public private(set) var version: Int64 = 0

    public init() {}

    public init(_ events: [Event]) {
        for event in events { evolve(event) }
    }

    public enum Event: Sendable, Hashable {
        case taken(executionID: String)
        /// `position`: the global log position of the execution's trigger, which orders the queue.
        case queued(executionID: String, position: Int64)
        /// The execution completed (or was canceled while waiting) and holds nothing any more.
        case released(executionID: String)

        public enum WireType {
            public static let taken = "pipeline.slot.taken"
            public static let queued = "pipeline.slot.queued"
            public static let released = "pipeline.slot.released"
        }
    }

    public mutating func evolve(_ event: Event) {
        version += 1
        switch event {
        case .taken(let id):
            waiting.removeAll { $0 == id }
            triggeredAt[id] = nil
            if !running.contains(id) { running.append(id) }
        case let .queued(id, position):
            guard !waiting.contains(id) && !running.contains(id) else { break }
            triggeredAt[id] = position
            let index = waiting.firstIndex { (triggeredAt[$0] ?? 0) > position } ?? waiting.endIndex
            waiting.insert(id, at: index)
        case .released(let id):
            running.removeAll { $0 == id }
            waiting.removeAll { $0 == id }
            triggeredAt[id] = nil
            done.insert(id)
        }
    }

    /// The number of slots a pipeline has.
    public static func slots(of pipeline: PipelineConfig) -> Int { max(1, pipeline.maxConcurrentExecutions) }

    /// An execution asks to start: it takes a free slot, or queues in trigger order (`position`,
    /// its trigger's place in the log). Asking again changes nothing, and neither does asking
    /// after it released what it held.
    public func admit(_ executionID: String, position: Int64, slots: Int) -> [Event] {
        if running.contains(executionID) || waiting.contains(executionID) || done.contains(executionID) { return [] }
        return running.count < slots ? [.taken(executionID: executionID)] : [.queued(executionID: executionID, position: position)]
    }

    public func holdsSlot(_ executionID: String) -> Bool { running.contains(executionID) }

    /// An execution completed: its slot (or its place in the queue) is freed and waiting
    /// executions take the free slots — the oldest first with `keepWaitingPipelines`, otherwise
    /// only the newest, and the others are to be canceled (`drop`), as Orca does.
    public func release(_ executionID: String, slots: Int, keepWaiting: Bool) -> (events: [Event], drop: [String]) {
        guard running.contains(executionID) || waiting.contains(executionID) else { return ([], []) }
        var after = self
        var events: [Event] = [.released(executionID: executionID)]
        after.evolve(events[0])
        var drop: [String] = []
        if !keepWaiting, after.running.count < slots, let newest = after.waiting.last {
            drop = after.waiting.filter { $0 != newest }
            for id in drop { events.append(.released(executionID: id)); after.evolve(.released(executionID: id)) }
        }
        while after.running.count < slots, let next = after.waiting.first {
            events.append(.taken(executionID: next))
            after.evolve(.taken(executionID: next))
        }
        return (events, drop)
    }
}

/// Slot events to and from the log.
public enum PipelineSlotsCodec {
    public static func encode(_ event: PipelineSlots.Event) -> (type: String, payload: JSONValue) {
        switch event {
        case .taken(let id): (PipelineSlots.Event.WireType.taken, ["executionId": .string(id)])
        case let .queued(id, position): (PipelineSlots.Event.WireType.queued, ["executionId": .string(id), "position": .number(Double(position))])
        case .released(let id): (PipelineSlots.Event.WireType.released, ["executionId": .string(id)])
        }
    }

    public static func decode(type: String, payload: JSONValue) throws(ExecutionEventDecodingError) -> PipelineSlots.Event {
        guard let id = payload["executionId"]?.stringValue else { throw ExecutionEventDecodingError(type: type, field: "executionId") }
        switch type {
        case PipelineSlots.Event.WireType.taken: return .taken(executionID: id)
        case PipelineSlots.Event.WireType.queued:
            return .queued(executionID: id, position: Int64(payload["position"]?.doubleValue ?? 0))
        case PipelineSlots.Event.WireType.released: return .released(executionID: id)
        default: throw ExecutionEventDecodingError(type: type, field: nil)
        }
    }
}
