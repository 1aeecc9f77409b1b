// Predictive scaling, beyond Kubernetes: an HPA annotated
// autoscaling.orchestrator.io/predictive: "true" also scales for the load it expects
// `lookahead` seconds from now, so pods that take a minute to start are ready when a recurring
// peak arrives rather than a minute after it. The forecast comes from the workload's recorded
// utilization: a recurring period found by autocorrelation (seasonal: the same phase in past
// cycles, shifted by how far the present runs above or below them), else the recent linear
// trend. The reactive recommendation stays the floor: prediction only ever adds replicas.
import Foundation
import Synchronization
import API

/// One point of a workload's recorded utilization.
public struct UtilizationSample: Sendable, Hashable {
    public var time: Date
    /// Average utilization of the workload's pods, percent of request.
    public var utilization: Double
    /// Pods the average was taken over, when known. utilization × pods is the demand, which,
    /// unlike utilization, does not drop when the HPA adds pods, so past peaks the HPA already
    /// absorbed still show at full height.
    public var pods: Int?
    public init(time: Date, utilization: Double, pods: Int? = nil) { self.time = time; self.utilization = utilization; self.pods = pods }
}

/// Where predictive mode reads a workload's past utilization: an in-memory recorder the
/// controller feeds (the default), or a metrics store that keeps days of it.
public protocol MetricsHistory: Sendable {
    /// Samples for `resource` of the HPA's target since `since`, in any order.
    func utilization(namespace: String, target: CrossVersionObjectReference, resource: String, since: Date) async throws -> [UtilizationSample]
}

/// The default history: what the controller measured each sync, thinned to one sample per
/// `minInterval` and kept for `retention` (two days: two cycles of a daily pattern).
public final class RecordingMetricsHistory: MetricsHistory {
    struct Key: Hashable { var namespace: String; var kind: String; var name: String; var resource: String }
    private let series = Mutex<[Key: [UtilizationSample]]>([:])
    let retention: Double
    let minInterval: Double
    public init(retention: Double = 2 * 86400, minInterval: Double = 15) { self.retention = retention; self.minInterval = minInterval }

    public func record(namespace: String, target: CrossVersionObjectReference, resource: String, _ s: UtilizationSample) {
        let k = Key(namespace: namespace, kind: target.kind, name: target.name, resource: resource)
        series.withLock { m in
            var list = m[k] ?? []
            if let last = list.last, s.time.timeIntervalSince(last.time) < minInterval { return }
            list.append(s)
            let cutoff = s.time.addingTimeInterval(-retention)
            if let first = list.firstIndex(where: { $0.time >= cutoff }), first > 0 { list.removeFirst(first) }
            m[k] = list
        }
    }

    public func forget(namespace: String, target: CrossVersionObjectReference) {
        series.withLock { m in for k in m.keys where k.namespace == namespace && k.kind == target.kind && k.name == target.name { m[k] = nil } }
    }

    public func utilization(namespace: String, target: CrossVersionObjectReference, resource: String, since: Date) async throws -> [UtilizationSample] {
        let k = Key(namespace: namespace, kind: target.kind, name: target.name, resource: resource)
        return series.withLock { ($0[k] ?? []).filter { $0.time >= since } }
    }
}

/// What predictive mode expects, and how it got there.
public struct HPAForecast: Sendable, Hashable {
    public static let annotation = "autoscaling.orchestrator.io/predictive"
    public static let lookaheadAnnotation = "autoscaling.orchestrator.io/predictive-lookahead"
    /// For replays of recorded traffic in compressed time (hack/e2e-hpa --trace): the factor C
    /// by which the traffic's clock runs faster. The forecaster's own time constants (the periods
    /// it looks for, its trend window) are divided by C, as the replay divides the HPA's windows.
    public static let compressionAnnotation = "autoscaling.orchestrator.io/predictive-time-compression"
    public static let conditionType = "PredictiveScaling"

    public var resource: String
    /// The series' forecast value at now + lookahead: demand (utilization × pods) when the
    /// history has pod counts, else utilization (percent of request).
    public var predicted: Double
    /// The series' present value (mean of the last minute), what `predicted` is growth from.
    public var level: Double
    public var isDemand: Bool
    public var lookahead: Double
    /// The recurring period found, seconds, and how well the series matches itself shifted by it.
    public var period: Double?
    public var correlation: Double?
    /// Recent slope, percentage points (or demand units) per minute.
    public var trendPerMinute: Double
    public var samples: Int

