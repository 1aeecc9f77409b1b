import Testing
import Foundation
@testable import Controllers
import Client
import API

// Table tests of the HorizontalPodAutoscaler's algorithm against Kubernetes' documented
// behaviour, on an injected clock (plain Dates: the algorithm takes `now`).

private let t0 = Date(timeIntervalSince1970: 1_800_000_000)
private func q(_ s: String) -> Quantity { try! Quantity(parsing: s) }

/// A running pod started an hour ago and Ready for 50 minutes, requesting 1 cpu and 1Gi.
private func hpaPod(_ name: String, cpu: String? = "1", memory: String? = "1Gi", phase: String = "Running", ready: String? = "True",
                    started: Date = t0.addingTimeInterval(-3600), readySince: Date = t0.addingTimeInterval(-3000), deleted: Bool = false) -> Pod {
    var c = Container(name: "c", image: "x")
    var req: ResourceList = [:]
    if let cpu { req["cpu"] = q(cpu) }
    if let memory { req["memory"] = q(memory) }
    c.resources = ResourceRequirements(requests: req)
    var p = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: ["app": "web"]), spec: PodSpec(containers: [c]))
    var st = PodStatus(phase: phase)
    st.startTime = KubeTime.format(started)
    if let ready { st.conditions = [PodCondition(type: "Ready", status: ready, lastTransitionTime: KubeTime.format(readySince))] }
    p.status = st
    if deleted { p.metadata.deletionTimestamp = KubeTime.format(t0) }
    return p
}

private func cpu(_ pod: String, _ milli: Int64, at: Date = t0, window: Double = 15) -> PodMetricSample {
    PodMetricSample(pod: pod, cpuMillicores: milli, memoryBytes: 0, timestamp: at, window: window)
}
private func mem(_ pod: String, _ value: String, at: Date = t0) -> PodMetricSample {
    PodMetricSample(pod: pod, cpuMillicores: 0, memoryBytes: q(value).milli / 1000, timestamp: at)
}

/// `n` ready pods each using `percent` % of their 1-cpu request, sampled at `at`.
private func load(_ n: Int, percent: Int, memory: String = "512Mi", at: Date = t0) -> ([Pod], [PodMetricSample]) {
    let pods = (0..<n).map { hpaPod("p\($0)") }
    let samples = pods.map { PodMetricSample(pod: $0.name, cpuMillicores: Int64(percent * 10), memoryBytes: q(memory).milli / 1000, timestamp: at) }
    return (pods, samples)
}

private let cpu50 = MetricSpec.resource("cpu", MetricTarget(type: "Utilization", averageUtilization: 50))

private func hpa(min: Int? = 1, max: Int = 10, metrics: [MetricSpec] = [cpu50], behavior: HPABehavior? = nil, annotations: [String: String]? = nil) -> HorizontalPodAutoscaler {
    var h = HorizontalPodAutoscaler(metadata: ObjectMeta(name: "web", namespace: "default", annotations: annotations),
                                    spec: HPASpec(scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "web", apiVersion: "apps/v1"),
                                                  minReplicas: min, maxReplicas: max, metrics: metrics, behavior: behavior))
    h.metadata.uid = "uid-web"
    return h
}

private func evaluate(_ h: HorizontalPodAutoscaler, current: Int, _ l: ([Pod], [PodMetricSample]), state: inout HPAState, now: Date = t0,
                      config: HPAConfig = HPAConfig(), predictive: PredictiveInput? = nil) -> HPADecision {
    HPAAlgorithm.evaluate(.init(hpa: h, specReplicas: current, pods: l.0, metrics: .success(l.1), predictive: predictive), state: &state, now: now, config: config)
}

private func condition(_ d: HPADecision, _ type: String) -> WorkloadCondition? { d.conditions.first { $0.type == type } }

// MARK: - replica calculation

struct CalcCase: Sendable, CustomTestStringConvertible {
    var name: String
    var pods: [Pod]
    var samples: [PodMetricSample]
    var current: Int
    var target = 50
    var expected: Int
    var testDescription: String { name }

