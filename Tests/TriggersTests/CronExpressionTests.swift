import Foundation
import Testing
@testable import Triggers

@Suite("Cron expressions: Quartz syntax, H, L, W, #, time zones and daylight saving")
struct CronExpressionTests {
    static let utc = TimeZone(identifier: "UTC")!
    static let newYork = TimeZone(identifier: "America/New_York")!
    static let berlin = TimeZone(identifier: "Europe/Berlin")!

    static func date(_ text: String) -> Date { try! Date(text, strategy: .iso8601) }
    static func text(_ date: Date?, _ zone: TimeZone = utc) -> String {
        date.map { $0.formatted(Date.ISO8601FormatStyle(timeZone: zone)) } ?? "none"
    }

    @Test func noonEveryDayInTwoTimeZones() throws {
        let noon = try CronExpression("0 0 12 * * ?")
        let after = Self.date("2026-11-30T10:00:00Z")
        #expect(Self.text(noon.next(after: after, in: Self.utc)) == "2026-11-30T12:00:00Z")
        #expect(Self.text(noon.next(after: after, in: Self.newYork)) == "2026-11-30T17:00:00Z", "noon in New York is 17:00 UTC in winter")
        #expect(Self.text(noon.next(after: after, in: Self.berlin)) == "2026-11-30T11:00:00Z")
        #expect(Self.text(noon.next(after: Self.date("2026-11-30T12:00:00Z"), in: Self.utc)) == "2026-12-01T12:00:00Z", "strictly after")
        #expect(noon.next(5, after: after, in: Self.utc).count == 5)
    }

    @Test func lastWeekdayNthAndNearestWeekday() throws {
        let after = Self.date("2026-11-30T00:00:00Z")
        #expect(Self.text(try CronExpression("0 15 10 ? * 6L").next(after: after, in: Self.utc)) == "2026-12-25T10:15:00Z", "the last Friday of December 2026")
        #expect(Self.text(try CronExpression("0 0 9 ? * 2#1").next(after: after, in: Self.utc)) == "2026-12-07T09:00:00Z", "the first Monday")
        #expect(Self.text(try CronExpression("0 0 9 ? * MON#1").next(after: after, in: Self.utc)) == "2026-12-07T09:00:00Z")
        #expect(Self.text(try CronExpression("0 0 0 L * ?").next(after: after, in: Self.utc)) == "2026-12-31T00:00:00Z")
        #expect(Self.text(try CronExpression("0 0 0 L-2 * ?").next(after: after, in: Self.utc)) == "2026-12-29T00:00:00Z")
        // 2027-01-31 is a Sunday: the last weekday is Friday the 29th.
        #expect(Self.text(try CronExpression("0 0 0 LW * ?").next(after: Self.date("2027-01-01T00:00:00Z"), in: Self.utc)) == "2027-01-29T00:00:00Z")
        // 2026-12-19 is a Saturday: the nearest weekday is Friday the 18th.
        #expect(Self.text(try CronExpression("0 0 12 19W * ?").next(after: after, in: Self.utc)) == "2026-12-18T12:00:00Z")
        // 2027-05-01 is a Saturday: 1W stays in the month, Monday the 3rd.
        #expect(Self.text(try CronExpression("0 0 12 1W * ?").next(after: Self.date("2027-04-15T00:00:00Z"), in: Self.utc)) == "2027-05-03T12:00:00Z")
        #expect(Self.text(try CronExpression("0 0/20 8-9 ? * MON-FRI").next(after: Self.date("2026-12-05T00:00:00Z"), in: Self.utc)) == "2026-12-07T08:00:00Z")
        #expect(Self.text(try CronExpression("0 0 0 1 JAN ? 2028").next(after: after, in: Self.utc)) == "2028-01-01T00:00:00Z")
        #expect(try CronExpression("0 0 0 1 JAN ? 2025").next(after: after, in: Self.utc) == nil, "a year that has passed")
    }

    @Test func aLocalTimeThatDaylightSavingSkipsDoesNotFire() throws {
        // New York springs forward on 2027-03-14: 02:30 does not exist that day.
        let early = try CronExpression("0 30 2 * * ?")
        let times = early.next(2, after: Self.date("2027-03-13T12:00:00Z"), in: Self.newYork)
        #expect(times.map { Self.text($0, Self.newYork) } == ["2027-03-15T02:30:00-0400", "2027-03-16T02:30:00-0400"], "\(times)")
    }

    @Test func hashedValuesAreStablePerTriggerAndSpreadAcrossTriggers() throws {
        let a = try CronExpression("H H 3 * * ?", hashKey: "pipeline-a/0")
        let again = try CronExpression("H H 3 * * ?", hashKey: "pipeline-a/0")
        #expect(a == again)
        let minutes = Set((0..<20).map { (try? CronExpression("0 H * * * ?", hashKey: "p\($0)/0"))?.minutes.first ?? -1 })
        #expect(minutes.count > 5, "twenty triggers written alike should not fire in the same few minutes: \(minutes.sorted())")
        let ranged = try CronExpression("0 H(0-9) * * * ?", hashKey: "x")
        #expect(ranged.minutes.count == 1 && (0...9).contains(ranged.minutes[0]))
        let stepped = try CronExpression("0 H/15 * * * ?", hashKey: "x")
        #expect(stepped.minutes.count == 4 && stepped.minutes[0] < 15 && stepped.minutes[1] == stepped.minutes[0] + 15, "\(stepped.minutes)")
        #expect(throws: CronExpression.Invalid.self) { try CronExpression("0 0 0 H * ?") }
    }

    @Test func invalidExpressionsSayWhy() {
        func problem(_ text: String) -> String {
            do {
                _ = try CronExpression(text)
                return "valid"
            } catch {
                return error.description
            }
        }
        #expect(problem("0 0 12 * *").contains("6 or 7 fields"))
        #expect(problem("0 0 12 1 * MON").contains("not both"))
        #expect(problem("60 * * * * ?").contains("seconds: 60 is not in 0–59"))
        #expect(problem("0 0 25 * * ?").contains("hours"))
        #expect(problem("0 0 12 ? FOO *").contains("month"))
        #expect(problem("0 0 12 ? * 2#6").contains("#"))
        #expect(problem("0 0/0 12 * * ?").contains("step"))
        #expect(problem("0 0 12 * * ?") == "valid")
        #expect(problem("0 0 12 * * *") == "valid", "* in both day fields reads as every day")
    }

    @Test func theLatestMissedFireTimeIsFoundWithoutWalkingEveryOne() throws {
        let everySecond = try CronExpression("* * * * * ?")
        let latest = everySecond.latest(notAfter: Self.date("2026-11-30T12:00:00Z"), from: Self.date("2026-11-29T12:00:00Z"), in: Self.utc)
        #expect(Self.text(latest) == "2026-11-30T12:00:00Z")
        let yearly = try CronExpression("0 0 0 1 JAN ?")
        #expect(Self.text(yearly.latest(notAfter: Self.date("2026-11-30T12:00:00Z"), from: Self.date("2020-01-01T00:00:00Z"), in: Self.utc)) == "2026-01-01T00:00:00Z")
    }
}
