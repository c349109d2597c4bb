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
            // The first look covers the whole log (receipts left open while no API ran); later
            // ones the last hour, which any receipt a running process leaves open falls in.
            var looked = false
            while !Task.isCancelled {
                do {
                    let finished = try await intake.finishOpenReceipts(olderThan: grace, within: looked ? .seconds(3600) : nil)
                    // A look takes 100 at most: the whole log is looked at until fewer are left.
                    looked = looked || finished < 100
                } catch is CancellationError where Task.isCancelled {
                    // This task was cancelled: the role is stopping. (A CancellationError from a
                    // dependency while it goes on is a failure like any other, retried below.)
                    return
                } catch {
                    logger.warning("finishing open trigger receipts failed; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
