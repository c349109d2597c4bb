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
                        try await self.repository.handle(
                            timer.message, executionID: timer.executionID,
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
