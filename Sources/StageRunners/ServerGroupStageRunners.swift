import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// `createServerGroup`, `resizeServerGroup` and `destroyServerGroup`: Spinnaker's stages over
/// ``CloudOperations``, run as the execution's trigger identity (which needs WRITE on the
/// account). Each cluster's operation is keyed by the execution, stage, attempt and cluster, so
/// a stage run again after a crash carries its operation on instead of starting another.
struct ServerGroupStageRunner: StageRunner {
    enum Kind { case create, resize, destroy, enable, disable, upsertLoadBalancer }

    let kind: Kind
    let operations: CloudOperations
    let store: any EventStore

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        let caller = try await TriggerIdentity.caller(of: run.execution.trigger, identities: Identities(store: store))
        let metadata = EventMetadata(correlationID: run.executionID, actor: caller.user, source: "worker")
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        switch kind {
        case .create:
            let clusters = stage["clusters"]?.arrayValue ?? (stage["cluster"].map { [$0] } ?? [])
            guard !clusters.isEmpty else { return failed("createServerGroup needs clusters (or cluster): account, region, capacity and image") }
            var created: [String: JSONValue] = [:]
            var addresses: [JSONValue] = []
            for (index, cluster) in clusters.enumerated() {
                guard let account = cluster["account"]?.stringValue ?? cluster["credentials"]?.stringValue else { return failed("clusters[\(index)]: account is required") }
                let region = cluster["region"]?.stringValue ?? cluster["availabilityZones"]?.objectValue?.keys.sorted().first ?? "local"
                guard let image = cluster["imageId"]?.stringValue ?? cluster["image"]?.stringValue else { return failed("clusters[\(index)]: imageId is required") }
                let application = cluster["application"]?.stringValue ?? run.execution.pipeline.application ?? ""
                let capacity = Self.capacity(cluster["capacity"])
                let base = ServerGroupName(application: application, stack: cluster["stack"]?.stringValue, detail: cluster["freeFormDetails"]?.stringValue)
                let key = "\(run.executionID)/\(run.refID)/\(run.attempt)/\(index)"
                // The name is chosen once: a stage run again finds the one its operation asked for.
                let name: ServerGroupName
                if let requested = try await operations.requestedServerGroup(key: key).flatMap(ServerGroupName.init(parsing:)) {
                    name = requested
                } else {
                    let existing = try await operations.serverGroups(account: account, application: application).map(\.description)
                    name = ServerGroupName.next(in: base, existing: existing)
                }
                let balancers = (cluster["loadBalancers"]?.arrayValue ?? []).compactMap(\.stringValue)
                let spec = ServerGroupSpec(name: name, region: region, image: image, capacity: capacity, port: cluster["containerPort"]?.intValue ?? 8080,
                                           loadBalancers: balancers)
                switch try await operations.perform(.createServerGroup(spec), account: account, caller: caller, key: key, metadata: metadata) {
                case .failed(let why): return failed("clusters[\(index)]: \(why)")
                case .succeeded(let state):
                    created[region, default: .array([])] = .array((created[region]?.arrayValue ?? []) + [.string(name.description)])
                    addresses += (state?.instances ?? []).compactMap { $0.address.map(JSONValue.string) }
                }
            }
            return StageOutcome(status: .succeeded, outputs: ["deploy.server.groups": .object(created), "instances": .array(addresses)])
        case .upsertLoadBalancer:
            let balancers = stage["loadBalancers"]?.arrayValue ?? [.object(stage)]
            for (index, balancer) in balancers.enumerated() {
                guard let name = balancer["name"]?.stringValue ?? balancer["loadBalancerName"]?.stringValue else { return failed("loadBalancers[\(index)]: name is required") }
                guard let account = balancer["credentials"]?.stringValue ?? balancer["account"]?.stringValue else { return failed("loadBalancers[\(index)]: credentials (the account) is required") }
                guard let port = balancer["listeners"]?.arrayValue?.first?["externalPort"]?.intValue ?? balancer["port"]?.intValue else {
                    return failed("loadBalancers[\(index)]: listeners[0].externalPort is required")
                }
                let region = balancer["region"]?.stringValue ?? "local"
                let check = balancer["healthCheckPath"]?.stringValue ?? "/"
                let key = "\(run.executionID)/\(run.refID)/\(run.attempt)/\(index)"
                if case .failed(let why) = try await operations.perform(
                    .upsertLoadBalancer(name: name, region: region, port: port, healthCheck: check), account: account, caller: caller, key: key, metadata: metadata) {
                    return failed("loadBalancers[\(index)]: \(why)")
                }
            }
            return StageOutcome(status: .succeeded)
        case .resize, .destroy, .enable, .disable:
            guard let account = stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else { return failed("\(run.stage.type) needs credentials (the account)") }
            guard let text = stage["serverGroupName"]?.stringValue ?? stage["asgName"]?.stringValue, let name = ServerGroupName(parsing: text), name.sequence != nil else {
                return failed("\(run.stage.type) needs serverGroupName, as app-stack-v000")
            }
            let region = stage["region"]?.stringValue ?? stage["regions"]?.arrayValue?.first?.stringValue ?? "local"
            let key = "\(run.executionID)/\(run.refID)/\(run.attempt)"
            let operation: CloudOperations.Operation
            switch kind {
            case .resize: operation = .resizeServerGroup(name, region: region, capacity: Self.capacity(stage["capacity"]))
            case .enable: operation = .enableServerGroup(name, region: region)
            case .disable: operation = .disableServerGroup(name, region: region)
            default: operation = .destroyServerGroup(name, region: region)
            }
            switch try await operations.perform(operation, account: account, caller: caller, key: key, metadata: metadata) {
            case .failed(let why): return failed(why)
            case .succeeded(let state):
                return StageOutcome(status: .succeeded, outputs: [
                    "serverGroupName": .string(name.description), "instances": .number(Double(state?.instances.count ?? 0)),
                ])
            }
        }
    }

    static func capacity(_ value: JSONValue?) -> Capacity {
        let desired = value?["desired"]?.intValue ?? 1
        return Capacity(min: value?["min"]?.intValue ?? desired, max: value?["max"]?.intValue ?? desired, desired: desired)
    }
}
