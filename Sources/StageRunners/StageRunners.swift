import Access
import Clouds
import EventLog
import Logging
import PipelineEngine

/// The stage types Topsail runs, by type name: what a worker is given to run.
public enum StageRunners {
    /// Every built-in stage type but the `disabled` ones (an installation may turn `script` off).
    public static func standard(
        repository: ExecutionRepository, timers: any StageTimers, scriptSandbox: ScriptSandbox = ScriptSandbox(), disabled: Set<String> = []
    ) -> [String: any StageRunner] {
        // Cloud operations go to each account's provider: podman accounts run containers here.
        let operations = CloudOperations.standard(store: repository.eventStore, logger: Logger(label: "topsail.clouds"))
        let children = ChildPipelines(repository: repository, configs: PipelineConfigStore(store: repository.eventStore))
        let deploy = DeployStageRunner(operations: operations, store: repository.eventStore, children: children)
        let runners: [String: any StageRunner] = [
            "noop": NoopStageRunner(), "script": ScriptStageRunner(sandbox: scriptSandbox), "manualJudgment": ManualJudgmentStageRunner(),
            "wait": WaitStageRunner(timers: timers), "evaluateVariables": EvaluateVariablesStageRunner(),
            "checkPreconditions": CheckPreconditionsStageRunner(), "webhook": WebhookStageRunner(),
            "pipeline": PipelineStageRunner(children: children),
            "createServerGroup": deploy, "deploy": deploy,
            "bake": BakeStageRunner(bakery: Bakery(), store: repository.eventStore),
            "findImageFromTags": FindImageStageRunner(bakery: Bakery()),
            "cloneServerGroup": CloneServerGroupStageRunner(
                deploy: deploy, operations: operations, store: repository.eventStore),
            "disableCluster": ClusterStageRunner(kind: .disable, operations: operations, store: repository.eventStore),
            "scaleDownCluster": ClusterStageRunner(kind: .scaleDown, operations: operations, store: repository.eventStore),
            "shrinkCluster": ClusterStageRunner(kind: .shrink, operations: operations, store: repository.eventStore),
            "rollbackCluster": ClusterStageRunner(kind: .rollback, operations: operations, store: repository.eventStore),
            "terminateInstances": ServerGroupStageRunner(kind: .terminateInstances, operations: operations, store: repository.eventStore),
            "deleteLoadBalancer": ServerGroupStageRunner(kind: .deleteLoadBalancer, operations: operations, store: repository.eventStore),
            "upsertSecurityGroup": ServerGroupStageRunner(kind: .upsertSecurityGroup, operations: operations, store: repository.eventStore),
            "deleteSecurityGroup": ServerGroupStageRunner(kind: .deleteSecurityGroup, operations: operations, store: repository.eventStore),
            "resizeServerGroup": ServerGroupStageRunner(kind: .resize, operations: operations, store: repository.eventStore),
            "destroyServerGroup": ServerGroupStageRunner(kind: .destroy, operations: operations, store: repository.eventStore),
            "enableServerGroup": ServerGroupStageRunner(kind: .enable, operations: operations, store: repository.eventStore),
            "disableServerGroup": ServerGroupStageRunner(kind: .disable, operations: operations, store: repository.eventStore),
            "upsertLoadBalancer": ServerGroupStageRunner(kind: .upsertLoadBalancer, operations: operations, store: repository.eventStore),
        ]
        return runners.filter { !disabled.contains($0.key) }
    }
}

/// `noop`: succeeds.
struct NoopStageRunner: StageRunner {
    func run(_ run: StageRun) async throws -> StageOutcome {
        StageOutcome(status: .succeeded)
    }
}

/// `manualJudgment`: nothing to run; the stage waits for `topsail executions judge` (or the API)
/// to complete it. A RUNNING outcome leaves the stage running.
struct ManualJudgmentStageRunner: StageRunner {
    func run(_ run: StageRun) async throws -> StageOutcome {
        StageOutcome(status: .running)
    }
}
