import EventLog
import Kafka
import Logging
import PostgresEventStore
import Synchronization

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
        _ items: AsyncStream<LaneIntake>, inFlight: SharedCount = SharedCount(), store: @escaping @Sendable (KafkaMessage) async -> Void,
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
                for await intake in items {
                    let item: LaneItem
                    switch intake {
                    case .inProcess(let event):
                        item = LaneItem(event: event, message: nil, completion: lanes.handingOver(event))
                    case .kafka(let message):
                        offsets.started(message)
                        // The headers name the event: a copy of one handed over in process (the
                        // common case) only waits for that copy's work, without being decoded or
                        // taking a place in its lane.
                        let named = message.header(CloudEventHeaders.subject).flatMap { stream in
                            message.header(CloudEventHeaders.streamVersion).flatMap(Int64.init).map { (stream, $0) }
                        }
                        if let (stream, version) = named {
                            guard dedupe.accept(stream: stream, version: version) else {
                                finished.add(message)
                                continue
                            }
                            if let handedOver = lanes.handedOver(stream: stream, version: version) {
                                outstanding.add()
                                group.addTask {
                                    if await handedOver.wait() { finished.add(message) }
                                    outstanding.remove()
                                }
                                continue
                            }
                        }
                        let event: RecordedEvent
                        do {
                            event = try EventEnvelopeCodec.decode(String(decoding: message.value, as: UTF8.self))
                        } catch {
                            logger.error("undecodable message skipped", metadata: [
                                "kafka.topic": "\(message.topic)", "kafka.offset": "\(message.offset)", "error": "\(error)",
                            ])
                            finished.add(message)
                            continue
                        }
                        if named == nil, !dedupe.accept(stream: event.streamID.description, version: event.streamVersion) {
                            finished.add(message)
                            continue
                        }
                        item = LaneItem(event: event, message: message, completion: nil)
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
        let event = item.event
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

/// What reaches a consumer: an event handed over in process, or a message from Kafka.
enum LaneIntake: Sendable {
    case inProcess(RecordedEvent)
    case kafka(KafkaMessage)
}

/// One event in its execution's lane, with the Kafka message it came in (none for the in-process
/// copy, which carries instead the completion its Kafka copy waits for).
struct LaneItem: Sendable {
    let event: RecordedEvent
    let message: KafkaMessage?
    let completion: Completion?

    var lane: String { event.streamID.description }
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

    /// Remembers an event handed over in process until its Kafka copy comes; the copy waits for
    /// the returned completion instead of running the handler again.
    func handingOver(_ event: RecordedEvent) -> Completion {
        let completion = Completion()
        state.withLock { $0.handledInProcess.set(completion, for: Key(stream: event.streamID.description, version: event.streamVersion)) }
        return completion
    }

    /// The completion of the in-process copy of this Kafka message's event, if it was handed over
    /// (and is no longer remembered for another copy).
    func handedOver(stream: String, version: Int64) -> Completion? {
        state.withLock { $0.handledInProcess.remove(Key(stream: stream, version: version)) }
    }

    /// Whether this copy runs the handler. An in-process copy always does; a Kafka copy whose
    /// in-process copy was handed over waits for it instead. (A Kafka copy that overtook its
    /// in-process copy is not remembered: that copy then runs again, which the handlers' state
    /// checks make harmless.)
    func claim(_ item: LaneItem) -> Claim {
        if let completion = item.completion { return .handle(completion) }
        if let completion = handedOver(stream: item.lane, version: item.event.streamVersion) { return .waitFor(completion) }
        return .handle(Completion())
    }
}