    /// The forecast utilization of pods sized like the history's latest sample.
    public var predictedUtilization: Double { isDemand ? predicted / Double(max(latestPods, 1)) : predicted }
    public var latestPods: Int = 1

    /// Demand (percent of one pod's request) expected at now + lookahead, given what this sync
    /// measured. With pod counts in the history the forecast is demand already. Without, only
    /// the growth from the history's present level is trusted, applied to the measured demand:
    /// a utilization forecast taken at face value would be re-multiplied by every pod the HPA
    /// adds, and the HPA would chase it to maxReplicas.
    public func demand(measuredUtilization: Double, pods: Int) -> Double {
        if isDemand { return predicted }
        return measuredUtilization * Double(pods) * predicted / max(level, 1)
    }

    public var describeMethod: String {
        if let p = period { return "seasonal, period \(HPAForecast.duration(p)), r=\(String(format: "%.2f", correlation ?? 0))" }
        return "trend \(trendPerMinute >= 0 ? "+" : "")\(String(format: "%.1f", trendPerMinute))/min"
    }
    /// Where the lookahead came from, for the status message: empty when the HPA's annotation
    /// set it, else ", the pods' start-up" (measured) or ", default" (nothing measured yet).
    public var lookaheadBasis: String = ""
    public var summary: String { "in \(Int(lookahead.rounded()))s\(lookaheadBasis) (\(describeMethod))" }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h\(t % 3600 / 60 == 0 ? "" : "\(t % 3600 / 60)m")" }
        if t >= 60 { return "\(t / 60)m\(t % 60 == 0 ? "" : "\(t % 60)s")" }
        return "\(t)s"
    }

    /// The replay compression of an HPA's annotation: 1 when absent; a value that is not a
    /// number from 1 to 10,000 counts as absent.
    public static func compression(for hpa: HorizontalPodAutoscaler) -> Double {
        guard let raw = hpa.metadata.annotations?[compressionAnnotation], let v = Double(raw.trimmingCharacters(in: .whitespaces)),
              v.isFinite, v >= 1, v <= 10_000 else { return 1 }
        return v
    }

    /// Predictive mode's settings from an HPA's annotations: nil when the HPA is not predictive.
    /// The lookahead takes seconds ("90") or a duration ("90s", "2m", "1h").
    public static func lookahead(for hpa: HorizontalPodAutoscaler, default def: Double) -> Double? {
        guard hpa.metadata.annotations?[annotation]?.lowercased() == "true" else { return nil }
        return annotatedLookahead(hpa) ?? def
    }

    /// The lookahead the HPA's annotation sets, if it sets a usable one.
    public static func annotatedLookahead(_ hpa: HorizontalPodAutoscaler) -> Double? {
        guard let raw = hpa.metadata.annotations?[lookaheadAnnotation]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let u = raw.last.flatMap({ units[$0] }), let v = Double(raw.dropLast()), v.isFinite, v >= 0 { return v * u }
        if let v = Double(raw), v.isFinite, v >= 0 { return v }
        return nil
    }
}

