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
        public let disabled: Bool
        public let loadBalancers: JSONValue
        public let updatedAt: Date
    }

    /// A load balancer or a security group as its stream last recorded it.
    public struct Resource: Sendable, Encodable {
        public let name: String
        public let account: String
        public let region: String
        public let document: JSONValue
        public let updatedAt: Date
    }

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func serverGroups(of application: String) async throws -> [ServerGroup] {
        try await serverGroups(where: "application = $1", application, doing: "read an application's server groups")
    }

    /// The live server group one of whose instances has the id `instance`.
    public func serverGroup(withInstance instance: String) async throws -> ServerGroup? {
        try await serverGroups(where: "instances @> jsonb_build_array(jsonb_build_object('id', $1::text))", instance, doing: "find an instance").first
    }

    private func serverGroups(where condition: String, _ value: String, doing: String) async throws -> [ServerGroup] {
        var groups: [ServerGroup] = []
        do {
            var bindings = PostgresBindings()
            bindings.append(value)
            let query = PostgresQuery(unsafeSQL: """
                SELECT name, account, region, cluster, image, coalesce(capacity, '{}')::text, instances::text, disabled, load_balancers::text, updated_at
                  FROM server_groups WHERE \(condition) AND NOT destroyed ORDER BY account, cluster, name
                """, binds: bindings)
            for try await (name, account, region, cluster, image, capacity, instances, disabled, balancers, updated) in try await client.query(query, logger: logger)
                .decode((String, String, String, String, String?, String, String, Bool, String, Date).self) {
                groups.append(ServerGroup(
                    name: name, account: account, region: region, cluster: cluster, image: image,
                    capacity: try JSONText(capacity).decode(JSONValue.self), instances: try JSONText(instances).decode(JSONValue.self),
                    disabled: disabled, loadBalancers: try JSONText(balancers).decode(JSONValue.self), updatedAt: updated))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: doing)
        }
        return groups
    }

    /// Every live load balancer (`loadBalancer`) or security group (`securityGroup`).
    public func resources(_ kind: String) async throws -> [Resource] {
        var found: [Resource] = []
        do {
            for try await (name, account, region, document, updated) in try await client.query("""
                SELECT name, account, region, document::text, updated_at FROM cloud_resources WHERE kind = \(kind) AND NOT deleted ORDER BY account, name
                """, logger: logger).decode((String, String, String, String, Date).self) {
                found.append(Resource(name: name, account: account, region: region, document: try JSONText(document).decode(JSONValue.self), updatedAt: updated))
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the \(kind)s")
        }
        return found
    }
}
