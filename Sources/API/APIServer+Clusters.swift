import Access
import Clouds
import EventLog
import Foundation
import Hummingbird
import ReadModels

/// Cluster reads on Gate's paths, from the cluster view (`server_groups`): an application's
/// server groups and clusters, only in the accounts the caller may READ.
extension APIServer {
    func addClusterRoutes(to routes: Routes) {
        routes.on(.get, "/applications/:app/serverGroups", .application(.read)) { _, context in
            let app = try context.parameters.require("app")
            try await authorize(context, .read, application: app)
            return try Self.json(try await readableServerGroups(of: app, context))
        }
        routes.on(.get, "/applications/:app/clusters", .application(.read)) { _, context in
            let app = try context.parameters.require("app")
            try await authorize(context, .read, application: app)
            var clusters: [String: Set<String>] = [:]
            for group in try await readableServerGroups(of: app, context) { clusters[group.account, default: []].insert(group.cluster) }
            return try Self.json(clusters.mapValues { $0.sorted() })
        }
    }

    /// The application's server groups in accounts the caller may READ.
    private func readableServerGroups(of application: String, _ context: APIContext) async throws -> [ClusterReadModel.ServerGroup] {
        let caller = try context.requireCaller()
        let accounts = CloudAccounts(store: repository.eventStore)
        var readable: [String: Bool] = [:]
        var visible: [ClusterReadModel.ServerGroup] = []
        for group in try await ClusterReadModel(client: client, logger: logger).serverGroups(of: application) {
            if readable[group.account] == nil {
                readable[group.account] = try await accounts.account(group.account).map { CloudAccounts.refusal(caller, .read, account: $0) == nil } ?? caller.isAdmin
            }
            if readable[group.account] == true { visible.append(group) }
        }
        return visible
    }
}
