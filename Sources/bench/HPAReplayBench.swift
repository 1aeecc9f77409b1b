// bench hpa-replay — a request-rate trace replayed through the HPA's own decision code twice,
// reactive and predictive, on the modelled workload of HPAReplay: overloaded time, cost in
// pod-seconds, scaling actions and flapping side by side, plus both replica curves over the
// demand as CSV and SVG.
import ArgumentParser
import Foundation
import API
import Controllers

struct HPAReplayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hpa-replay",
        abstract: "Replay a request-rate trace (CSV seconds,requests_per_second) through reactive and predictive HPAs on a modelled workload.")
    @Option(help: "The trace: CSV with the header seconds,requests_per_second.") var trace: String
    @Option(help: "Replay from this second of the trace; the trace before it (up to two days) is the imported history (default: the start of the last day).") var start: Double?
    @Option(help: "Replay until this second (default: the trace's end).") var end: Double?
    @Option(help: "Requests per second one pod serves at 100 % of its cpu request.") var capacity: Double = 10
    @Option(help: "The HPA's target cpu utilization, percent.") var target: Int = 70
    @Option(help: "minReplicas.") var min: Int = 2
    @Option(help: "maxReplicas.") var max: Int = 40
    @Option(name: .customLong("pod-startup"), help: "Seconds from a scale-up to the new pod serving.") var podStartup: Double = 60
    @Option(help: "Seconds between HPA syncs.") var sync: Double = 15
    @Option(help: "Predictive lookahead, seconds (default: --pod-startup).") var lookahead: Double?
    @Option(name: .customLong("history-scale"), help: "The imported history's utilization is this many times what the trace implies (back data at another scale).") var historyScale: Double = 1
    @Option(name: .customLong("seasonal-adjustment"), help: "How a seasonal forecast meets the present: offset (default) or ratio.") var seasonalAdjustment: String = "offset"
    @Option(help: "What forecasts once a period is found: seasonal (default) or holt-winters.") var forecaster: String = "seasonal"
    @Option(name: .customLong("headroom-quantile"), help: "Raise periodic forecasts by this quantile (0-1) of the seasonal forecast's shortfall over the last period (default: none).") var headroomQuantile: Double?
    @Option(help: "Directory for NAME-compare.csv, NAME-curve.csv and NAME-compare.svg (NAME: the trace's file name).") var out: String = "out/hpa"

    func run() async throws {
        let text: String
        do { text = try String(contentsOfFile: trace, encoding: .utf8) } catch { throw ValidationError("\(trace): cannot read: \(error.localizedDescription)") }
        let t = try RateTrace.parse(text, file: trace)
        var cfg = HPAReplayConfig()
        cfg.podCapacity = capacity; cfg.targetUtilization = target; cfg.minReplicas = min; cfg.maxReplicas = max
        cfg.podStartup = podStartup; cfg.syncPeriod = sync; cfg.lookahead = lookahead
        guard historyScale > 0, historyScale.isFinite else { throw ValidationError("--history-scale must be a positive number, not \(historyScale)") }
        guard let adj = PredictorConfig.SeasonalAdjustment(rawValue: seasonalAdjustment) else {
            throw ValidationError("--seasonal-adjustment must be ratio or offset, not \(seasonalAdjustment)")
        }
        guard let method = PredictorConfig.Method(rawValue: forecaster) else {
            throw ValidationError("--forecaster must be seasonal or holt-winters, not \(forecaster)")
        }
        cfg.historyScale = historyScale; cfg.predictor.seasonalAdjustment = adj; cfg.predictor.method = method
        if let q = headroomQuantile {
            guard q > 0, q < 1 else { throw ValidationError("--headroom-quantile must be between 0 and 1, not \(q)") }
            cfg.predictor.headroomQuantile = q
        }
        let last = t.seconds.last ?? 0
        cfg.start = start ?? Swift.max(t.seconds.first ?? 0, last - 86400)
        cfg.end = end
        let name = URL(fileURLWithPath: trace).deletingPathExtension().lastPathComponent
        print("trace \(trace): \(t.seconds.count) rows over \(compactNumber(t.duration / 3600)) h; replay \(compactNumber(cfg.start))..\(compactNumber(cfg.end ?? last)) s, " +
              "history before it imported\(historyScale == 1 ? "" : " at \(compactNumber(historyScale))x")\(method == .seasonal ? (adj == .offset ? "" : ", seasonal adjustment \(adj.rawValue)") : ", forecaster \(method.rawValue)")\(headroomQuantile.map { ", headroom quantile \(compactNumber($0))" } ?? ""); pods serve \(compactNumber(capacity)) req/s at 100 % of request, start in \(compactNumber(podStartup)) s; target \(target) %, sync \(compactNumber(sync)) s")
        var results: [HPAReplayResult] = []
        for predictive in [false, true] {
            var c = cfg
            c.predictive = predictive
            let t0 = ContinuousClock.now
            results.append(await HPAReplay.run(t, c))
            FileHandle.standardError.write(Data("\(predictive ? "predictive" : "reactive"): replayed in \(String(format: "%.1f", seconds(ContinuousClock.now - t0))) s\n".utf8))
        }
        print(HPAReplayReport.table(results))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try HPAReplayReport.csv(results).write(toFile: "\(out)/\(name)-compare.csv", atomically: true, encoding: .utf8)
        try HPAReplayReport.curves(results).write(toFile: "\(out)/\(name)-curve.csv", atomically: true, encoding: .utf8)
        try HPAReplayReport.svg(results, title: "\(name): replicas, reactive and predictive, over the demand (pods' worth at target)", capacity: capacity, target: target)
            .write(toFile: "\(out)/\(name)-compare.svg", atomically: true, encoding: .utf8)
        print("wrote \(out)/\(name)-compare.csv, \(out)/\(name)-curve.csv, \(out)/\(name)-compare.svg")
    }
}

