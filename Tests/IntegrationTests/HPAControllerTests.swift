import Testing
import Foundation
import Synchronization
import API
import Client
import Controllers
import Scheduler

/// Stands in for the metrics pipeline: every running pod the selector picks uses `cpu`
/// millicores (or, with `spread`, shares that total), or the source fails while `failing` is set.
final class FakePodMetrics: PodMetricsSource {
    let client: KubeClient
    let cpu = Mutex<Int64>(0)
    let failing = Mutex(true)
    let spread: Bool
    init(client: KubeClient, spread: Bool = false) { self.client = client; self.spread = spread }

    func set(cpu c: Int64) { cpu.withLock { $0 = c }; failing.withLock { $0 = false } }

    func podMetrics(namespace: String, selector: Selector) async throws -> [PodMetricSample] {
        if failing.withLock({ $0 }) { throw ClientError("metrics pipeline not ready") }
        let pods = try await client.list(Pod.self, namespace: namespace, labelSelector: selector.description).items
        let running = pods.filter { $0.phase == "Running" && $0.metadata.deletionTimestamp == nil }
        let c = cpu.withLock { $0 }, now = Date()
        let each = spread ? c / Int64(max(running.count, 1)) : c
        return running.map { PodMetricSample(pod: $0.name, cpuMillicores: each, memoryBytes: 32 << 20, timestamp: now, window: 0) }
    }
}

/// Three hours of a 10-minute cycle (40 % for 8 minutes, 120 % for 2), read at any moment as
/// if the next peak were 45 s away.
struct PeakComingHistory: MetricsHistory {
    func utilization(namespace: String, target: CrossVersionObjectReference, resource: String, since: Date) async throws -> [UtilizationSample] {
        let now = Date()
        return (0...720).map { k in
            let p = (435 - Double(k) * 15).truncatingRemainder(dividingBy: 600)
            return UtilizationSample(time: now.addingTimeInterval(-Double(k) * 15), utilization: (p < 0 ? p + 600 : p) >= 480 ? 120 : 40)
        }
    }
}

@Suite(.serialized) struct HPAControllerTests {
    func hpa(_ k: KubeClient) async throws -> HorizontalPodAutoscaler { try await k.get(HorizontalPodAutoscaler.self, "web", namespace: "default") }

    func rescaleEvents(_ k: KubeClient) async throws -> [String] {
        try await k.list(Event.self, namespace: "default", fieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale").items.compactMap(\.message)
    }

    @Test func deploymentFollowsCPUUpAndDownAfterTheStabilizationWindow() async throws {
        let c = try await TestCluster.start(inMemory: true)
        let admin = try c.admin()
        let nodes = try await FakeNodes(client: admin, names: ["n1", "n2"], cpu: "8")
        let metrics = FakePodMetrics(client: admin)
        var config = ControllerManagerConfig()
        config.hpa.syncPeriod = 0.2
        config.podMetrics = metrics
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: config)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let tasks = [Task { await nodes.run() }, Task { await cm.run() }, Task { await sched.run() }]
        defer { Task { for t in tasks { t.cancel() }; await c.cleanup() } }

        _ = try await admin.create(try webDeployment("web", replicas: 2))   // 100m cpu per pod
        _ = try await admin.create(HorizontalPodAutoscaler(metadata: ObjectMeta(name: "web", namespace: "default"), spec: HPASpec(
            scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "web", apiVersion: "apps/v1"), minReplicas: 2, maxReplicas: 6,
            metrics: [.resource("cpu", MetricTarget(type: "Utilization", averageUtilization: 50))],
            behavior: HPABehavior(scaleDown: HPAScalingRules(stabilizationWindowSeconds: 3)))))

        // No metrics yet: the HPA says so and leaves the Deployment alone.
        let inactive = try await eventually(30, "ScalingActive False") { () -> WorkloadCondition? in
            let s = try await hpa(admin).status?.condition("ScalingActive"); return s?.status == "False" ? s : nil
        }
        #expect(inactive.reason == "FailedGetResourceMetric")
        #expect(inactive.message?.contains("unable to get metrics for resource cpu: metrics pipeline not ready") == true)

        // At the target: a valid metric, no change.
        metrics.set(cpu: 50)
        _ = try await eventually(30, "valid metric at 50%") { () -> Bool? in
            let s = try await hpa(admin).status
            return s?.condition("ScalingActive")?.reason == "ValidMetricFound" && s?.currentMetrics?.first?.resource?.current.averageUtilization == 50 ? true : nil
        }
        #expect(try await admin.get(Deployment.self, "web").spec?.replicas == 2)

        // 150% of request wants 6 (three times the pods); maxReplicas allows it.
        metrics.set(cpu: 150)
        let up = try await eventually(30, "scaled up") { () -> HPAStatus? in
            let s = try await hpa(admin).status; return s?.desiredReplicas == 6 && s?.lastScaleTime != nil ? s : nil
        }
        #expect(try await admin.get(Deployment.self, "web").spec?.replicas == 6)
        #expect(up.observedGeneration != nil)
        _ = try await eventually(10, "rescale event") { () -> Bool? in
            try await rescaleEvents(admin).contains("New size: 6; reason: cpu resource utilization (percentage of request) above target") ? true : nil
        }
        _ = try await eventually(30, "status sees 6") { () -> Bool? in try await hpa(admin).status?.currentReplicas == 6 ? true : nil }

