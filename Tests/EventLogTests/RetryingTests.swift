import EventLog
import Synchronization
import Testing

@Suite("Retrying: only this task's cancellation ends it")
struct RetryingTests {
    @Test("a CancellationError a dependency throws while the task goes on is retried like any failure")
    func strayCancellationIsRetried() async throws {
        let attempts = Mutex(0)
        let failures = Mutex<[String]>([])
        let result = try await retrying(initial: .milliseconds(1), maximum: .milliseconds(2), onFailure: { error, _ in
            failures.withLock { $0.append("\(type(of: error))") }
        }) {
            let attempt = attempts.withLock { count -> Int in
                count += 1
                return count
            }
            if attempt < 3 { throw CancellationError() }
            return attempt
        }
        #expect(result == 3)
        #expect(failures.withLock { $0 } == ["CancellationError", "CancellationError"])
    }

    @Test("cancelling the task ends the retries with CancellationError")
    func cancellationEnds() async throws {
        let task = Task {
            try await retrying(initial: .milliseconds(1), maximum: .milliseconds(2), onFailure: { _, _ in }) {
                throw CancellationError()
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