public struct PredictorConfig: Sendable, Hashable {
    /// Shortest and longest recurring period looked for.
    public var minPeriod: Double = 60
    public var maxPeriod: Double = 86400
    /// Window of the linear trend, and of the present's offset from past cycles.
    public var trendWindow: Double = 300
    /// Autocorrelation a period needs to be believed.
    public var minCorrelation: Double = 0.6
    /// The series is resampled to at most this many points (bounds the autocorrelation's cost).
    public var maxPoints: Int = 2048
    public var minSamples: Int = 8
    /// How a seasonal forecast is moved to the present's level: `offset` (default) adds how far
    /// the present is from past cycles at the same phase; `ratio` scales past cycles by it
    /// (`bench hpa-replay --seasonal-adjustment ratio`; docs/benchmarks.md compares them).
    public enum SeasonalAdjustment: String, Sendable, Hashable, CaseIterable { case ratio, offset }
    public var seasonalAdjustment = SeasonalAdjustment.offset
    /// What forecasts a series once its period is found: `seasonal` (default), the same phase of
    /// past cycles moved to the present by `seasonalAdjustment`; or `holtWinters`, additive
    /// triple exponential smoothing (level, trend and one value per phase of the period), its
    /// three smoothing constants chosen per forecast by the least one-step error over the
    /// history. `bench hpa-replay --forecaster` compares them (docs/benchmarks.md).
    public enum Method: String, Sendable, Hashable, CaseIterable { case seasonal, holtWinters = "holt-winters" }
    public var method = Method.seasonal
    /// Quantile headroom: with a value q in (0, 1), a periodic forecast is raised by the q-quantile
    /// of how far the seasonal forecast fell short over the series' last period (backtested on
    /// the history, `lookahead` ahead), when that is above zero. Nil (default): none.
    public var headroomQuantile: Double?
    public init() {}

    /// The same settings for traffic whose clock runs `factor` times faster.
    public func compressed(by factor: Double) -> PredictorConfig {
        guard factor > 1 else { return self }
        var c = self
        c.minPeriod /= factor; c.maxPeriod /= factor; c.trendWindow /= factor
        return c
    }
}

/// The period search (an autocorrelation over up to `maxPoints` lags) is most of a forecast's
/// cost, and a series' period does not change from one sync to the next: each series' finding,
/// period or none, is kept and searched again only once it is `every` seconds old.
public final class PeriodMemo: Sendable {
    public struct Finding: Sendable, Hashable {
        public var period: Double?
        public var correlation: Double?
        public var at: Date
    }
    public let every: Double
    private let found = Mutex<[String: Finding]>([:])
    public init(every: Double = 300) { self.every = every }

    /// The finding for `key` if it is younger than `every` at `now`.
    public func fresh(_ key: String, now: Date) -> Finding? {
        found.withLock { m in
            guard let f = m[key], now >= f.at, now.timeIntervalSince(f.at) < every else { return nil }
            return f
        }
    }
    public func remember(_ key: String, _ f: Finding) { found.withLock { $0[key] = f } }
    /// Drops every series whose key starts with `prefix` (an HPA that is gone).
    public func forget(prefix: String) { found.withLock { m in m = m.filter { !$0.key.hasPrefix(prefix) } } }
    public var count: Int { found.withLock { $0.count } }
}

