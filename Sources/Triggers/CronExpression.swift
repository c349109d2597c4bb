import Crypto
import Foundation

/// A Quartz cron expression, as Spinnaker's cron triggers write them: seconds, minutes, hours,
/// day of month, month, day of week, and an optional year. Beyond lists (`,`), ranges (`-`),
/// steps (`/`), `*` and `?`: `L` (the month's last day, `L-3`; in day of week `6L`, its last
/// Friday), `W` (the weekday nearest a day, `15W`, `LW`), `#` (`2#3`, the third Monday), month and
/// day names, and `H` in seconds, minutes and hours — a value hashed from the trigger's id (also
/// `H(0-29)` and `H/15`), so that triggers written alike spread out instead of firing together.
/// Days of week count 1 (SUN) to 7 (SAT), as in Quartz.
public struct CronExpression: Sendable, Hashable {
    public struct Invalid: Error, CustomStringConvertible, Sendable, Equatable {
        public let description: String
    }

    let seconds: [Int]
    let minutes: [Int]
    let hours: [Int]
    let daysOfMonth: DayOfMonth
    let months: Set<Int>
    let daysOfWeek: DayOfWeek
    let years: Set<Int>?
    public let text: String

    enum DayOfMonth: Sendable, Hashable {
        case any
        case days(Set<Int>)
        /// The last day, less an offset.
        case last(offset: Int)
        case nearestWeekday(Int)
        case lastWeekday
    }

    enum DayOfWeek: Sendable, Hashable {
        case any
        case days(Set<Int>)
        /// The month's last such weekday.
        case last(Int)
        /// The month's nth such weekday.
        case nth(weekday: Int, n: Int)
    }

