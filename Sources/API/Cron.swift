// Cron schedules as CronJob takes them: five fields (minute hour day-of-month month day-of-week)
// with lists, ranges, steps, * and ?, month and weekday names, and the @yearly/@annually,
// @monthly, @weekly, @daily/@midnight and @hourly macros. When both day fields are restricted a
// day matches either (the classic cron rule). Times are computed in a time zone (UTC unless the
// CronJob names one), so "0 9 * * *" is 09:00 local, across daylight-saving changes.
import Foundation

public struct CronSchedule: Hashable, Sendable {
    public let minutes: Set<Int>, hours: Set<Int>, days: Set<Int>, months: Set<Int>, weekdays: Set<Int>
    /// A day field written as * or ?: then only the other one restricts days.
    let anyDay: Bool, anyWeekday: Bool

    public struct ParseError: Error, CustomStringConvertible { public let description: String }

    static let macros = ["@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
                         "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(_ text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("TZ=") || trimmed.hasPrefix("CRON_TZ=") {
            throw ParseError(description: "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        }
        let expanded = Self.macros[trimmed.lowercased()] ?? trimmed
        if expanded.hasPrefix("@") { throw ParseError(description: "unrecognized descriptor: \(trimmed)") }
        let f = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard f.count == 5 else { throw ParseError(description: "expected exactly 5 fields, found \(f.count): \(trimmed)") }
        minutes = try Self.field(f[0], 0, 59, names: [], what: "minute")
        hours = try Self.field(f[1], 0, 23, names: [], what: "hour")
        days = try Self.field(f[2], 1, 31, names: [], what: "day of month")
        months = try Self.field(f[3], 1, 12, names: Self.monthNames, what: "month", firstName: 1)
        var wd = try Self.field(f[4], 0, 7, names: Self.dayNames, what: "day of week")
        if wd.remove(7) != nil { wd.insert(0) }   // 7 is Sunday too
        weekdays = wd
        anyDay = f[2] == "*" || f[2] == "?"
        anyWeekday = f[4] == "*" || f[4] == "?"
    }

    static func field(_ s: String, _ lo: Int, _ hi: Int, names: [String], what: String, firstName: Int = 0) throws -> Set<Int> {
        func value(_ v: String) throws -> Int {
            if let n = Int(v) { return n }
            if let i = names.firstIndex(of: v.lowercased()) { return i + firstName }
            throw ParseError(description: "failed to parse \(what) \"\(v)\" in \"\(s)\"")
        }
        var out = Set<Int>()
        for part in s.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            guard !part.isEmpty else { throw ParseError(description: "empty list item in \(what) \"\(s)\"") }
            let stepParts = part.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard stepParts.count <= 2 else { throw ParseError(description: "too many slashes in \(what) \"\(part)\"") }
            var step = 1
            if stepParts.count == 2 {
                guard let st = Int(stepParts[1]), st > 0 else { throw ParseError(description: "bad step \"\(stepParts[1])\" in \(what) \"\(part)\"") }
                step = st
            }
            let range = stepParts[0]
            var start: Int, end: Int
            if range == "*" || range == "?" {
                start = lo; end = hi
            } else if let dash = range.firstIndex(of: "-") {
                start = try value(String(range[..<dash])); end = try value(String(range[range.index(after: dash)...]))
            } else {
                start = try value(range); end = stepParts.count == 2 ? hi : start
            }
            guard start >= lo, end <= hi else { throw ParseError(description: "\(what) out of range (\(lo)-\(hi)): \"\(part)\"") }
            guard start <= end else { throw ParseError(description: "beginning of range (\(start)) beyond end of range (\(end)) in \(what): \"\(part)\"") }
            out.formUnion(stride(from: start, through: end, by: step))
        }
        return out
    }

    func dayMatches(day: Int, weekday: Int) -> Bool {
        let d = days.contains(day), w = weekdays.contains(weekday)
        if anyDay && anyWeekday { return true }
        if anyDay { return w }
        if anyWeekday { return d }
        return d || w
    }

    /// The first scheduled time strictly after `after`, in `zone`; nil if none within five years.
    public func next(after: Date, in zone: TimeZone = TimeZone(identifier: "UTC")!) -> Date? {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = zone
        // Start at the next whole minute.
        let startMinute = cal.dateInterval(of: .minute, for: after)?.end ?? after.addingTimeInterval(60)
        var day = cal.startOfDay(for: startMinute)
        let hoursSorted = hours.sorted(), minutesSorted = minutes.sorted()
        for _ in 0..<(366 * 5) {
            let c = cal.dateComponents([.year, .month, .day, .weekday], from: day)
            if months.contains(c.month!), dayMatches(day: c.day!, weekday: c.weekday! - 1) {
                for h in hoursSorted {
                    for m in minutesSorted {
                        var dc = DateComponents()
                        dc.year = c.year; dc.month = c.month; dc.day = c.day; dc.hour = h; dc.minute = m
                        // A wall time skipped by a daylight-saving change does not exist; the
                        // calendar moves it forward, which is where cron runs it too.
                        guard let t = cal.date(from: dc), t >= startMinute else { continue }
                        let back = cal.dateComponents([.day], from: t)
                        if back.day != c.day { continue }
                        return t
                    }
                }
            }
            guard let n = cal.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = cal.startOfDay(for: n)
        }
        return nil
    }

    /// Scheduled times in (after, upTo], at most `limit` + 1 of them (to tell "too many").
    public func times(after: Date, upTo: Date, in zone: TimeZone, limit: Int) -> [Date] {
        var out: [Date] = []
        var t = after
        while out.count <= limit, let n = next(after: t, in: zone), n <= upTo {
            out.append(n)
            t = n
        }
        return out
    }
}
