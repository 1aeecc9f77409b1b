// The HorizontalPodAutoscaler's decision, as Kubernetes' horizontal.go makes it once the
// target's scale is known: every metric proposes a replica count and the largest wins; the
// proposal is then stabilized over recent recommendations and limited by the scaling
// policies (spec.behavior) or, without a behavior, by the legacy rules; the conditions and
// events say why. Pure and clock-injected: the controller does the I/O around it.
import Foundation
import API

/// What the HPA remembers between syncs (Kubernetes keeps it in memory too): recent
/// recommendations for stabilization, and recent scale events for the rate policies.
public struct HPAState: Sendable, Hashable {
    public struct Recommendation: Sendable, Hashable {
        public var replicas: Int
        public var time: Date
        /// The reactive part when a forecast raised `replicas` (predictive mode's attribution).
        public var reactive: Int?
        public init(replicas: Int, time: Date, reactive: Int? = nil) { self.replicas = replicas; self.time = time; self.reactive = reactive }
    }
    public struct ScaleEvent: Sendable, Hashable { public var change: Int; public var time: Date; public var outdated = false }
    public var recommendations: [Recommendation] = []
    public var scaleUpEvents: [ScaleEvent] = []
    public var scaleDownEvents: [ScaleEvent] = []
    public init() {}

    /// The first sync seeds the window with the current size, so a fresh controller does not
    /// scale down at once (the workload may have been sized by the previous leader).
    public mutating func recordInitialRecommendation(_ current: Int, now: Date) {
        if recommendations.isEmpty { recommendations = [Recommendation(replicas: current, time: now)] }
    }

    /// Remembers a rescale for the policies' periods, reusing a slot older than the longest
    /// period. Without a behavior nothing reads these, so nothing is kept.
    public mutating func recordScale(behavior: HPABehavior?, from: Int, to: Int, now: Date) {
        guard let behavior else { return }
        let up = to > from
        let rules = up ? HPAScalingRules.defaultedScaleUp(behavior.scaleUp) : HPAScalingRules.defaultedScaleDown(behavior.scaleDown)
        let longest = (rules.policies ?? []).map(\.periodSeconds).max() ?? 0
        let cutoff = now.addingTimeInterval(-Double(longest))
        var events = up ? scaleUpEvents : scaleDownEvents
        for i in events.indices where events[i].time < cutoff { events[i].outdated = true }
        let e = ScaleEvent(change: abs(to - from), time: now)
        if let i = events.lastIndex(where: \.outdated) { events[i] = e } else { events.append(e) }
        if up { scaleUpEvents = events } else { scaleDownEvents = events }
    }
}

/// An event the controller should record about the HPA.
public struct HPAEvent: Sendable, Hashable {
    public var type: String
    public var reason: String
    public var message: String
    public init(type: String, reason: String, message: String) { self.type = type; self.reason = reason; self.message = message }
}

/// The outcome of one evaluation.
public struct HPADecision: Sendable {
    public var currentReplicas: Int
    /// The size to set (equal to currentReplicas when not rescaling).
    public var desiredReplicas: Int
    public var rescale: Bool
    /// "cpu resource utilization (percentage of request) above target", as the event says.
    public var reason: String
    public var metricStatuses: [MetricStatus]?
    public var conditions: [WorkloadCondition]
    public var events: [HPAEvent]
    /// Set when metrics could not be computed at all (the controller reports, and retries next sync).
    public var error: String?
    /// Per-resource utilization measured this sync (resource → percent, pods counted): what the
    /// predictive mode's history records.
    /// What each metric measured, by resource (cpu, memory) or Pods metric name: percent of
    /// request, or for a Pods metric its average per pod; and over how many pods.
    public var observedUtilization: [String: (utilization: Double, pods: Int)] = [:]
    /// The predictive recommendation raised the size above the reactive one.
    public var predictiveDecided = false
}

/// Predictive mode's input to a decision.
public enum PredictiveInput: Sendable, Hashable {
    case forecast(HPAForecast)
    /// No forecast this sync (condition PredictiveScaling False with this reason).
    case unavailable(reason: String, message: String)
}

