// Replays a request-rate trace through the HPA's own decision code (HPAAlgorithm, and the
// forecaster for predictive HPAs) against a modelled workload: pods that serve a fixed rate at
// 100 % of their cpu request and take `podStartup` seconds from scale-up to Ready. It is the
// in-memory twin of `hack/e2e-hpa --trace` (which drives real pods through a Service): fast and
// deterministic, so forecaster variants can be compared on days of traffic, and a test can hold
// the figures. What it cannot show (latency, failed requests) only the cluster replay measures.
import Foundation
import API

/// A request-rate trace: CSV `seconds,requests_per_second`, seconds from the trace's start.
public struct RateTrace: Sendable {
    public var seconds: [Double]
    public var rates: [Double]

    public init(seconds: [Double], rates: [Double]) { self.seconds = seconds; self.rates = rates }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses the CSV; `file` names it in errors, with the line at fault.
    public static func parse(_ text: String, file: String) throws -> RateTrace {
        var secs: [Double] = [], rates: [Double] = []
        var header = false
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if !header {
                guard cells == ["seconds", "requests_per_second"] else {
                    throw ParseError(description: "\(file): line \(i + 1): the header must be \"seconds,requests_per_second\" (got \"\(line)\")")
                }
                header = true
                continue
            }
            guard cells.count == 2 else { throw ParseError(description: "\(file): line \(i + 1): \(cells.count) fields, want 2 (seconds,requests_per_second)") }
            guard let s = Double(cells[0]), s.isFinite, s >= 0 else { throw ParseError(description: "\(file): line \(i + 1): seconds \"\(cells[0])\" is not a non-negative number") }
            guard let r = Double(cells[1]), r.isFinite, r >= 0 else { throw ParseError(description: "\(file): line \(i + 1): requests_per_second \"\(cells[1])\" is not a non-negative number") }
            if let last = secs.last, s <= last { throw ParseError(description: "\(file): line \(i + 1): seconds \(cells[0]) is not after the line before's \(compactNumber(last))") }
            secs.append(s); rates.append(r)
        }
        guard header else { throw ParseError(description: "\(file): empty: it needs the header \"seconds,requests_per_second\" and rows") }
        guard secs.count >= 2 else { throw ParseError(description: "\(file): \(secs.count) row(s); a trace needs at least two") }
        return RateTrace(seconds: secs, rates: rates)
    }

    public var duration: Double { (seconds.last ?? 0) - (seconds.first ?? 0) }

    /// The rate at `t` seconds, linear between rows, held before the first and after the last.
    public func rate(at t: Double) -> Double {
        guard let first = seconds.first, let last = seconds.last else { return 0 }
        if t <= first { return rates[0] }
        if t >= last { return rates[rates.count - 1] }
        var lo = 0, hi = seconds.count - 1
        while hi - lo > 1 { let m = (lo + hi) / 2; if seconds[m] <= t { lo = m } else { hi = m } }
        let f = (t - seconds[lo]) / (seconds[hi] - seconds[lo])
        return rates[lo] * (1 - f) + rates[hi] * f
    }
}

public struct HPAReplayConfig: Sendable {
    /// Requests per second one pod serves at 100 % of its cpu request.
    public var podCapacity: Double = 10
    public var targetUtilization = 70
    public var minReplicas = 2
    public var maxReplicas = 40
    /// Seconds from a scale-up to the new pod serving (image pull, start, readiness).
    public var podStartup: Double = 60
    public var syncPeriod: Double = 15
    /// Predictive mode, and its lookahead (nil: the controller's default, `podStartup`).
    public var predictive = false
    public var lookahead: Double?
    /// The replay covers [start, end) of the trace; the trace before `start` (at most
    /// `historyWindow`) is imported as the workload's history, as `ctl top --history import`
    /// would load it.
    public var start: Double = 0
    public var end: Double?
    public var historyWindow: Double = 2 * 86400
    /// The imported history's utilization is this many times what the trace implies: back data
    /// recorded at another scale (another system's load balancer, a request that cost more then).
    public var historyScale: Double = 1
    public var predictor = PredictorConfig()
    public var algorithm = HPAConfig()
    public init() {}
}

