import Access
import EventLog
import PipelineEngine

/// The stage types Topsail runs, by type name: what a worker is given to run.
public enum StageRunners {
    /// Every built-in stage type but the `disabled` ones (an installation may turn `script` off).
    public static func standard(
        repository: ExecutionRepository, timers: any StageTimers, scriptSandbox: ScriptSandbox = ScriptSandbox(), disabled: Set<String> = []
    ) -> [String: any StageRunner] {
        let runners: [String: any StageRunner] = [
            "noop": NoopStageRunner(), "script": ScriptStageRunner(sandbox: scriptSandbox), "manualJudgment": ManualJudgmentStageRunner(),
            "wait": WaitStageRunner(timers: timers), "evaluateVariables": EvaluateVariablesStageRunner(),
            "checkPreconditions": CheckPreconditionsStageRunner(), "webhook": WebhookStageRunner(),
            "pipeline": PipelineStageRunner(repository: repository, configs: PipelineConfigStore(store: repository.eventStore)),
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
