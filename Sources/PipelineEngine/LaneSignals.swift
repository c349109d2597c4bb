import Synchronization

/// A count shared between tasks.
final class SharedCount: Sendable {
    private let count: Atomic<Int>

    init(_ value: Int = 0) { count = Atomic(value) }

    var value: Int { count.load(ordering: .relaxed) }

    /// Adds `delta`; returns the new value.
    @discardableResult
    func add(_ delta: Int) -> Int { count.wrappingAdd(delta, ordering: .acquiringAndReleasing).newValue }
}

/// A one-time signal: work ends once, well or not, and any number of tasks wait for it.
final class Completion: Sendable {
    private struct State {
        var outcome: Bool?
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    /// Ends the work; the first outcome given counts.
    func complete(_ succeeded: Bool) {
        let (outcome, waiters) = state.withLock { state -> (Bool, [CheckedContinuation<Bool, Never>]) in
            if state.outcome == nil { state.outcome = succeeded }
            defer { state.waiters = [:] }
            return (state.outcome!, Array(state.waiters.values))
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    /// Whether the work succeeded, once it ended; false if the waiting task is cancelled first.
    @discardableResult
    func wait() async -> Bool {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool? in
                    if let outcome = state.outcome { return outcome }
                    if Task.isCancelled { return false }
                    state.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
        }
    }
}

/// How many items are taken and not finished; shutdown waits for none, for a while.
final class Outstanding: Sendable {
    private struct State {
        var count = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.count } }

    func add() { state.withLock { $0.count += 1 } }

    func remove() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// True when none are left within `timeout`.
    func waitUntilNone(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.untilNone()
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            // Ends the other child: the sleep, or a wait still registered (cancellation resumes it).
            group.cancelAll()
            return first
        }
    }

    /// Returns when none are left, or when the waiting task is cancelled.
    private func untilNone() async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.count == 0 || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// At most `permits` holders at once; the others wait in order.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(_ permits: Int) {
        state = Mutex(State(available: max(1, permits)))
    }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}
