// HorizontalPodAutoscaler (autoscaling/v2): every sync period each HPA reads its target's
// scale subresource, the selected pods (shared informer) and their samples (a
// PodMetricsSource), lets HPAAlgorithm decide, writes the new size through the scale
// subresource, and reports in status and events. The recommendation and scale-event history
// lives in memory per HPA uid, as in Kubernetes: a restarted controller starts the windows afresh.
import Foundation
import Synchronization
import Logging
import API
import Client

/// Where the HPA gets pod usage (the metrics.k8s.io role): one sample per pod the selector picks.
public protocol PodMetricsSource: Sendable {
    func podMetrics(namespace: String, selector: Selector) async throws -> [PodMetricSample]
    /// A per-pod custom metric (custom.metrics.k8s.io) of the pods `selector` picks: the HPA's
    /// `type: Pods` source.
    func podValues(namespace: String, metric: String, selector: Selector, metricSelector: LabelSelector?) async throws -> [PodValueSample]
}

extension PodMetricsSource {
    public func podValues(namespace: String, metric: String, selector: Selector, metricSelector: LabelSelector?) async throws -> [PodValueSample] {
        throw HPAError("unable to fetch metrics from custom metrics API: no custom metrics API is configured")
    }
}

public struct HPAControllerConfig: Sendable {
    /// Seconds between syncs of each HPA (Kubernetes: --horizontal-pod-autoscaler-sync-period, 15 s).
    public var syncPeriod: Double = 1
    public var algorithm = HPAConfig()
    public var predictor = PredictorConfig()
    /// Predictive lookahead when the HPA sets none and none of its pods was seen start yet (after
    /// that: the median time its pods took from creation to Ready).
    public var defaultLookahead: Double = 60
    /// How far back predictive mode reads history (two cycles of a daily pattern).
    public var historyWindow: Double = 2 * 86400
    /// The same warning (reason and message) is recorded at most this often per HPA; at one
    /// sync a second a broken metric would otherwise bump its Event every second.
    public var warningRepeatInterval: Double = 60
    public var workers = 2
    public init() {}
}

