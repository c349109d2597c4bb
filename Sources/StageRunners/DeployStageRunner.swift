import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// `deploy` and `createServerGroup`: Orca's deploy of one or more clusters with a strategy
/// (decision 0018). Each cluster is a small state machine whose state is the stage's recorded
/// progress (`deploy.clusters`), advanced one check at a time:
///
/// plan → create → wait for Up → (rolling steps) → delay → clean up → done
///                        ↘ (not healthy in time) → roll back → failed
///
/// With the `custom` strategy, clean up is the strategy pipeline (`strategyApplication`,
/// `strategyPipeline`), run as a child with Orca's parameters once the new server group is up;
/// the deploy ends as the child does.
///
/// Every cloud operation is keyed by the execution, stage, attempt, cluster and step, so a check
/// run again after a crash carries the same operations on and launches nothing twice; the plan
/// (the new server group's name and the ones it replaces) is recorded before anything is created.
struct DeployStageRunner: StageRunner {
    let operations: CloudOperations
    let store: any EventStore
    let children: ChildPipelines

    static let strategies: Set<String> = ["", "none", "highlander", "redblack", "rollingredblack", "custom"]

    /// One cluster's deploy as recorded in the stage's progress.
    struct Progress {
        var fields: [String: JSONValue]

        var phase: String {
            get { fields["phase"]?.stringValue ?? "plan" }
            set { fields["phase"] = .string(newValue) }
        }
        var serverGroup: ServerGroupName? { fields["serverGroup"]?.stringValue.flatMap(ServerGroupName.init(parsing:)) }
        /// The cluster's server groups that served when the deploy began, oldest first.
        var previous: [ServerGroupName] { (fields["previous"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(ServerGroupName.init(parsing:)) } }
        var step: Int {
            get { fields["step"]?.intValue ?? 0 }
            set { fields["step"] = .number(Double(newValue)) }
        }
        var isFinished: Bool { phase == "done" || phase == "failed" }
    }

    func run(_ run: StageRun) async throws -> StageOutcome {
        try await deploy(run, clusters: run.stage.json["clusters"]?.arrayValue ?? (run.stage.json["cluster"].map { [$0] } ?? []))
    }

    /// Deploys `clusters` (each a deploy stage's cluster) as the stage `run`.
    func deploy(_ run: StageRun, clusters: [JSONValue]) async throws -> StageOutcome {
        let stage = run.stage.json
        func failed(_ why: String, _ outputs: [String: JSONValue] = [:]) -> StageOutcome {
            StageOutcome(status: .terminal, outputs: outputs.merging(["error": .string(why)]) { _, new in new })
        }
        guard !clusters.isEmpty else { return failed("\(run.stage.type ?? "deploy") needs clusters (or cluster): account, region, capacity, imageId and a strategy") }
        let caller = try await TriggerIdentity.caller(of: run.execution.trigger, identities: Identities(store: store))
        let metadata = EventMetadata(correlationID: run.executionID, actor: caller.user, source: "worker")
        let recorded = run.context["deploy.clusters"]?.arrayValue ?? []
        var progress = clusters.indices.map { Progress(fields: recorded.indices.contains($0) ? recorded[$0].objectValue ?? [:] : [:]) }
        var nextCheck: Duration?
        for (index, cluster) in clusters.enumerated() where !progress[index].isFinished {
            switch ClusterDeploy.make(cluster: cluster, stage: stage, index: index, run: run, caller: caller, metadata: metadata, operations: operations, children: children) {
            case .failure(let why):
                progress[index].phase = "failed"
                progress[index].fields["error"] = .string("clusters[\(index)]: \(why)")
            case .success(let deploy):
                let after = try await deploy.advance(&progress[index])
                if let after { nextCheck = min(nextCheck ?? after, after) }
            }
        }
        var outputs: [String: JSONValue] = ["deploy.clusters": .array(progress.map { .object($0.fields) })]
        var created: [String: JSONValue] = [:]
        for (index, cluster) in clusters.enumerated() {
            guard let name = progress[index].serverGroup else { continue }
            let region = ClusterDeploy.region(of: cluster)
            created[region] = .array((created[region]?.arrayValue ?? []) + [.string(name.description)])
        }
        outputs["deploy.server.groups"] = .object(created)
        if let nextCheck, progress.contains(where: { !$0.isFinished }) { return .poll(after: nextCheck, context: outputs) }
        outputs["instances"] = .array(progress.flatMap { $0.fields["addresses"]?.arrayValue ?? [] })
        let errors = progress.compactMap { $0.fields["error"]?.stringValue }
        guard errors.isEmpty else { return failed(errors.joined(separator: "; "), outputs) }
        return StageOutcome(status: .succeeded, outputs: outputs)
    }
}
