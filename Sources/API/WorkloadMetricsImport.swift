// "Back data": a workload's past usage, from a load balancer's logs or an older system, loaded
// into its history so that predictive scaling has cycles to learn from on its first day
// (`ctl top --history import deployment/NAME --csv FILE`, POST of text/csv to the workload's
// metrics.orchestrator.io path). The file is checked whole before anything is kept: one bad
// line refuses it, and the error names the line and the column.
import Foundation

public struct WorkloadMetricsImportError: Error, CustomStringConvertible, Sendable {
    public var line: Int?
    public var message: String
    public init(line: Int?, _ message: String) { self.line = line; self.message = message }
    public var description: String { line.map { "line \($0): \(message)" } ?? message }
}

/// What an import kept, as the server answers it.
public struct WorkloadMetricsImportResult: Codable, Hashable, Sendable {
    public var apiVersion: String = WorkloadMetricsGroup.apiVersion
    public var kind: String = "WorkloadMetricsImport"
    public var workload: WorkloadRef
    /// Samples now in the history.
    public var imported: Int
    /// Samples older than the history keeps (they were not stored).
    public var olderThanRetention: Int
    public var first: String?
    public var last: String?
    public var retentionSeconds: Double
    public init(workload: WorkloadRef, imported: Int, olderThanRetention: Int, first: String?, last: String?, retentionSeconds: Double) {
        self.workload = workload; self.imported = imported; self.olderThanRetention = olderThanRetention
        self.first = first; self.last = last; self.retentionSeconds = retentionSeconds
    }
}

public enum WorkloadMetricsImport {
    /// The columns a file may have; each name carries its unit. The header of
    /// `ctl top --history … --csv` is a valid header, so an export imports back unchanged.
    public static let columns = ["timestamp", "window_seconds", "pods", "cpu_total_millicores", "cpu_average_millicores",
                                 "memory_average_bytes", "cpu_utilization_percent", "memory_utilization_percent", "requests_per_second"]
    /// A sample needs one of these: what the HPA can scale on.
    public static let utilizationColumns = ["cpu_utilization_percent", "memory_utilization_percent", "requests_per_second"]
    /// A year of one-minute samples, with room.
    public static let maxRows = 1_000_000

    /// Parses a CSV history: a header line naming the columns (any order; `timestamp`, `pods`
    /// and at least one utilization or request-rate column required), then one sample per line with times
    /// strictly increasing, none in the future. Times are RFC 3339 or Unix seconds. Empty
    /// lines and lines starting with `#` are skipped. An empty utilization cell is "not
    /// measured"; every other cell must be a finite, non-negative number.
    public static func parse(_ text: String, now: Date) throws(WorkloadMetricsImportError) -> [WorkloadMetricsSample] {
        var header: [String]?
        var index: [String: Int] = [:]
        var rows: [(line: Int, time: Date, cells: [Substring])] = []
        var lineNo = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNo += 1
            var line = rawLine
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { cell -> Substring in
                var c = Substring(cell.trimmingCharacters(in: .whitespaces))
                if c.count >= 2, c.first == "\"", c.last == "\"" { c = c.dropFirst().dropLast() }
                return c
            }
            guard let header else {
                let names = cells.map { $0.lowercased() }
                for (i, n) in names.enumerated() {
                    guard columns.contains(n) else {
                        throw .init(line: lineNo, "unknown column \"\(n)\": the columns are \(columns.joined(separator: ", ")) (each name states its unit)")
                    }
                    guard index[n] == nil else { throw .init(line: lineNo, "column \"\(n)\" appears twice") }
                    index[n] = i
                }
                for required in ["timestamp", "pods"] where index[required] == nil {
                    throw .init(line: lineNo, "missing column \"\(required)\"\(required == "pods" ? " (how many pods each utilization is the average of)" : "")")
                }
                guard utilizationColumns.contains(where: { index[$0] != nil }) else {
                    throw .init(line: lineNo, "no utilization or request-rate column: the header needs \(utilizationColumns.dropLast().joined(separator: ", ")) or \(utilizationColumns.last!)")
                }
                header = names
                continue
            }
            guard cells.count == header.count else {
                throw .init(line: lineNo, "\(cells.count) field\(cells.count == 1 ? "" : "s"), the header has \(header.count)")
            }
            guard rows.count < maxRows else { throw .init(line: lineNo, "more than \(maxRows) samples; import the file in parts") }
            let ts = cells[index["timestamp"]!]
            guard let time = parseTime(ts) else {
                throw .init(line: lineNo, "timestamp \"\(ts)\" is neither RFC 3339 (2026-12-01T08:00:00Z) nor Unix seconds")
            }
            if let prev = rows.last, time <= prev.time {
                throw .init(line: lineNo, "timestamp \(ts) is not after line \(prev.line)'s (\(KubeTime.format(prev.time))): times must increase")
            }
            guard time <= now.addingTimeInterval(1) else {
                throw .init(line: lineNo, "timestamp \(ts) is in the future (now is \(KubeTime.format(now)))")
            }
            rows.append((lineNo, time, cells))
        }
        guard let header else { throw .init(line: nil, "the file is empty: it needs a header line (\(columns.joined(separator: ",")))") }
        guard !rows.isEmpty else { throw .init(line: nil, "no samples: the file has a header (\(header.joined(separator: ","))) and no rows") }