public final class HPAController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let metrics: (any PodMetricsSource)?
    let history: any MetricsHistory
    /// Set when the history is the controller's own recording (fed every sync).
    let recorder: RecordingMetricsHistory?
    /// Each predictive HPA's period, searched for again every 5 minutes rather than every sync.
    let periods = PeriodMemo()
    let config: HPAControllerConfig
    let clock: any ControlClock
    let queue: WorkQueue
    let events: EventRecorder
    let logger = Logger(label: "horizontal-pod-autoscaler")

    struct Entry {
        var key: String
        var namespace: String
        var algo = HPAState()
        var selector: Selector?
        var warned: [String: Date] = [:]
        /// The selected pods' creation-to-Ready times: predictive mode's default lookahead.
        var startup = PodStartupTracker()
    }
    let state = Mutex<[String: Entry]>([:])

    /// `metrics` nil: no metrics pipeline; HPAs then report ScalingActive False
    /// (FailedGetResourceMetric). The usual source is `MetricsAPIPodSource`. `history` nil: predictive mode learns from what this
    /// controller measures.
    public init(client: KubeClient, informers: SharedInformers, metrics: (any PodMetricsSource)?, history: (any MetricsHistory)? = nil,
                config: HPAControllerConfig = HPAControllerConfig(), clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.metrics = metrics; self.config = config; self.clock = clock
        if let history { self.history = history; recorder = nil } else {
            let r = RecordingMetricsHistory(retention: config.historyWindow)
            self.history = r; recorder = r
        }
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "horizontal-pod-autoscaler", clock: clock)
        informers.hpas.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let h): self.queue.add(Informer<HorizontalPodAutoscaler>.key(h))
            case .updated(let old, let h):
                // Spec or annotation changes act now; our own status writes wait for the resync.
                if old.metadata.generation != h.metadata.generation || old.metadata.annotations != h.metadata.annotations {
                    self.queue.add(Informer<HorizontalPodAutoscaler>.key(h))
                }
            case .deleted(let h):
                _ = self.state.withLock { $0.removeValue(forKey: h.metadata.uid ?? Informer<HorizontalPodAutoscaler>.key(h)) }
                self.periods.forget(prefix: Self.periodKey(h, resource: ""))
                if let ref = h.spec?.scaleTargetRef { self.recorder?.forget(namespace: h.namespace, target: ref) }
            }
        }
    }

    public func run(workers: Int? = nil) async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await runWorkers(workers ?? self.config.workers, queue: self.queue, logger: self.logger) { key in try await self.reconcile(key) } }
            g.addTask {
                // The resync: one add per HPA per period; the queue folds it into any pending sync.
                while !Task.isCancelled {
                    for h in self.informers.hpas.list() { self.queue.add(Informer<HorizontalPodAutoscaler>.key(h)) }
                    do { try await self.clock.sleep(for: self.config.syncPeriod) } catch { break }
                }
                self.queue.shutdown()
            }
        }
    }

    /// The target's scale subresource, for the kinds this cluster serves with one.
    static func scaleResource(_ ref: CrossVersionObjectReference) -> ResourceInfo? {
        let group = ref.apiVersion.map { $0.contains("/") ? String($0.split(separator: "/")[0]) : "" } ?? "apps"
        guard group == "apps" else { return nil }
        switch ref.kind {
        case "Deployment": return Resources.deployments
        case "ReplicaSet": return Resources.replicasets
        default: return nil
        }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let hpa = informers.hpas.get(key), let spec = hpa.spec, hpa.metadata.deletionTimestamp == nil else { return .done }
        let uid = hpa.metadata.uid ?? key
        let now = clock.now()
        var entry = state.withLock { $0[uid] } ?? Entry(key: key, namespace: hpa.namespace)
        defer {
            let e = entry
            state.withLock { s in if informers.hpas.get(key)?.metadata.uid == hpa.metadata.uid { s[uid] = e } }
        }

        // The scale subresource: current size and the pods' selector.
        let ref = spec.scaleTargetRef
        let scale: Scale
        do {
            guard let info = Self.scaleResource(ref) else {
                throw HPAError("no scale subresource for kind \"\(ref.kind)\" in \"\(ref.apiVersion ?? "")\" (Deployments and ReplicaSets of apps/v1 have one)")
            }
            let r = try await client.call(.GET, info.path(namespace: hpa.namespace, name: ref.name, subresource: "scale"))
            scale = try KubeJSON.decode(Scale.self, from: r.body)
        } catch {
            warn(&entry, hpa, "FailedGetScale", "\(error)", now: now)
            var conds = hpa.status?.conditions ?? []
            HPAConditions.set(&conds, "AbleToScale", "False", "FailedGetScale", "the HPA controller was unable to get the target's current scale: \(error)", now: now)
            var status = hpa.status ?? HPAStatus()
            status.conditions = conds
            try await writeStatus(hpa, status)
            return .done
        }
        let current = scale.spec?.replicas ?? 0

        // The pods, unless the selector is unusable or shared with another HPA.
        var pods: [Pod] = []
        var problem: SelectorProblem?
        let selectorText = scale.status?.selector ?? ""
        if selectorText.isEmpty { problem = .missing } else {
            do {
                let sel = try Selector.parse(selectorText)
                entry.selector = sel
                pods = informers.pods.list(namespace: hpa.namespace, selector: sel)
                let others = state.withLock { s in
                    s.filter { $0.key != uid && $0.value.namespace == hpa.namespace }.compactMap { e -> String? in
                        guard let os = e.value.selector, pods.contains(where: { os.matches($0.labels) }) else { return nil }
                        return e.value.key
                    }
                }
                if !others.isEmpty { problem = .ambiguous(selector: selectorText, hpas: [key] + others.sorted()) }
            } catch { problem = .invalid("\(error)") }
        }

        let samples: Result<[PodMetricSample], HPAError>
        if problem != nil { samples = .success([]) }
        else if let metrics, let sel = entry.selector {
            do { samples = .success(try await metrics.podMetrics(namespace: hpa.namespace, selector: sel)) }
            catch { samples = .failure(HPAError("\(error)")) }
        } else {
            samples = .failure(HPAError("the metrics API is not available (no pod metrics source is configured)"))
        }
        // Each Pods metric once per sync, whatever number of specs name it.
        var podsMetrics: [String: Result<[PodValueSample], HPAError>] = [:]
        for m in spec.metrics ?? [] where m.type == "Pods" {
            guard problem == nil, let src = try? m.pods?.decode(PodsMetricSource.self), podsMetrics[HPAAlgorithm.podsMetricKey(src)] == nil else { continue }
            let key = HPAAlgorithm.podsMetricKey(src)
            guard let metrics, let sel = entry.selector else {
                podsMetrics[key] = .failure(HPAError("unable to fetch metrics from custom metrics API: no custom metrics API is configured"))
                continue
            }
            do { podsMetrics[key] = .success(try await metrics.podValues(namespace: hpa.namespace, metric: src.metric.name, selector: sel, metricSelector: src.metric.selector)) }
            catch { podsMetrics[key] = .failure(HPAError("\(error)")) }
        }
        entry.startup.observe(pods)
        let predictive = await predictiveInput(hpa, spec: spec, now: now, measuredStartup: entry.startup.estimate)

        let input = HPAAlgorithm.Input(hpa: hpa, specReplicas: current, statusReplicas: scale.status?.replicas, pods: pods,
                                       metrics: samples, podsMetrics: podsMetrics, selectorProblem: problem, predictive: predictive)
        let d = HPAAlgorithm.evaluate(input, state: &entry.algo, now: now, config: config.algorithm)
        for e in d.events {
            if e.type == "Warning" { warn(&entry, hpa, e.reason, e.message, now: now) } else { events.record(hpa, type: e.type, reason: e.reason, message: e.message) }
        }
        if predictive != nil, let recorder {
            for (resource, u) in d.observedUtilization {
                recorder.record(namespace: hpa.namespace, target: ref, resource: resource, UtilizationSample(time: now, utilization: u.utilization, pods: u.pods))
            }
        }

        var conds = d.conditions
        var desired = d.desiredReplicas
        var rescaled = false
        if d.error == nil && d.rescale {
            do {
                try await setScale(Self.scaleResource(ref)!, hpa.namespace, ref.name, scale, to: d.desiredReplicas)
                rescaled = true
                HPAConditions.set(&conds, "AbleToScale", "True", "SucceededRescale", "the HPA controller was able to update the target scale to \(d.desiredReplicas)", now: now)
                events.record(hpa, reason: "SuccessfulRescale", message: "New size: \(d.desiredReplicas); reason: \(d.reason)")
                entry.algo.recordScale(behavior: spec.behavior, from: current, to: d.desiredReplicas, now: now)
                logger.info("rescaled", metadata: ["hpa": "\(key)", "from": "\(current)", "to": "\(d.desiredReplicas)", "reason": "\(d.reason)"])
            } catch {
                warn(&entry, hpa, "FailedRescale", "New size: \(d.desiredReplicas); reason: \(d.reason); error: \(error)", now: now)
                HPAConditions.set(&conds, "AbleToScale", "False", "FailedUpdateScale", "the HPA controller was unable to update the target scale: \(error)", now: now)
                desired = hpa.status?.desiredReplicas ?? current
            }
        }
        let status = HPAAlgorithm.status(previous: hpa.status, generation: hpa.metadata.generation, currentReplicas: current, desiredReplicas: desired,
                                         metrics: d.metricStatuses, conditions: conds, rescaled: rescaled, now: now)
        try await writeStatus(hpa, status)
        return .done
    }

    /// The period memo's key for one resource of an HPA; with an empty resource, the prefix of all of them.
    static func periodKey(_ hpa: HorizontalPodAutoscaler, resource: String) -> String {
        "\(hpa.metadata.uid ?? Informer<HorizontalPodAutoscaler>.key(hpa))/\(resource)"
    }

    /// `measuredStartup`: how long the target's pods take to become Ready, the lookahead when
    /// the HPA does not set one (the configured default before any pod was measured).
    func predictiveInput(_ hpa: HorizontalPodAutoscaler, spec: HPASpec, now: Date, measuredStartup: Double? = nil) async -> PredictiveInput? {
        guard let lookahead = HPAForecast.lookahead(for: hpa, default: measuredStartup ?? config.defaultLookahead) else { return nil }
        let basis = HPAForecast.annotatedLookahead(hpa) != nil ? "" : measuredStartup != nil ? ", the pods' start-up" : ", default"
        // The series to forecast: the first Resource metric with a Utilization target, else the
        // first Pods metric with an AverageValue target (requests_per_second has a history).
        let metrics = spec.metrics ?? []
        let resource = metrics.first(where: { $0.type == "Resource" && $0.resource?.target.averageUtilization != nil })?.resource?.name
            ?? metrics.lazy.filter { $0.type == "Pods" }.compactMap { try? $0.pods?.decode(PodsMetricSource.self) }
                .first(where: { $0.target.averageValue != nil })?.metric.name
        guard let resource else {
            return .unavailable(reason: "NoUtilizationTarget", message: "predictive scaling needs a Resource metric with a Utilization target or a Pods metric with an AverageValue target")
        }
        do {
            let h = try await history.utilization(namespace: hpa.namespace, target: spec.scaleTargetRef, resource: resource, since: now.addingTimeInterval(-config.historyWindow))
            let key = Self.periodKey(hpa, resource: resource)
            let predictor = config.predictor.compressed(by: HPAForecast.compression(for: hpa))
            switch UtilizationPredictor.forecast(h, resource: resource, now: now, lookahead: lookahead, config: predictor, memo: periods, key: key) {
            case .success(var f): f.lookaheadBasis = basis; return .forecast(f)
            case .failure(let e): return .unavailable(reason: "InsufficientHistory", message: "\(e)")
            }
        } catch {
            return .unavailable(reason: "FailedGetHistory", message: "unable to read the utilization history: \(error)")
        }
    }

    /// PUT on the scale subresource, re-reading it on conflicts (client-go's RetryOnConflict).
    func setScale(_ info: ResourceInfo, _ namespace: String, _ name: String, _ scale: Scale, to replicas: Int) async throws {
        var s = scale
        for attempt in 0..<5 {
            s.spec = Scale.Spec(replicas: replicas)
            do {
                try await client.call(.PUT, info.path(namespace: namespace, name: name, subresource: "scale"), body: try KubeJSON.encode(s))
                return
            } catch let st as Status where st.code == 409 && attempt < 4 {
                let r = try await client.call(.GET, info.path(namespace: namespace, name: name, subresource: "scale"))
                s = try KubeJSON.decode(Scale.self, from: r.body)
            }
        }
    }

    /// Writes status when it changed; on a conflict (our cached copy is behind our own last
    /// write) it re-reads the HPA once and writes onto that.
    func writeStatus(_ hpa: HorizontalPodAutoscaler, _ status: HPAStatus) async throws {
        guard status != hpa.status else { return }
        var next = hpa
        next.status = status
        do { _ = try await client.updateStatus(next) } catch let s as Status where s.code == 409 {
            var fresh = try await client.get(HorizontalPodAutoscaler.self, hpa.name, namespace: hpa.namespace)
            guard fresh.metadata.uid == hpa.metadata.uid, fresh.status != status else { return }
            fresh.status = status
            _ = try await client.updateStatus(fresh)
        } catch {
            events.record(hpa, type: "Warning", reason: "FailedUpdateStatus", message: "\(error)")
            throw error
        }
    }

    /// Records a warning unless the same one was recorded within warningRepeatInterval.
    func warn(_ entry: inout Entry, _ hpa: HorizontalPodAutoscaler, _ reason: String, _ message: String, now: Date) {
        let k = "\(reason)|\(message)"
        if let last = entry.warned[k], now.timeIntervalSince(last) < config.warningRepeatInterval { return }
        entry.warned = entry.warned.filter { now.timeIntervalSince($0.value) < config.warningRepeatInterval }
        entry.warned[k] = now
        events.record(hpa, type: "Warning", reason: reason, message: message)
    }
}
