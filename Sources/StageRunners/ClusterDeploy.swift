import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// One cluster of a deploy stage: what it asks for and how it moves on.
struct ClusterDeploy {
    let account: String
    let region: String
    let spec: ServerGroupSpec
    let strategy: String
    let targetHealthyPercentage: Int
    let percentages: [Int]
    let delayBeforeDisable: Duration
    let waitForUp: Duration
    let scaleDown: Bool
    let maxRemaining: Int?
    let rollbackOnFailure: Bool
    let base: ServerGroupName
    let key: String
    let caller: Caller
    let metadata: EventMetadata
    let operations: CloudOperations
    /// The `custom` strategy's pipeline and the parameters it is given.
    let strategyPipeline: String?
    let strategyParameters: [String: JSONValue]
    let children: ChildPipelines
    let run: StageRun

    /// The image of a bake or findImageFromTags stage upstream of this one (Spinnaker's
    /// `deploymentDetails`), the nearest first.
    static func upstreamImage(_ run: StageRun) -> String? {
        var frontier = run.stage.requisiteStageRefIDs
        var seen: Set<String> = []
        while !frontier.isEmpty {
            var next: [String] = []
            for ref in frontier where seen.insert(ref).inserted {
                let stage = run.execution.stage(ref)
                if stage.status == ExecutionStatus.succeeded, let image = stage.outputs["deploymentDetails"]?.arrayValue?.first?["imageId"]?.stringValue { return image }
                next += run.execution.config(ref)?.requisiteStageRefIDs ?? []
            }
            frontier = next
        }
        return nil
    }

    static func region(of cluster: JSONValue) -> String {
        cluster["region"]?.stringValue ?? cluster["availabilityZones"]?.objectValue?.keys.sorted().first ?? "local"
    }

    /// The cluster read from the stage, or what is wrong with it.
    static func make(
        cluster: JSONValue, stage: [String: JSONValue], index: Int, run: StageRun, caller: Caller, metadata: EventMetadata, operations: CloudOperations,
        children: ChildPipelines
    ) -> Result<ClusterDeploy, DeployProblem> {
        guard let account = cluster["account"]?.stringValue ?? cluster["credentials"]?.stringValue else { return .failure("account is required") }
        guard let image = cluster["imageId"]?.stringValue ?? cluster["image"]?.stringValue ?? cluster["amiName"]?.stringValue ?? Self.upstreamImage(run) else {
            return .failure("imageId is required (or an upstream bake or findImageFromTags stage's image)")
        }
        let strategy = cluster["strategy"]?.stringValue ?? stage["strategy"]?.stringValue ?? ""
        guard DeployStageRunner.strategies.contains(strategy) else {
            return .failure("strategy \(strategy) is not one of none, highlander, redblack, rollingredblack, custom")
        }
        let strategyPipeline = cluster["strategyPipeline"]?.stringValue ?? stage["strategyPipeline"]?.stringValue
        if strategy == "custom", (strategyPipeline ?? "").isEmpty {
            return .failure("the custom strategy needs strategyPipeline (the id of the pipeline to run as the strategy) and strategyApplication")
        }
        let application = cluster["application"]?.stringValue ?? run.execution.pipeline.application ?? ""
        let base = ServerGroupName(application: application, stack: cluster["stack"]?.stringValue, detail: cluster["freeFormDetails"]?.stringValue)
        if let problem = base.problem { return .failure(DeployProblem(problem)) }
        let capacity = ServerGroupStageRunner.capacity(cluster["capacity"])
        if let problem = capacity.problem { return .failure(DeployProblem(problem)) }
        let percentages = (cluster["targetPercentages"]?.arrayValue ?? []).compactMap(\.intValue)
        if strategy == "rollingredblack", percentages.contains(where: { !(1...100).contains($0) }) || percentages != percentages.sorted() {
            return .failure("targetPercentages rise from 1 to 100, not \(percentages)")
        }
        let target = cluster["targetHealthyDeployPercentage"]?.intValue ?? 100
        guard (0...100).contains(target) else { return .failure("targetHealthyDeployPercentage is 0–100, not \(target)") }
        let maxRemaining = cluster["maxRemainingAsgs"]?.intValue
        if let maxRemaining, maxRemaining < 1 { return .failure("maxRemainingAsgs is at least 1 (the new server group), not \(maxRemaining)") }
        let balancers = (cluster["loadBalancers"]?.arrayValue ?? []).compactMap(\.stringValue)
        let spec = ServerGroupSpec(
            name: base, region: region(of: cluster), image: image, capacity: capacity, port: cluster["containerPort"]?.intValue ?? 8080,
            loadBalancers: balancers)
        let rollback = cluster["rollback"]?["onFailure"]?.boolValue ?? stage["rollback"]?["onFailure"]?.boolValue ?? false
        // Orca's CustomStrategy parameters, then the cluster's own pipelineParameters.
        var parameters: [String: JSONValue] = [
            "application": .string(application), "credentials": .string(account), "cluster": .string(base.cluster), "region": .string(spec.region),
            "moniker": ["app": .string(application), "stack": base.stack.map(JSONValue.string) ?? .null, "detail": base.detail.map(JSONValue.string) ?? .null,
                        "cluster": .string(base.cluster)],
            "cloudProvider": "podman", "strategy": true, "clone": true, "parentPipelineId": .string(run.executionID), "parentStageId": .string(run.refID),
        ]
        parameters.merge(cluster["pipelineParameters"]?.objectValue ?? stage["pipelineParameters"]?.objectValue ?? [:]) { _, given in given }
        return .success(ClusterDeploy(
            account: account, region: spec.region, spec: spec, strategy: strategy, targetHealthyPercentage: target,
            percentages: percentages.isEmpty || percentages.last != 100 ? percentages + [100] : percentages,
            delayBeforeDisable: .seconds(max(0, cluster["delayBeforeDisableSec"]?.intValue ?? 0)),
            waitForUp: .seconds(max(1, cluster["waitForUpTimeoutSec"]?.intValue ?? stage["waitForUpTimeoutSec"]?.intValue ?? 300)),
            scaleDown: cluster["scaleDown"]?.boolValue ?? false, maxRemaining: maxRemaining, rollbackOnFailure: rollback, base: base,
            key: "\(run.executionID)/\(run.refID)/\(run.attempt)/\(index)", caller: caller, metadata: metadata, operations: operations,
            strategyPipeline: strategyPipeline, strategyParameters: parameters, children: children, run: run))
    }

