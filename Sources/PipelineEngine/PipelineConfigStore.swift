import EventLog
import Foundation
import Pipelines

/// Saved pipeline configurations, each the stream `pipeline-<id>`: every save appends a
/// `pipeline.saved` event with the whole Spinnaker JSON and a delete appends `pipeline.deleted`,
/// so the stream is the pipeline's history. Child pipeline stages, `pipeline run --id` and the
/// API's triggers read the latest save.
public struct PipelineConfigStore: Sendable {
    public static let category = "pipeline"
    public static let savedType = "pipeline.saved"
    public static let deletedType = "pipeline.deleted"

    let store: any EventStore

    public init(store: any EventStore) {
        self.store = store
    }

    /// A version of a pipeline in its history.
    public struct Version: Sendable, Encodable {
        public let version: Int64
        public let recordedAt: Date
        public let actor: String?
        public let source: String?
        /// Nil for a deletion.
        public let pipeline: JSONValue?
        public let deleted: Bool
    }

    /// Saves `pipeline` (which must have an `id`) as the newest version; returns that version.
    /// With `basedOn`, the save is refused with a version conflict unless the pipeline is still
    /// at that version (0: it must not exist yet) — a save based on a stale copy loses nothing.
    @discardableResult
    public func save(_ pipeline: PipelineConfig, basedOn version: Int64? = nil, metadata: EventMetadata) async throws -> Int64 {
        guard let id = pipeline.id, !id.isEmpty else { throw EngineError("a saved pipeline needs an id") }
        let event = NewEvent(type: Self.savedType, payload: try JSONText(encoding: JSONValue.object(["pipeline": .object(pipeline.json)])),
                             metadata: metadata)
        let expected: ExpectedVersion = version.map { $0 == 0 ? .noStream : .exact($0) } ?? .any
        return try await store.append(to: try StreamID(category: Self.category, id: id), expected: expected, events: [event]).streamVersion
    }

    /// Deletes the pipeline (its history stays); returns the new version, or nil when there was
    /// nothing to delete.
    public func delete(_ id: String, metadata: EventMetadata) async throws -> Int64? {
        let stream = try StreamID(category: Self.category, id: id)
        guard let last = try await store.readStream(stream, from: .max, direction: .backward, limit: 1).first, last.type == Self.savedType
        else { return nil }
        let event = NewEvent(type: Self.deletedType, payload: try JSONText(encoding: JSONValue.object(["id": .string(id)])), metadata: metadata)
        return try await store.append(to: stream, expected: .exact(last.streamVersion), events: [event]).streamVersion
    }

    /// The latest saved version of pipeline `id`, or nil when none was saved or it was deleted.
    public func load(_ id: String) async throws -> PipelineConfig? {
        try await latest(id)?.pipeline
    }

    /// The latest version of pipeline `id` and its number, or nil when none or deleted.
    public func latest(_ id: String) async throws -> (pipeline: PipelineConfig, version: Int64)? {
        guard let stream = try? StreamID(category: Self.category, id: id) else { return nil }
        guard let last = try await store.readStream(stream, from: Int64.max, direction: .backward, limit: 1).first,
              last.type == Self.savedType,
              let json = try last.payload.decode(JSONValue.self)["pipeline"]?.objectValue
        else { return nil }
        return (PipelineConfig(json: json), last.streamVersion)
    }

    /// Every version of pipeline `id`, newest first (at most `limit`).
    public func history(_ id: String, limit: Int = 100) async throws -> [Version] {
        guard let stream = try? StreamID(category: Self.category, id: id) else { return [] }
        return try await store.readStream(stream, from: .max, direction: .backward, limit: limit).map { event in
            let deleted = event.type == Self.deletedType
            return Version(
                version: event.streamVersion, recordedAt: event.recordedAt, actor: event.metadata.actor, source: event.metadata.source,
                pipeline: deleted ? nil : try event.payload.decode(JSONValue.self)["pipeline"], deleted: deleted)
        }
    }
}
