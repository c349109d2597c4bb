import EventLog
import Foundation
import Logging
import PostgresEventStore
import PostgresNIO

/// The cluster view the projector keeps (`server_groups`): every server group that is not
/// destroyed, by application.
public struct ClusterReadModel: Sendable {
    public struct ServerGroup: Sendable, Encodable {
        public let name: String
        public let account: String
        public let region: String
        public let cluster: String
        public let image: String?
        public let capacity: JSONValue
        public let instances: JSONValue
        public let updatedAt: Date
    }

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func serverGroups(of application: String) async throws -> [ServerGroup] {
        var groups: [ServerGroup] = []
        do {
            for try await (name, account, region, cluster, image, capacity, instances, updated) in try await client.query("""
                SELECT name, account, region, cluster, image, coalesce(capacity, '{}')::text, instances::text, updated_at FROM server_groups
                 WHERE application = \(application) AND NOT destroyed ORDER BY account, cluster, name
                """, logger: logger).decode((String, String, String, String, String?, String, String, Date).self) {
                groups.append(ServerGroup(
                    name: name, account: account, region: region, cluster: cluster, image: image,
                    capacity: try JSONText(capacity).decode(JSONValue.self), instances: try JSONText(instances).decode(JSONValue.self), updatedAt: updated))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read an application's server groups")
        }
        return groups
    }
}