public enum UtilizationPredictor {
    /// Forecasts `resource` utilization `lookahead` seconds after `now` from `history`. With a
    /// `memo`, the period found for `key` within the memo's interval is used instead of a new search.
    public static func forecast(_ history: [UtilizationSample], resource: String, now: Date, lookahead: Double,
                                config: PredictorConfig = PredictorConfig(), memo: PeriodMemo? = nil, key: String = "") -> Result<HPAForecast, HPAError> {
        let samples = history.filter { $0.time <= now }.sorted { $0.time < $1.time }
        guard samples.count >= config.minSamples, let last = samples.last else {
            return .failure(HPAError("insufficient history: \(samples.count) samples, need \(config.minSamples)"))
        }
        let demandMode = samples.allSatisfy { $0.pods != nil }
        let times = samples.map { $0.time.timeIntervalSince(now) }
        let values = samples.map { demandMode ? $0.utilization * Double($0.pods ?? 1) : $0.utilization }

        // Trend: least squares over the recent window, x in seconds relative to now.
        let recent = times.indices.filter { times[$0] >= -config.trendWindow }
        var level = values.last ?? 0, slope = 0.0
        if recent.count >= 3 {
            let xs = recent.map { times[$0] }, ys = recent.map { values[$0] }
            let mx = xs.reduce(0, +) / Double(xs.count), my = ys.reduce(0, +) / Double(ys.count)
            let sxx = xs.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
            let sxy = zip(xs, ys).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
            slope = sxx > 0 ? sxy / sxx : 0
            level = my - slope * mx
        }

        let grid = resample(times: times, values: values, maxPoints: config.maxPoints)
        var predicted = max(0, level + slope * lookahead)
        var period: Double?, correlation: Double?
        var finding: (period: Double, correlation: Double)?
        if let memo, let known = memo.fresh(key, now: now) {
            if let p = known.period, let r = known.correlation { finding = (p, r) }
        } else {
            if let (lag, r) = detectPeriod(detrend(grid.values), step: grid.step, minPeriod: config.minPeriod, maxPeriod: config.maxPeriod, minCorrelation: config.minCorrelation) {
                finding = (Double(lag) * grid.step, r)
            }
            memo?.remember(key, PeriodMemo.Finding(period: finding?.period, correlation: finding?.correlation, at: now))
        }
        if let (p, r) = finding, config.method == .holtWinters, let hw = holtWinters(grid, period: p, lookahead: lookahead) {
            predicted = max(0, hw); period = p; correlation = r
        } else if let (p, r) = finding,
           // The present's window holds at least three of the series' steps: a history read in
           // 15 s buckets under a 72-fold compressed trend window (4 s) would otherwise have no
           // present at all, and the forecast would be past cycles unadjusted.
           let s = seasonal(grid, period: p, lookahead: lookahead, times: times, values: values, window: max(min(config.trendWindow, p / 4), 3 * grid.step),
                            adjustment: config.seasonalAdjustment) {
            predicted = max(0, s); period = p; correlation = r
        }
        if let q = config.headroomQuantile, let p = period,
           let h = headroom(grid, period: p, lookahead: lookahead, window: max(min(config.trendWindow, p / 4), 3 * grid.step), quantile: q) {
            predicted += h
        }
        let pods = Double(max(last.pods ?? 1, 1))
        let lastMinute = times.indices.filter { times[$0] >= -min(60, config.trendWindow) }.map { values[$0] }
        let present = lastMinute.isEmpty ? (values.last ?? 0) : lastMinute.reduce(0, +) / Double(lastMinute.count)
        return .success(HPAForecast(resource: resource, predicted: predicted, level: present, isDemand: demandMode, lookahead: lookahead,
                                    period: period, correlation: correlation, trendPerMinute: slope * 60, samples: samples.count,
                                    latestPods: Int(pods)))
    }

    /// A uniform grid (x = seconds relative to now) by linear interpolation, at the median
    /// sample interval or coarser when that would exceed `maxPoints`.
    struct Grid { var start: Double; var step: Double; var values: [Double]
        func at(_ t: Double) -> Double? {
            let x = (t - start) / step
            guard x >= 0, x <= Double(values.count - 1) else { return nil }
            let i = Int(x), f = x - Double(i)
            return i + 1 < values.count ? values[i] * (1 - f) + values[i + 1] * f : values[i]
        }
    }