    private init(
        account: String, region: String, spec: ServerGroupSpec, strategy: String, targetHealthyPercentage: Int, percentages: [Int],
        delayBeforeDisable: Duration, waitForUp: Duration, scaleDown: Bool, maxRemaining: Int?, rollbackOnFailure: Bool, base: ServerGroupName,
        key: String, caller: Caller, metadata: EventMetadata, operations: CloudOperations,
        strategyPipeline: String?, strategyParameters: [String: JSONValue], children: ChildPipelines, run: StageRun
    ) {
        self.strategyPipeline = strategyPipeline
        self.strategyParameters = strategyParameters
        self.children = children
        self.run = run
        self.account = account
        self.region = region
        self.spec = spec
        self.strategy = strategy
        self.targetHealthyPercentage = targetHealthyPercentage
        self.percentages = percentages
        self.delayBeforeDisable = delayBeforeDisable
        self.waitForUp = waitForUp
        self.scaleDown = scaleDown
        self.maxRemaining = maxRemaining
        self.rollbackOnFailure = rollbackOnFailure
        self.base = base
        self.key = key
        self.caller = caller
        self.metadata = metadata
        self.operations = operations
    }

    var rolling: Bool { strategy == "rollingredblack" }

    /// The instances wanted at a rolling step (all of them otherwise).
    func desired(at step: Int) -> Int {
        guard rolling else { return spec.capacity.desired }
        return (spec.capacity.desired * percentages[min(step, percentages.count - 1)] + 99) / 100
    }

    func perform(_ operation: CloudOperations.Operation, _ step: String) async throws -> CloudOperations.Outcome {
        try await operations.perform(operation, account: account, caller: caller, key: "\(key)/\(step)", metadata: metadata)
    }