    static let all: [CalcCase] = {
        let three = (0..<3).map { hpaPod("p\($0)") }, four = (0..<4).map { hpaPod("p\($0)") }
        let justStarted = hpaPod("p3", started: t0.addingTimeInterval(-60), readySince: t0.addingTimeInterval(-5))
        return [
            CalcCase(name: "within the 10% tolerance nothing changes", pods: three, samples: three.map { cpu($0.name, 1050) }, current: 3, target: 100, expected: 3),
            CalcCase(name: "exactly 10% over is still within tolerance", pods: three, samples: three.map { cpu($0.name, 1100) }, current: 3, target: 100, expected: 3),
            CalcCase(name: "scale up by the usage ratio", pods: three, samples: three.map { cpu($0.name, 900) }, current: 3, expected: 6),
            CalcCase(name: "scale down by the usage ratio", pods: (0..<5).map { hpaPod("p\($0)") },
                     samples: zip(0..<5, [100, 300, 500, 250, 250]).map { cpu("p\($0.0)", Int64($0.1)) }, current: 5, expected: 3),
            CalcCase(name: "a missing sample counts as 0% on scale-up (here: back within tolerance)", pods: four,
                     samples: three.map { cpu($0.name, 700) }, current: 4, expected: 4),
            CalcCase(name: "a missing sample counts as 0% on scale-up (still up)", pods: four,
                     samples: three.map { cpu($0.name, 1000) }, current: 4, expected: 6),
            CalcCase(name: "a missing sample counts as its full request on scale-down", pods: four,
                     samples: three.map { cpu($0.name, 100) }, current: 4, expected: 3),
            CalcCase(name: "an unready pod counts as 0% on scale-up, its sample ignored", pods: three + [hpaPod("p3", ready: "False", started: t0.addingTimeInterval(-60))],
                     samples: three.map { cpu($0.name, 700) } + [cpu("p3", 2000)], current: 4, expected: 4),
            CalcCase(name: "an unready pod is left out on scale-down", pods: three + [hpaPod("p3", ready: "False", started: t0.addingTimeInterval(-60))],
                     samples: three.map { cpu($0.name, 100) } + [cpu("p3", 2000)], current: 4, expected: 1),
            CalcCase(name: "unready pods never flip a scale-up into a scale-down", pods: Array(four.prefix(2)) + [hpaPod("p2", phase: "Pending", ready: nil), hpaPod("p3", phase: "Pending", ready: nil)],
                     samples: [cpu("p0", 600), cpu("p1", 600)], current: 4, expected: 4),
            CalcCase(name: "a pending pod is unready", pods: three + [hpaPod("p3", phase: "Pending", ready: nil)],
                     samples: three.map { cpu($0.name, 700) }, current: 4, expected: 4),
            CalcCase(name: "cpu of a pod Ready for less than a sample window is not trusted yet", pods: three + [justStarted],
                     samples: (three + [justStarted]).map { cpu($0.name, 700) }, current: 4, expected: 4),
            CalcCase(name: "cpu of a just-started pod is trusted once a full window follows its readiness",
                     pods: three + [hpaPod("p3", started: t0.addingTimeInterval(-60), readySince: t0.addingTimeInterval(-50))],
                     samples: four.map { cpu($0.name, 700) }, current: 4, expected: 6),
            CalcCase(name: "after initialization a pod that was Ready before counts even when unready now",
                     pods: three + [hpaPod("p3", ready: "False", readySince: t0.addingTimeInterval(-600))],
                     samples: four.map { cpu($0.name, 700) }, current: 4, expected: 6),
            CalcCase(name: "deleted and failed pods are ignored", pods: three + [hpaPod("gone", deleted: true), hpaPod("dead", phase: "Failed")],
                     samples: three.map { cpu($0.name, 900) } + [cpu("gone", 0), cpu("dead", 0)], current: 3, expected: 6),
        ]
    }()
}

@Suite struct HPAReplicaCalculatorTests {
    @Test(arguments: CalcCase.all)
    func utilization(_ c: CalcCase) throws {
        let p = try HPAReplicaCalculator.resourceReplicas(currentReplicas: c.current, targetUtilization: c.target, resource: "cpu",
                                                          tolerances: HPATolerances(scaleDown: 0.1, scaleUp: 0.1), pods: c.pods, samples: c.samples,
                                                          now: t0, config: HPAConfig())
        #expect(p.replicas == c.expected)
    }

    @Test func averageValueScalesOnRawUsage() throws {
        let pods = (0..<3).map { hpaPod("p\($0)") }
        let p = try HPAReplicaCalculator.rawResourceReplicas(currentReplicas: 3, targetAverage: q("300Mi").milli, resource: "memory",
                                                             tolerances: HPATolerances(scaleDown: 0.1, scaleUp: 0.1), pods: pods,
                                                             samples: pods.map { mem($0.name, "600Mi") }, now: t0, config: HPAConfig())
        #expect(p.replicas == 6)
        #expect(Quantity(milli: p.rawAverage, format: .binarySI).description == "600Mi")
        // On scale-down a pod without a sample counts as using exactly the target.
        let four = pods + [hpaPod("p3")]
        let down = try HPAReplicaCalculator.rawResourceReplicas(currentReplicas: 4, targetAverage: q("300Mi").milli, resource: "memory",
                                                                tolerances: HPATolerances(scaleDown: 0.1, scaleUp: 0.1), pods: four,
                                                                samples: pods.map { mem($0.name, "100Mi") }, now: t0, config: HPAConfig())
        #expect(down.replicas == 2)
    }

    @Test func memoryIgnoresCpuReadinessRules() throws {
        // The initialization rules are for cpu only: a just-started pod's memory counts.
        let pods = (0..<3).map { hpaPod("p\($0)", started: t0.addingTimeInterval(-10), readySince: t0.addingTimeInterval(-5)) }
        let p = try HPAReplicaCalculator.resourceReplicas(currentReplicas: 3, targetUtilization: 50, resource: "memory",
                                                          tolerances: HPATolerances(scaleDown: 0.1, scaleUp: 0.1), pods: pods,
                                                          samples: pods.map { mem($0.name, "921Mi") }, now: t0, config: HPAConfig())
        #expect(p.replicas == 6 && p.utilization == 89)
    }
}

// MARK: - decisions

@Suite struct HPAAlgorithmTests {
    @Test func podsWithoutRequestsMakeUtilizationUndefined() {
        var state = HPAState()
        let pods = [hpaPod("p0", cpu: nil), hpaPod("p1")]
        let d = evaluate(hpa(), current: 2, (pods, pods.map { cpu($0.name, 500) }), state: &state)
        #expect(!d.rescale && d.desiredReplicas == 2)
        #expect(d.error?.contains("missing request for cpu in container c of Pod p0") == true)
        let active = condition(d, "ScalingActive")
        #expect(active?.status == "False" && active?.reason == "FailedGetResourceMetric")
        #expect(active?.message == "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container c of Pod p0")
        #expect(d.events.map(\.reason) == ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"])
        #expect(condition(d, "AbleToScale")?.reason == "SucceededGetScale")
    }

