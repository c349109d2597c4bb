import Logging
import ServiceLifecycle

/// Runs with the API: every `interval`, finishes trigger receipts a crash left open for longer
/// than `grace` (``TriggerIntake/finishOpenReceipts(olderThan:)``), so a delivery that was
/// recorded always starts what it decided, though its sender got no answer.
public struct OpenReceiptsService: Service {
    let intake: TriggerIntake
    let interval: Duration
    let grace: Duration
    let logger: Logger

    public init(intake: TriggerIntake, interval: Duration = .seconds(5), grace: Duration = .seconds(10), logger: Logger) {
        self.intake = intake
        self.interval = interval
        self.grace = grace
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await intake.finishOpenReceipts(olderThan: grace)
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("finishing open trigger receipts failed; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
