import Access
import Clouds
import EventLog
import Foundation
import Hummingbird
import Orchestration
import PipelineEngine
import Pipelines
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
    func readableServerGroups(of application: String, _ context: APIContext) async throws -> [ClusterReadModel.ServerGroup] {
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

// MARK: - One cluster, load balancers, security groups, instances, ad-hoc tasks

extension APIServer {
    /// Cloud operations a task may run: the cloud stage types, never `script` or `webhook`.
    static let taskJobTypes: Set<String> = [
        "createServerGroup", "cloneServerGroup", "resizeServerGroup", "enableServerGroup", "disableServerGroup", "destroyServerGroup",
        "terminateInstances", "upsertLoadBalancer", "deleteLoadBalancer", "upsertSecurityGroup", "deleteSecurityGroup",
        "rollbackCluster", "shrinkCluster", "scaleDownCluster", "disableCluster", "deploy",
    ]

    func addCloudRoutes(to routes: Routes) {
        routes.on(.get, "/applications/:app/clusters/:account/:cluster", .application(.read)) { _, context in
            let app = try context.parameters.require("app")
            try await authorize(context, .read, application: app)
            let account = try context.parameters.require("account"), cluster = try context.parameters.require("cluster")
            try await authorizeAccount(context, .read, account: account)
            let groups = try await ClusterReadModel(client: client, logger: logger).serverGroups(of: app).filter { $0.account == account && $0.cluster == cluster }
            guard !groups.isEmpty else { throw APIError.notFound("application \(app) has no cluster \(cluster) in account \(account)") }
            return try Self.json(ClusterView(name: cluster, account: account, application: app, serverGroups: groups))
        }
        routes.on(.get, "/applications/:app/loadBalancers", .application(.read)) { _, context in
            let app = try context.parameters.require("app")
            try await authorize(context, .read, application: app)
            let groups = try await readableServerGroups(of: app, context)
            var views: [LoadBalancerView] = []
            for balancer in try await ClusterReadModel(client: client, logger: logger).resources("loadBalancer") {
                let members = groups.filter { $0.account == balancer.account && ($0.loadBalancers.arrayValue ?? []).contains(.string(balancer.name)) }
                // An application's load balancers: those its server groups serve behind, and those named for it.
                guard !members.isEmpty || balancer.name == app || balancer.name.hasPrefix(app + "-") else { continue }
                guard try await mayRead(context, account: balancer.account) else { continue }
                views.append(LoadBalancerView(
                    name: balancer.name, account: balancer.account, region: balancer.region, port: balancer.document["port"]?.intValue,
                    healthCheck: balancer.document["healthCheck"]?.stringValue, securityGroups: balancer.document["securityGroups"] ?? .array([]),
                    serverGroups: members.map { LoadBalancerView.Member(name: $0.name, isDisabled: $0.disabled, instances: $0.instances) }))
            }
            return try Self.json(views)
        }
        routes.on(.get, "/securityGroups", .authenticated) { _, context in
            var byAccount: [String: [String: [SecurityGroupView]]] = [:]
            for group in try await ClusterReadModel(client: client, logger: logger).resources("securityGroup") where try await mayRead(context, account: group.account) {
                byAccount[group.account, default: [:]][group.region, default: []].append(
                    SecurityGroupView(name: group.name, account: group.account, region: group.region, ipIngress: group.document["rules"] ?? .array([])))
            }
            return try Self.json(byAccount)
        }
        routes.on(.get, "/instances/:account/:region/:id", .authenticated) { _, context in
            let account = try context.parameters.require("account"), region = try context.parameters.require("region"), id = try context.parameters.require("id")
            try await authorizeAccount(context, .read, account: account)
            guard let group = try await ClusterReadModel(client: client, logger: logger).serverGroup(withInstance: id),
                  group.account == account, group.region == region,
                  let instance = group.instances.arrayValue?.first(where: { $0["id"]?.stringValue == id }) else {
                throw APIError.notFound("there is no instance \(id) in \(account)/\(region)")
            }
            return try Self.json(InstanceView(
                instanceId: id, account: account, region: region, serverGroup: group.name, cluster: group.cluster,
                health: instance["health"]?.stringValue, address: instance["address"]?.stringValue, slot: instance["slot"]?.intValue,
                isDisabled: group.disabled))
        }
        routes.on(.get, "/tasks/:id", .application(.read)) { _, context in
            let id = try context.parameters.require("id")
            guard let view = try await repository.view(id) else { throw APIError.notFound("no task \(id)") }
            try await authorize(context, .read, application: view.application)
            return try Self.json(view)
        }
        routes.on(.post, "/applications/:app/tasks", .application(.execute)) { request, context in
            let app = try context.parameters.require("app")
            try await authorize(context, .execute, application: app)
            let body = try await self.body(request)
            guard let jobs = body["job"]?.arrayValue, !jobs.isEmpty else {
                throw APIError.badRequest("a task needs job: a non-empty array of operations, each with a type")
            }
            guard jobs.count <= 20 else { throw APIError.badRequest("a task has at most 20 jobs, not \(jobs.count)") }
            var stages: [JSONValue] = []
            for (index, job) in jobs.enumerated() {
                guard var stage = job.objectValue, let type = stage["type"]?.stringValue else { throw APIError.badRequest("job[\(index)] is not an object with a type") }
                guard Self.taskJobTypes.contains(type) else {
                    throw APIError.badRequest("job[\(index)]: \(type) is not a cloud operation (one of \(Self.taskJobTypes.sorted().joined(separator: ", ")))")
                }
                // Refused here, before anything starts, when the caller may not change an account a job
                // names (the stage checks again when it runs).
                for cluster in stage["clusters"]?.arrayValue ?? [.object(stage)] {
                    if let account = (cluster["credentials"] ?? cluster["account"] ?? cluster["source"]?["account"])?.stringValue {
                        try await authorizeAccount(context, .write, account: account)
                    }
                }
                // Jobs run one after another, as Spinnaker's task stages do.
                stage["refId"] = .string(String(index + 1))
                stage["requisiteStageRefIds"] = index == 0 ? .array([]) : .array([.string(String(index))])
                stage["name"] = stage["name"] ?? .string(type)
                stages.append(.object(stage))
            }
            let description = body["description"]?.stringValue ?? jobs.compactMap { $0["type"]?.stringValue }.joined(separator: ", ")
            let pipeline: JSONValue = [
                "application": .string(app), "name": .string("task: \(description.prefix(200))"), "limitConcurrent": false, "stages": .array(stages),
            ]
            let config: PipelineConfig
            switch PipelineValidation.parse(pipeline) {
            case .success(let parsed): config = parsed
            case .failure(let problems): throw APIError.badRequest("the task is not valid: \(problems)")
            }
            if let problem = PipelineValidation.disabledStages(of: config, configuration.disabledStageTypes).first {
                throw APIError.conflict("the task cannot run on this installation: \(problem)")
            }
            let caller = try context.requireCaller()
            let trigger = TriggerIdentity.recording(caller, in: ["type": "task", "user": .string(caller.user)])
            let id = try await ExecutionCommands(repository: repository).trigger(config, trigger: trigger, parameters: [:], metadata: Self.metadata(context))
            return try Self.json(["id": id, "ref": "/tasks/\(id)"], status: .accepted)
        }
    }

    /// Refuses with 403 unless the caller may `permission` the account (404 when there is none).
    func authorizeAccount(_ context: APIContext, _ permission: Permission, account: String) async throws {
        guard let found = try await CloudAccounts(store: repository.eventStore).account(account) else {
            throw APIError.notFound("there is no account \(account)")
        }
        if let refusal = CloudAccounts.refusal(try context.requireCaller(), permission, account: found) { throw APIError(.forbidden, "forbidden", refusal) }
    }

    func mayRead(_ context: APIContext, account: String) async throws -> Bool {
        let caller = try context.requireCaller()
        return try await CloudAccounts(store: repository.eventStore).account(account).map { CloudAccounts.refusal(caller, .read, account: $0) == nil } ?? caller.isAdmin
    }
}

struct ClusterView: Encodable {
    let name: String
    let account: String
    let application: String
    let serverGroups: [ClusterReadModel.ServerGroup]
}

struct LoadBalancerView: Encodable {
    struct Member: Encodable {
        let name: String
        let isDisabled: Bool
        let instances: JSONValue
    }

    let name: String
    let account: String
    let region: String
    let port: Int?
    let healthCheck: String?
    let securityGroups: JSONValue
    let serverGroups: [Member]
}

struct SecurityGroupView: Encodable {
    let name: String
    let account: String
    let region: String
    let ipIngress: JSONValue
}

struct InstanceView: Encodable {
    let instanceId: String
    let account: String
    let region: String
    let serverGroup: String
    let cluster: String
    let health: String?
    let address: String?
    let slot: Int?
    let isDisabled: Bool
}