    /// Moves the cluster's deploy on as far as it can go now; answers when to look again (nil:
    /// finished).
    func advance(_ progress: inout DeployStageRunner.Progress) async throws -> Duration? {
        while true {
            switch progress.phase {
            case "plan":
                // The name is chosen once, and recorded before anything is created.
                let existing = try await operations.serverGroupStates(account: account, application: base.application)
                    .filter { $0.name.cluster == base.cluster && $0.region == region }
                let name: ServerGroupName
                if let requested = try await operations.requestedServerGroup(key: "\(key)/create").flatMap(ServerGroupName.init(parsing:)) {
                    name = requested
                } else {
                    name = ServerGroupName.next(in: base, existing: existing.map(\.name.description))
                }
                let serving = existing.filter { !$0.disabled && $0.name != name }.sorted { ($0.name.sequence ?? 0) < ($1.name.sequence ?? 0) }
                progress.fields["key"] = .string(key)
                progress.fields["serverGroup"] = .string(name.description)
                progress.fields["previous"] = .array(serving.map { .string($0.name.description) })
                progress.phase = "create"
                return .zero
            case "create":
                guard let name = progress.serverGroup else { return fail(&progress, "no server group was planned") }
                var spec = spec
                spec.name = name
                let first = desired(at: 0)
                spec.capacity = Capacity(min: min(spec.capacity.min, first), max: spec.capacity.max, desired: first)
                switch try await perform(.createServerGroup(spec), "create") {
                case .failed(let why): return try await failOrRollBack(&progress, why)
                case .succeeded:
                    progress.phase = "wait"
                    progress.step = 0
                    progress.fields["deadline"] = .number(Double(Self.now() + Int(waitForUp.components.seconds) * 1000))
                }
            case "wait":
                guard let name = progress.serverGroup else { return fail(&progress, "no server group was planned") }
                let state = try await operations.serverGroupStates(account: account, application: name.application).first { $0.name == name && $0.region == region }
                let wanted = desired(at: progress.step)
                let needed = (wanted * targetHealthyPercentage + 99) / 100
                let up = state?.upCount ?? 0
                progress.fields["up"] = .number(Double(up))
                progress.fields["addresses"] = .array((state?.instances ?? []).compactMap { $0.address.map(JSONValue.string) })
                guard up >= needed, (state?.instances.count ?? 0) >= wanted else {
                    if Self.now() > progress.fields["deadline"]?.intValue ?? 0 {
                        return try await failOrRollBack(&progress, "\(name) has \(up) of \(wanted) instances Up (\(needed) needed) after \(waitForUp.components.seconds) s")
                    }
                    return .seconds(1)
                }
                if rolling {
                    // This step's share of the old server groups leaves the rotation.
                    let share = percentages[min(progress.step, percentages.count - 1)]
                    for old in progress.previous {
                        if case .failed(let why) = try await perform(.disableServerGroup(old, region: region, percentage: share), "step\(progress.step)/disable/\(old)") {
                            return try await failOrRollBack(&progress, why)
                        }
                    }
                    if progress.step + 1 < percentages.count {
                        progress.step += 1
                        let next = desired(at: progress.step)
                        let capacity = Capacity(min: min(spec.capacity.min, next), max: spec.capacity.max, desired: next)
                        if case .failed(let why) = try await perform(.resizeServerGroup(name, region: region, capacity: capacity), "step\(progress.step)/resize") {
                            return try await failOrRollBack(&progress, why)
                        }
                        progress.fields["deadline"] = .number(Double(Self.now() + Int(waitForUp.components.seconds) * 1000))
                        return .zero
                    }
                }
                progress.phase = "delay"
                if delayBeforeDisable > .zero, !progress.previous.isEmpty, strategy == "redblack" || strategy == "highlander" {
                    return delayBeforeDisable
                }
            case "delay":
                progress.phase = "cleanup"
            case "cleanup":
                guard let name = progress.serverGroup else { return fail(&progress, "no server group was planned") }
                if strategy == "custom" {
                    progress.phase = "strategy"
                    continue
                }
                if let why = try await cleanUp(after: name, previous: progress.previous) { return fail(&progress, why) }
                progress.phase = "done"
                return nil
            case "strategy":
                return try await runStrategyPipeline(&progress)
            case "rollback":
                guard let name = progress.serverGroup else { return fail(&progress, "no server group was planned") }
                let why = progress.fields["error"]?.stringValue ?? "the deploy failed"
                guard let restore = progress.previous.last else { return fail(&progress, why + "; nothing to roll back to") }
                if case .failed(let problem) = try await perform(.enableServerGroup(restore, region: region), "rollback/enable") {
                    return fail(&progress, why + "; rolling back to \(restore) failed: \(problem)")
                }
                if case .failed(let problem) = try await perform(.disableServerGroup(name, region: region, percentage: 100), "rollback/disable") {
                    return fail(&progress, why + "; \(restore) is enabled again but disabling \(name) failed: \(problem)")
                }
                progress.fields["rolledBackTo"] = .string(restore.description)
                return fail(&progress, why + "; rolled back to \(restore)")
            default:
                return nil
            }
        }
    }

