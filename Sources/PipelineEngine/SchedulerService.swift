import EventLog
import Logging
import Orchestration
import PostgresEventStore
import ServiceLifecycle

/// The `scheduler` role: fires due durable timers into events. Several may run; each timer is
/// locked by one of them at a time.
public final class SchedulerService: Service {
    let timers: TimerStore
    let repository: ExecutionRepository
    let pollInterval: Duration
    let logger: Logger

    public init(timers: TimerStore, repository: ExecutionRepository, pollInterval: Duration = .milliseconds(100), logger: Logger) {
        self.timers = timers
        self.repository = repository
        self.pollInterval = pollInterval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let fired = try await self.timers.fireDue { timer in
                        let message: ExecutionMessage = timer.kind == .poll
                            ? .pollDue(refID: timer.refID, attempt: timer.attempt, poll: timer.poll)
                            : .timerFired(refID: timer.refID, attempt: timer.attempt, kind: timer.kind)
                        try await self.repository.handle(
                            message, executionID: timer.executionID,
                            metadata: EventMetadata(correlationID: timer.executionID, actor: "scheduler", source: "scheduler"))
                    }
                    if fired > 0 { continue }
                } catch {
                    self.logger.warning("firing timers failed; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: self.pollInterval)
            }
        }
    }
}