    static func resample(times: [Double], values: [Double], maxPoints: Int) -> Grid {
        guard let first = times.first, let lastTime = times.last, values.count == times.count else { return Grid(start: 0, step: 1, values: []) }
        let span = lastTime - first
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }.filter { $0 > 0 }.sorted()
        let median = gaps.isEmpty ? 1 : gaps[gaps.count / 2]
        let step = max(median, span / Double(max(maxPoints - 1, 1)), 1e-3)
        let n = Int(span / step) + 1
        var out = [Double](), j = 0
        out.reserveCapacity(n)
        for i in 0..<n {
            let t = first + Double(i) * step
            while j + 1 < times.count && times[j + 1] < t { j += 1 }
            if j + 1 < times.count, times[j + 1] > times[j] {
                let f = min(max((t - times[j]) / (times[j + 1] - times[j]), 0), 1)
                out.append(values[j] * (1 - f) + values[j + 1] * f)
            } else { out.append(values[j]) }
        }
        return Grid(start: first, step: step, values: out)
    }

    /// The recurring period, as a lag in grid steps, with its correlation: among the lags that
    /// are local maxima of the autocorrelation (Pearson, series against itself shifted, with at
    /// least two cycles of data), the shortest within 90 % of the best, so a multiple of the
    /// true period does not win on noise.
    static func detectPeriod(_ x: [Double], step: Double, minPeriod: Double, maxPeriod: Double, minCorrelation: Double) -> (Int, Double)? {
        let n = x.count
        let minLag = max(2, Int((minPeriod / step).rounded(.up)))
        // Two cycles, with a little slack: a history of exactly two days (what the controller
        // reads) loses a sample or two to bucketing, and the daily lag must stay in range.
        let maxLag = min(Int((maxPeriod / step).rounded()), Int(Double(n) * 0.52))
        guard minLag < maxLag else { return nil }
        var r = [Double](repeating: -1, count: maxLag + 2)
        for lag in 1...min(maxLag + 1, n - 2) { r[lag] = pearson(x, lag) }
        // Only past the lag where the series stops resembling itself (its autocorrelation first
        // falls under the threshold): a smooth series is alike at every short lag, and noise on
        // it makes small local maxima there that would pass for a period of a few minutes.
        var lag0 = 1
        while lag0 <= maxLag && r[lag0] >= minCorrelation { lag0 += 1 }
        var peaks: [(Int, Double)] = []
        for lag in max(minLag, lag0)..<max(maxLag + 1, max(minLag, lag0)) where r[lag] >= r[lag - 1] && r[lag] >= r[lag + 1] && r[lag] >= minCorrelation { peaks.append((lag, r[lag])) }
        guard let best = peaks.map(\.1).max() else { return nil }
        return peaks.first { $0.1 >= 0.9 * best }
    }

    /// The series minus its least-squares line: a trend correlates with itself at every lag
    /// and would pass for a period.
    static func detrend(_ y: [Double]) -> [Double] {
        let n = Double(y.count)
        guard y.count > 2 else { return y }
        let mx = (n - 1) / 2, my = y.reduce(0, +) / n
        var sxx = 0.0, sxy = 0.0
        for (i, v) in y.enumerated() { let dx = Double(i) - mx; sxx += dx * dx; sxy += dx * (v - my) }
        let b = sxy / sxx
        return y.enumerated().map { $0.element - (my + b * (Double($0.offset) - mx)) }
    }

    static func pearson(_ x: [Double], _ lag: Int) -> Double {
        let m = x.count - lag
        guard m >= 2 else { return -1 }
        var sa = 0.0, sb = 0.0
        for i in 0..<m { sa += x[i]; sb += x[i + lag] }
        let ma = sa / Double(m), mb = sb / Double(m)
        var cov = 0.0, va = 0.0, vb = 0.0
        for i in 0..<m {
            let a = x[i] - ma, b = x[i + lag] - mb
            cov += a * b; va += a * a; vb += b * b
        }
        guard va > 1e-12, vb > 1e-12 else { return -1 }
        return cov / (va * vb).squareRoot()
    }

    /// Additive Holt-Winters over the grid, with the season `period` long, forecast at now +
    /// lookahead (grid x is seconds relative to now). The smoothing constants are the pair of
    /// the small set below with the least squared one-step error. Nil with under about two seasons.
    static func holtWinters(_ g: Grid, period p: Double, lookahead: Double) -> Double? {
        let y = g.values, n = y.count
        let m = Int((p / g.step).rounded())
        // Two seasons, less a little: history of two days loses a step or two to the grid.
        guard m >= 2, n >= 2 * m - max(m / 20, 2) else { return nil }
        // Start: the first season's mean as the level at its middle, the change to the second's
        // (as much of it as there is) as the trend, each phase's distance from that line as its
        // seasonal value.
        var first = 0.0, second = 0.0
        for i in 0..<m { first += y[i] }
        for i in m..<n where i < 2 * m { second += y[i] }
        first /= Double(m); second /= Double(min(n, 2 * m) - m)
        let b0 = (second - first) / Double(m)
        var best: (sse: Double, level: Double, trend: Double, season: [Double])?
        var season = [Double](repeating: 0, count: m)
        for alpha in [0.05, 0.2, 0.5] {
            for beta in [0.0, 0.01, 0.1] {
                for gamma in [0.05, 0.2, 0.5] {
                    for i in 0..<m { season[i] = y[i] - (first + b0 * (Double(i) - Double(m - 1) / 2)) }
                    var level = first + b0 * Double(m - 1) / 2, trend = b0, sse = 0.0
                    for t in m..<n {
                        let s = season[t % m]
                        let e = y[t] - (level + trend + s)
                        sse += e * e
                        let previous = level
                        level = alpha * (y[t] - s) + (1 - alpha) * (level + trend)
                        trend = beta * (level - previous) + (1 - beta) * trend
                        season[t % m] = gamma * (y[t] - level) + (1 - gamma) * s
                    }
                    if best == nil || sse < best!.sse { best = (sse, level, trend, season) }
                }
            }
        }
        guard let fit = best else { return nil }
        // Steps from the grid's last point (the last sample, at or before now) to now + lookahead;
        // the season's value there, between the two phases around it.
        let h = max((lookahead - (g.start + Double(n - 1) * g.step)) / g.step, 0)
        let x = Double(n - 1) + h
        let i = Int(x.rounded(.down)), f = x - Double(i)
        let s = fit.season[i % m] * (1 - f) + fit.season[(i + 1) % m] * f
        return fit.level + h * fit.trend + s
    }

    /// The `quantile` of the seasonal forecast's shortfall (actual minus forecast, `lookahead`
    /// ahead, offset-adjusted over `window`) at up to 96 points of the grid's last period, each
    /// forecast only from the grid before it; at least 0. Nil when no point has a past cycle.
    static func headroom(_ g: Grid, period p: Double, lookahead: Double, window: Double, quantile: Double) -> Double? {
        let end = g.start + Double(g.values.count - 1) * g.step
        let from = end - p, to = end - lookahead
        guard to > from else { return nil }
        var errors: [Double] = []
        let points = 96
        for i in 0..<points {
            let t = from + (to - from) * Double(i) / Double(points - 1)
            guard let actual = g.at(t + lookahead) else { continue }
            var past: [Double] = [], k = 1.0
            while let v = g.at(t + lookahead - k * p) { past.append(v); k += 1 }
            guard !past.isEmpty else { continue }
            var offset = 0.0, n = 0
            var x = t
            while x >= t - window {
                if let y = g.at(x) {
                    var base: [Double] = [], k = 1.0
                    while let v = g.at(x - k * p) { base.append(v); k += 1 }
                    if !base.isEmpty { offset += y - base.reduce(0, +) / Double(base.count); n += 1 }
                }
                x -= g.step
            }
            let forecast = past.reduce(0, +) / Double(past.count) + (n > 0 ? offset / Double(n) : 0)
            errors.append(actual - forecast)
        }
        guard !errors.isEmpty else { return nil }
        errors.sort()
        let q = errors[min(errors.count - 1, max(0, Int((quantile * Double(errors.count - 1)).rounded())))]
        return max(0, q)
    }

    /// The value at now + lookahead from the same phase of past cycles, plus how far the
    /// recent samples ran above (or below) their own phase in past cycles.
    static func seasonal(_ g: Grid, period p: Double, lookahead: Double, times: [Double], values: [Double], window: Double,
                         adjustment: PredictorConfig.SeasonalAdjustment) -> Double? {
        // Every past cycle's value at the forecast's phase (a lookahead longer than the period
        // starts a cycle further back).
        var past: [Double] = []
        var k = 1.0
        while lookahead - k * p >= g.start {
            if let v = g.at(lookahead - k * p) { past.append(v) }
            k += 1
        }
        guard !past.isEmpty else { return nil }
        // How the present compares with the same phase of past cycles, over the window: added as
        // a difference (`offset`), or as a ratio that scales the past cycles (`ratio`).
        var now = 0.0, before = 0.0, n = 0
        for (t, y) in zip(times, values) where t >= -window {
            var base: [Double] = []
            var k = 1.0
            while let v = g.at(t - k * p) { base.append(v); k += 1 }
            if !base.isEmpty { now += y; before += base.reduce(0, +) / Double(base.count); n += 1 }
        }
        let seasonal = past.reduce(0, +) / Double(past.count)
        guard n > 0 else { return seasonal }
        if adjustment == .offset { return seasonal + (now - before) / Double(n) }
        // Near zero a ratio means nothing: the series' mean level steadies it, and it is bounded.
        let floor = 0.01 * max(values.reduce(0, +) / Double(max(values.count, 1)), 1e-9) * Double(n)
        let ratio = min(4, max(0.25, (now + floor) / (before + floor)))
        return seasonal * ratio
    }
}