    /// What the strategy does with the cluster's other server groups once the new one is up;
    /// the reason when an operation fails.
    func cleanUp(after name: ServerGroupName, previous: [ServerGroupName]) async throws -> String? {
        switch strategy {
        case "redblack", "rollingredblack":
            for old in previous {
                // A rolling deploy's last step disabled them already.
                if !rolling, case .failed(let why) = try await perform(.disableServerGroup(old, region: region, percentage: 100), "disable/\(old)") { return why }
                if scaleDown {
                    let empty = Capacity(min: 0, max: spec.capacity.max, desired: 0)
                    if case .failed(let why) = try await perform(.resizeServerGroup(old, region: region, capacity: empty), "scaledown/\(old)") { return why }
                }
            }
            if let maxRemaining {
                let all = try await operations.serverGroupStates(account: account, application: name.application)
                    .filter { $0.name.cluster == name.cluster && $0.region == region && $0.name != name }
                    .map(\.name).sorted { ($0.sequence ?? 0) < ($1.sequence ?? 0) }
                for old in all.prefix(max(0, all.count - (maxRemaining - 1))) {
                    if case .failed(let why) = try await perform(.disableServerGroup(old, region: region, percentage: 100), "shrink/disable/\(old)") { return why }
                    if case .failed(let why) = try await perform(.destroyServerGroup(old, region: region), "shrink/\(old)") { return why }
                }
            }
        case "highlander":
            let all = try await operations.serverGroupStates(account: account, application: name.application)
                .filter { $0.name.cluster == name.cluster && $0.region == region && $0.name != name }.map(\.name)
            // Out of rotation first (draining), then gone.
            for old in all {
                if case .failed(let why) = try await perform(.disableServerGroup(old, region: region, percentage: 100), "disable/\(old)") { return why }
            }
            for old in all {
                if case .failed(let why) = try await perform(.destroyServerGroup(old, region: region), "destroy/\(old)") { return why }
            }
        default:
            break
        }
        return nil
    }

    /// The `custom` strategy: its pipeline runs as a child of this stage, its id recorded before it
    /// is triggered (so a check run again after a crash finds it rather than starting another).
    /// The child's completion makes this check due at once; until then it is looked at every
    /// few seconds.
    func runStrategyPipeline(_ progress: inout DeployStageRunner.Progress) async throws -> Duration? {
        guard let childID = progress.fields["strategyExecutionId"]?.stringValue else {
            progress.fields["strategyExecutionId"] = .string(UUID().uuidString.lowercased())
            return .zero
        }
        var parameters = strategyParameters
        parameters["serverGroup"] = progress.fields["serverGroup"] ?? .null
        let child: ExecutionState
        switch try await children.start(childID, pipeline: strategyPipeline ?? "", parameters: parameters, from: run) {
        case .success(let started): child = started
        case .failure(let refusal): return try await failOrRollBack(&progress, "the strategy pipeline: \(refusal.reason)")
        }
        progress.fields["strategyStatus"] = .string(child.status.rawValue)
        guard child.status.isComplete else { return .seconds(5) }
        guard child.status == .succeeded else {
            return try await failOrRollBack(&progress, "the strategy pipeline's execution \(childID) ended \(child.status.rawValue)")
        }
        progress.phase = "done"
        return nil
    }

    func fail(_ progress: inout DeployStageRunner.Progress, _ why: String) -> Duration? {
        progress.fields["error"] = .string(why)
        progress.phase = "failed"
        return nil
    }

    /// Fails the cluster's deploy, rolling back first when the cluster asks for it.
    func failOrRollBack(_ progress: inout DeployStageRunner.Progress, _ why: String) async throws -> Duration? {
        guard rollbackOnFailure, !progress.previous.isEmpty else { return fail(&progress, why) }
        progress.fields["error"] = .string(why)
        progress.phase = "rollback"
        return .zero
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970 * 1000) }
}

/// Why a cluster of a deploy cannot be deployed.
struct DeployProblem: Error, ExpressibleByStringInterpolation, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(stringLiteral value: String) { description = value }
}