    @Test func noMetricsMeansScalingInactive() {
        var state = HPAState()
        var h = hpa()
        h.status = HPAStatus(currentReplicas: 3, desiredReplicas: 3)
        let d = HPAAlgorithm.evaluate(.init(hpa: h, specReplicas: 3, pods: load(3, percent: 90).0, metrics: .failure(HPAError("metrics API unavailable"))),
                                      state: &state, now: t0)
        #expect(!d.rescale && d.desiredReplicas == 3)
        #expect(condition(d, "ScalingActive")?.reason == "FailedGetResourceMetric")
        #expect(condition(d, "ScalingActive")?.message?.hasSuffix("unable to get metrics for resource cpu: metrics API unavailable") == true)
    }

    @Test func severalMetricsTakeTheLargestProposal() {
        let memTarget = MetricSpec.resource("memory", MetricTarget(type: "AverageValue", averageValue: q("1Gi")))
        var state = HPAState()
        // cpu 90% of 50% → 6; memory 1.2Gi of 1Gi → 4: cpu wins.
        var d = evaluate(hpa(metrics: [cpu50, memTarget]), current: 3, load(3, percent: 90, memory: "1228Mi"), state: &state)
        #expect(d.desiredReplicas == 6 && d.reason == "cpu resource utilization (percentage of request) above target")
        #expect(d.metricStatuses?.count == 2 && d.metricStatuses?[0].resource?.current.averageUtilization == 90)
        #expect(d.metricStatuses?[1].resource?.current.averageValue?.description == "1228Mi")
        // memory 3Gi of 1Gi → 9 beats cpu's 6 (then the legacy rate cap of 2 × 3 applies).
        state = HPAState()
        d = evaluate(hpa(max: 20, metrics: [cpu50, memTarget]), current: 3, load(3, percent: 90, memory: "3Gi"), state: &state)
        #expect(d.reason == "memory resource above target")
        #expect(condition(d, "ScalingActive")?.message == "the HPA was able to successfully calculate a replica count from memory resource")
        #expect(d.desiredReplicas == 6 && condition(d, "ScalingLimited")?.reason == "ScaleUpLimit")
    }

    @Test func aBrokenMetricDoesNotBlockScaleUpButVetoesScaleDown() {
        let memTarget = MetricSpec.resource("memory", MetricTarget(type: "AverageValue", averageValue: q("1Gi")))
        let noCPURequest = (0..<3).map { hpaPod("p\($0)", cpu: nil) }
        var state = HPAState()
        var d = evaluate(hpa(metrics: [cpu50, memTarget]), current: 3, (noCPURequest, noCPURequest.map { mem($0.name, "2Gi") }), state: &state)
        #expect(d.error == nil && d.desiredReplicas == 6)
        #expect(d.events.map(\.reason) == ["FailedGetResourceMetric"])
        state = HPAState()
        d = evaluate(hpa(metrics: [cpu50, memTarget]), current: 3, (noCPURequest, noCPURequest.map { mem($0.name, "100Mi") }), state: &state)
        #expect(d.error?.hasPrefix("invalid metrics (1 invalid out of 2), first error is: failed to get cpu resource metric value") == true)
        #expect(!d.rescale && condition(d, "ScalingActive")?.status == "False")
    }

    struct LimitCase: Sendable, CustomTestStringConvertible {
        var name: String; var current: Int; var percent: Int; var min: Int; var max: Int
        var desired: Int; var limited: String; var reason: String
        var testDescription: String { name }
    }
    static let limitCases = [
        LimitCase(name: "above maxReplicas", current: 3, percent: 300, min: 1, max: 5, desired: 5, limited: "True", reason: "TooManyReplicas"),
        LimitCase(name: "faster than double or 4 per sync", current: 2, percent: 500, min: 1, max: 10, desired: 4, limited: "True", reason: "ScaleUpLimit"),
        LimitCase(name: "below minReplicas", current: 4, percent: 10, min: 3, max: 10, desired: 3, limited: "True", reason: "TooFewReplicas"),
        LimitCase(name: "within range", current: 4, percent: 75, min: 1, max: 10, desired: 6, limited: "False", reason: "DesiredWithinRange"),
    ]

    @Test(arguments: limitCases)
    func minAndMaxClampWithScalingLimited(_ c: LimitCase) {
        var state = HPAState()
        state.recommendations = [.init(replicas: c.current, time: t0.addingTimeInterval(-10))]
        var config = HPAConfig()
        config.downscaleStabilizationWindow = 0
        let d = evaluate(hpa(min: c.min, max: c.max), current: c.current, load(c.current, percent: c.percent), state: &state, config: config)
        #expect(d.desiredReplicas == c.desired && d.rescale)
        #expect(condition(d, "ScalingLimited")?.status == c.limited && condition(d, "ScalingLimited")?.reason == c.reason)
    }

    @Test func outOfRangeSizesAreCorrectedWithoutMetrics() {
        var state = HPAState()
        var d = evaluate(hpa(min: 2, max: 5), current: 8, load(8, percent: 90), state: &state)
        #expect(d.desiredReplicas == 5 && d.rescale && d.reason == "Current number of replicas above Spec.MaxReplicas")
        state = HPAState()
        d = evaluate(hpa(min: 2, max: 5), current: 1, load(1, percent: 10), state: &state)
        #expect(d.desiredReplicas == 2 && d.reason == "Current number of replicas below Spec.MinReplicas")
        state = HPAState()
        d = evaluate(hpa(min: 2, max: 5), current: 0, ([], []), state: &state)
        #expect(!d.rescale && d.desiredReplicas == 0 && condition(d, "ScalingActive")?.reason == "ScalingDisabled")
    }

