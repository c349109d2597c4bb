import Logging
import PostgresNIO
import Synchronization

extension PostgresConnection {
    /// Throws when the connection has closed (the server went away while it was leased): a query
    /// written to a closed connection is never answered, so it must not be sent.
    public func ensureOpen(doing action: String) throws {
        guard !isClosed else { throw DatabaseError(.unavailable, "PostgreSQL closed the connection used to \(action)") }
    }
}

/// Runs `operation` but stops waiting for it after `timeout`, throwing instead. For a query on a
/// leased connection that may have closed between the check and the write: its reply never comes,
/// and that task is left behind rather than holding up its caller (nor a task group) for ever.
public func abandoning<T: Sendable>(
    after timeout: Duration, doing action: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let tasks = Tasks()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let once = ResumeOnce(continuation)
            let timer = Task {
                try await Task.sleep(for: timeout)
                once.resume(with: .failure(DatabaseError(.unavailable, "PostgreSQL did not answer within \(timeout) while trying to \(action)")))
                tasks.cancelAll()
            }
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                timer.cancel()
                once.resume(with: result)
            }
            tasks.set(work: work, timer: timer)
        }
    } onCancel: {
        // The timer stays: it still answers if the work ignores the cancellation.
        tasks.cancelWork()
    }
}

/// The two tasks of ``abandoning(after:doing:_:)``, for cancelling them from outside.
private final class Tasks: Sendable {
    private let tasks = Mutex<(work: Task<Void, Never>?, timer: Task<Void, any Error>?, cancelled: Bool)>((nil, nil, false))

    func set(work: Task<Void, Never>, timer: Task<Void, any Error>) {
        let cancelled = tasks.withLock { tasks in
            tasks.work = work
            tasks.timer = timer
            return tasks.cancelled
        }
        if cancelled { work.cancel() }
    }

    /// Cancels the work (also when it has not been set yet).
    func cancelWork() {
        tasks.withLock { tasks in
            tasks.cancelled = true
            return tasks.work
        }?.cancel()
    }

    func cancelAll() {
        cancelWork()
        tasks.withLock { $0.timer }?.cancel()
    }
}

/// A continuation resumed by whichever comes first; later attempts do nothing.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = Mutex(continuation)
    }

    func resume(with result: Result<T, any Error>) {
        continuation.withLock { pending in
            defer { pending = nil }
            return pending
        }?.resume(with: result)
    }
}
