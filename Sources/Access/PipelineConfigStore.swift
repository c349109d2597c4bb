import EventLog
import Foundation
import Pipelines

/// Saved pipeline configurations, each the stream `pipeline-<id>` (``VersionedDocuments``):
/// `pipeline.saved` carries the whole Spinnaker JSON, `pipeline.deleted` ends it and keeps the
/// history. Child pipeline stages, `pipeline run --id` and the API's triggers read the latest save.
public struct PipelineConfigStore: Sendable {
    public static let category = "pipeline"
    public static let savedType = "pipeline.saved"
    public static let deletedType = "pipeline.deleted"

    public let documents: VersionedDocuments

    public init(store: any EventStore) {
        documents = VersionedDocuments(category: Self.category, store: store)
    }

    /// Saves `pipeline` (which must have an `id`) as the newest version; returns that version.
    /// With `basedOn`, refused with a version conflict unless the pipeline is still at that version.
    @discardableResult
    public func save(_ pipeline: PipelineConfig, basedOn version: Int64? = nil, metadata: EventMetadata) async throws -> Int64 {
        guard let id = pipeline.id, !id.isEmpty else { throw AccessError("a saved pipeline needs an id") }
        // The last line of defence: a trigger's secret is in the log only sealed (``SecretSeal``).
        guard !SecretSeal.hasPlainTriggerSecrets(pipeline.json) else {
            throw AccessError("a trigger's secret must be sealed before the pipeline is saved; configure the secrets key (TOPSAIL_SECRETS_KEY)")
        }
        return try await documents.save(.object(pipeline.json), id: id, basedOn: version, metadata: metadata)
    }

    public func delete(_ id: String, metadata: EventMetadata) async throws -> Int64? {
        try await documents.delete(id, metadata: metadata)
    }

    /// The latest saved version of pipeline `id`, or nil when none was saved or it was deleted.
    public func load(_ id: String) async throws -> PipelineConfig? {
        guard let latest = try await documents.latest(id), let json = latest.document.objectValue else { return nil }
        return PipelineConfig(json: json)
    }

    public func history(_ id: String, limit: Int = 100) async throws -> [VersionedDocuments.Version] {
        try await documents.history(id, limit: limit)
    }
}

/// Applications (name, description, owner email, attributes, permissions), each the stream
/// `application-<name>` (``VersionedDocuments``).
public struct ApplicationStore: Sendable {
    public static let category = "application"

    public let documents: VersionedDocuments

    public init(store: any EventStore) {
        documents = VersionedDocuments(category: Self.category, store: store)
    }

    /// Application names: lowercase letters, digits and '-', starting with a letter, at most 100.
    public static func problem(name: String) -> String? {
        let valid = name.unicodeScalars.first.map { ("a"..."z").contains($0) } == true && name.count <= 100
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        return valid ? nil : "application names are lowercase letters, digits and '-', start with a letter and have at most 100 characters"
    }
}