public struct HPAReplayResult: Sendable {
    public struct Point: Sendable, Hashable {
        public var seconds: Double
        public var demand: Double
        public var replicas: Int
        public var ready: Int
    }
    public var mode: String
    /// Seconds with the ready pods' average utilization above the target.
    public var overloadedSeconds = 0.0
    /// Seconds above the target by more than the HPA's tolerance (the band it does not act in).
    public var overloadedBeyondToleranceSeconds = 0.0
    /// Seconds with demand above what the ready pods serve at 100 % of their request.
    public var saturatedSeconds = 0.0
    /// Requests beyond the ready pods' capacity (at 100 % of request), summed over the replay.
    public var excessRequests = 0.0
    public var podSeconds = 0.0
    public var scaleUps = 0
    public var scaleDowns = 0
    public var directionChanges = 0
    public var maxReplicas = 0
    public var seconds = 0.0
    /// One point per sync.
    public var curve: [Point] = []
}

public enum HPAReplay {
    /// Replays `trace` once; deterministic.
    public static func run(_ trace: RateTrace, _ cfg: HPAReplayConfig) async -> HPAReplayResult {
        let origin = Date(timeIntervalSince1970: 1_800_000_000)
        func date(_ t: Double) -> Date { origin.addingTimeInterval(t) }
        let end = min(cfg.end ?? (trace.seconds.last ?? 0), trace.seconds.last ?? 0)
        let target = Double(cfg.targetUtilization)
        func podsFor(_ demand: Double) -> Int { min(cfg.maxReplicas, max(cfg.minReplicas, Int((demand / (cfg.podCapacity * target / 100)).rounded(.up)))) }

        var meta = ObjectMeta()
        meta.name = "web"; meta.namespace = "default"; meta.uid = "replay"
        var hpa = HorizontalPodAutoscaler(metadata: meta, spec: nil)
        if cfg.predictive {
            hpa.metadata.annotations = [HPAForecast.annotation: "true", HPAForecast.lookaheadAnnotation: compactNumber(cfg.lookahead ?? cfg.podStartup)]
        }
        var spec = HPASpec(scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "web", apiVersion: "apps/v1"), maxReplicas: cfg.maxReplicas)
        spec.minReplicas = cfg.minReplicas
        spec.metrics = [MetricSpec(type: "Resource", resource: ResourceMetricSource(name: "cpu", target: MetricTarget(type: "Utilization", averageUtilization: cfg.targetUtilization)))]
        hpa.spec = spec

        // The imported history: what a well-sized workload recorded, a sample a minute.
        let history = RecordingMetricsHistory(retention: cfg.historyWindow, minInterval: 15)
        let ref = spec.scaleTargetRef
        if cfg.predictive {
            var t = max(trace.seconds.first ?? 0, cfg.start - cfg.historyWindow)
            while t < cfg.start {
                let d = trace.rate(at: t), n = podsFor(d)
                history.record(namespace: "default", target: ref, resource: "cpu",
                               UtilizationSample(time: date(t), utilization: cfg.historyScale * d / (Double(n) * cfg.podCapacity) * 100, pods: n))
                t += 60
            }
        }

        struct SimPod { var name: String; var created: Double; var readyAt: Double }
        var pods: [SimPod] = []
        var serial = 0
        func add(_ n: Int, at t: Double, ready: Bool) {
            for _ in 0..<n { serial += 1; pods.append(SimPod(name: "web-\(serial)", created: t, readyAt: ready ? t - 600 : t + cfg.podStartup)) }
        }
        add(podsFor(trace.rate(at: cfg.start)), at: cfg.start, ready: true)
        let template = templatePod()

