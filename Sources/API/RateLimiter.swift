import Foundation
import Hummingbird
import Synchronization

/// How many requests a caller may make: `requestsPerSecond` on average, up to `burst` at once.
public struct RateLimit: Sendable, Hashable {
    public var requestsPerSecond: Double
    public var burst: Int

    public init(requestsPerSecond: Double = 50, burst: Int = 100) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst
    }
}

/// One token bucket per caller, in this process. A bucket holds up to `burst` tokens and gains
/// `requestsPerSecond` a second; a request takes one or is refused with the time until one is due.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let limit: RateLimit
    /// Beyond this many callers, buckets that have refilled (they refuse nothing) are dropped.
    let capacity: Int
    private let buckets = Mutex<[String: Bucket]>([:])

    init(_ limit: RateLimit, capacity: Int = 10_000) {
        self.limit = limit
        self.capacity = capacity
    }

    /// Nil when the request may go ahead; otherwise how long until the caller may try again.
    func admit(_ caller: String, now: ContinuousClock.Instant = .now) -> Duration? {
        let (rate, burst) = (limit.requestsPerSecond, Double(limit.burst))
        return buckets.withLock { buckets in
            if buckets.count >= capacity, buckets[caller] == nil {
                buckets = buckets.filter { Self.refilled($0.value, at: now, rate: rate) < burst }
            }
            var bucket = buckets[caller] ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, Self.refilled(bucket, at: now, rate: rate))
            bucket.updated = now
            defer { buckets[caller] = bucket }
            guard bucket.tokens >= 1 else { return .seconds((1 - bucket.tokens) / rate) }
            bucket.tokens -= 1
            return nil
        }
    }

    private static func refilled(_ bucket: Bucket, at now: ContinuousClock.Instant, rate: Double) -> Double {
        let elapsed = now - bucket.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return bucket.tokens + seconds * rate
    }
}

/// Refuses a caller's request with 429 and `Retry-After` once it is over its rate limit. Runs
/// after authentication, so the limit is per caller; the health checks and metrics are not limited.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let limiter: RateLimiter

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        // Callers without a token (trigger deliveries) are limited by their address, so that
        // nobody can fill the log with receipts.
        let who: String
        if let caller = context.caller {
            who = caller.user
        } else if AuthenticationMiddleware.isDelivery(request.uri.path) {
            who = "anonymous caller at \(context.peer ?? "an unknown address")"
        } else {
            return try await next(request, context)
        }
        guard let wait = limiter.admit(who) else { return try await next(request, context) }
        let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
        var response = APIError(
            .tooManyRequests, "too_many_requests",
            "\(who) is over the rate limit of \(limiter.limit.requestsPerSecond) requests a second (bursts of \(limiter.limit.burst)); retry in \(seconds) s"
        ).response()
        response.headers[.retryAfter] = String(seconds)
        return response
    }
}
