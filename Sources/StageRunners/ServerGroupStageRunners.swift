import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// Spinnaker's single-operation stages — resize, destroy, enable, disable a server group,
/// terminate instances, upsert or delete a load balancer or security group — over
/// ``CloudOperations``, run as the execution's trigger identity (which needs WRITE on the
/// account). Each cluster's operation is keyed by the execution, stage, attempt and cluster, so
/// a stage run again after a crash carries its operation on instead of starting another.
struct ServerGroupStageRunner: StageRunner {
    enum Kind { case resize, destroy, enable, disable, terminateInstances, upsertLoadBalancer, deleteLoadBalancer, upsertSecurityGroup, deleteSecurityGroup }

    let kind: Kind
    let operations: CloudOperations
    let store: any EventStore

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        let caller = try await TriggerIdentity.caller(of: run.execution.trigger, identities: Identities(store: store))
        let metadata = EventMetadata(correlationID: run.executionID, actor: caller.user, source: "worker")
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        switch kind {
        case .upsertLoadBalancer:
            let balancers = stage["loadBalancers"]?.arrayValue ?? [.object(stage)]
            for (index, balancer) in balancers.enumerated() {
                guard let name = balancer["name"]?.stringValue ?? balancer["loadBalancerName"]?.stringValue else { return failed("loadBalancers[\(index)]: name is required") }
                guard let account = balancer["credentials"]?.stringValue ?? balancer["account"]?.stringValue else { return failed("loadBalancers[\(index)]: credentials (the account) is required") }
                guard let port = balancer["listeners"]?.arrayValue?.first?["externalPort"]?.intValue ?? balancer["port"]?.intValue else {
                    return failed("loadBalancers[\(index)]: listeners[0].externalPort is required")
                }
                let region = balancer["region"]?.stringValue ?? "local"
                let check = balancer["healthCheckPath"]?.stringValue ?? balancer["healthCheck"]?.stringValue ?? "/"
                let groups = (balancer["securityGroups"]?.arrayValue ?? []).compactMap(\.stringValue)
                let key = "\(run.executionID)/\(run.refID)/\(run.attempt)/\(index)"
                if case .failed(let why) = try await operations.perform(
                    .upsertLoadBalancer(name: name, region: region, port: port, healthCheck: check, securityGroups: groups),
                    account: account, caller: caller, key: key, metadata: metadata) {
                    return failed("loadBalancers[\(index)]: \(why)")
                }
            }
            return StageOutcome(status: .succeeded)
        case .upsertSecurityGroup, .deleteSecurityGroup, .deleteLoadBalancer:
            guard let account = stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else { return failed("\(run.stage.type ?? "the stage") needs credentials (the account)") }
            let names = kind == .deleteLoadBalancer ? (stage["loadBalancerName"] ?? stage["name"]) : (stage["securityGroupName"] ?? stage["name"])
            guard let name = names?.stringValue else { return failed("\(run.stage.type ?? "the stage") needs \(kind == .deleteLoadBalancer ? "loadBalancerName" : "securityGroupName")") }
            let region = stage["region"]?.stringValue ?? stage["regions"]?.arrayValue?.first?.stringValue ?? "local"
            let operation: CloudOperations.Operation
            switch kind {
            case .upsertSecurityGroup:
                var rules: [IngressRule] = []
                for (index, rule) in (stage["ipIngress"]?.arrayValue ?? []).enumerated() {
                    guard let cidr = rule["cidr"]?.stringValue, let start = rule["startPort"]?.intValue else {
                        return failed("ipIngress[\(index)] needs cidr and startPort (and endPort)")
                    }
                    let protocolName = rule["type"]?.stringValue ?? "tcp"
                    guard protocolName == "tcp" else { return failed("ipIngress[\(index)]: only tcp rules can be enforced at a load balancer, not \(protocolName)") }
                    rules.append(IngressRule(cidr: cidr, startPort: start, endPort: rule["endPort"]?.intValue ?? start))
                }
                operation = .upsertSecurityGroup(name: name, region: region, rules: rules)
            case .deleteSecurityGroup: operation = .deleteSecurityGroup(name: name, region: region)
            default: operation = .deleteLoadBalancer(name: name, region: region)
            }
            let key = "\(run.executionID)/\(run.refID)/\(run.attempt)"
            if case .failed(let why) = try await operations.perform(operation, account: account, caller: caller, key: key, metadata: metadata) { return failed(why) }
            return StageOutcome(status: .succeeded)
        case .terminateInstances:
            guard let account = stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else { return failed("terminateInstances needs credentials (the account)") }
            let ids = (stage["instanceIds"]?.arrayValue ?? stage["instances"]?.arrayValue ?? []).compactMap(\.stringValue)
            guard !ids.isEmpty else { return failed("terminateInstances needs instanceIds") }
            let region = stage["region"]?.stringValue ?? stage["regions"]?.arrayValue?.first?.stringValue ?? "local"
            let key = "\(run.executionID)/\(run.refID)/\(run.attempt)"
            if case .failed(let why) = try await operations.perform(.terminateInstances(ids, region: region), account: account, caller: caller, key: key, metadata: metadata) {
                return failed(why)
            }
            return StageOutcome(status: .succeeded, outputs: ["terminatedInstanceIds": .array(ids.map(JSONValue.string))])
        case .resize, .destroy, .enable, .disable:
            guard let account = stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else { return failed("\(run.stage.type ?? "the stage") needs credentials (the account)") }
            guard let text = stage["serverGroupName"]?.stringValue ?? stage["asgName"]?.stringValue, let name = ServerGroupName(parsing: text), name.sequence != nil else {
                return failed("\(run.stage.type ?? "the stage") needs serverGroupName, as app-stack-v000")
            }
            let region = stage["region"]?.stringValue ?? stage["regions"]?.arrayValue?.first?.stringValue ?? "local"
            let key = "\(run.executionID)/\(run.refID)/\(run.attempt)"
            let operation: CloudOperations.Operation
            switch kind {
            case .resize: operation = .resizeServerGroup(name, region: region, capacity: Self.capacity(stage["capacity"]))
            case .enable: operation = .enableServerGroup(name, region: region)
            case .disable:
                let percentage = stage["desiredPercentage"]?.intValue ?? 100
                guard (1...100).contains(percentage) else { return failed("desiredPercentage is 1–100, not \(percentage)") }
                operation = .disableServerGroup(name, region: region, percentage: percentage)
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
