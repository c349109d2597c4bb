import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// Orca's cluster stages, over the cluster's server groups as the account's provider runs them
/// (newest first, by sequence): `disableCluster` (remainingEnabledServerGroups),
/// `scaleDownCluster` (remainingFullSizeServerGroups, allowScaleDownActive), `shrinkCluster`
/// (shrinkToSize, allowDeleteActive) and `rollbackCluster` (the newest server group gives way to
/// the one before it: that one is resized to the newest's capacity, enabled, waited for until
/// targetHealthyRollbackPercentage of it is Up, then the newest is disabled). Every operation is
/// keyed by the execution, stage, attempt and server group, so a stage run again repeats nothing.
struct ClusterStageRunner: StageRunner {
    enum Kind { case disable, scaleDown, shrink, rollback }

    let kind: Kind
    let operations: CloudOperations
    let store: any EventStore

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        guard let account = stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else { return failed("\(run.stage.type ?? "the stage") needs credentials (the account)") }
        let clusterName = stage["cluster"]?.stringValue ?? stage["moniker"]?["cluster"]?.stringValue
        guard let clusterName, let cluster = ServerGroupName(parsing: clusterName), cluster.sequence == nil else {
            return failed("\(run.stage.type ?? "the stage") needs cluster, as app-stack-detail")
        }
        let regions = (stage["regions"]?.arrayValue ?? []).compactMap(\.stringValue)
        let region = stage["region"]?.stringValue ?? regions.first ?? "local"
        let caller = try await TriggerIdentity.caller(of: run.execution.trigger, identities: Identities(store: store))
        let metadata = EventMetadata(correlationID: run.executionID, actor: caller.user, source: "worker")
        let key = "\(run.executionID)/\(run.refID)/\(run.attempt)"
        func perform(_ operation: CloudOperations.Operation, _ step: String) async throws -> String? {
            if case .failed(let why) = try await operations.perform(operation, account: account, caller: caller, key: "\(key)/\(step)", metadata: metadata) { return why }
            return nil
        }
        let groups: [ServerGroupState]
        do {
            groups = try await operations.serverGroupStates(account: account, application: cluster.application, caller: caller)
                .filter { $0.name.cluster == cluster.cluster && $0.region == region }
                .sorted { ($0.name.sequence ?? 0) > ($1.name.sequence ?? 0) }
        } catch let error as CloudError {
            return failed(error.description)
        }
        var touched: [JSONValue] = []
        switch kind {
        case .disable:
            let remaining = max(0, stage["remainingEnabledServerGroups"]?.intValue ?? 1)
            let enabled = ordered(groups.filter { !$0.disabled }, largerFirst: stage["preferLargerOverNewer"]?.boolValue ?? false)
            for group in enabled.dropFirst(remaining) {
                if let why = try await perform(.disableServerGroup(group.name, region: region, percentage: 100), "disable/\(group.name)") { return failed(why) }
                touched.append(.string(group.name.description))
            }
        case .scaleDown:
            let remaining = max(0, stage["remainingFullSizeServerGroups"]?.intValue ?? 1)
            let active = stage["allowScaleDownActive"]?.boolValue ?? false
            for group in ordered(groups, largerFirst: stage["preferLargerOverNewer"]?.boolValue ?? false).dropFirst(remaining)
            where (active || group.disabled) && group.capacity.desired > 0 {
                let empty = Capacity(min: 0, max: group.capacity.max, desired: 0)
                if let why = try await perform(.resizeServerGroup(group.name, region: region, capacity: empty), "scaledown/\(group.name)") { return failed(why) }
                touched.append(.string(group.name.description))
            }
        case .shrink:
            let size = max(0, stage["shrinkToSize"]?.intValue ?? 1)
            let active = stage["allowDeleteActive"]?.boolValue ?? false
            for group in ordered(groups, largerFirst: stage["retainLargerOverNewer"]?.boolValue ?? false).dropFirst(size) where active || group.disabled {
                if !group.disabled, let why = try await perform(.disableServerGroup(group.name, region: region, percentage: 100), "disable/\(group.name)") {
                    return failed(why)
                }
                if let why = try await perform(.destroyServerGroup(group.name, region: region), "destroy/\(group.name)") { return failed(why) }
                touched.append(.string(group.name.description))
            }
        case .rollback:
            return try await rollBack(run, groups: groups, region: region, perform: perform)
        }
        return StageOutcome(status: .succeeded, outputs: ["serverGroups": .array(touched)])
    }

    func ordered(_ groups: [ServerGroupState], largerFirst: Bool) -> [ServerGroupState] {
        guard largerFirst else { return groups }
        return groups.enumerated().sorted { left, right in
            left.element.capacity.desired != right.element.capacity.desired ? left.element.capacity.desired > right.element.capacity.desired : left.offset < right.offset
        }.map(\.element)
    }

    /// The newest server group gives way to the one before it, checked until enough of it is Up.
    func rollBack(
        _ run: StageRun, groups: [ServerGroupState], region: String, perform: (CloudOperations.Operation, String) async throws -> String?
    ) async throws -> StageOutcome {
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        var context = run.context
        if context["rollbackFrom"] == nil {
            // Chosen once, before anything changes.
            guard groups.count >= 2 else { return failed("the cluster has \(groups.count) server group(s): nothing to roll back to") }
            context["rollbackFrom"] = .string(groups[0].name.description)
            context["rollbackTo"] = .string(groups[1].name.description)
            context["capacity"] = ["min": .number(Double(groups[0].capacity.min)), "max": .number(Double(groups[0].capacity.max)),
                                   "desired": .number(Double(groups[0].capacity.desired))]
            context["deadline"] = .number(Double(ClusterDeploy.now() + 1000 * (run.stage.json["waitForUpTimeoutSec"]?.intValue ?? 300)))
            return .poll(after: .zero, context: context)
        }
        guard let from = context["rollbackFrom"]?.stringValue.flatMap(ServerGroupName.init(parsing:)),
              let to = context["rollbackTo"]?.stringValue.flatMap(ServerGroupName.init(parsing:)) else { return failed("the rollback's plan is unreadable") }
        let capacity = ServerGroupStageRunner.capacity(context["capacity"])
        guard let target = groups.first(where: { $0.name == to }) else { return failed("\(to) is gone: nothing to roll back to") }
        if target.capacity.desired < capacity.desired || target.instances.count < capacity.desired {
            if let why = try await perform(.resizeServerGroup(to, region: region, capacity: capacity), "resize/\(to)") { return failed(why) }
        }
        if let why = try await perform(.enableServerGroup(to, region: region), "enable/\(to)") { return failed(why) }
        let current = try await operations.serverGroupStates(account: run.stage.json["credentials"]?.stringValue ?? run.stage.json["account"]?.stringValue ?? "",
                                                             application: to.application).first { $0.name == to && $0.region == region }
        let percentage = run.stage.json["targetHealthyRollbackPercentage"]?.intValue ?? 100
        let needed = (capacity.desired * percentage + 99) / 100
        let up = current?.upCount ?? 0
        guard up >= needed else {
            if ClusterDeploy.now() > context["deadline"]?.intValue ?? 0 {
                return failed("\(to) has \(up) of \(capacity.desired) instances Up (\(needed) needed); \(from) still serves")
            }
            context["up"] = .number(Double(up))
            return .poll(after: .seconds(1), context: context)
        }
        if let why = try await perform(.disableServerGroup(from, region: region, percentage: 100), "disable/\(from)") { return failed(why) }
        context["up"] = .number(Double(up))
        return StageOutcome(status: .succeeded, outputs: context)
    }
}

