import Access
import EventLog
import Foundation
import Logging
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// An execution that made no progress beyond what its stages allow.
public struct StuckExecution: Sendable, Hashable, Codable {
    public var id: String
    public var application: String?
    public var pipeline: String?
    public var status: String
    /// Why it counts as stuck, one reason per overdue stage (or for the execution itself).
    public var reasons: [String]
    /// When its last event was recorded.
    public var lastProgress: Date
    /// The overdue stages, and those of them past `stageTimeoutMs`.
    public var stages: [String] = []
    public var timedOut: [String] = []
    /// How often the supervisor drove it again already.
    public var redrives = 0
}

/// When a running execution should have moved on, from its stages' own limits: `stageTimeoutMs`
/// (its timer should have fired), a wait's `waitTime`, a script's `timeoutSeconds`, a polling
/// stage's back-off; stages that finish at once (noop, evaluateVariables, checkPreconditions)
/// right away. A manual judgment without `stageTimeoutMs` waits for people as long as it takes.
public enum Overdue {
    /// One reason an execution counts as stuck: an overdue stage (`refID`), or the execution itself.
    public struct Finding: Sendable, Hashable {
        public var refID: String?
        public var reason: String
        /// The stage's `stageTimeoutMs` ran out (its timeout should have fired).
        public var timedOut = false
    }

    public static func reasons(_ fold: ExecutionSummaryFold, now: Date, grace: TimeInterval) -> [String] {
        findings(fold, now: now, grace: grace).map(\.reason)
    }

    public static func findings(_ fold: ExecutionSummaryFold, now: Date, grace: TimeInterval) -> [Finding] {
        guard let summary = fold.summary, summary.status == .running else { return [] }
        let state = fold.state
        var findings: [Finding] = []
        for stage in summary.stages where stage.status == .running {
            guard let config = state.config(stage.refID), let started = stage.startedAt else { continue }
            let json = config.json
            var allowed: TimeInterval?
            switch config.type ?? "" {
            case "manualJudgment": allowed = nil
            case "wait": allowed = json["waitTime"]?.doubleValue ?? 0
            case "script": allowed = json["timeoutSeconds"]?.doubleValue ?? 3600
            case "webhook", "pipeline":
                // Checked after each back-off: overdue when no check was recorded for long.
                let backoff = (json["backoffPeriodMs"]?.doubleValue ?? 1000) / 1000
                if summary.updatedAt.addingTimeInterval(max(backoff, json["waitBeforeMonitor"]?.doubleValue ?? 0) * 2 + grace) < now {
                    findings.append(Finding(refID: stage.refID, reason:
                        "stage \(stage.refID) (\(config.type ?? "?")) has not been checked for \(Int(now.timeIntervalSince(summary.updatedAt))) s"))
                }
                continue
            default: allowed = 0
            }
            var timedOut = false
            if let timeout = config.stageTimeoutMs, Double(timeout) / 1000 <= (allowed ?? .infinity) {
                allowed = Double(timeout) / 1000
                timedOut = true
            }
            guard let allowed, started.addingTimeInterval(allowed + grace) < now else { continue }
            findings.append(Finding(refID: stage.refID, reason:
                "stage \(stage.refID) (\(config.type ?? "?")) has run \(Int(now.timeIntervalSince(started))) s, expected within \(Int(allowed)) s",
                timedOut: timedOut))
        }
        let running = summary.stages.contains { $0.status == .running }
        if !running && !state.isPaused && summary.updatedAt.addingTimeInterval(grace) < now {
            findings.append(Finding(refID: nil, reason: "no stage runs and nothing happened for \(Int(now.timeIntervalSince(summary.updatedAt))) s"))
        }
        return findings
    }
}

/// Finds stuck executions: running ones whose last event is older than `grace` are read from the
/// log and checked against their stages' limits (``Overdue``).
public struct Supervisor: Sendable {
    let client: PostgresClient
    let store: PostgresEventStore
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.store = PostgresEventStore(client: client, logger: logger)
        self.logger = logger
    }

    public func stuck(now: Date = Date(), grace: Duration = .seconds(60), limit: Int = 1000) async throws -> [StuckExecution] {
        let graceSeconds = Double(grace.wholeMilliseconds) / 1000
        var candidates: [String] = []
        do {
            let quiet = now.addingTimeInterval(-graceSeconds)
            for try await id in try await client.query("""
                SELECT execution_id FROM execution_summaries WHERE status = 'RUNNING' AND updated_at < \(quiet)
                 ORDER BY updated_at LIMIT \(limit)
                """, logger: logger).decode(String.self) {
                candidates.append(id)
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "look for quiet executions")
        }
        var found: [StuckExecution] = []
        for id in candidates {
            var fold = ExecutionSummaryFold()
            for event in try await store.readStream(try ExecutionRepository.streamID(id), from: 1, direction: .forward, limit: 100_000) {
                try fold.apply(event)
            }
            let findings = Overdue.findings(fold, now: now, grace: graceSeconds)
            guard let summary = fold.summary, !findings.isEmpty else { continue }
            found.append(StuckExecution(
                id: id, application: summary.application, pipeline: summary.pipelineName, status: summary.status.rawValue,
                reasons: findings.map(\.reason), lastProgress: summary.updatedAt, stages: findings.compactMap(\.refID),
                timedOut: findings.filter(\.timedOut).compactMap(\.refID), redrives: fold.state.redrives))
        }
        return found
    }
}

