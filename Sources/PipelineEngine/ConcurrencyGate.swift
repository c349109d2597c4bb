import EventLog
import Foundation
import Orchestration
import Pipelines

/// Loads and changes pipelines' concurrency gates (``PipelineSlots``), each the stream
/// `concurrency-<pipeline>`, with version-checked appends.
struct ConcurrencyGate: Sendable {
    static let category = "concurrency"

    let store: any EventStore

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

    private func append(_ events: [PipelineSlots.Event], to stream: StreamID, expected: Int64, metadata: EventMetadata) async throws {
        let new = try events.map { event in
            let (type, payload) = PipelineSlotsCodec.encode(event)
            return NewEvent(type: type, payload: try JSONText(encoding: payload), metadata: metadata)
        }
        _ = try await store.append(to: stream, expected: expected == 0 ? .noStream : .exact(expected), events: new)
    }
}