    /// Parses `text`; `hashKey` (the trigger's id) chooses the values of `H`.
    public init(_ text: String, hashKey: String = "") throws(Invalid) {
        self.text = text
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).uppercased() }
        guard fields.count == 6 || fields.count == 7 else {
            throw Invalid(description: "a cron expression has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year]), not \(fields.count): \(text)")
        }
        let hash = Array(SHA256.hash(data: Array(hashKey.utf8)))
        func hashed(_ range: ClosedRange<Int>, salt: Int) -> Int {
            let value = (Int(hash[salt % hash.count]) << 8) | Int(hash[(salt + 1) % hash.count])
            return range.lowerBound + value % (range.count)
        }
        seconds = try Self.values(fields[0], "seconds", 0...59, hashed: { hashed($0, salt: 0) }).sorted()
        minutes = try Self.values(fields[1], "minutes", 0...59, hashed: { hashed($0, salt: 2) }).sorted()
        hours = try Self.values(fields[2], "hours", 0...23, hashed: { hashed($0, salt: 4) }).sorted()
        months = try Self.values(fields[4], "month", 1...12, names: Self.monthNames, hashed: nil)
        years = fields.count == 7 ? try Self.values(fields[6], "year", 1970...2199, hashed: nil) : nil
        let (dom, dow) = (fields[3], fields[5])
        if dom != "?" && dow != "?" && !(dom == "*" || dow == "*") {
            throw Invalid(description: "give a day of month or a day of week, not both: one of them must be ? (\(text))")
        }
        daysOfMonth = dom == "?" || (dom == "*" && dow != "*" && dow != "?") ? .any : try Self.dayOfMonth(dom)
        daysOfWeek = dow == "?" || dow == "*" ? .any : try Self.dayOfWeek(dow)
        if case .any = daysOfMonth, case .any = daysOfWeek, dom == "?", dow == "?" {
            throw Invalid(description: "day of month and day of week cannot both be ? (\(text))")
        }
    }

    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    static func number(_ text: Substring, _ field: String, _ range: ClosedRange<Int>, names: [String] = []) throws(Invalid) -> Int {
        if let index = names.firstIndex(of: String(text)) { return range.lowerBound + index }
        guard let value = Int(text), range.contains(value) else {
            throw Invalid(description: "\(field): \(text) is not in \(range.lowerBound)–\(range.upperBound)\(names.isEmpty ? "" : " or \(names.first!)–\(names.last!)")")
        }
        return value
    }

    /// The values a plain field allows: `*`, lists, ranges, steps and `H`.
    static func values(
        _ text: String, _ field: String, _ range: ClosedRange<Int>, names: [String] = [], hashed: ((ClosedRange<Int>) -> Int)?
    ) throws(Invalid) -> Set<Int> {
        var result: Set<Int> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw Invalid(description: "\(field): an empty item in \(text)") }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw Invalid(description: "\(field): \(item) has more than one /") }
            var step = 1
            if parts.count == 2 {
                guard let given = Int(parts[1]), given > 0, given <= range.count else {
                    throw Invalid(description: "\(field): the step in \(item) must be 1–\(range.count)")
                }
                step = given
            }
            let base = parts[0]
            var lower = range.lowerBound, upper = range.upperBound
            if base.hasPrefix("H") {
                guard let hashed else { throw Invalid(description: "\(field): H is allowed only in seconds, minutes and hours") }
                var span = range
                if base.count > 1 {
                    guard base.hasPrefix("H("), base.hasSuffix(")") else { throw Invalid(description: "\(field): \(item) is not H, H(a-b), H/n or H(a-b)/n") }
                    let inner = base.dropFirst(2).dropLast()
                    let bounds = inner.split(separator: "-")
                    guard bounds.count == 2 else { throw Invalid(description: "\(field): \(item) needs a range, as H(0-29)") }
                    let (from, to) = (try number(bounds[0], field, range), try number(bounds[1], field, range))
                    guard from <= to else { throw Invalid(description: "\(field): \(item) runs backwards") }
                    span = from...to
                }
                if parts.count == 2 {
                    // H/n: every n from a hashed start within the first n.
                    let start = span.lowerBound + hashed(0...(min(step, span.count) - 1))
                    result.formUnion(stride(from: start, through: span.upperBound, by: step))
                } else {
                    result.insert(hashed(span))
                }
                continue
            }
            if base == "*" {
                // the whole range
            } else if let dash = base.firstIndex(of: "-") {
                lower = try number(base[..<dash], field, range, names: names)
                upper = try number(base[base.index(after: dash)...], field, range, names: names)
                guard lower <= upper else { throw Invalid(description: "\(field): \(item) runs backwards") }
            } else {
                lower = try number(base, field, range, names: names)
                upper = parts.count == 2 ? range.upperBound : lower
            }
            result.formUnion(stride(from: lower, through: upper, by: step))
        }
        return result
    }

    static func dayOfMonth(_ text: String) throws(Invalid) -> DayOfMonth {
        if text == "L" { return .last(offset: 0) }
        if text == "LW" { return .lastWeekday }
        if text.hasPrefix("L-"), let offset = Int(text.dropFirst(2)), (0...30).contains(offset) { return .last(offset: offset) }
        if text.hasSuffix("W") {
            let day = try number(text.dropLast(), "day of month", 1...31)
            return .nearestWeekday(day)
        }
        if text.contains("L") || text.contains("W") { throw Invalid(description: "day of month: \(text) is not L, L-n, LW or nW") }
        return .days(try values(text, "day of month", 1...31, hashed: nil))
    }

    static func dayOfWeek(_ text: String) throws(Invalid) -> DayOfWeek {
        if text == "L" { return .days([7]) }
        if text.hasSuffix("L") { return .last(try number(text.dropLast(), "day of week", 1...7, names: dayNames)) }
        if let hash = text.firstIndex(of: "#") {
            let weekday = try number(text[..<hash], "day of week", 1...7, names: dayNames)
            let n = try number(text[text.index(after: hash)...], "day of week's #", 1...5)
            return .nth(weekday: weekday, n: n)
        }
        return .days(try values(text, "day of week", 1...7, names: dayNames, hashed: nil))
    }

    /// The next fire time strictly after `date`, in `zone`; nil when there is none (a past year).
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let start = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard var day = calendar.date(from: DateComponents(year: start.year, month: start.month, day: start.day, hour: 12)) else { return nil }
        var first = true
        for _ in 0..<(366 * 30) {
            let parts = calendar.dateComponents([.year, .month, .day, .weekday], from: day)
            guard let year = parts.year, let month = parts.month, let dayOfMonth = parts.day, let weekday = parts.weekday else { return nil }
            if let years, let last = years.max(), year > last { return nil }
            if (years?.contains(year) ?? true) && months.contains(month)
                && matches(day: dayOfMonth, weekday: weekday, month: month, year: year, calendar: calendar) {
                for hour in hours where !first || hour >= start.hour! {
                    for minute in minutes where !(first && hour == start.hour!) || minute >= start.minute! {
                        for second in seconds {
                            if first && hour == start.hour! && minute == start.minute! && second <= start.second! { continue }
                            let wanted = DateComponents(year: year, month: month, day: dayOfMonth, hour: hour, minute: minute, second: second)
                            guard let candidate = calendar.date(from: wanted) else { continue }
                            // A local time that does not exist (a spring-forward gap) is skipped.
                            let back = calendar.dateComponents([.hour, .minute], from: candidate)
                            guard back.hour == hour, back.minute == minute, candidate > date else { continue }
                            return candidate
                        }
                    }
                }
            }
            first = false
            guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = next
        }
        return nil
    }

    /// The latest fire time at or before `limit`, searching no earlier than `earliest` (itself a
    /// fire time at or before `limit`): a window before `limit` that grows until it holds one.
    public func latest(notAfter limit: Date, from earliest: Date, in zone: TimeZone) -> Date? {
        var window: TimeInterval = 60
        while true {
            let start = max(earliest.addingTimeInterval(-1), limit.addingTimeInterval(-window))
            var found: Date?
            var cursor = start
            while let time = next(after: cursor, in: zone), time <= limit {
                found = time
                cursor = time
            }
            if let found { return found }
            if start <= earliest { return nil }
            window *= 8
        }
    }

    /// The next `count` fire times after `date`.
    public func next(_ count: Int, after date: Date, in zone: TimeZone) -> [Date] {
        var times: [Date] = []
        var from = date
        while times.count < count, let time = next(after: from, in: zone) {
            times.append(time)
            from = time
        }
        return times
    }

    func matches(day: Int, weekday: Int, month: Int, year: Int, calendar: Calendar) -> Bool {
        let length = calendar.range(of: .day, in: .month, for: calendar.date(from: DateComponents(year: year, month: month, day: 1))!)?.count ?? 31
        switch daysOfMonth {
        case .any: break
        case .days(let days): if !days.contains(day) { return false }
        case .last(let offset): if day != length - offset { return false }
        case .nearestWeekday(let wanted):
            if day != Self.nearestWeekday(to: min(wanted, length), length: length, weekdayOfFirst: Self.weekday(of: 1, given: day, weekday)) { return false }
        case .lastWeekday:
            let lastWeekday = Self.weekday(of: length, given: day, weekday)
            let last = lastWeekday == 7 ? length - 1 : lastWeekday == 1 ? length - 2 : length
            if day != last { return false }
        }
        switch daysOfWeek {
        case .any: return true
        case .days(let days): return days.contains(weekday)
        case .last(let wanted): return weekday == wanted && day + 7 > length
        case .nth(let wanted, let n): return weekday == wanted && (day - 1) / 7 + 1 == n
        }
    }

    /// The weekday (1 = Sunday) of day `target`, knowing day `day` is `weekday`.
    static func weekday(of target: Int, given day: Int, _ weekday: Int) -> Int {
        ((weekday - 1 + (target - day)) % 7 + 7) % 7 + 1
    }

    /// Quartz's nearest weekday: a Saturday moves to Friday (or Monday when that leaves the
    /// month), a Sunday to Monday (or Friday when that leaves the month).
    static func nearestWeekday(to day: Int, length: Int, weekdayOfFirst: Int) -> Int {
        let weekday = weekday(of: day, given: 1, weekdayOfFirst)
        switch weekday {
        case 7: return day == 1 ? 3 : day - 1
        case 1: return day == length ? day - 2 : day + 1
        default: return day
        }
    }
}