/// `cloneServerGroup`: a new server group of the source's cluster (or another) from the source's
/// image, capacity and load balancers, with the stage's overrides, deployed like a deploy stage's
/// cluster (its strategy, health wait and rollback). The source is read once and recorded.
struct CloneServerGroupStageRunner: StageRunner {
    let deploy: DeployStageRunner
    let operations: CloudOperations
    let store: any EventStore

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        if let cluster = run.context["clone.cluster"] { return try await deploy.deploy(run, clusters: [cluster]) }
        let source = stage["source"]
        guard let account = source?["account"]?.stringValue ?? stage["credentials"]?.stringValue ?? stage["account"]?.stringValue else {
            return failed("cloneServerGroup needs source.account (or credentials)")
        }
        guard let sourceName = (source?["serverGroupName"] ?? source?["asgName"] ?? stage["serverGroupName"])?.stringValue,
              let name = ServerGroupName(parsing: sourceName), name.sequence != nil else {
            return failed("cloneServerGroup needs source.serverGroupName, as app-stack-v000")
        }
        let region = source?["region"]?.stringValue ?? stage["region"]?.stringValue ?? "local"
        let caller = try await TriggerIdentity.caller(of: run.execution.trigger, identities: Identities(store: store))
        let found: ServerGroupState?
        do {
            found = try await operations.serverGroupStates(account: account, application: name.application, caller: caller)
                .first { $0.name == name && $0.region == region }
        } catch let error as CloudError {
            return failed(error.description)
        }
        guard let found else { return failed("there is no server group \(name) in \(account)/\(region) to clone") }
        var cluster: [String: JSONValue] = [
            "account": .string(stage["credentials"]?.stringValue ?? account), "region": .string(region), "application": .string(name.application),
            "stack": name.stack.map(JSONValue.string) ?? .null, "freeFormDetails": name.detail.map(JSONValue.string) ?? .null,
            "imageId": .string(found.image), "loadBalancers": .array(found.loadBalancers.map(JSONValue.string)),
            "capacity": ["min": .number(Double(found.capacity.min)), "max": .number(Double(found.capacity.max)), "desired": .number(Double(found.capacity.desired))],
        ]
        for field in ["stack", "freeFormDetails", "imageId", "amiName", "capacity", "loadBalancers", "strategy", "targetHealthyDeployPercentage",
                      "waitForUpTimeoutSec", "delayBeforeDisableSec", "maxRemainingAsgs", "scaleDown", "targetPercentages", "rollback", "containerPort"] {
            if let value = stage[field], value != .null { cluster[field == "amiName" ? "imageId" : field] = value }
        }
        return .poll(after: .zero, context: ["clone.cluster": .object(cluster), "source": .string(name.description)])
    }
}