/// The scale's selector is missing, unparsable, or shared with another HPA (Kubernetes'
/// validateAndParseSelector): nothing is computed.
public struct SelectorProblem: Sendable, Hashable {
    public var eventReason: String
    public var conditionReason: String
    public var conditionMessage: String
    public var error: String
    public init(eventReason: String, conditionReason: String, conditionMessage: String, error: String) {
        self.eventReason = eventReason; self.conditionReason = conditionReason; self.conditionMessage = conditionMessage; self.error = error
    }
    public static let missing = SelectorProblem(eventReason: "SelectorRequired", conditionReason: "InvalidSelector",
                                                conditionMessage: "the HPA target's scale is missing a selector", error: "selector is required")
    public static func invalid(_ why: String) -> SelectorProblem {
        let e = "couldn't convert selector into a corresponding internal selector object: \(why)"
        return SelectorProblem(eventReason: "InvalidSelector", conditionReason: "InvalidSelector", conditionMessage: e, error: e)
    }
    public static func ambiguous(selector: String, hpas: [String]) -> SelectorProblem {
        let e = "pods by selector \(selector) are controlled by more than one HPA (e.g. \(hpas))"
        return SelectorProblem(eventReason: "AmbiguousSelector", conditionReason: "AmbiguousSelector", conditionMessage: e, error: e)
    }
}

public enum HPAConditions {
    /// Sets a condition in place; lastTransitionTime moves only when the status flips.
    public static func set(_ list: inout [WorkloadCondition], _ type: String, _ status: String, _ reason: String, _ message: String, now: Date) {
        if let i = list.firstIndex(where: { $0.type == type }) {
            if list[i].status != status { list[i].lastTransitionTime = KubeTime.format(now) }
            list[i].status = status; list[i].reason = reason; list[i].message = message
        } else {
            var c = WorkloadCondition(type: type, status: status, reason: reason, message: message)
            c.lastTransitionTime = KubeTime.format(now)
            list.append(c)
        }
    }
    public static func remove(_ list: inout [WorkloadCondition], _ type: String) { list.removeAll { $0.type == type } }
}

public enum HPAAlgorithm {
    /// Kubernetes' legacy scale-up cap for HPAs without a behavior: double, or 4, per sync.
    static let scaleUpLimitFactor = 2.0
    static let scaleUpLimitMinimum = 4.0

    public struct Input: Sendable {
        public var hpa: HorizontalPodAutoscaler
        /// The target's scale: spec.replicas (what is asked) and status.replicas (what exists).
        public var specReplicas: Int
        public var statusReplicas: Int
        /// The pods the scale's selector picks.
        public var pods: [Pod]
        /// The pods' samples, or why there are none.
        public var metrics: Result<[PodMetricSample], HPAError>
        /// Values of each `type: Pods` metric, by `podsMetricKey`.
        public var podsMetrics: [String: Result<[PodValueSample], HPAError>]
        /// Why the scale's selector cannot be used, if it cannot (checked by the controller).
        public var selectorProblem: SelectorProblem?
        /// Predictive mode: the forecast, or why there is none; nil when the HPA is not predictive.
        public var predictive: PredictiveInput?
        public init(hpa: HorizontalPodAutoscaler, specReplicas: Int, statusReplicas: Int? = nil, pods: [Pod],
                    metrics: Result<[PodMetricSample], HPAError>, podsMetrics: [String: Result<[PodValueSample], HPAError>] = [:],
                    selectorProblem: SelectorProblem? = nil, predictive: PredictiveInput? = nil) {
            self.hpa = hpa; self.specReplicas = specReplicas; self.statusReplicas = statusReplicas ?? specReplicas
            self.pods = pods; self.metrics = metrics; self.podsMetrics = podsMetrics; self.selectorProblem = selectorProblem; self.predictive = predictive
        }
    }

    public static func tolerances(_ hpa: HorizontalPodAutoscaler, config: HPAConfig) -> HPATolerances {
        let b = hpa.spec?.behavior
        return HPATolerances(scaleDown: b?.scaleDown?.tolerance?.doubleValue ?? config.tolerance,
                             scaleUp: b?.scaleUp?.tolerance?.doubleValue ?? config.tolerance)
    }

