import EventLog
import Foundation
import Pipelines

/// Saved pipeline configurations, each the stream `pipeline-<id>`: every save appends a
/// `pipeline.saved` event with the whole Spinnaker JSON, so the stream is its history. Child
/// pipeline stages and `pipeline run --id` read the latest save.
public struct PipelineConfigStore: Sendable {
    public static let category = "pipeline"
    public static let savedType = "pipeline.saved"

    let store: any EventStore

    public init(store: any EventStore) {
        self.store = store
    }

    /// Saves `pipeline` (which must have an `id`) as the newest version; returns that version.
    @discardableResult
    public func save(_ pipeline: PipelineConfig, metadata: EventMetadata) async throws -> Int64 {
        guard let id = pipeline.id, !id.isEmpty else { throw EngineError("a saved pipeline needs an id") }
        let event = NewEvent(type: Self.savedType, payload: try JSONText(encoding: JSONValue.object(["pipeline": .object(pipeline.json)])),
                             metadata: metadata)
        return try await store.append(to: try StreamID(category: Self.category, id: id), expected: .any, events: [event]).streamVersion
    }

    /// The latest saved version of pipeline `id`, or nil when none was saved.
    public func load(_ id: String) async throws -> PipelineConfig? {
        guard let stream = try? StreamID(category: Self.category, id: id) else { return nil }
        guard let last = try await store.readStream(stream, from: Int64.max, direction: .backward, limit: 1).first,
              last.type == Self.savedType,
              let json = try last.payload.decode(JSONValue.self)["pipeline"]?.objectValue
        else { return nil }
        return PipelineConfig(json: json)
    }
}
