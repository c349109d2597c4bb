@testable import API
import Testing

@Suite("Rate limiter (token bucket per caller)", .timeLimit(.minutes(1)))
struct RateLimiterTests {
    let start = ContinuousClock.now

    @Test("a burst goes through, the next request waits for the next token")
    func burstThenWait() {
        let limiter = RateLimiter(RateLimit(requestsPerSecond: 2, burst: 3))
        for _ in 0..<3 { #expect(limiter.admit("ana", now: start) == nil) }
        let wait = limiter.admit("ana", now: start)
        #expect(wait == .milliseconds(500), "one token every 0.5 s")
        // Half of the wait later, still refused; after the rest, admitted once.
        #expect(limiter.admit("ana", now: start + .milliseconds(250)) != nil)
        #expect(limiter.admit("ana", now: start + .milliseconds(500)) == nil)
        #expect(limiter.admit("ana", now: start + .milliseconds(500)) != nil)
    }

    @Test("callers have buckets of their own; a bucket refills to its burst, not beyond")
    func perCallerAndCapped() {
        let limiter = RateLimiter(RateLimit(requestsPerSecond: 1, burst: 2))
        #expect(limiter.admit("ana", now: start) == nil)
        #expect(limiter.admit("ana", now: start) == nil)
        #expect(limiter.admit("ana", now: start) != nil)
        #expect(limiter.admit("ben", now: start) == nil, "ana's use does not count against ben")
        let later = start + .seconds(60)
        #expect(limiter.admit("ana", now: later) == nil)
        #expect(limiter.admit("ana", now: later) == nil)
        #expect(limiter.admit("ana", now: later) != nil, "a minute idle refills two tokens, not sixty")
    }

    @Test("past its capacity the limiter forgets full buckets, never a caller that is being limited")
    func pruning() {
        let limiter = RateLimiter(RateLimit(requestsPerSecond: 1, burst: 1), capacity: 2)
        #expect(limiter.admit("ana", now: start) == nil)
        #expect(limiter.admit("ana", now: start) != nil)
        #expect(limiter.admit("ben", now: start) == nil)
        // A third caller, 0.5 s later: both buckets are still short, so neither is forgotten.
        #expect(limiter.admit("cy", now: start + .milliseconds(500)) == nil)
        #expect(limiter.admit("ana", now: start + .milliseconds(500)) != nil, "ana is still limited")
    }
}
