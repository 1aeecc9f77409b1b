// The HPA's view of the apiserver's metrics pipeline: pod usage from metrics.k8s.io (what
// Kubernetes' HPA reads from metrics-server) and, for predictive HPAs, the persisted workload
// history from metrics.orchestrator.io, so a restarted controller-manager does not start its
// forecast from nothing.
import Foundation
import API
import Client

/// PodMetrics of the pods a selector picks, summed over containers per pod.
public final class MetricsAPIPodSource: PodMetricsSource {
    let client: KubeClient
    public init(client: KubeClient) { self.client = client }

    public func podMetrics(namespace: String, selector: Selector) async throws -> [PodMetricSample] {
        let path = "/apis/\(MetricsGroup.apiVersion)/namespaces/\(namespace)/pods"
        let r = try await client.call(.GET, path, query: selector.isEmpty ? [:] : ["labelSelector": selector.description])
        let list: ObjectList<PodMetrics>
        do { list = try KubeJSON.decode(ObjectList<PodMetrics>.self, from: r.body) }
        catch { throw HPAError("unable to decode the PodMetricsList from \(path): \(error)") }
        // Kubernetes' HPA says exactly this when the list is empty.
        guard !list.items.isEmpty else { throw HPAError("no metrics returned from resource metrics API") }
        return try list.items.map { try Self.sample($0) }
    }

    /// custom.metrics.k8s.io/v1beta2 for the pods the selector picks, as the HPA's custom
    /// metrics client asks (`pods/*/METRIC?labelSelector=...`).
    public func podValues(namespace: String, metric: String, selector: Selector, metricSelector: LabelSelector?) async throws -> [PodValueSample] {
        let path = CustomMetricsGroup.path(namespace: namespace, metric: metric)
        var query: [String: String] = selector.isEmpty ? [:] : ["labelSelector": selector.description]
        if let metricSelector {
            do { query["metricLabelSelector"] = try metricSelector.toSelector().description }
            catch { throw HPAError("invalid metric selector: \(error)") }
        }
        let r: RawResponse
        do { r = try await client.call(.GET, path, query: query) }
        catch { throw HPAError("unable to fetch metrics from custom metrics API: \(error)") }
        let list: MetricValueList
        do { list = try KubeJSON.decode(MetricValueList.self, from: r.body) }
        catch { throw HPAError("unable to fetch metrics from custom metrics API: the MetricValueList from \(path) does not decode: \(error)") }
        guard !list.items.isEmpty else { throw HPAError("no metrics returned from custom metrics API") }
        return try list.items.map { v in
            guard let ts = KubeTime.parse(v.timestamp) else {
                throw HPAError("custom metric \(metric) of pod \(v.describedObject.name ?? ""): timestamp \"\(v.timestamp)\" is not RFC 3339")
            }
            return PodValueSample(pod: v.describedObject.name ?? "", milliValue: v.value.milli, timestamp: ts, window: Double(v.windowSeconds ?? 0))
        }
    }

    /// One pod's sample: usage summed over its containers (cpu rounded up to millicores, as
    /// Kubernetes' MilliValue does), timestamp and window as reported.
    static func sample(_ m: PodMetrics) throws -> PodMetricSample {
        var cpu: Int64 = 0, mem: Int64 = 0
        for c in m.containers {
            do {
                cpu += try UsageQuantity.nanoValue(c.usage["cpu"] ?? "0")
                mem += try UsageQuantity.value(c.usage["memory"] ?? "0")
            } catch { throw HPAError("PodMetrics \(m.metadata.namespace ?? "")/\(m.metadata.name ?? ""), container \(c.name): \(error)") }
        }
        guard let ts = KubeTime.parse(m.timestamp) else {
            throw HPAError("PodMetrics \(m.metadata.namespace ?? "")/\(m.metadata.name ?? ""): timestamp \"\(m.timestamp)\" is not RFC 3339")
        }
        return PodMetricSample(pod: m.metadata.name ?? "", cpuMillicores: (cpu + 999_999) / 1_000_000, memoryBytes: mem,
                               timestamp: ts, window: parseGoDuration(m.window) ?? 0)
    }
}

/// Utilization history of a workload from the apiserver's metrics.db, bucketed to `step`
/// seconds (the predictor works on a grid anyway; two days of raw seconds would be 170k rows).
public final class WorkloadMetricsHistory: MetricsHistory {
    let client: KubeClient
    let step: Double
    let now: @Sendable () -> Date
    public init(client: KubeClient, step: Double = 15, now: @escaping @Sendable () -> Date = { Date() }) {
        self.client = client; self.step = step; self.now = now
    }

    public func utilization(namespace: String, target: CrossVersionObjectReference, resource: String, since: Date) async throws -> [UtilizationSample] {
        guard resource == "cpu" || resource == "memory" || resource == CustomMetricsGroup.requestsPerSecond else {
            throw HPAError("the workload history records cpu and memory utilization and \(CustomMetricsGroup.requestsPerSecond), not \(resource)")
        }
        let samples = try await workloadSamples(namespace: namespace, kind: target.kind, name: target.name, since: since)
        return samples.compactMap { s in
            // Request rates are the workload's total; the forecaster's series is per pod, as the
            // HPA's Pods metric is.
            let u: Double?
            switch resource {
            case "cpu": u = s.cpuUtilization
            case "memory": u = s.memoryUtilization
            default: u = s.requestsPerSecond.map { $0 / max(s.pods, 1) }
            }
            guard let u else { return nil }
            return UtilizationSample(time: s.time, utilization: u, pods: Int(s.pods.rounded()))
        }
    }

    public func workloadSamples(namespace: String, kind: String, name: String, since: Date) async throws -> [WorkloadMetricsSample] {
        let seconds = max(1, Int(now().timeIntervalSince(since).rounded(.up)))
        let r = try await client.call(.GET, WorkloadMetricsGroup.path(namespace: namespace, kind: kind, name: name),
                                      query: ["since": "\(seconds)", "step": compactNumber(step)])
        return try KubeJSON.decode(WorkloadMetricsList.self, from: r.body).items
    }
}
