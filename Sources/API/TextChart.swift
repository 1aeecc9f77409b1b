// Terminal charts for `ctl top --history`: a time series drawn as columns of block characters
// (eight levels per row), with a labelled y axis from zero and relative time labels below.
// Plain text, so it works over ssh and in logs; no colours, no cursor control.
import Foundation

public struct TextChart: Sendable {
    public enum Reduce: Sendable { case mean, max }

    public var title: String
    public var width: Int
    public var height: Int
    public var reduce: Reduce
    /// Formats a y-axis value ("1200m", "6", "80%").
    public var label: @Sendable (Double) -> String

    public init(title: String, width: Int = 60, height: Int = 8, reduce: Reduce = .mean, label: @escaping @Sendable (Double) -> String = { compactNumber($0) }) {
        self.title = title; self.width = max(4, width); self.height = max(1, height); self.reduce = reduce; self.label = label
    }

    static let blocks: [Character] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// A value measured over the `window` seconds ending at `time`.
    public struct Point: Sendable, Hashable {
        public var time: Date
        public var value: Double
        public var window: Double
        public init(time: Date, value: Double, window: Double = 0) { self.time = time; self.value = value; self.window = window }
    }

    /// Splits [from, to] into `width` columns and reduces, per column, the points whose window
    /// overlaps it (a minute-long sample spans several columns of a short chart; a one-second
    /// sample lands in one). Columns no point covers stay nil: a gap in the data shows as one.
    public func columns(_ points: [Point], from: Date, to: Date) -> [Double?] {
        let span = max(to.timeIntervalSince(from), 1e-9)
        var sums = [Double](repeating: 0, count: width), counts = [Int](repeating: 0, count: width)
        var maxes = [Double](repeating: -.infinity, count: width)
        func column(_ t: Date) -> Double { t.timeIntervalSince(from) / span * Double(width) }
        for p in points where p.time >= from && p.time.addingTimeInterval(-p.window) <= to {
            // Column i covers [i, i+1); the window [start, end] overlaps those from floor(start) to
            // ceil(end) - 1 (touching an edge is no overlap); an instant lands in one column.
            let end = column(p.time), start = column(p.time.addingTimeInterval(-max(0, p.window)))
            let first = Swift.min(width - 1, Swift.max(0, Int((start + 1e-6).rounded(.down))))
            let last = Swift.min(width - 1, Swift.max(first, Int((end - 1e-6).rounded(.up)) - 1))
            for i in first...last {
                sums[i] += p.value; counts[i] += 1; maxes[i] = Swift.max(maxes[i], p.value)
            }
        }
        return (0..<width).map { i in counts[i] == 0 ? nil : (reduce == .mean ? sums[i] / Double(counts[i]) : maxes[i]) }
    }

    /// The top of the y axis: the largest value rounded up to a round figure (1, 1.5, 2, 2.5,
    /// 3, 4, 5, 6 or 8 × a power of ten), so that the bars use most of the height.
    public static func niceCeiling(_ v: Double) -> Double {
        guard v > 0, v.isFinite else { return 1 }
        let p = pow(10, floor(log10(v)))
        for m in [1.0, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10] where m * p >= v * (1 - 1e-12) { return m * p }
        return 10 * p
    }

    /// The chart's lines: title, `height` rows with the axis, the time axis and its labels.
    /// Under columns without data the time axis is dotted ("╌"), so that a gap is not read as zero.
    public func render(_ points: [Point], from: Date, to: Date) -> [String] {
        let cols = columns(points, from: from, to: to)
        let top = Self.niceCeiling(cols.compactMap { $0 }.max() ?? 0)
        let labels = (0...height).map { r -> String? in
            // Top, middle and bottom rows are labelled; the rest show the axis only.
            if r == height || r == 0 || (height >= 4 && r == height / 2) { return label(top * Double(r) / Double(height)) }
            return nil
        }
        let lw = labels.compactMap { $0?.count }.max() ?? 1
        var out = [title]
        for row in stride(from: height - 1, through: 0, by: -1) {
            var line = ""
            for v in cols {
                guard let v else { line.append(" "); continue }
                let level = Int((v / top * Double(height * 8)).rounded())
                let inRow = Swift.min(8, Swift.max(0, level - row * 8))
                // A non-zero value always shows at least a sliver in the bottom row.
                line.append(row == 0 && inRow == 0 && v > 0 ? Self.blocks[1] : Self.blocks[inRow])
            }
            let l = labels[row + 1].map { String(repeating: " ", count: lw - $0.count) + $0 + " ┤" } ?? String(repeating: " ", count: lw) + " │"
            out.append(l + line)
        }
        out.append(String(repeating: " ", count: lw - (labels[0]?.count ?? 0)) + (labels[0] ?? "") + " └" + String(cols.map { $0 == nil ? "╌" : "─" }))
        out.append(String(repeating: " ", count: lw + 2) + Self.timeAxis(width: width, from: from, to: to))
        return out
    }