        var state = HPAState()
        let periods = PeriodMemo()
        var r = HPAReplayResult(mode: cfg.predictive ? "predictive" : "reactive")
        var lastDirection = 0
        var t = cfg.start
        var nextSync = cfg.start
        while t < end {
            let demand = trace.rate(at: t)
            let ready = pods.filter { $0.readyAt <= t }.count
            let util = ready == 0 ? Double.infinity : demand / (Double(ready) * cfg.podCapacity) * 100
            if util > target { r.overloadedSeconds += 1 }
            if util > target * (1 + cfg.algorithm.tolerance) { r.overloadedBeyondToleranceSeconds += 1 }
            if util > 100 { r.saturatedSeconds += 1; r.excessRequests += demand - Double(ready) * cfg.podCapacity }
            r.podSeconds += Double(pods.count)
            r.maxReplicas = max(r.maxReplicas, pods.count)
            r.seconds += 1

            if t >= nextSync {
                nextSync += cfg.syncPeriod
                let now = date(t)
                // Pods as the informer shows them, and the metrics API's samples of the ready ones.
                var objs: [Pod] = []
                var samples: [PodMetricSample] = []
                let perPod = ready == 0 ? 0 : demand / Double(ready) / cfg.podCapacity * 1000
                for p in pods {
                    var o = template
                    o.metadata.name = p.name
                    o.status?.startTime = KubeTime.format(date(p.created))
                    let isReady = p.readyAt <= t
                    o.status?.conditions = [PodCondition(type: "Ready", status: isReady ? "True" : "False",
                                                         lastTransitionTime: KubeTime.format(date(isReady ? p.readyAt : p.created)))]
                    objs.append(o)
                    if isReady { samples.append(PodMetricSample(pod: p.name, cpuMillicores: Int64(perPod.rounded()), memoryBytes: 64 << 20, timestamp: now, window: 15)) }
                }
                var predictive: PredictiveInput?
                if cfg.predictive {
                    let h = (try? await history.utilization(namespace: "default", target: ref, resource: "cpu", since: now.addingTimeInterval(-cfg.historyWindow))) ?? []
                    switch UtilizationPredictor.forecast(h, resource: "cpu", now: now, lookahead: cfg.lookahead ?? cfg.podStartup, config: cfg.predictor, memo: periods, key: "replay/cpu") {
                    case .success(let f): predictive = .forecast(f)
                    case .failure(let e): predictive = .unavailable(reason: "InsufficientHistory", message: "\(e)")
                    }
                }
                let input = HPAAlgorithm.Input(hpa: hpa, specReplicas: pods.count, pods: objs,
                                               metrics: samples.isEmpty ? .failure(HPAError("no metrics")) : .success(samples), predictive: predictive)
                let d = HPAAlgorithm.evaluate(input, state: &state, now: now, config: cfg.algorithm)
                if cfg.predictive {
                    for (resource, u) in d.observedUtilization {
                        history.record(namespace: "default", target: ref, resource: resource, UtilizationSample(time: now, utilization: u.utilization, pods: u.pods))
                    }
                }
                if d.error == nil && d.rescale && d.desiredReplicas != pods.count {
                    let from = pods.count, to = d.desiredReplicas
                    if to > from { add(to - from, at: t, ready: false); r.scaleUps += 1 } else {
                        // A ReplicaSet removes pods that are not ready first, then the newest.
                        pods.sort { ($0.readyAt <= t ? 1 : 0, $1.created) < ($1.readyAt <= t ? 1 : 0, $0.created) }
                        pods.removeFirst(from - to)
                        r.scaleDowns += 1
                    }
                    let dir = to > from ? 1 : -1
                    if lastDirection != 0 && dir != lastDirection { r.directionChanges += 1 }
                    lastDirection = dir
                    state.recordScale(behavior: spec.behavior, from: from, to: to, now: now)
                }
                r.curve.append(.init(seconds: t, demand: demand, replicas: pods.count, ready: pods.filter { $0.readyAt <= t }.count))
            }
            t += 1
        }
        return r
    }

    /// A Running pod requesting one cpu.
    static func templatePod() -> Pod {
        let json = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web","resources":{"requests":{"cpu":"1","memory":"64Mi"}}}]},"status":{"phase":"Running"}}"#
        return try! KubeJSON.decode(Pod.self, from: Data(json.utf8))
    }
}
