import Access
import CLISupport
import EventLog
import Foundation
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO

/// Where `apply` and `export` read and save applications and pipelines: the database directly
/// (an operator), or the HTTP API (as a token's user, within its permissions).
protocol ConfigurationBackend: Sendable {
    /// The application's newest document and version; nil when there is none.
    func application(_ name: String) async throws -> (document: JSONValue, version: Int64)?
    func saveApplication(_ document: JSONValue, name: String, basedOn: Int64) async throws -> Int64
    /// The application's pipeline with this name (or id), as saved now.
    func pipeline(application: String, name: String) async throws -> PipelineConfig?
    /// The pipeline's newest document and version; nil when there is none (or it is deleted).
    func pipeline(id: String) async throws -> (document: JSONValue, version: Int64)?
    func savePipeline(_ pipeline: PipelineConfig, basedOn: Int64) async throws -> Int64
    /// Every pipeline of the application.
    func pipelines(of application: String) async throws -> [PipelineConfig]
}

/// The database, as an operator: events are recorded with `$USER` and source `cli`.
struct DatabaseConfigurationBackend: ConfigurationBackend {
    let client: PostgresClient
    let logger: Logger
    let metadata: EventMetadata

    private var store: PostgresEventStore { PostgresEventStore(client: client, logger: logger) }

    func application(_ name: String) async throws -> (document: JSONValue, version: Int64)? {
        try await ApplicationStore(store: store).documents.latest(name)
    }

    func saveApplication(_ document: JSONValue, name: String, basedOn: Int64) async throws -> Int64 {
        try await ApplicationStore(store: store).documents.save(document, id: name, basedOn: basedOn, metadata: metadata)
    }

    func pipeline(application: String, name: String) async throws -> PipelineConfig? {
        try await PipelineLookup(client: client, logger: logger).find(application: application, nameOrID: name)
    }

    func pipeline(id: String) async throws -> (document: JSONValue, version: Int64)? {
        try await PipelineConfigStore(store: store).documents.latest(id)
    }

    func savePipeline(_ pipeline: PipelineConfig, basedOn: Int64) async throws -> Int64 {
        var pipeline = pipeline
        if SecretSeal.hasPlainTriggerSecrets(pipeline.json) {
            guard let seal = try SecretSeal.configured(file: nil) else {
                throw CLIError("pipeline \(pipeline.name ?? pipeline.id ?? "") has a trigger secret and no secrets key is set to seal it: set TOPSAIL_SECRETS_KEY (source .topsail/services.env)")
            }
            pipeline = PipelineConfig(json: try seal.sealingTriggerSecrets(of: pipeline.json))
        }
        return try await PipelineConfigStore(store: store).save(pipeline, basedOn: basedOn, metadata: metadata)
    }

    func pipelines(of application: String) async throws -> [PipelineConfig] {
        try await PipelineLookup(client: client, logger: logger).all(application: application)
    }
}

/// The HTTP API: `GET`/`POST /applications`, `/applications/{app}/pipelineConfigs`,
/// `/pipelineConfigs/{id}/history` and `POST /pipelines`, with `basedOn` so that a concurrent
/// change is a conflict, not lost.
struct APIConfigurationBackend: ConfigurationBackend {
    let api: RemoteAPI

    func application(_ name: String) async throws -> (document: JSONValue, version: Int64)? {
        guard var document = try await api.callIfFound(.GET, "/applications/\(RemoteAPI.escape(name))")?.objectValue else { return nil }
        let version = Int64(document["version"]?.intValue ?? 0)
        document["version"] = nil
        return (.object(document), version)
    }

    func saveApplication(_ document: JSONValue, name: String, basedOn: Int64) async throws -> Int64 {
        Int64(try await api.call(.POST, "/applications?basedOn=\(basedOn)", body: document)["version"]?.intValue ?? 0)
    }

    func pipeline(application: String, name: String) async throws -> PipelineConfig? {
        let path = "/applications/\(RemoteAPI.escape(application))/pipelineConfigs/\(RemoteAPI.escape(name))"
        return try await api.callIfFound(.GET, path)?.objectValue.map { PipelineConfig(json: $0) }
    }

    func pipeline(id: String) async throws -> (document: JSONValue, version: Int64)? {
        guard let latest = try await api.callIfFound(.GET, "/pipelineConfigs/\(RemoteAPI.escape(id))/history?limit=1")?.arrayValue?.first,
              latest["deleted"] != true, let document = latest["document"], let version = latest["version"]?.intValue
        else { return nil }
        return (document, Int64(version))
    }

    func savePipeline(_ pipeline: PipelineConfig, basedOn: Int64) async throws -> Int64 {
        Int64(try await api.call(.POST, "/pipelines?basedOn=\(basedOn)", body: .object(pipeline.json))["version"]?.intValue ?? 0)
    }

    func pipelines(of application: String) async throws -> [PipelineConfig] {
        let listed = try await api.callIfFound(.GET, "/applications/\(RemoteAPI.escape(application))/pipelineConfigs")?.arrayValue ?? []
        return listed.compactMap(\.objectValue).map { PipelineConfig(json: $0) }
    }
}
