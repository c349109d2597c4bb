import EventLog
import Kafka
import Logging
import PostgresEventStore
import ServiceLifecycle
import Synchronization

/// Work a handler started that outlasts it, such as a stage's script: the execution's lane moves
/// on to its next event while this runs, and the message's offset waits for it.
typealias DetachedWork = @Sendable () async -> Void

/// How a role reacts to one execution event; what it returns runs beyond the lane.
typealias LaneHandler = @Sendable (RecordedEvent) async throws -> [DetachedWork]

/// Consumes one role's view of the execution events, one lane per execution: the events of an
/// execution are handled in order and one at a time, different executions concurrently (up to
/// `concurrency` lanes at once). Both copies of an event this process appended, the one handed
/// over in process and the one from Kafka, go through the same lane, so the second finds the
/// first handled and only waits for its work before the offset moves.
///
/// Offsets move only below the oldest message whose handling (and detached work) is unfinished,
/// so a crash re-delivers whatever was not finished. On graceful shutdown the consumer stops
/// taking messages, lets running lanes and work finish for up to `drainTimeout`, then cancels what
/// is left (scripts and webhook calls stop cooperatively) and stores the offsets reached.
struct ExecutionEventConsumer {
    let consumer: KafkaConsumer
    let concurrency: Int
    let logger: Logger
    /// Events this process appended, handed over without the trip through Kafka.
    var inbox: LocalInbox?
    /// Where handled offsets are recorded: the partition leases in PostgreSQL (and Kafka in the
    /// background, for its tools), or the consumer group in Kafka.
    var leases: PartitionLeases?
    var drainTimeout: Duration = .seconds(10)
    /// Messages taken from Kafka and not finished, at most: back-pressure on the broker.
    var maximumInFlight: Int { max(1_024, concurrency * 16) }

    func run(_ handle: @escaping LaneHandler) async throws {
        let inFlight = SharedCount()
        let (items, intake) = AsyncStream.makeStream(of: LaneItem.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The sources stop at graceful shutdown (or a broker's failure); the lanes and the
            // detached work then drain.
            group.addTask {
                defer { intake.finish() }
                do {
                    try await cancelWhenGracefulShutdown {
                        try await withThrowingDiscardingTaskGroup { sources in
                            if let inbox {
                                sources.addTask {
                                    for await event in inbox.events { intake.yield(LaneItem(event: event, message: nil)) }
                                }
                            }
                            sources.addTask {
                                for try await message in consumer.messages {
                                    while inFlight.value >= maximumInFlight { try await Task.sleep(for: .milliseconds(1)) }
                                    inFlight.add(1)
                                    intake.yield(LaneItem(event: nil, message: message))
                                }
                            }
                        }
                    }
                } catch is CancellationError {}
            }
            await LaneDispatcher(concurrency: concurrency, drainTimeout: drainTimeout, logger: logger)
                .run(items, inFlight: inFlight, store: store, handle)
            try await group.waitForAll()
        }
    }

    private func store(_ commit: KafkaMessage) async {
        do {
            if let leases {
                try await leases.store(topic: commit.topic, partition: commit.partition, next: commit.offset + 1)
                consumer.commitInBackground(commit)
            } else {
                try await consumer.commit(commit)
            }
        } catch {
            // The events are handled; whoever reads the partition next may see them again.
            logger.warning("storing an offset failed; its events may come again", metadata: [
                "kafka.topic": "\(commit.topic)", "kafka.partition": "\(commit.partition)", "error": "\(error)",
            ])
        }
    }
}

/// Runs the items of a consumer in lanes, one per execution: the events of an execution in order
/// and one at a time, different executions concurrently (up to `concurrency` lanes at once).
/// Kafka messages are reported to `store` once they and every message before them in their
/// partition are finished: handled, and their detached work ended.
struct LaneDispatcher {
    let concurrency: Int
    let drainTimeout: Duration
    let logger: Logger