/// The `supervisor` role: looks for stuck executions every `interval`. With a repository it heals
/// what it finds: a stuck execution is driven again from its log (an `execution.redriven` event,
/// at most `maximumRedrives` times), and slots held by finished executions are released. What it
/// cannot heal it reports once per lack of progress (a warning naming the execution, why, and
/// how to cancel it).
public final class SupervisorService: Service {
    let supervisor: Supervisor
    let client: PostgresClient
    /// With a repository the supervisor also heals: it releases concurrency slots held by
    /// finished executions (``ConcurrencyGate/healStaleSlots(client:repository:suspects:logger:)``).
    let repository: ExecutionRepository?
    let interval: Duration
    let grace: Duration
    /// How often one execution is driven again before the supervisor only reports it.
    let maximumRedrives: Int
    let logger: Logger
    private let reported = Mutex<[String: Date]>([:])
    /// Slots found held by finished executions at the last look, released if still held at the next.
    private let staleSlots = Mutex<Set<String>>([])

    public init(
        client: PostgresClient, repository: ExecutionRepository? = nil, interval: Duration = .seconds(30), grace: Duration = .seconds(60),
        maximumRedrives: Int = 3, logger: Logger
    ) {
        self.maximumRedrives = maximumRedrives
        self.supervisor = Supervisor(client: client, logger: logger)
        self.client = client
        self.repository = repository
        self.interval = interval
        self.grace = grace
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let stuck = try await self.supervisor.stuck(grace: self.grace)
                    let fresh = self.reported.withLock { reported in
                        let current = Dictionary(stuck.map { ($0.id, $0.lastProgress) }, uniquingKeysWith: { $1 })
                        defer { reported = current }
                        return stuck.filter { reported[$0.id] != $0.lastProgress }
                    }
                    for execution in fresh {
                        if let repository = self.repository, execution.redrives < self.maximumRedrives {
                            // Healed from the log: an event says so, and the engine derives the
                            // next step again from it (``ExecutionPolicy``).
                            do {
                                try await repository.handle(
                                    .redrive(by: "supervisor", reasons: execution.reasons, stages: execution.stages, timedOut: execution.timedOut),
                                    executionID: execution.id,
                                    metadata: EventMetadata(correlationID: execution.id, actor: "supervisor", source: "supervisor"))
                                self.logger.warning("execution made no progress; driven again from its log", metadata: [
                                    "execution.id": "\(execution.id)", "reasons": "\(execution.reasons.joined(separator: "; "))",
                                    "redrive": "\(execution.redrives + 1) of \(self.maximumRedrives)",
                                ])
                                continue
                            } catch {
                                self.logger.warning("driving a stuck execution again failed", metadata: ["execution.id": "\(execution.id)", "error": "\(error)"])
                            }
                        }
                        self.logger.warning("execution makes no progress", metadata: [
                            "execution.id": "\(execution.id)", "execution.application": "\(execution.application ?? "-")",
                            "execution.pipeline": "\(execution.pipeline ?? "-")", "reasons": "\(execution.reasons.joined(separator: "; "))",
                            "next": "topsail executions show \(execution.id); topsail executions cancel \(execution.id)",
                        ])
                    }
                } catch {
                    self.logger.warning("looking for stuck executions failed; retrying", metadata: ["error": "\(error)"])
                }
                if let repository = self.repository {
                    do {
                        var suspects = self.staleSlots.withLock { $0 }
                        _ = try await ConcurrencyGate(store: repository.eventStore)
                            .healStaleSlots(client: self.client, repository: repository, suspects: &suspects, logger: self.logger)
                        self.staleSlots.withLock { $0 = suspects }
                    } catch {
                        self.logger.warning("looking for slots held by finished executions failed; retrying", metadata: ["error": "\(error)"])
                    }
                }
                try? await Task.sleep(for: self.interval)
            }
        }
    }
}
