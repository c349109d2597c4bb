import Access
import API
import ArgumentParser
import CLISupport
import Foundation
import Notifications

struct AllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every role in one process: relay, orchestrator, worker, scheduler, projector, notifier, supervisor, observer and the HTTP API.",
        discussion: "SIGTERM or Ctrl-C shuts every role down gracefully: no new work is taken, running work may finish for --drain-timeout seconds, and what is cancelled then runs again after a restart."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var drain: DrainOptions
    @OptionGroup var relay: RelayOptions

    @OptionGroup var http: HTTPOptions
    @OptionGroup var publicURL: PublicURLOptions

    @OptionGroup var supervision: SupervisionOptions

    @OptionGroup var observation: ObservationOptions

    @OptionGroup var cron: CronOptions

    @OptionGroup(title: "Notifications") var notifications: NotifierOptions

    @OptionGroup var policy: StagePolicyOptions

    @OptionGroup(title: "Script sandbox") var sandbox: ScriptSandboxOptions

    func run() async throws {
        try await Roles(
            options: options, topics: topics, disabledStageTypes: policy.disabledStageTypes, scriptSandbox: try sandbox.sandbox(), drainTimeout: drain.duration
        ).run([
            .relay(relay.configuration(topics: topics)), .orchestrator, .worker, .scheduler(try cron.configuration()), .projector, .notifier(try notifications.configuration(publicURL: publicURL.value)),
            supervision.role, observation.role, .http(try http.configuration(cronTimeZone: try cron.configuration().zone, publicURL: publicURL.value)),
        ])
    }
}

struct NotifierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier",
        abstract: "React to executions outside the engine: send notifications (email, slack, microsoftteams, googlechat, githubStatus, webhook, cdevents), publish CDEvents to <prefix>cdevents, and fire the pipeline triggers of pipelines that follow a completed one (group <prefix>notifier).",
        discussion: "Any number may run; they share the partitions by leases in PostgreSQL. A completion delivered twice starts nothing new (its receipt is keyed by the execution). SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var drain: DrainOptions
    @OptionGroup(title: "Notifications") var notifications: NotifierOptions
    @OptionGroup var publicURL: PublicURLOptions

    func run() async throws {
        try await Roles(options: options, topics: topics, drainTimeout: drain.duration).run([.notifier(try notifications.configuration(publicURL: publicURL.value))])
    }
}

struct OrchestratorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orchestrator",
        abstract: "Advance executions: consume execution events (group <prefix>orchestrator) and append what follows.",
        discussion: "Any number may run; they share the partitions by leases in PostgreSQL. SIGTERM or Ctrl-C stops it gracefully, draining for --drain-timeout seconds."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var drain: DrainOptions

    func run() async throws {
        try await Roles(options: options, topics: topics, drainTimeout: drain.duration).run([.orchestrator])
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run stages' work (noop, script, wait, manualJudgment, evaluateVariables, checkPreconditions, webhook, pipeline): consume execution events (group <prefix>worker) and report outcomes.",
        discussion: "Any number may run. SIGTERM or Ctrl-C stops it gracefully: running stages may finish for --drain-timeout seconds; scripts and webhook calls still running then are cancelled and run again after a restart."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var drain: DrainOptions
    @OptionGroup var policy: StagePolicyOptions

    @OptionGroup(title: "Script sandbox") var sandbox: ScriptSandboxOptions

    func run() async throws {
        try await Roles(
            options: options, topics: topics, disabledStageTypes: policy.disabledStageTypes, scriptSandbox: try sandbox.sandbox(), drainTimeout: drain.duration
        ).run([.worker])
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Fire due durable timers (waits, stage timeouts, polling back-offs) into events, and cron triggers into executions.",
        discussion: "Any number may run; each timer is locked by one, and each cron fire time is one receipt whichever scheduler fires it. SIGTERM or Ctrl-C stops it gracefully."
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var topics: TopicOptions
    @OptionGroup var cron: CronOptions

    func run() async throws {
        try await Roles(options: options, topics: topics).run([.scheduler(try cron.configuration())])
    }
}

struct ProjectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projector",
        abstract: "Keep the read models (execution and stage statuses) current from the log.",
        discussion: """
            Follows the log in commit order and moves its checkpoint with the rows it writes. Several             may run; one advances at a time. `topsail projections rebuild` starts them over. SIGTERM             or Ctrl-C stops it gracefully.
            """
    )

    @OptionGroup var options: CommonOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([.projector])
    }
}

struct SupervisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervisor",
        abstract: "Heal executions that make no progress beyond their stages' limits, and slots held by finished executions.",
        discussion: """
            Reads the executions read model (kept by the projector) for running executions that have \
            been quiet longer than --stuck-grace and checks each against its stages' limits (stageTimeoutMs, \
            waitTime, a script's timeoutSeconds, a polling stage's back-off). An overdue execution is driven \
            again from its log: an `execution.redriven` event names the overdue stages, and the engine makes \
            what each waits for due now (its timer, its next check) or runs its work again. After 3 such \
            attempts it is only reported, with what to do. Concurrency slots held by finished executions are \
            released, each with an event. `topsail executions stuck` prints the overdue list once.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var supervision: SupervisionOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([supervision.role])
    }
}

struct ObserverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "observer",
        abstract: "Watch what the clouds run against the log: replace instances killed behind Topsail's back, record health changes.",
        discussion: """
            Every --observe-every seconds, and at once when `podman events` reports a Topsail container dead, \
            each live server group in the cluster view (kept by the projector) is compared with what its \
            account's provider runs. Fewer or more running instances than the \
            log's desired capacity is drift: a `servergroup.drift.detected` event names it, the provider \
            converges to the logged capacity, and `servergroup.upserted` records the result. Instances whose \
            health changed get one `servergroup.health.changed` event per change; one that was Up and fails its \
            health checks for longer than --replace-unhealthy-after is replaced. A server group with an \
            operation in flight is left alone until the operation ends.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var observation: ObservationOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions()).run([observation.role])
    }
}

struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the HTTP API: executions and triggers (Gate's paths), applications and pipelines, the audit log, /health, /ready, /metrics and /openapi.json.",
        discussion: """
            Every route but /health, /ready, /metrics and /openapi.json needs a bearer API token (or an \
            OIDC JWT when --oidc-* are given). Errors are JSON: {"error", "message", "status"}. SIGTERM \
            or Ctrl-C stops it gracefully.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var publicURL: PublicURLOptions
    @OptionGroup var policy: StagePolicyOptions

    func run() async throws {
        try await Roles(options: options, topics: TopicOptions(), disabledStageTypes: policy.disabledStageTypes).run([.http(try http.configuration(publicURL: publicURL.value))])
    }
}