        // Load drops: the window holds the high recommendation for 3 s, then minReplicas.
        let dropped = Date()
        metrics.set(cpu: 10)
        _ = try await eventually(10, "ScaleDownStabilized") { () -> Bool? in
            try await hpa(admin).status?.condition("AbleToScale")?.reason == "ScaleDownStabilized" ? true : nil
        }
        _ = try await eventually(30, "scaled down") { () -> Bool? in try await admin.get(Deployment.self, "web").spec?.replicas == 2 ? true : nil }
        #expect(Date().timeIntervalSince(dropped) >= 2.5, "scaled down before the stabilization window ended")
        _ = try await eventually(10, "scale-down event and status") { () -> Bool? in
            let s = try await hpa(admin).status
            return try await rescaleEvents(admin).contains("New size: 2; reason: All metrics below target") && s?.desiredReplicas == 2 ? true : nil
        }
        let s = try await hpa(admin).status
        #expect(s?.condition("ScalingLimited")?.status != nil && s?.condition("AbleToScale")?.status == "True")
    }

    /// A control plane with fake nodes, the fake metrics at 80m over 2 pods (40 % of request
    /// against a 50 % target) and the peak-coming history, and a predictive HPA on "web".
    func predictiveCluster(annotations: [String: String], _ body: (KubeClient) async throws -> Void) async throws {
        let c = try await TestCluster.start(inMemory: true)
        let admin = try c.admin()
        let nodes = try await FakeNodes(client: admin, names: ["n1", "n2"], cpu: "8")
        let metrics = FakePodMetrics(client: admin, spread: true)
        var config = ControllerManagerConfig()
        config.hpa.syncPeriod = 0.2
        config.podMetrics = metrics
        config.metricsHistory = PeakComingHistory()
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: config)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let tasks = [Task { await nodes.run() }, Task { await cm.run() }, Task { await sched.run() }]
        defer { Task { for t in tasks { t.cancel() }; await c.cleanup() } }

        _ = try await admin.create(try webDeployment("web", replicas: 2))
        metrics.set(cpu: 80)
        _ = try await admin.create(HorizontalPodAutoscaler(metadata: ObjectMeta(name: "web", namespace: "default", annotations: [HPAForecast.annotation: "true"].merging(annotations) { $1 }),
            spec: HPASpec(scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "web", apiVersion: "apps/v1"), minReplicas: 2, maxReplicas: 6,
                          metrics: [.resource("cpu", MetricTarget(type: "Utilization", averageUtilization: 50))])))
        try await body(admin)
    }

    @Test func predictiveHPAScalesAheadOfTheForecastPeak() async throws {
        // Reactive alone keeps 2 pods. The peak is 45 s away: a 60 s lookahead sees it.
        try await predictiveCluster(annotations: [HPAForecast.lookaheadAnnotation: "60s"]) { admin in
            // The forecast triples the load: 240 % of a pod's request wants 5 pods, before the peak.
            let predicted = try await eventually(30, "predictive condition") { () -> WorkloadCondition? in
                let p = try await hpa(admin).status?.condition(HPAForecast.conditionType); return p?.status == "True" ? p : nil
            }
            #expect(predicted.reason == "ForecastAboveReactive" && predicted.message?.contains("in 60s (seasonal, period 10m") == true, "\(predicted.message ?? "")")
            _ = try await eventually(30, "scaled to 5") { () -> Bool? in try await admin.get(Deployment.self, "web").spec?.replicas == 5 ? true : nil }
            let reasons = try await eventually(10, "predictive rescale event") { () -> [String]? in
                let r = try await rescaleEvents(admin); return r.contains { $0.contains("reason: predicted cpu resource utilization") } ? r : nil
            }
            #expect(reasons.allSatisfy { $0.contains("predicted") }, "\(reasons)")
            // Once the new pods share the load the forecast still asks for 5, not more.
            try await holds(for: 1.5, "size stays at 5") { try await admin.get(Deployment.self, "web").spec?.replicas == 5 }
        }
    }

    /// Without a lookahead annotation the forecast looks as far ahead as the pods took to become
    /// Ready. The fake nodes make them Ready within a second: the peak 45 s away is not seen, and
    /// the HPA stays at 2.
    @Test func predictiveLookaheadDefaultsToThePodsMeasuredStartup() async throws {
        try await predictiveCluster(annotations: [:]) { admin in
            let message = try await eventually(30, "a forecast from the measured start-up") { () -> String? in
                let m = try await hpa(admin).status?.condition(HPAForecast.conditionType)?.message ?? ""
                return m.contains("in 1s, the pods' start-up (seasonal") ? m : nil
            }
            #expect(!message.contains("predicted"), "\(message)")
            try await holds(for: 1.5, "size stays at 2") { try await admin.get(Deployment.self, "web").spec?.replicas == 2 }
        }
    }
}