    @Test func toleranceFromTheBehaviorOverridesTheControllers() {
        var state = HPAState()
        let loose = HPABehavior(scaleUp: HPAScalingRules(tolerance: q("500m")))
        let d = evaluate(hpa(behavior: loose), current: 3, load(3, percent: 70), state: &state)
        #expect(!d.rescale && d.desiredReplicas == 3)
        state = HPAState()
        #expect(evaluate(hpa(), current: 3, load(3, percent: 70), state: &state).desiredReplicas == 5)
    }

    @Test func scaleDownWaitsOutTheStabilizationWindowKeepingTheHighestRecommendation() {
        var state = HPAState()
        let h = hpa(behavior: HPABehavior(scaleDown: HPAScalingRules(stabilizationWindowSeconds: 60)))
        // t0: 5 pods at 80% of 50% → 8 (the default scale-up policies allow 10).
        var d = evaluate(h, current: 5, load(5, percent: 80), state: &state)
        #expect(d.desiredReplicas == 8 && d.rescale)
        state.recordScale(behavior: h.spec?.behavior, from: 5, to: 8, now: t0)
        // Load drops: the recommendations say 2, then 3, but 8 is still in the 60 s window.
        for (dt, pct) in [(10.0, 10), (30.0, 18)] {
            d = evaluate(h, current: 8, load(8, percent: pct, at: t0 + dt), state: &state, now: t0 + dt)
            #expect(d.desiredReplicas == 8 && !d.rescale, "at +\(dt)s")
            #expect(condition(d, "AbleToScale")?.reason == "ScaleDownStabilized")
        }
        // Past the window the highest remaining recommendation (3) applies.
        d = evaluate(h, current: 8, load(8, percent: 10, at: t0 + 61), state: &state, now: t0 + 61)
        #expect(d.desiredReplicas == 3 && d.rescale && d.reason == "All metrics below target")
        #expect(condition(d, "ScalingLimited")?.reason == "DesiredWithinRange")
    }

    @Test func legacyScaleDownUsesTheControllerWindow() {
        var state = HPAState()
        var config = HPAConfig()
        config.downscaleStabilizationWindow = 30
        var d = evaluate(hpa(), current: 4, load(4, percent: 10), state: &state, config: config)
        #expect(!d.rescale && condition(d, "AbleToScale")?.reason == "ScaleDownStabilized")
        d = evaluate(hpa(), current: 4, load(4, percent: 10, at: t0 + 31), state: &state, now: t0 + 31, config: config)
        #expect(d.desiredReplicas == 1 && condition(d, "AbleToScale")?.reason == "ReadyForNewScale")
    }

    struct PolicyCase: Sendable, CustomTestStringConvertible {
        var select: String; var desired: Int
        var testDescription: String { "selectPolicy \(select)" }
    }

    @Test(arguments: [PolicyCase(select: "Max", desired: 8), PolicyCase(select: "Min", desired: 6), PolicyCase(select: "Disabled", desired: 4)])
    func scaleUpPoliciesBoundTheStep(_ c: PolicyCase) {
        let rules = HPAScalingRules(selectPolicy: c.select, policies: [HPAScalingPolicy(type: "Pods", value: 2, periodSeconds: 60),
                                                                       HPAScalingPolicy(type: "Percent", value: 100, periodSeconds: 60)])
        var state = HPAState()
        // 4 pods at 250% of 50% want 20: +2 pods gives 6, +100% gives 8.
        let d = evaluate(hpa(max: 30, behavior: HPABehavior(scaleUp: rules)), current: 4, load(4, percent: 250), state: &state)
        #expect(d.desiredReplicas == c.desired && d.rescale == (c.desired != 4))
        #expect(condition(d, "ScalingLimited")?.status == "True" && condition(d, "ScalingLimited")?.reason == "ScaleUpLimit")
    }

    @Test func policyPeriodsCountRecentScaleEvents() {
        let rules = HPAScalingRules(policies: [HPAScalingPolicy(type: "Pods", value: 2, periodSeconds: 60), HPAScalingPolicy(type: "Percent", value: 100, periodSeconds: 60)])
        let h = hpa(max: 30, behavior: HPABehavior(scaleUp: rules))
        var state = HPAState()
        var d = evaluate(h, current: 4, load(4, percent: 250), state: &state)
        #expect(d.desiredReplicas == 8)
        state.recordScale(behavior: h.spec?.behavior, from: 4, to: 8, now: t0)
        // Within the period the start size is still 4: no further growth.
        d = evaluate(h, current: 8, load(8, percent: 250, at: t0 + 30), state: &state, now: t0 + 30)
        #expect(d.desiredReplicas == 8 && !d.rescale && condition(d, "ScalingLimited")?.reason == "ScaleUpLimit")
        // A period later the policies measure from 8.
        d = evaluate(h, current: 8, load(8, percent: 250, at: t0 + 61), state: &state, now: t0 + 61)
        #expect(d.desiredReplicas == 16)
    }

    @Test func conditionsKeepTheirTransitionTimeWhileUnchanged() {
        var state = HPAState()
        var h = hpa()
        let first = evaluate(h, current: 3, load(3, percent: 50), state: &state)
        h.status = HPAStatus(currentReplicas: 3, desiredReplicas: 3)
        h.status?.conditions = first.conditions
        let later = evaluate(h, current: 3, load(3, percent: 50, at: t0 + 5), state: &state, now: t0 + 5)
        #expect(condition(later, "ScalingActive")?.lastTransitionTime == KubeTime.format(t0))
    }
}