    /// One sync's decision. `state` carries the recommendation history between syncs.
    public static func evaluate(_ input: Input, state: inout HPAState, now: Date, config: HPAConfig = HPAConfig()) -> HPADecision {
        let hpa = input.hpa
        let spec = hpa.spec ?? HPASpec(scaleTargetRef: CrossVersionObjectReference(kind: "", name: ""), maxReplicas: 1)
        var conds = hpa.status?.conditions ?? []
        HPAConditions.set(&conds, "AbleToScale", "True", "SucceededGetScale", "the HPA controller was able to get the target's current scale", now: now)
        let current = input.specReplicas
        state.recordInitialRecommendation(current, now: now)
        let minReplicas = spec.minReplicas ?? 1
        var d = HPADecision(currentReplicas: current, desiredReplicas: 0, rescale: true, reason: "", metricStatuses: nil, conditions: [], events: [])

        if current == 0 && minReplicas != 0 {
            d.rescale = false
            HPAConditions.set(&conds, "ScalingActive", "False", "ScalingDisabled", "scaling is disabled since the replica count of the target is zero", now: now)
        } else if current > spec.maxReplicas {
            d.reason = "Current number of replicas above Spec.MaxReplicas"; d.desiredReplicas = spec.maxReplicas
        } else if current < minReplicas {
            d.reason = "Current number of replicas below Spec.MinReplicas"; d.desiredReplicas = minReplicas
        } else {
            let m = replicasForMetrics(input, current: current, now: now, config: config, conditions: &conds, events: &d.events)
            d.metricStatuses = m.statuses
            d.observedUtilization = m.observed
            guard let proposed = m.replicas else {
                // Nothing computable: keep the last desired size and say why.
                d.desiredReplicas = hpa.status?.desiredReplicas ?? current
                d.rescale = false
                d.error = m.error
                d.conditions = conds
                return d
            }
            var desired = 0, rescaleMetric = ""
            if proposed > desired { desired = proposed; rescaleMetric = m.name }
            let reactive = desired
            func normalize(_ proposal: Int, reactive: Int?, _ state: inout HPAState, _ conds: inout [WorkloadCondition]) -> Int {
                spec.behavior == nil
                    ? normalizeLegacy(spec, current: current, proposed: proposal, reactive: reactive, minReplicas: minReplicas, state: &state, now: now, config: config, conditions: &conds)
                    : normalizeWithBehaviors(spec, current: current, proposed: proposal, reactive: reactive, minReplicas: minReplicas, state: &state, now: now, config: config, conditions: &conds)
            }
            /// Kubernetes names the direction from the proposal, before stabilization and limits.
            func reactiveReason() -> String { desired > current ? "\(rescaleMetric) above target" : desired < current ? "All metrics below target" : "" }
            switch input.predictive {
            case .forecast(let f)?:
                let p = predictive(f, spec: spec, current: current, measured: m.observed[f.resource], tolerances: tolerances(hpa, config: config))
                guard let predicted = p.replicas else {
                    HPAConditions.set(&conds, HPAForecast.conditionType, "False", "NoUtilizationTarget", p.message, now: now)
                    d.reason = reactiveReason()
                    desired = normalize(desired, reactive: nil, &state, &conds)
                    break
                }
                // The forecast decided the size when the reactive proposals alone (this one, and the
                // reactive part of the recent ones the windows remember) would have ended lower.
                var replay = state, scratch = conds
                replay.recommendations = replay.recommendations.map { .init(replicas: $0.reactive ?? $0.replicas, time: $0.time) }
                let reactiveOnly = normalize(reactive, reactive: nil, &replay, &scratch)
                desired = normalize(max(reactive, predicted), reactive: predicted > reactive ? reactive : nil, &state, &conds)
                d.predictiveDecided = desired > reactiveOnly
                if d.predictiveDecided {
                    HPAConditions.set(&conds, HPAForecast.conditionType, "True", "ForecastAboveReactive", "\(p.message), above the reactive \(reactiveOnly)", now: now)
                } else {
                    HPAConditions.set(&conds, HPAForecast.conditionType, "False", "ReactiveSufficient", "\(p.message); the reactive \(reactiveOnly) covers it", now: now)
                }
                d.reason = desired > current ? "\(d.predictiveDecided ? p.name : m.name) above target" : desired < current ? "All metrics below target" : ""
            case .unavailable(let reason, let message)?:
                HPAConditions.set(&conds, HPAForecast.conditionType, "False", reason, message, now: now)
                fallthrough
            case nil:
                if input.predictive == nil { HPAConditions.remove(&conds, HPAForecast.conditionType) }
                d.reason = reactiveReason()
                desired = normalize(desired, reactive: nil, &state, &conds)
            }
            d.desiredReplicas = desired
            d.rescale = desired != current
        }
        if !d.rescale { d.desiredReplicas = current }
        d.conditions = conds
        return d
    }