        func number(_ row: (line: Int, time: Date, cells: [Substring]), _ column: String, optional: Bool) throws(WorkloadMetricsImportError) -> Double? {
            guard let i = index[column] else { return nil }
            let cell = row.cells[i]
            if cell.isEmpty {
                if optional { return nil }
                throw .init(line: row.line, "\(column) is empty")
            }
            guard let v = Double(cell), v.isFinite else { throw .init(line: row.line, "\(column): \"\(cell)\" is not a number") }
            guard v >= 0 else { throw .init(line: row.line, "\(column): \(cell) is negative") }
            return v
        }
        var out: [WorkloadMetricsSample] = []
        out.reserveCapacity(rows.count)
        for (k, row) in rows.enumerated() {
            let pods = try number(row, "pods", optional: false)!
            guard pods > 0 else { throw .init(line: row.line, "pods: 0; a sample is the average over at least one pod") }
            let cpu = try number(row, "cpu_utilization_percent", optional: true)
            let mem = try number(row, "memory_utilization_percent", optional: true)
            let rps = try number(row, "requests_per_second", optional: true)
            guard cpu != nil || mem != nil || rps != nil else {
                throw .init(line: row.line, "no utilization or request rate: \(utilizationColumns.filter { index[$0] != nil }.joined(separator: " and ")) empty")
            }
            // Unstated, a sample covers the time since the one before (the first: until the next).
            let gap = k > 0 ? row.time.timeIntervalSince(rows[k - 1].time) : rows.count > 1 ? rows[1].time.timeIntervalSince(row.time) : 60
            let window = try number(row, "window_seconds", optional: true) ?? gap
            guard window > 0 else { throw .init(line: row.line, "window_seconds: 0; a sample covers some time") }
            let cpuTotal = try number(row, "cpu_total_millicores", optional: true)
            let cpuAvg = try number(row, "cpu_average_millicores", optional: true)
            out.append(WorkloadMetricsSample(time: row.time, windowSeconds: window, pods: pods,
                                             cpuTotalMillicores: cpuTotal ?? (cpuAvg.map { $0 * pods } ?? 0),
                                             cpuAverageMillicores: cpuAvg ?? (cpuTotal.map { $0 / pods } ?? 0),
                                             memoryAverageBytes: try number(row, "memory_average_bytes", optional: true) ?? 0,
                                             cpuUtilization: cpu, memoryUtilization: mem, requestsPerSecond: rps))
        }
        return out
    }

    /// RFC 3339 (with or without fractions) or Unix seconds.
    static func parseTime(_ s: Substring) -> Date? {
        if let v = Double(s), v.isFinite, v >= 0, !s.contains("e"), !s.contains("E") { return Date(timeIntervalSince1970: v) }
        return KubeTime.parse(String(s))
    }
}