// MARK: - predictive mode

/// Utilization with a 10-minute cycle: 40 % for 8 minutes, then 120 % for 2; sampled every
/// 15 s for three hours up to `now`, which sits `phase` seconds into a cycle.
private func cycle(now: Date, phase: Double, pods: (low: Int, high: Int)? = nil, highUtil: Double = 120, lowUtil: Double = 40) -> [UtilizationSample] {
    (0...720).map { k -> UtilizationSample in
        let t = now.addingTimeInterval(-Double(k) * 15)
        let p = (phase - Double(k) * 15).truncatingRemainder(dividingBy: 600)
        let high = (p < 0 ? p + 600 : p) >= 480
        return UtilizationSample(time: t, utilization: high ? highUtil : lowUtil, pods: pods.map { high ? $0.high : $0.low })
    }
}

@Suite struct HPAPredictorTests {
    let predictive = [HPAForecast.annotation: "true"]

    @Test func findsThePeriodAndForecastsTheComingStep() throws {
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60).get()
        #expect(abs((f.period ?? 0) - 600) <= 15)
        #expect(abs(f.predictedUtilization - 120) < 5, "forecast \(f.predictedUtilization)")
        // Before the step is due, the forecast stays low.
        let early = try UtilizationPredictor.forecast(cycle(now: t0, phase: 300), resource: "cpu", now: t0, lookahead: 60).get()
        #expect(abs(early.predictedUtilization - 40) < 5)
    }

    @Test func preScalesBeforeTheStep() throws {
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60).get()
        var state = HPAState()
        let h = hpa(max: 20, annotations: predictive)
        // Now: 4 pods at 40% of a 50% target; reactive alone stays at 4.
        let reactive = evaluate(h, current: 4, load(4, percent: 40), state: &state)
        #expect(!reactive.rescale)
        state = HPAState()
        let d = evaluate(h, current: 4, load(4, percent: 40), state: &state, predictive: .forecast(f))
        // 120% × 4 pods at 50% wants 10; the legacy cap allows 8 this sync.
        #expect(d.desiredReplicas == 8 && d.rescale && d.predictiveDecided)
        #expect(d.reason.hasPrefix("predicted cpu resource utilization (percentage of request) in 60s (seasonal, period 10m"))
        #expect(condition(d, HPAForecast.conditionType)?.status == "True" && condition(d, HPAForecast.conditionType)?.reason == "ForecastAboveReactive")
    }

    @Test func aPreScaledSizeDoesNotFeedBackIntoTheForecast() throws {
        // After pre-scaling to 8 the same load shows as 20% per pod; the forecast's growth (×3)
        // applies to that measured demand, so the recommendation stays 10 rather than 8 × 120 / 50.
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60).get()
        var state = HPAState()
        let d = evaluate(hpa(max: 30, annotations: predictive), current: 8, load(8, percent: 20), state: &state, predictive: .forecast(f))
        #expect(d.desiredReplicas == 10 && d.predictiveDecided)
    }

    @Test func aForecastTheWindowStillHoldsIsCreditedForTheSize() throws {
        let peak = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60).get()
        let calm = try UtilizationPredictor.forecast(cycle(now: t0, phase: 100), resource: "cpu", now: t0, lookahead: 60).get()
        let h = hpa(max: 20, annotations: predictive)
        var state = HPAState()
        var d = evaluate(h, current: 4, load(4, percent: 40), state: &state, predictive: .forecast(peak))
        #expect(d.desiredReplicas == 8)   // wanted 10, capped at 2 × 4
        // A second later the forecast is calm and the load light, but the legacy window keeps the
        // earlier 10: the size still comes from the forecast, and the event says so.
        d = evaluate(h, current: 8, load(8, percent: 10, at: t0 + 1), state: &state, now: t0 + 1, predictive: .forecast(calm))
        #expect(d.desiredReplicas == 10 && d.predictiveDecided && d.reason.hasPrefix("predicted cpu"))
        #expect(condition(d, HPAForecast.conditionType)?.reason == "ForecastAboveReactive")
    }

    @Test func neverAboveMaxReplicas() throws {
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60).get()
        var state = HPAState()
        let d = evaluate(hpa(max: 6, annotations: predictive), current: 4, load(4, percent: 40), state: &state, predictive: .forecast(f))
        #expect(d.desiredReplicas == 6 && condition(d, "ScalingLimited")?.reason == "TooManyReplicas")
    }

    @Test func neverBelowTheReactiveRecommendation() throws {
        // 30 s before the peak ends: the forecast is low, but the pods are busy now.
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 570), resource: "cpu", now: t0, lookahead: 60).get()
        #expect(f.predictedUtilization < 60)
        let h = hpa(max: 20, annotations: predictive)
        var s1 = HPAState(), s2 = HPAState()
        let reactive = evaluate(h, current: 4, load(4, percent: 120), state: &s1)
        let d = evaluate(h, current: 4, load(4, percent: 120), state: &s2, predictive: .forecast(f))
        #expect(d.desiredReplicas == reactive.desiredReplicas && d.desiredReplicas == 8 && !d.predictiveDecided)
        #expect(d.reason == "cpu resource utilization (percentage of request) above target")
        #expect(condition(d, HPAForecast.conditionType)?.reason == "ReactiveSufficient")
    }

    @Test func demandHistoryRemembersPeaksTheHPAAbsorbed() throws {
        // Past peaks ran on 8 pods at 60%: utilization alone hides that they needed 480 % of a pod.
        let f = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435, pods: (4, 8), highUtil: 60), resource: "cpu", now: t0, lookahead: 60).get()
        #expect(f.isDemand && abs(f.predicted - 480) < 20)
        var state = HPAState()
        let d = evaluate(hpa(max: 20, behavior: HPABehavior(), annotations: predictive), current: 4, load(4, percent: 40), state: &state, predictive: .forecast(f))
        #expect(d.desiredReplicas == 8 && d.predictiveDecided)   // wants 10; the default policies allow +4 per 15 s
    }

    @Test func aForecastJustAboveTheTargetScalesUpAndDownLeavesTheToleranceAsHeadroom() throws {
        // A 50 % target. Flat at 54 % (8 % over: inside the reactive tolerance): predictive adds
        // a pod. At 46 %: both hold. At 40 % on 10 pods: reactive goes to 8 (then at 50 %, where
        // a little noise scales up again), predictive to 9 (44 %, the tolerance under the target).
        let h = hpa(max: 20, annotations: predictive)
        for (current, percent, reactiveWant, predictiveWant) in [(4, 54, 4, 5), (4, 46, 4, 4), (10, 40, 8, 9)] {
            let history = (0...40).map { k in UtilizationSample(time: t0.addingTimeInterval(-Double(k) * 15), utilization: Double(percent)) }
            let f = try UtilizationPredictor.forecast(history, resource: "cpu", now: t0, lookahead: 60).get()
            // The size has been the same for longer than the scale-down window.
            var s1 = HPAState(), s2 = HPAState()
            s1.recommendations = [HPAState.Recommendation(replicas: current, time: t0.addingTimeInterval(-600))]
            s2.recommendations = s1.recommendations
            let reactive = evaluate(h, current: current, load(current, percent: percent), state: &s1)
            let d = evaluate(h, current: current, load(current, percent: percent), state: &s2, predictive: .forecast(f))
            #expect(reactive.desiredReplicas == reactiveWant, "reactive at \(percent)% on \(current)")
            #expect(d.desiredReplicas == predictiveWant, "predictive at \(percent)% on \(current)")
        }
    }

    @Test func thePeriodIsSearchedForAgainOnlyOnceTheMemoIsOld() throws {
        let memo = PeriodMemo(every: 300)
        let first = try UtilizationPredictor.forecast(cycle(now: t0, phase: 435), resource: "cpu", now: t0, lookahead: 60, memo: memo, key: "a").get()
        #expect(abs((first.period ?? 0) - 600) <= 15 && memo.count == 1)
        // What the memo holds is used while it is fresh: a planted "no period" is believed...
        memo.remember("a", PeriodMemo.Finding(period: nil, correlation: nil, at: t0))
        let t1 = t0.addingTimeInterval(60)
        let held = try UtilizationPredictor.forecast(cycle(now: t1, phase: 495), resource: "cpu", now: t1, lookahead: 60, memo: memo, key: "a").get()
        #expect(held.period == nil)
        // ...until it is 5 minutes old, when the search runs again; other keys search for themselves.
        let t2 = t0.addingTimeInterval(300)
        let again = try UtilizationPredictor.forecast(cycle(now: t2, phase: 135), resource: "cpu", now: t2, lookahead: 60, memo: memo, key: "a").get()
        #expect(abs((again.period ?? 0) - 600) <= 15)
        let other = try UtilizationPredictor.forecast(cycle(now: t1, phase: 495), resource: "cpu", now: t1, lookahead: 60, memo: memo, key: "b").get()
        #expect(abs((other.period ?? 0) - 600) <= 15 && memo.count == 2)
        memo.forget(prefix: "a")
        #expect(memo.count == 1 && memo.fresh("b", now: t1) != nil)
    }

    @Test func withoutAPeriodTheTrendIsExtrapolated() throws {
        // 30% rising 3 points a minute over the last 10 minutes.
        let h = (0...40).map { k in UtilizationSample(time: t0.addingTimeInterval(-Double(k) * 15), utilization: 60 - Double(k) * 0.75) }
        let f = try UtilizationPredictor.forecast(h, resource: "cpu", now: t0, lookahead: 60).get()
        #expect(f.period == nil)
        #expect(abs(f.trendPerMinute - 3) < 0.01 && abs(f.predictedUtilization - 63) < 0.5)
    }

    @Test func tooLittleHistoryLeavesTheReactiveDecision() {
        let h = (0..<3).map { UtilizationSample(time: t0.addingTimeInterval(-Double($0) * 15), utilization: 90) }
        guard case .failure(let e) = UtilizationPredictor.forecast(h, resource: "cpu", now: t0, lookahead: 60) else { Issue.record("expected no forecast"); return }
        var state = HPAState()
        let d = evaluate(hpa(annotations: predictive), current: 3, load(3, percent: 90), state: &state,
                         predictive: .unavailable(reason: "InsufficientHistory", message: e.description))
        #expect(d.desiredReplicas == 6 && !d.predictiveDecided)
        #expect(condition(d, HPAForecast.conditionType)?.status == "False" && condition(d, HPAForecast.conditionType)?.reason == "InsufficientHistory")
    }

    @Test func aCompressedReplayDividesTheForecastersTimeConstants() throws {
        #expect(HPAForecast.compression(for: hpa()) == 1)
        for (raw, want) in [("72", 72.0), (" 60 ", 60), ("0.5", 1), ("x", 1), ("1e9", 1), ("nan", 1)] {
            #expect(HPAForecast.compression(for: hpa(annotations: [HPAForecast.compressionAnnotation: raw])) == want, "\(raw)")
        }
        let c = PredictorConfig().compressed(by: 60)
        #expect(c.minPeriod == 1 && c.maxPeriod == 1440 && c.trendWindow == 5)
        // The 10-minute cycle run 60 times faster (10 s, sampled every 0.25 s) is found as such.
        let fast = cycle(now: t0, phase: 435).map { UtilizationSample(time: t0.addingTimeInterval($0.time.timeIntervalSince(t0) / 60), utilization: $0.utilization) }
        let f = try UtilizationPredictor.forecast(fast, resource: "cpu", now: t0, lookahead: 1, config: c).get()
        #expect(abs((f.period ?? 0) - 10) <= 0.5)
        #expect(abs(f.predictedUtilization - 120) < 5)
    }

    @Test func lookaheadComesFromTheAnnotation() {
        #expect(HPAForecast.lookahead(for: hpa(), default: 60) == nil)
        #expect(HPAForecast.lookahead(for: hpa(annotations: predictive), default: 60) == 60)
        for (raw, want) in [("90", 90.0), ("90s", 90), ("2m", 120), ("1h", 3600)] {
            #expect(HPAForecast.lookahead(for: hpa(annotations: predictive.merging([HPAForecast.lookaheadAnnotation: raw]) { $1 }), default: 60) == want)
        }
    }

    @Test func recordingHistoryThinsAndExpires() async throws {
        let r = RecordingMetricsHistory(retention: 100, minInterval: 15)
        let ref = CrossVersionObjectReference(kind: "Deployment", name: "web")
        for s in stride(from: 0.0, through: 300, by: 5) { r.record(namespace: "default", target: ref, resource: "cpu", UtilizationSample(time: t0 + s, utilization: s)) }
        let got = try await r.utilization(namespace: "default", target: ref, resource: "cpu", since: .distantPast)
        #expect(got.count == 7 && got.first?.time == t0 + 210 && got.last?.time == t0 + 300)
    }
}