    struct MetricsResult { var replicas: Int?; var name = ""; var statuses: [MetricStatus]?; var error: String?; var observed: [String: (utilization: Double, pods: Int)] = [:] }

    /// computeReplicasForMetrics: the largest proposal wins. Broken metrics are tolerated
    /// while another works and the result is not a scale-down (which they might veto).
    static func replicasForMetrics(_ input: Input, current: Int, now: Date, config: HPAConfig,
                                   conditions: inout [WorkloadCondition], events: inout [HPAEvent]) -> MetricsResult {
        let specs = input.hpa.spec?.metrics ?? []
        var r = MetricsResult()
        if let sp = input.selectorProblem {
            events.append(HPAEvent(type: "Warning", reason: sp.eventReason, message: sp.error))
            HPAConditions.set(&conditions, "ScalingActive", "False", sp.conditionReason, sp.conditionMessage, now: now)
            events.append(HPAEvent(type: "Warning", reason: "FailedComputeMetricsReplicas", message: sp.error))
            r.error = sp.error
            return r
        }
        var statuses = [MetricStatus](repeating: MetricStatus(type: ""), count: specs.count)
        var invalid = 0
        var firstError: (reason: String, message: String, error: String)?
        var replicas = 0
        for (i, spec) in specs.enumerated() {
            switch replicasForMetric(input, spec, current: current, now: now, config: config) {
            case .success(let p):
                statuses[i] = p.status
                if let u = p.proposal.utilization, let res = spec.resource?.name { r.observed[res] = (Double(u), p.proposal.podsCounted) }
                if spec.type == "Pods", let name = (try? spec.pods?.decode(PodsMetricSource.self))?.metric.name {
                    r.observed[name] = (Double(p.proposal.rawAverage) / 1000, p.proposal.podsCounted)
                }
                if replicas == 0 || p.proposal.replicas > replicas { replicas = p.proposal.replicas; r.name = p.name }
            case .failure(let f):
                events.append(HPAEvent(type: "Warning", reason: f.reason, message: f.inner))
                if invalid == 0 { firstError = (f.reason, "the HPA was unable to compute the replica count: \(f.inner)", f.outer) }
                invalid += 1
            }
        }
        r.statuses = statuses.isEmpty ? nil : statuses
        if invalid >= specs.count || (invalid > 0 && replicas < current) {
            let e = firstError ?? ("InvalidMetricSourceType", "the HPA was unable to compute the replica count: no metrics", "no metrics")
            HPAConditions.set(&conditions, "ScalingActive", "False", e.reason, e.message, now: now)
            let err = "invalid metrics (\(invalid) invalid out of \(specs.count)), first error is: \(e.error)"
            events.append(HPAEvent(type: "Warning", reason: "FailedComputeMetricsReplicas", message: err))
            r.error = err
            return r
        }
        HPAConditions.set(&conditions, "ScalingActive", "True", "ValidMetricFound", "the HPA was able to successfully calculate a replica count from \(r.name)", now: now)
        r.replicas = replicas
        return r
    }

