import EventLog
import Metrics
import Foundation
import Logging
import Orchestration
import Pipelines

/// Loads executions from the log and stores handlers' decisions with version-checked appends.
public struct ExecutionRepository: Sendable {
    public static let category = "execution"

    let store: any EventStore
    let logger: Logger
    let cache: ExecutionHistoryCache
    /// The log the executions live in.
    public var eventStore: any EventStore { store }
    /// Roles of this process that take the events appended here without waiting for Kafka.
    public let handoff: LocalHandoff

    public init(store: any EventStore, logger: Logger, cacheCapacity: Int = 10_000, handoff: LocalHandoff = LocalHandoff()) {
        self.store = store
        self.logger = logger
        self.cache = ExecutionHistoryCache(capacity: cacheCapacity)
        self.handoff = handoff
    }

    public static func streamID(_ executionID: String) throws -> StreamID {
        try StreamID(category: category, id: executionID)
    }

    /// Every event of the execution, in order. A stream only grows, so what was read before is
    /// kept and only newer events are read and decoded. With `atLeast`, a cached history that
    /// already holds that many events is returned without asking the log.
    public func events(of executionID: String, atLeast version: Int64? = nil) async throws -> [ExecutionEvent] {
        let stream = try Self.streamID(executionID)
        var events = cache.history(of: executionID)
        if let version, events.count >= version { return events }
        var next = Int64(events.count) + 1
        defer { cache.remember(events, of: executionID) }
        while true {
            let batch = try await store.readStream(stream, from: next, direction: .forward, limit: 500)
            for recorded in batch {
                events.append(try ExecutionEventCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self)))
            }
            guard let last = batch.last, batch.count == 500 else { break }
            next = last.streamVersion + 1
        }
        return events
    }

    public func load(_ executionID: String) async throws -> ExecutionState {
        ExecutionState(try await events(of: executionID))
    }

    /// Appends a `triggered` event for a new execution; returns its id.
    public func trigger(
        _ pipeline: PipelineConfig, trigger: JSONValue, parameters: [String: JSONValue], metadata: EventMetadata,
        executionID: String = UUID().uuidString.lowercased()
    ) async throws -> String {
        var metadata = metadata
        metadata.correlationID = metadata.correlationID ?? executionID
        let event = ExecutionEvent.triggered(pipeline: pipeline, trigger: trigger, parameters: parameters)
        try await append([try Self.newEvent(event, metadata: metadata)], to: try Self.streamID(executionID), expected: .noStream)
        cache.remember([event], of: executionID)
        Counter(label: "topsail_executions_triggered_total", dimensions: [("source", metadata.source ?? "unknown")]).increment()
        return executionID
    }

    /// Loads the execution, lets the message's handler decide, and appends the decision. A
    /// concurrent writer makes the append conflict: the handler then decides again on the newer
    /// state, so a message never applies twice and never applies to a state it did not see.
    ///
    /// The first decision is made on the cached history without reading the log: the append's
    /// version check proves it current, and a decision of nothing is re-made on a fresh read
    /// (a history that lags may not show yet what the message is about).
    @discardableResult
    public func handle(
        _ message: ExecutionMessage, executionID: String, metadata: EventMetadata, context: DecisionContext = DecisionContext()
    ) async throws -> [ExecutionEvent] {
        let stream = try Self.streamID(executionID)
        var history = cache.history(of: executionID)
        var fresh = history.isEmpty
        if fresh { history = try await events(of: executionID) }
        for _ in 0..<10 {
            let state = ExecutionState(history)
            guard state.version > 0 else { return [] }
            let decision = ExecutionDecider.decide(message, state: state, context: context)
            if decision.events.isEmpty {
                if fresh { return [] }
                history = try await events(of: executionID)
                fresh = true
                continue
            }
            do {
                try await append(decision.events.map { try Self.newEvent($0, metadata: metadata) }, to: stream, expected: .exact(state.version))
                cache.remember(history + decision.events, of: executionID)
                return decision.events
            } catch EventStoreError.versionConflict {
                history = try await events(of: executionID)
                fresh = true
            }
        }
        throw EngineError("execution \(executionID) kept changing while handling \(message); giving up after 10 attempts")
    }

    private func append(_ events: [NewEvent], to stream: StreamID, expected: ExpectedVersion) async throws {
        let started = ContinuousClock.now
        let result = try await store.append(to: stream, expected: expected, events: events)
        let source = events.first?.metadata.source ?? "unknown"
        Counter(label: "topsail_execution_events_appended_total", dimensions: [("source", source)]).increment(by: events.count)
        Metrics.Timer(label: "topsail_execution_append_seconds", dimensions: [("source", source)]).record(duration: ContinuousClock.now - started)
        handoff.deliver(LocalHandoff.recorded(events, stream: stream, result: result))
    }

    /// An execution event as it is appended (its type, schema version and payload).
    public static func newEvent(_ event: ExecutionEvent, metadata: EventMetadata) throws -> NewEvent {
        let (type, payload) = ExecutionEventCodec.encode(event)
        return NewEvent(type: type, schemaVersion: ExecutionEventCodec.schemaVersion, payload: try JSONText(encoding: payload), metadata: metadata)
    }
}

/// A failure of the engine's own making, safe to show.
public struct EngineError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Decoded execution histories, most recently used kept, bounded in count.
struct ExecutionHistoryCache: Sendable {
    private let histories: BoundedCache<String, [ExecutionEvent]>

    init(capacity: Int) {
        histories = BoundedCache(capacity: capacity)
    }

    func history(of id: String) -> [ExecutionEvent] { histories[id] ?? [] }

    func remember(_ events: [ExecutionEvent], of id: String) {
        guard !events.isEmpty else { return }
        // Keep the longest history seen: a concurrent reader may hold an older one.
        histories.update(id) { known in
            guard let known, known.count > events.count else { return events }
            return known
        }
    }
}