// MARK: - Pods metrics (custom.metrics.k8s.io)

private func rps(_ value: String) -> MetricSpec {
    var m = MetricSpec(type: "Pods")
    m.pods = try! JSONValue.from(PodsMetricSource(metric: .init(name: "requests_per_second"), target: MetricTarget(type: "AverageValue", averageValue: q(value))))
    return m
}

@Suite struct HPAPodsMetricTests {
    func values(_ pods: [Pod], _ perPod: String) -> [PodValueSample] {
        pods.map { PodValueSample(pod: $0.name, milliValue: q(perPod).milli, timestamp: t0, window: 5) }
    }
    func decide(_ h: HorizontalPodAutoscaler, current: Int, pods: [Pod], values: Result<[PodValueSample], HPAError>, cpuPercent: Int = 10) -> HPADecision {
        var state = HPAState()
        let key = HPAAlgorithm.podsMetricKey(try! h.spec!.metrics!.first { $0.type == "Pods" }!.pods!.decode(PodsMetricSource.self))
        return HPAAlgorithm.evaluate(.init(hpa: h, specReplicas: current, pods: pods, metrics: .success(pods.map { cpu($0.name, Int64(cpuPercent * 10)) }),
                                           podsMetrics: [key: values]), state: &state, now: t0)
    }