    /// "-1h", "-30m" and "now" under the left edge, the middle and the right edge.
    static func timeAxis(width: Int, from: Date, to: Date) -> String {
        let span = to.timeIntervalSince(from)
        let left = "-" + KubeTime.shortDuration(span), mid = "-" + KubeTime.shortDuration(span / 2), right = "now"
        var chars = [Character](repeating: " ", count: width)
        func put(_ s: String, at start: Int) {
            for (i, c) in s.enumerated() where start + i >= 0 && start + i < width { chars[start + i] = c }
        }
        put(left, at: 0)
        if width >= left.count + mid.count + right.count + 4 { put(mid, at: width / 2 - mid.count / 2) }
        put(right, at: width - right.count)
        return String(chars)
    }
}

/// What `ctl top --history` prints: a summary of the latest sample, then charts of total cpu,
/// pods, (when requests make it defined) cpu utilization and (when Services sent the pods
/// traffic) requests per second over the same time axis.
public enum HistoryReport {
    public static func render(_ list: WorkloadMetricsList, since: Double, now: Date, width: Int) -> [String] {
        let w = list.workload
        let items = list.items
        var out = ["\(w.kind.lowercased())/\(w.name) (namespace \(w.namespace)): \(items.count) samples over the last \(KubeTime.shortDuration(since))"]
        guard let last = items.last else {
            out.append("no samples in that time: the workload has had no pods with usage figures")
            return out
        }
        var latest = "latest \(KubeTime.format(last.time)): \(compactNumber(last.pods)) pods, cpu \(Int(last.cpuTotalMillicores.rounded()))m total"
        latest += " (\(Int(last.cpuAverageMillicores.rounded()))m per pod"
        if let u = last.cpuUtilization { latest += ", \(Int(u.rounded()))% of requests" }
        latest += "), memory \(Int(last.memoryAverageBytes / 1_048_576))Mi per pod"
        if let r = last.requestsPerSecond { latest += ", \(compactNumber((r * 10).rounded() / 10)) requests/s" }
        out.append(latest)
        let from = now.addingTimeInterval(-since)
        let millicores: @Sendable (Double) -> String = { "\(Int($0.rounded()))m" }
        out.append("")
        out += TextChart(title: "CPU, all pods (cores)", width: width, height: 8, reduce: .mean, label: millicores)
            .render(items.map { .init(time: $0.time, value: $0.cpuTotalMillicores, window: $0.windowSeconds) }, from: from, to: now)
        out.append("")
        out += TextChart(title: "Pods", width: width, height: 4, reduce: .max)
            .render(items.map { .init(time: $0.time, value: $0.pods, window: $0.windowSeconds) }, from: from, to: now)
        let util = items.compactMap { s in s.cpuUtilization.map { TextChart.Point(time: s.time, value: $0, window: s.windowSeconds) } }
        if !util.isEmpty {
            out.append("")
            out += TextChart(title: "CPU utilization (% of requests)", width: width, height: 6, reduce: .mean, label: { "\(Int($0.rounded()))%" })
                .render(util, from: from, to: now)
        }
        let rates = items.compactMap { s in s.requestsPerSecond.map { TextChart.Point(time: s.time, value: $0, window: s.windowSeconds) } }
        if rates.contains(where: { $0.value > 0 }) {
            out.append("")
            out += TextChart(title: "Requests per second, all pods (through Services)", width: width, height: 6, reduce: .mean, label: { compactNumber(($0 * 10).rounded() / 10) })
                .render(rates, from: from, to: now)
        }
        return out
    }
}
