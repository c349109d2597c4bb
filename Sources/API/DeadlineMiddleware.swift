import Hummingbird

/// Bounds how long a request may take. PostgreSQL's client queues a query while it has no
/// connection, so without a bound a request made while the database is away would wait until it
/// came back; past the deadline the handler is cancelled (a queued query leaves the queue unrun)
/// and the answer is 503.
struct DeadlineMiddleware<Context: RequestContext>: RouterMiddleware {
    let deadline: Duration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await withoutActuallyEscaping(next) { next in
            // The handler runs in a child task while this one only waits for it, and the group
            // outlives neither: nothing else touches `next` meanwhile.
            nonisolated(unsafe) let handler = next
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { try await handler(request, context) }
                group.addTask {
                    try await Task.sleep(for: deadline)
                    return nil
                }
                defer { group.cancelAll() }
                guard let response = try await group.next() ?? nil else {
                    throw APIError(.serviceUnavailable, "unavailable",
                                   "no answer within \(deadline.components.seconds) s (PostgreSQL may be away); try again shortly — a change may or may not have been made")
                }
                return response
            }
        }
    }
}