    @Test func theAverageAgainstTheTargetSetsTheSize() throws {
        let pods = (0..<2).map { hpaPod("p\($0)") }
        // 30/s each against 10/s: 6 pods, capped by the legacy rate limit at 4.
        var d = decide(hpa(max: 20, metrics: [rps("10")]), current: 2, pods: pods, values: .success(values(pods, "30")))
        #expect(d.reason == "pods metric requests_per_second above target" && d.desiredReplicas == 4)
        let status = try #require(d.metricStatuses?.first)
        #expect(status.type == "Pods")
        let ps = try #require(try status.pods?.decode(PodsMetricStatus.self))
        #expect(ps.metric.name == "requests_per_second" && ps.current.averageValue?.description == "30")
        // Within the tolerance: no change; well below: down (after stabilization, so only the proposal here).
        d = decide(hpa(metrics: [rps("10")]), current: 2, pods: pods, values: .success(values(pods, "10500m")))
        #expect(!d.rescale && d.desiredReplicas == 2)
        let p = try HPAReplicaCalculator.podsMetricReplicas(currentReplicas: 4, targetAverage: q("10").milli, tolerances: HPATolerances(scaleDown: 0.1, scaleUp: 0.1),
                                                            pods: (0..<4).map { hpaPod("p\($0)") }, values: values((0..<4).map { hpaPod("p\($0)") }, "2500m"), now: t0, config: HPAConfig())
        #expect(p.replicas == 1 && p.rawAverage == 2500)
        // The larger of cpu and requests wins: cpu at 10 % of 50 % proposes 1, requests 4.
        d = decide(hpa(max: 20, metrics: [cpu50, rps("10")]), current: 2, pods: pods, values: .success(values(pods, "20")))
        #expect(d.desiredReplicas == 4 && d.metricStatuses?.count == 2)
    }

