import EventLog
import Foundation
import Orchestration
import Logging
import Pipelines
import PostgresEventStore
import PostgresNIO

/// Loads and changes pipelines' concurrency gates (``PipelineSlots``), each the stream
/// `concurrency-<pipeline>`, with version-checked appends.
public struct ConcurrencyGate: Sendable {
    static let category = "concurrency"

    let store: any EventStore

    public init(store: any EventStore) {
        self.store = store
    }

    /// The gate's stream: the pipeline's id, or its application and name when it has none.
    static func stream(of pipeline: PipelineConfig) throws -> StreamID {
        let key = pipeline.id ?? "\(pipeline.application ?? "-")/\(pipeline.name ?? "-")"
        let cleaned = String(key.unicodeScalars.map { $0.properties.isWhitespace || $0.value < 0x21 || $0.value == 0x7F ? "_" : Character($0) })
        return try StreamID(category: category, id: String(cleaned.prefix(StreamID.maximumIDLength)))
    }

    func load(_ stream: StreamID) async throws -> PipelineSlots {
        var slots = PipelineSlots()
        var next: Int64 = 1
        while true {
            let batch = try await store.readStream(stream, from: next, direction: .forward, limit: 500)
            for recorded in batch {
                slots.evolve(try PipelineSlotsCodec.decode(type: recorded.type, payload: try recorded.payload.decode(JSONValue.self)))
            }
            guard let last = batch.last, batch.count == 500 else { return slots }
            next = last.streamVersion + 1
        }
    }

    /// Takes a slot for the execution or queues it; true when it holds a slot.
    func admit(_ executionID: String, triggeredAt position: Int64, of pipeline: PipelineConfig, metadata: EventMetadata) async throws -> Bool {
        let stream = try Self.stream(of: pipeline)
        for _ in 0..<20 {
            let slots = try await load(stream)
            let events = slots.admit(executionID, position: position, slots: PipelineSlots.slots(of: pipeline))
            guard !events.isEmpty else { return slots.holdsSlot(executionID) }
            do {
                try await append(events, to: stream, expected: slots.version, metadata: metadata)
                return events.contains(.taken(executionID: executionID))
            } catch EventStoreError.versionConflict {
                continue
            }
        }
        throw EngineError("the concurrency gate of \(stream) kept changing; giving up after 20 attempts")
    }

    /// Frees what the execution held; returns the executions that hold slots now (to be started,
    /// which is harmless for those already running) and those to cancel.
    func release(_ executionID: String, of pipeline: PipelineConfig, metadata: EventMetadata,
                 beforeAppending cancel: ([String]) async throws -> Void) async throws -> [String] {
        let stream = try Self.stream(of: pipeline)
        for _ in 0..<20 {
            let slots = try await load(stream)
            let (events, drop) = slots.release(executionID, slots: PipelineSlots.slots(of: pipeline), keepWaiting: pipeline.keepWaitingPipelines)
            guard !events.isEmpty else { return slots.running }
            // Canceled first: a crash before the append finds them still waiting and cancels again.
            try await cancel(drop)
            do {
                try await append(events, to: stream, expected: slots.version, metadata: metadata)
                var after = slots
                for event in events { after.evolve(event) }
                return after.running
            } catch EventStoreError.versionConflict {
                continue
            }
        }
        throw EngineError("the concurrency gate of \(stream) kept changing; giving up after 20 attempts")
    }

    /// An execution of a gated pipeline completed: its slot goes to the next waiting execution
    /// (the newest, with the others canceled, unless `keepWaitingPipelines`). Starting every slot
    /// holder again is harmless for those already running and finishes the job after a crash.
    func releaseAndStartNext(after executionID: String, pipeline: PipelineConfig, repository: ExecutionRepository, metadata: EventMetadata) async throws {
        let holders = try await release(executionID, of: pipeline, metadata: metadata) { dropped in
            for id in dropped {
                try await repository.handle(
                    .cancel(by: "topsail", reason: "a newer execution of the pipeline took the free slot (keepWaitingPipelines is off)"),
                    executionID: id, metadata: metadata)
            }
        }
        var admitted = DecisionContext()
        admitted.runningExecutionsOfPipeline = 0
        for id in holders where id != executionID {
            try await repository.handle(.startExecution, executionID: id, metadata: metadata, context: admitted)
        }
    }

    /// The gates' streams: every pipeline whose executions ever took a slot.
    func streams(client: PostgresClient, logger: Logger) async throws -> [StreamID] {
        var streams: [StreamID] = []
        do {
            for try await id in try await client.query(
                "SELECT DISTINCT stream_id FROM events WHERE event_type = \(PipelineSlots.Event.WireType.taken)", logger: logger
            ).decode(String.self) {
                streams.append(try StreamID(id))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "list the concurrency gates")
        }
        return streams
    }

    /// Slots held (or places in a queue) by executions that have completed, which only a start
    /// delivered again after its execution ended could leave (or a gate from before that was
    /// impossible): each is released with an event by `supervisor`, and the next executions
    /// start. A holder found finished for the first time is only remembered in `suspects`: it is
    /// released when the next look (one supervisor interval later) finds it still holding, so
    /// that an execution that just completed, whose orchestrator is releasing its slot that
    /// moment, is not released a second time by the supervisor. Returns the executions released.
    public func healStaleSlots(
        client: PostgresClient, repository: ExecutionRepository, suspects: inout Set<String>, logger: Logger
    ) async throws -> [String] {
        var healed: [String] = []
        var (found, released): (Set<String>, Set<String>) = ([], [])
        for stream in try await streams(client: client, logger: logger) {
            let slots = try await load(stream)
            for id in slots.running + slots.waiting {
                let state = ExecutionState(try await repository.events(of: id))
                guard state.version > 0, state.status.isComplete else { continue }
                let key = "\(stream) \(id)"
                found.insert(key)
                guard suspects.contains(key) else { continue }
                logger.warning("a finished execution held its pipeline's concurrency slot; released", metadata: [
                    "execution.id": "\(id)", "execution.status": "\(state.status.rawValue)", "gate": "\(stream)"])
                try await releaseAndStartNext(
                    after: id, pipeline: state.pipeline, repository: repository,
                    metadata: EventMetadata(correlationID: id, actor: "supervisor", source: "supervisor"))
                healed.append(id)
                released.insert(key)
            }
        }
        suspects = found.subtracting(released)
        return healed
    }

    private func append(_ events: [PipelineSlots.Event], to stream: StreamID, expected: Int64, metadata: EventMetadata) async throws {
        let new = try events.map { event in
            let (type, payload) = PipelineSlotsCodec.encode(event)
            return NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: metadata)
        }
        _ = try await store.append(to: stream, expected: expected == 0 ? .noStream : .exact(expected), events: new)
    }
}