    /// Handles `items` until they end, then lets what runs finish for up to `drainTimeout` and
    /// cancels the rest (whose messages stay unreported: they come again).
    func run(
        _ items: AsyncStream<LaneItem>, inFlight: SharedCount = SharedCount(), store: @escaping @Sendable (KafkaMessage) async -> Void,
        _ handle: @escaping LaneHandler
    ) async {
        var dedupe = StreamVersionDeduplicator()
        let lanes = ExecutionLanes()
        let lanePermits = AsyncSemaphore(concurrency)
        let outstanding = Outstanding()
        let offsets = OffsetBook()
        // Handlers report here as they finish; a task of its own stores the offsets that moves,
        // so no event waits behind an offset's write.
        let finished = FinishedMessages()

        @Sendable func settle() async {
            let done = finished.take()
            guard !done.isEmpty else { return }
            inFlight.add(-done.count)
            for commit in offsets.finished(done) { await store(commit) }
        }

        await withTaskGroup(of: Void.self) { committer in
            committer.addTask {
                while !Task.isCancelled {
                    await settle()
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            await withDiscardingTaskGroup { group in
                for await var item in items {
                    if let message = item.message {
                        offsets.started(message)
                        do {
                            item.event = try EventEnvelopeCodec.decode(String(decoding: message.value, as: UTF8.self))
                        } catch {
                            logger.error("undecodable message skipped", metadata: [
                                "kafka.topic": "\(message.topic)", "kafka.offset": "\(message.offset)", "error": "\(error)",
                            ])
                            finished.add(message)
                            continue
                        }
                        guard let event = item.event, dedupe.accept(stream: event.streamID.description, version: event.streamVersion) else {
                            finished.add(message)
                            continue
                        }
                    }
                    outstanding.add()
                    guard lanes.enqueue(item) else { continue }
                    let lane = item.lane
                    group.addTask {
                        // Detached work is a child of the lane's task, so cancelling the dispatcher
                        // reaches it; the lane itself is idle again as soon as its queue is empty.
                        await withDiscardingTaskGroup { beyondLane in
                            await lanePermits.acquire()
                            while let next = lanes.next(of: lane) {
                                for task in await self.handle(next, lanes: lanes, finished: finished, outstanding: outstanding, handle) {
                                    beyondLane.addTask(operation: task)
                                }
                            }
                            lanePermits.release()
                        }
                    }
                }
                // Stopping: let what runs finish, for a while.
                let drained = await outstanding.waitUntilNone(timeout: drainTimeout)
                if !drained {
                    logger.warning("graceful shutdown: work still running after the drain timeout is cancelled; its events come again", metadata: [
                        "drain.timeout": "\(drainTimeout)", "work.outstanding": "\(outstanding.count)",
                    ])
                    group.cancelAll()
                }
            }
            committer.cancelAll()
        }
        await settle()
    }

    /// Runs one item of a lane: the handler, unless the other copy of the event ran it. Returns
    /// what must run beyond the lane: the handler's detached work, and waiting for it (or for the
    /// other copy) before the message counts as finished.
    private func handle(
        _ item: LaneItem, lanes: ExecutionLanes, finished: FinishedMessages, outstanding: Outstanding, _ handle: @escaping LaneHandler
    ) async -> [@Sendable () async -> Void] {
        guard let event = item.event else {
            outstanding.remove()
            return []
        }
        var tasks: [@Sendable () async -> Void] = []
        let done: Completion
        switch lanes.claim(item) {
        case .handle(let completion):
            done = completion
            guard let detached = await handleWithRetry(event, handle) else {
                // Cancelled (shutdown): the event comes again from Kafka.
                done.complete(false)
                outstanding.remove()
                return []
            }
            if detached.isEmpty {
                done.complete(true)
                if let message = item.message { finished.add(message) }
                outstanding.remove()
                return []
            }
            let remaining = SharedCount(detached.count)
            for work in detached {
                tasks.append {
                    await work()
                    // Work cut short by a shutdown is not done: its event comes again.
                    if Task.isCancelled { done.complete(false) }
                    if remaining.add(-1) == 0 { done.complete(true) }
                }
            }
        case .waitFor(let completion):
            done = completion
        }
        let message = item.message
        tasks.append {
            // The in-process copy leaves the offset to its Kafka copy.
            if await done.wait(), let message { finished.add(message) }
            outstanding.remove()
        }
        return tasks
    }

    /// Retries while the failure may pass (PostgreSQL restarting, an execution that kept changing
    /// under its handler); skips what can never succeed (an event that does not decode). Nil when
    /// cancelled.
    private func handleWithRetry(_ event: RecordedEvent, _ handle: LaneHandler) async -> [DetachedWork]? {
        do {
            return try await retrying(maximum: .seconds(5), when: Self.mayPass, onFailure: { error, _ in
                logger.warning("handling an event failed; retrying", metadata: ["event.stream": "\(event.streamID)", "error": "\(error)"])
            }) {
                try await handle(event)
            }
        } catch is CancellationError {
            return nil
        } catch {
            if Task.isCancelled { return nil }
            logger.error("handling an event failed; skipped", metadata: [
                "event.stream": "\(event.streamID)", "event.version": "\(event.streamVersion)", "event.type": "\(event.type)", "error": "\(error)",
            ])
            return []
        }
    }

    static func mayPass(_ error: any Error) -> Bool {
        if let error = error as? DatabaseError { return error.isRetriable }
        return error is EngineError
    }
}

/// One event for a lane: the in-process copy (no message) or the Kafka copy (decoded into
/// `event` by the consume loop).
struct LaneItem: Sendable {
    var event: RecordedEvent?
    var message: KafkaMessage?

    /// The execution's stream, or for an undecoded message its key.
    var lane: String { event?.streamID.description ?? "" }
}

/// The queued events of each busy execution, and the in-process copies handled and waiting for
/// their Kafka copy.
final class ExecutionLanes: Sendable {
    struct Key: Hashable, Sendable {
        let stream: String
        let version: Int64
    }

    enum Claim {
        /// Run the handler, then complete this.
        case handle(Completion)
        /// The other copy ran (or runs) the handler: wait for it.
        case waitFor(Completion)
    }

    private struct State {
        /// A lane is busy while it has an entry here (maybe empty: its last event is running).
        var queues: [String: [LaneItem]] = [:]
        var handledInProcess = RecentlyUsed<Key, Completion>(capacity: 50_000)
    }

    private let state = Mutex(State())

    /// Queues the item; true when its lane was idle and needs a task to drain it.
    func enqueue(_ item: LaneItem) -> Bool {
        state.withLock { state in
            if state.queues[item.lane] != nil {
                state.queues[item.lane]!.append(item)
                return false
            }
            state.queues[item.lane] = [item]
            return true
        }
    }

    /// The lane's next item; nil when it is empty, which makes the lane idle (atomically, so an
    /// item queued just after starts a new drain).
    func next(of lane: String) -> LaneItem? {
        state.withLock { state in
            guard var queue = state.queues[lane], !queue.isEmpty else {
                state.queues.removeValue(forKey: lane)
                return nil
            }
            let item = queue.removeFirst()
            state.queues[lane] = queue
            return item
        }
    }

    /// Whether this copy runs the handler. An in-process copy always does, and is remembered
    /// until its Kafka copy comes; a Kafka copy whose in-process copy was handled waits for it
    /// instead. (A Kafka copy that overtook its in-process copy is not remembered: that copy then
    /// runs again, which the handlers' state checks make harmless.)
    func claim(_ item: LaneItem) -> Claim {
        guard let event = item.event else { return .handle(Completion()) }
        let key = Key(stream: event.streamID.description, version: event.streamVersion)
        return state.withLock { state in
            if item.message == nil {
                let completion = Completion()
                state.handledInProcess.set(completion, for: key)
                return .handle(completion)
            }
            if let completion = state.handledInProcess.remove(key) { return .waitFor(completion) }
            return .handle(Completion())
        }
    }

    var busyLanes: Int { state.withLock { $0.queues.count } }
}

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

/// Which offsets of each partition may be committed while messages are handled concurrently.
struct OffsetTracker {
    struct Partition: Hashable {
        let topic: String
        let partition: Int32
    }

    private var inFlight: [Partition: Set<Int64>] = [:]
    private var highestFinished: [Partition: KafkaMessage] = [:]

    mutating func started(_ message: KafkaMessage) {
        inFlight[Partition(topic: message.topic, partition: message.partition), default: []].insert(message.offset)
    }

    /// Records `message` as handled; returns the message whose offset may now be committed.
    mutating func finished(_ message: KafkaMessage) -> KafkaMessage? {
        let key = Partition(topic: message.topic, partition: message.partition)
        inFlight[key]?.remove(message.offset)
        if (highestFinished[key]?.offset ?? -1) < message.offset { highestFinished[key] = message }
        guard let highest = highestFinished[key] else { return nil }
        if let oldest = inFlight[key]?.min(), oldest < highest.offset {
            // Only up to just before the oldest unfinished message.
            var below = highest
            below.offset = oldest - 1
            return below.offset >= 0 ? below : nil
        }
        return highest
    }
}

/// The ``OffsetTracker`` shared by the dispatch loop (which starts messages) and the task that
/// stores offsets (which finishes them).
final class OffsetBook: Sendable {
    private let tracker = Mutex(OffsetTracker())

    func started(_ message: KafkaMessage) { tracker.withLock { $0.started(message) } }

    /// Records the messages as finished; returns, per partition, the message whose offset may now be stored.
    func finished(_ messages: [KafkaMessage]) -> [KafkaMessage] {
        tracker.withLock { tracker in
            var commits: [OffsetTracker.Partition: KafkaMessage] = [:]
            for message in messages {
                if let commit = tracker.finished(message) { commits[OffsetTracker.Partition(topic: commit.topic, partition: commit.partition)] = commit }
            }
            return Array(commits.values)
        }
    }
}

/// Messages whose handlers finished, waiting for the offsets' task to account for them.
final class FinishedMessages: Sendable {
    private let messages = Mutex<[KafkaMessage]>([])

    func add(_ message: KafkaMessage) { messages.withLock { $0.append(message) } }

    func take() -> [KafkaMessage] { messages.withLock { list in defer { list = [] }; return list } }
}