    @Test func podsWithoutAFigureAreFilledInAgainstTheDirection() throws {
        // Kubernetes' rules for a plain metric: a just-started pod with no figure counts as 0 when
        // scaling up and as the target when scaling down; the cpu start-up rules do not apply.
        let old = (0..<2).map { hpaPod("p\($0)") }
        let fresh = hpaPod("new", started: t0.addingTimeInterval(-2), readySince: t0.addingTimeInterval(-1))
        let tol = HPATolerances(scaleDown: 0.1, scaleUp: 0.1)
        let up = try HPAReplicaCalculator.podsMetricReplicas(currentReplicas: 3, targetAverage: 10_000, tolerances: tol, pods: old + [fresh],
                                                             values: values(old, "30"), now: t0, config: HPAConfig())
        #expect(up.replicas == 6)        // (30 + 30 + 0) / 3 = 20 per pod of 10 → 2 × 3
        let down = try HPAReplicaCalculator.podsMetricReplicas(currentReplicas: 3, targetAverage: 10_000, tolerances: tol, pods: old + [fresh],
                                                               values: values(old, "1"), now: t0, config: HPAConfig())
        #expect(down.replicas == 2)      // (1 + 1 + 10) / 3 = 4 per pod → ceil(0.4 × 3)
        let young = try HPAReplicaCalculator.podsMetricReplicas(currentReplicas: 3, targetAverage: 10_000, tolerances: tol, pods: old + [fresh],
                                                                values: values(old + [fresh], "30"), now: t0, config: HPAConfig())
        #expect(young.replicas == 9)     // a young pod's figure counts at once (not cpu)
    }

    @Test func aMissingMetricSaysWhyInKubernetesWords() {
        let pods = (0..<2).map { hpaPod("p\($0)") }
        var h = hpa(metrics: [rps("10")])
        h.status = HPAStatus(currentReplicas: 2, desiredReplicas: 2)
        let d = decide(h, current: 2, pods: pods, values: .failure(HPAError("no metrics returned from custom metrics API")))
        #expect(!d.rescale && d.desiredReplicas == 2)
        let active = condition(d, "ScalingActive")
        #expect(active?.status == "False" && active?.reason == "FailedGetPodsMetric")
        #expect(active?.message == "the HPA was unable to compute the replica count: unable to get metric requests_per_second: no metrics returned from custom metrics API")
        #expect(d.error == "invalid metrics (1 invalid out of 1), first error is: failed to get pods metric value: unable to get metric requests_per_second: no metrics returned from custom metrics API")
    }

    @Test func validationNamesTheField() {
        func errors(_ pods: JSONValue?) -> [String] {
            var m = MetricSpec(type: "Pods"); m.pods = pods
            return hpa(metrics: [m]).validate().map { "\($0.field): \($0.message)" }
        }
        #expect(errors(try! JSONValue.from(PodsMetricSource(metric: .init(name: "requests_per_second"), target: MetricTarget(type: "AverageValue", averageValue: q("10")))))
                .isEmpty)
        #expect(errors(nil) == ["spec.metrics[0].pods: must populate information for the given metric source"])
        #expect(errors(try! JSONValue.from(PodsMetricSource(metric: .init(name: ""), target: MetricTarget(type: "AverageValue")))) == [
            "spec.metrics[0].pods.metric.name: must specify a metric name",
            "spec.metrics[0].pods.target.averageValue: must specify a positive target averageValue"])
        #expect(errors(try! JSONValue.from(PodsMetricSource(metric: .init(name: "r"), target: MetricTarget(type: "Bogus", averageValue: q("-1"))))) == [
            "spec.metrics[0].pods.target.type: \"Bogus\": supported values: \"AverageValue\", \"Utilization\", \"Value\"",
            "spec.metrics[0].pods.target.averageValue: -1: must be positive"])
    }
}

extension HPAPodsMetricTests {
    /// Predictive mode on request rates: the history's series is requests per second per pod,
    /// and the forecast is compared with the Pods metric's AverageValue target.
    @Test func aRequestRateForecastPreScalesAgainstThePodsTarget() throws {
        // A 10-minute cycle of total traffic: 20/s, then 120/s for its last 2 minutes, on 2 pods
        // then 12 (so 10/s per pod at either end); it is 45 s before the next peak.
        let history = cycle(now: t0, phase: 435, pods: (2, 12), highUtil: 10, lowUtil: 10)
        let f = try UtilizationPredictor.forecast(history, resource: "requests_per_second", now: t0, lookahead: 60).get()
        #expect(f.isDemand && abs(f.predicted - 120) < 10, "forecast \(f.predicted)")
        let pods = (0..<2).map { hpaPod("p\($0)") }
        var h = hpa(max: 20, metrics: [rps("10")], annotations: [HPAForecast.annotation: "true"])
        h.spec?.behavior = HPABehavior(scaleUp: HPAScalingRules(stabilizationWindowSeconds: 0, selectPolicy: "Max",
                                                                 policies: [HPAScalingPolicy(type: "Percent", value: 1000, periodSeconds: 1)]))
        let key = HPAAlgorithm.podsMetricKey(try h.spec!.metrics![0].pods!.decode(PodsMetricSource.self))
        var state = HPAState()
        let d = HPAAlgorithm.evaluate(.init(hpa: h, specReplicas: 2, pods: pods, metrics: .success([]), podsMetrics: [key: .success(values(pods, "10"))],
                                            predictive: .forecast(f)), state: &state, now: t0)
        // Reactive holds at 2 (10/s per pod, on target); the forecast wants 120 / 10 = 12.
        #expect(d.predictiveDecided && d.desiredReplicas == 12, "\(d.desiredReplicas): \(d.reason)")
        #expect(d.reason.hasPrefix("predicted pods metric requests_per_second in 60s"))
        #expect(condition(d, HPAForecast.conditionType)?.message?.hasPrefix("forecast requests_per_second 60.0 per pod at 2 replicas") == true)
        #expect(d.observedUtilization["requests_per_second"]?.utilization == 10 && d.observedUtilization["requests_per_second"]?.pods == 2)
    }
}