    struct MetricOK { var proposal: ReplicaProposal; var name: String; var status: MetricStatus }
    /// A failed metric: the condition/event reason, the error the event shows, and the
    /// error wrapped once more as the aggregate message quotes it.
    struct MetricFailure: Error { var reason: String; var inner: String; var outer: String }

    /// The key of a Pods metric's values in Input.podsMetrics: its name and metric selector.
    public static func podsMetricKey(_ src: PodsMetricSource) -> String {
        let sel = src.metric.selector.flatMap { try? KubeJSON.encode($0) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "\(src.metric.name)|\(sel)"
    }

    /// Kubernetes' computeStatusForPodsMetric: the pods' average against target.averageValue.
    static func podsMetric(_ input: Input, _ spec: MetricSpec, current: Int, now: Date, config: HPAConfig) -> Result<MetricOK, MetricFailure> {
        func fail(_ inner: String) -> Result<MetricOK, MetricFailure> {
            .failure(MetricFailure(reason: "FailedGetPodsMetric", inner: inner, outer: "failed to get pods metric value: \(inner)"))
        }
        let src: PodsMetricSource
        do {
            guard let v = spec.pods else { return fail("invalid pods metric source: pods is not set") }
            src = try v.decode(PodsMetricSource.self)
        } catch { return fail("invalid pods metric source: \(error)") }
        guard let target = src.target.averageValue, target.milli > 0 else {
            return fail("invalid pods metric source: target.averageValue must be set to a positive value")
        }
        let values: [PodValueSample]
        switch input.podsMetrics[podsMetricKey(src)] {
        case .success(let v)?: values = v
        case .failure(let e)?: return fail("unable to get metric \(src.metric.name): \(e)")
        case nil: return fail("unable to get metric \(src.metric.name): no values were fetched")
        }
        do {
            let p = try HPAReplicaCalculator.podsMetricReplicas(currentReplicas: current, targetAverage: target.milli, tolerances: tolerances(input.hpa, config: config),
                                                                pods: input.pods, values: values, now: now, config: config)
            let status = PodsMetricStatus(metric: src.metric, current: MetricValueStatus(averageValue: Quantity(milli: p.rawAverage, format: .decimalSI)))
            var ms = MetricStatus(type: "Pods")
            ms.pods = try? JSONValue.from(status)
            return .success(MetricOK(proposal: p, name: "pods metric \(src.metric.name)", status: ms))
        } catch { return fail("unable to get metric \(src.metric.name): \(error)") }
    }

    static func replicasForMetric(_ input: Input, _ spec: MetricSpec, current: Int, now: Date, config: HPAConfig) -> Result<MetricOK, MetricFailure> {
        if spec.type == "Pods" { return podsMetric(input, spec, current: current, now: now, config: config) }
        guard spec.type == "Resource", let res = spec.resource else {
            let reason = ["Pods": "FailedGetPodsMetric", "Object": "FailedGetObjectMetric", "External": "FailedGetExternalMetric",
                          "ContainerResource": "FailedGetContainerResourceMetric"][spec.type] ?? "InvalidMetricSourceType"
            let e = spec.type == "Resource" ? "invalid resource metric source: resource is not set" : "metric source type \"\(spec.type)\" is not supported by this controller"
            return .failure(MetricFailure(reason: reason, inner: e, outer: e))
        }
        let name = res.name
        func fail(_ inner: String) -> Result<MetricOK, MetricFailure> {
            .failure(MetricFailure(reason: "FailedGetResourceMetric", inner: inner, outer: "failed to get \(name) resource metric value: \(inner)"))
        }
        let tol = tolerances(input.hpa, config: config)
        let samples: [PodMetricSample]
        switch input.metrics {
        case .success(let s): samples = s
        case .failure(let e):
            let what = res.target.averageValue != nil ? "usage" : "utilization"
            return fail("failed to get \(name) \(what): unable to get metrics for resource \(name): \(e)")
        }
        if let avg = res.target.averageValue {
            do {
                let p = try HPAReplicaCalculator.rawResourceReplicas(currentReplicas: current, targetAverage: avg.milli, resource: name, tolerances: tol,
                                                                     pods: input.pods, samples: samples, now: now, config: config)
                let q = Quantity(milli: p.rawAverage, format: name == "memory" ? .binarySI : .decimalSI)
                return .success(MetricOK(proposal: p, name: "\(name) resource",
                                         status: MetricStatus(type: "Resource", resource: ResourceMetricStatus(name: name, current: MetricValueStatus(averageValue: q)))))
            } catch { return fail("failed to get \(name) usage: \(error)") }
        }
        guard let target = res.target.averageUtilization else {
            return fail("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set")
        }
        do {
            let p = try HPAReplicaCalculator.resourceReplicas(currentReplicas: current, targetUtilization: target, resource: name, tolerances: tol,
                                                              pods: input.pods, samples: samples, now: now, config: config)
            let q = Quantity(milli: p.rawAverage, format: name == "memory" ? .binarySI : .decimalSI)
            return .success(MetricOK(proposal: p, name: "\(name) resource utilization (percentage of request)",
                                     status: MetricStatus(type: "Resource", resource: ResourceMetricStatus(name: name, current: MetricValueStatus(averageValue: q, averageUtilization: p.utilization)))))
        } catch { return fail("failed to get \(name) utilization: \(error)") }
    }

    /// The predictive proposal: enough replicas that the forecast load sits at the target.
    /// The target a forecast of `series` is compared with: a Resource metric's Utilization
    /// (percent), or a Pods metric's AverageValue (per pod); and how the metric is named.
    static func forecastTarget(_ spec: HPASpec, series: String) -> (value: Double, isPods: Bool)? {
        for m in spec.metrics ?? [] {
            if m.type == "Resource", m.resource?.name == series, let t = m.resource?.target.averageUtilization, t > 0 { return (Double(t), false) }
            if m.type == "Pods", let src = try? m.pods?.decode(PodsMetricSource.self), src.metric.name == series,
               let v = src.target.averageValue, v.milli > 0 { return (Double(v.milli) / 1000, true) }
        }
        return nil
    }

    static func predictive(_ f: HPAForecast, spec: HPASpec, current: Int, measured: (utilization: Double, pods: Int)?,
                           tolerances: HPATolerances) -> (replicas: Int?, name: String, message: String) {
        guard let (target, isPods) = forecastTarget(spec, series: f.resource), let measured else {
            return (nil, "", "no Utilization or AverageValue target for \(f.resource) to forecast against")
        }
        // Demand (utilization × pods) does not shrink when the HPA adds pods, so the
        // recommendation does not chase its own effect.
        let demand = f.demand(measuredUtilization: measured.utilization, pods: measured.pods)
        let ratio = demand / (target * Double(max(current, 1)))
        // Upward, a forecast above the target scales at once: waiting for 10 % over target is
        // what leaves a slow morning ramp running hot. The band moves down instead: below the
        // tolerance, it scales down only to a size that leaves the forecast that tolerance under
        // the target, so a forecast wandering around the target (noise) does not go up and down.
        let replicas: Int
        if ratio > 1 {
            replicas = Int((demand / target).rounded(.up))
        } else if ratio < 1 - tolerances.scaleDown {
            replicas = min(current, Int((demand / (target * (1 - tolerances.scaleDown))).rounded(.up)))
        } else {
            replicas = current
        }
        let utilization = demand / Double(max(current, 1))
        if isPods {
            let name = "predicted pods metric \(f.resource) \(f.summary)"
            return (replicas, name, "forecast \(f.resource) \(String(format: "%.1f", utilization)) per pod at \(current) replicas \(f.summary): \(replicas) replicas")
        }
        let name = "predicted \(f.resource) resource utilization (percentage of request) \(f.summary)"
        return (replicas, name, "forecast \(f.resource) utilization \(Int(utilization.rounded()))% of request at \(current) replicas \(f.summary): \(replicas) replicas")
    }

    /// No behavior: Kubernetes' original rules. Scale-down takes the highest recommendation of
    /// the downscale window; scale-up is capped at max(2 × current, 4) per sync.
    static func normalizeLegacy(_ spec: HPASpec, current: Int, proposed: Int, reactive: Int? = nil, minReplicas: Int, state: inout HPAState, now: Date, config: HPAConfig,
                                conditions: inout [WorkloadCondition]) -> Int {
        let cutoff = now.addingTimeInterval(-config.downscaleStabilizationWindow)
        var stabilized = proposed
        var oldIndex: Int?
        for (i, r) in state.recommendations.enumerated() {
            if r.time < cutoff { oldIndex = i } else if r.replicas > stabilized { stabilized = r.replicas }
        }
        let rec = HPAState.Recommendation(replicas: proposed, time: now, reactive: reactive)
        if let i = oldIndex { state.recommendations[i] = rec } else { state.recommendations.append(rec) }
        if stabilized != proposed {
            HPAConditions.set(&conditions, "AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation", now: now)
        } else {
            HPAConditions.set(&conditions, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size", now: now)
        }
        let scaleUpLimit = Int(max(scaleUpLimitFactor * Double(current), scaleUpLimitMinimum))
        var maxAllowed: Int, reason: String, message: String
        if spec.maxReplicas > scaleUpLimit {
            maxAllowed = scaleUpLimit; reason = "ScaleUpLimit"; message = "the desired replica count is increasing faster than the maximum scale rate"
        } else {
            maxAllowed = spec.maxReplicas; reason = "TooManyReplicas"; message = "the desired replica count is more than the maximum replica count"
        }
        var desired = stabilized
        if stabilized < minReplicas {
            desired = minReplicas; reason = "TooFewReplicas"; message = "the desired replica count is less than the minimum replica count"
        } else if stabilized > maxAllowed {
            desired = maxAllowed
        } else {
            reason = "DesiredWithinRange"; message = "the desired count is within the acceptable range"
        }
        HPAConditions.set(&conditions, "ScalingLimited", desired == stabilized ? "False" : "True", reason, message, now: now)
        return desired
    }

    /// With a behavior: stabilize within the up/down windows, then apply the rate policies.
    static func normalizeWithBehaviors(_ spec: HPASpec, current: Int, proposed: Int, reactive: Int? = nil, minReplicas: Int, state: inout HPAState, now: Date, config: HPAConfig,
                                       conditions: inout [WorkloadCondition]) -> Int {
        let up = HPAScalingRules.defaultedScaleUp(spec.behavior?.scaleUp)
        var down = HPAScalingRules.defaultedScaleDown(spec.behavior?.scaleDown)
        if down.stabilizationWindowSeconds == nil { down.stabilizationWindowSeconds = Int(config.downscaleStabilizationWindow) }
        let (stabilized, sReason, sMessage) = stabilize(current: current, proposed: proposed, reactive: reactive, up: up, down: down, state: &state, now: now)
        if stabilized != proposed {
            HPAConditions.set(&conditions, "AbleToScale", "True", sReason, sMessage, now: now)
        } else {
            HPAConditions.set(&conditions, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size", now: now)
        }
        let (desired, reason, message) = limitRate(current: current, desired: stabilized, minReplicas: minReplicas, maxReplicas: spec.maxReplicas,
                                                   up: up, down: down, state: state, now: now)
        HPAConditions.set(&conditions, "ScalingLimited", desired == stabilized ? "False" : "True", reason, message, now: now)
        return desired
    }

    /// stabilizeRecommendationWithBehaviors: scale up no further than the lowest recommendation
    /// of the up window, down no further than the highest of the down window.
    static func stabilize(current: Int, proposed: Int, reactive: Int? = nil, up: HPAScalingRules, down: HPAScalingRules, state: inout HPAState, now: Date) -> (Int, String, String) {
        let upCutoff = now.addingTimeInterval(-Double(up.stabilizationWindowSeconds ?? 0))
        let downCutoff = now.addingTimeInterval(-Double(down.stabilizationWindowSeconds ?? 0))
        var upRec = proposed, downRec = proposed
        var oldIndex: Int?
        for (i, r) in state.recommendations.enumerated() {
            if r.time > upCutoff { upRec = min(upRec, r.replicas) }
            if r.time > downCutoff { downRec = max(downRec, r.replicas) }
            if r.time < upCutoff && r.time < downCutoff { oldIndex = i }
        }
        var rec = current
        if rec < upRec { rec = upRec }
        if rec > downRec { rec = downRec }
        let entry = HPAState.Recommendation(replicas: proposed, time: now, reactive: reactive)
        if let i = oldIndex { state.recommendations[i] = entry } else { state.recommendations.append(entry) }
        if proposed >= current {
            return (rec, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation")
        }
        return (rec, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
    }

    /// convertDesiredReplicasWithBehaviorRate: the policies bound the change against the size at
    /// the start of each policy's period (current minus what that period already changed).
    static func limitRate(current: Int, desired: Int, minReplicas: Int, maxReplicas: Int, up: HPAScalingRules, down: HPAScalingRules,
                          state: HPAState, now: Date) -> (Int, String, String) {
        if desired > current {
            let limit = max(scaleUpLimit(current: current, state: state, rules: up, now: now), current)
            if maxReplicas > limit {
                if desired > limit { return (limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate") }
            } else if desired > maxReplicas {
                return (maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
            }
        } else if desired < current {
            let limit = min(scaleDownLimit(current: current, state: state, rules: down, now: now), current)
            if minReplicas < limit {
                if desired < limit { return (limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate") }
            } else if desired < minReplicas {
                return (minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
            }
        }
        return (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
    }

    static func changeInPeriod(_ seconds: Int, _ events: [HPAState.ScaleEvent], now: Date) -> Int {
        let cutoff = now.addingTimeInterval(-Double(seconds))
        return events.filter { $0.time > cutoff }.reduce(0) { $0 + $1.change }
    }

    /// The most replicas the scale-up policies allow now (Max: the most permissive policy, Min: the strictest).
    static func scaleUpLimit(current: Int, state: HPAState, rules: HPAScalingRules, now: Date) -> Int {
        if rules.selectPolicy == "Disabled" { return current }
        let useMin = rules.selectPolicy == "Min"
        var result = useMin ? Int.max : Int.min
        for p in rules.policies ?? [] {
            let start = current - changeInPeriod(p.periodSeconds, state.scaleUpEvents, now: now) + changeInPeriod(p.periodSeconds, state.scaleDownEvents, now: now)
            // Percent rounds up, or a small workload could never grow.
            let proposed = p.type == "Pods" ? start + p.value : Int((Double(start) * (1 + Double(p.value) / 100)).rounded(.up))
            result = useMin ? min(result, proposed) : max(result, proposed)
        }
        return result
    }

    /// The fewest replicas the scale-down policies allow now.
    static func scaleDownLimit(current: Int, state: HPAState, rules: HPAScalingRules, now: Date) -> Int {
        if rules.selectPolicy == "Disabled" { return current }
        let useMin = rules.selectPolicy == "Min"
        var result = useMin ? Int.min : Int.max
        for p in rules.policies ?? [] {
            let start = current - changeInPeriod(p.periodSeconds, state.scaleUpEvents, now: now) + changeInPeriod(p.periodSeconds, state.scaleDownEvents, now: now)
            let proposed = p.type == "Pods" ? start - p.value : Int(Double(start) * (1 - Double(p.value) / 100))
            result = useMin ? max(result, proposed) : min(result, proposed)
        }
        return result
    }

    /// The status after a sync (Kubernetes' setStatus): conditions and lastScaleTime carry over.
    public static func status(previous: HPAStatus?, generation: Int64?, currentReplicas: Int, desiredReplicas: Int, metrics: [MetricStatus]?,
                              conditions: [WorkloadCondition], rescaled: Bool, now: Date) -> HPAStatus {
        var s = HPAStatus(currentReplicas: currentReplicas, desiredReplicas: desiredReplicas)
        s.currentMetrics = metrics
        s.conditions = conditions.isEmpty ? nil : conditions
        s.lastScaleTime = rescaled ? KubeTime.format(now) : previous?.lastScaleTime
        s.observedGeneration = generation
        return s
    }
}