enum HPAReplayReport {
    static func table(_ rs: [HPAReplayResult]) -> String {
        var lines = ["| mode | overloaded s (> target) | beyond tolerance s | saturated s (> 100 %) | excess requests | pod-seconds | scale-ups | scale-downs | direction changes | max replicas |",
                     "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs {
            lines.append("| \(r.mode) | \(Int(r.overloadedSeconds)) | \(Int(r.overloadedBeyondToleranceSeconds)) | \(Int(r.saturatedSeconds)) | \(Int(r.excessRequests.rounded())) | \(Int(r.podSeconds)) | \(r.scaleUps) | \(r.scaleDowns) | \(r.directionChanges) | \(r.maxReplicas) |")
        }
        if rs.count == 2 {
            func ratio(_ a: Double, _ b: Double) -> String { a > 0 ? String(format: "%.2f", b / a) : b > 0 ? "worse (0 before)" : "1 (both 0)" }
            lines.append("\npredictive / reactive: overloaded time " + ratio(rs[0].overloadedSeconds, rs[1].overloadedSeconds)
                         + ", beyond tolerance " + ratio(rs[0].overloadedBeyondToleranceSeconds, rs[1].overloadedBeyondToleranceSeconds)
                         + ", saturated " + ratio(rs[0].saturatedSeconds, rs[1].saturatedSeconds)
                         + ", pod-seconds " + ratio(rs[0].podSeconds, rs[1].podSeconds)
                         + ", direction changes \(rs[1].directionChanges) vs \(rs[0].directionChanges)")
        }
        return lines.joined(separator: "\n")
    }

    static func csv(_ rs: [HPAReplayResult]) -> String {
        var s = "mode,seconds,overloaded_seconds,beyond_tolerance_seconds,saturated_seconds,excess_requests,pod_seconds,scale_ups,scale_downs,direction_changes,max_replicas\n"
        for r in rs {
            s += "\(r.mode),\(Int(r.seconds)),\(Int(r.overloadedSeconds)),\(Int(r.overloadedBeyondToleranceSeconds)),\(Int(r.saturatedSeconds)),\(Int(r.excessRequests.rounded())),\(Int(r.podSeconds)),\(r.scaleUps),\(r.scaleDowns),\(r.directionChanges),\(r.maxReplicas)\n"
        }
        return s
    }

    static func curves(_ rs: [HPAReplayResult]) -> String {
        var s = "seconds,requests_per_second," + rs.map { "\($0.mode)_replicas,\($0.mode)_ready" }.joined(separator: ",") + "\n"
        let n = rs.map(\.curve.count).min() ?? 0
        for i in 0..<n {
            s += "\(compactNumber(rs[0].curve[i].seconds)),\(compactNumber((rs[0].curve[i].demand * 100).rounded() / 100)),"
            s += rs.map { "\($0.curve[i].replicas),\($0.curve[i].ready)" }.joined(separator: ",") + "\n"
        }
        return s
    }

    /// Demand in pods' worth at target (what a perfect autoscaler would run), and each mode's
    /// ready replicas, over the replay.
    static func svg(_ rs: [HPAReplayResult], title: String, capacity: Double, target: Int) -> String {
        let w = 960.0, h = 360.0, left = 50.0, right = 130.0, top = 30.0, bottom = 30.0
        guard let first = rs.first, let t0 = first.curve.first?.seconds, let t1 = first.curve.last?.seconds, t1 > t0 else { return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>" }
        let perPod = capacity * Double(target) / 100
        let ymax = Swift.max(1, (rs.flatMap { $0.curve.map { Double($0.ready) } } + first.curve.map { $0.demand / perPod }).max() ?? 1) * 1.1
        func x(_ t: Double) -> Double { left + (t - t0) / (t1 - t0) * (w - left - right) }
        func y(_ v: Double) -> Double { top + (1 - v / ymax) * (h - top - bottom) }
        func path(_ pts: [(Double, Double)]) -> String { pts.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ") }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"\(left)\" y=\"18\">\(title)</text>\n"
        for k in 0...4 {
            let v = ymax * Double(k) / 4
            s += String(format: "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"5\" y=\"%.1f\">%.0f</text>\n", left, w - right, y(v), y(v), y(v) + 4, v)
        }
        let hours = (t1 - t0) / 3600
        let stepH = hours > 48 ? 24.0 : hours > 12 ? 3 : 1
        var hh = 0.0
        while hh <= hours { s += String(format: "<text x=\"%.1f\" y=\"%.0f\">%.0fh</text>\n", x(t0 + hh * 3600) - 8, h - 10, hh); hh += stepH }
        let colors = ["#d62728", "#1f77b4"]
        s += "<polyline fill=\"none\" stroke=\"#999\" stroke-width=\"2\" points=\"\(path(first.curve.map { ($0.seconds, $0.demand / perPod) }))\"/>\n"
        s += "<text x=\"\(w - right + 8)\" y=\"\(top + 10)\" fill=\"#999\">demand (pods)</text>\n"
        for (i, r) in rs.enumerated() {
            s += "<polyline fill=\"none\" stroke=\"\(colors[i % 2])\" stroke-width=\"1.5\" points=\"\(path(r.curve.map { ($0.seconds, Double($0.ready)) }))\"/>\n"
            s += "<text x=\"\(w - right + 8)\" y=\"\(top + 28 + Double(i) * 18)\" fill=\"\(colors[i % 2])\">\(r.mode) ready</text>\n"
        }
        return s + "</svg>\n"
    }
}
