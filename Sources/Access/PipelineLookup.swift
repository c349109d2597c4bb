import EventLog
import Logging
import Pipelines
import PostgresEventStore
import PostgresNIO

/// Finds a saved pipeline of an application by id or by name, from the log itself (the read
/// model may lag a save that just happened).
public struct PipelineLookup: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The id of the newest save of a pipeline called `name` in `application` (migration 0010's
    /// `events_pipeline_by_name` serves it).
    public static func byNameQuery(application: String, name: String) -> PostgresQuery {
        """
        SELECT payload->'pipeline'->>'id' FROM events
         WHERE event_type = \(PipelineConfigStore.savedType)
           AND payload->'pipeline'->>'application' = \(application) AND payload->'pipeline'->>'name' = \(name)
         ORDER BY position DESC LIMIT 1
        """
    }

    /// The ids of every pipeline ever saved in `application`.
    public static func byApplicationQuery(_ application: String) -> PostgresQuery {
        """
        SELECT DISTINCT payload->'pipeline'->>'id' FROM events
         WHERE event_type = \(PipelineConfigStore.savedType) AND payload->'pipeline'->>'application' = \(application)
        """
    }

    /// By id, else the newest save with that name whose pipeline still has that name; nil when
    /// none (or deleted).
    public func find(application: String, nameOrID: String) async throws -> PipelineConfig? {
        let store = PipelineConfigStore(store: PostgresEventStore(client: client, logger: logger))
        if let byID = try await store.load(nameOrID), byID.application == application { return byID }
        do {
            let rows = try await client.query(Self.byNameQuery(application: application, name: nameOrID), logger: logger)
            for try await id in rows.decode(String?.self) {
                if let id, let latest = try await store.load(id), latest.name == nameOrID, latest.application == application { return latest }
            }
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError.wrapping(error, doing: "find a pipeline by name")
        }
        return nil
    }

    /// Every saved (not deleted) pipeline of `application`, by name, read from the log.
    public func all(application: String) async throws -> [PipelineConfig] {
        let store = PipelineConfigStore(store: PostgresEventStore(client: client, logger: logger))
        var ids: [String] = []
        do {
            for try await id in try await client.query(Self.byApplicationQuery(application), logger: logger).decode(String?.self) {
                if let id { ids.append(id) }
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "list an application's pipelines")
        }
        var pipelines: [PipelineConfig] = []
        for id in ids {
            if let latest = try await store.load(id), latest.application == application { pipelines.append(latest) }
        }
        return pipelines.sorted { ($0.name ?? "", $0.id ?? "") < ($1.name ?? "", $1.id ?? "") }
    }
}
