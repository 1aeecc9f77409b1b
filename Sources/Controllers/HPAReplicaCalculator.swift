// The HPA's per-metric replica calculation, as Kubernetes' replica_calculator.go does it:
// pods are grouped into ready, unready (pending, or cpu not yet initialized), missing (no
// sample) and ignored (deleted, terminal); the usage ratio over the ready ones decides the
// direction, then missing and unready pods are filled in pessimistically for that direction
// and the ratio is recomputed, never letting the fill-in flip the direction.
import Foundation
import API

/// One pod's usage as a metrics pipeline reports it (metrics.k8s.io PodMetrics summed over the
/// pod's containers), with the sample's end time and the window it averages over.
public struct PodMetricSample: Sendable, Hashable {
    public var pod: String
    public var cpuMillicores: Int64
    public var memoryBytes: Int64
    public var timestamp: Date
    /// Seconds the sample averages over (metrics-server reports 15 s or so).
    public var window: Double
    public init(pod: String, cpuMillicores: Int64, memoryBytes: Int64, timestamp: Date, window: Double = 15) {
        self.pod = pod; self.cpuMillicores = cpuMillicores; self.memoryBytes = memoryBytes; self.timestamp = timestamp; self.window = window
    }

    /// The usage in milli-units, as Kubernetes compares it with requests (Quantity.MilliValue):
    /// millicores for cpu, thousandths of a byte for memory; nil for resources not sampled.
    public func milliValue(_ resource: String) -> Int64? {
        switch resource {
        case "cpu": return cpuMillicores
        case "memory": return memoryBytes * 1000
        default: return nil
        }
    }
}

/// One pod's value of a per-pod custom metric (custom.metrics.k8s.io), in milli-units.
public struct PodValueSample: Sendable, Hashable {
    public var pod: String
    public var milliValue: Int64
    public var timestamp: Date
    public var window: Double
    public init(pod: String, milliValue: Int64, timestamp: Date, window: Double) {
        self.pod = pod; self.milliValue = milliValue; self.timestamp = timestamp; self.window = window
    }
}

/// A failure computing a replica count; the text is what lands in conditions and events.
public struct HPAError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ s: String) { description = s }
}

/// Usage-ratio band inside which the HPA does nothing (0.1 = ±10 %), per direction since
/// autoscaling/v2 lets spec.behavior.scale{Up,Down}.tolerance override the controller's.
public struct HPATolerances: Sendable, Hashable {
    public var scaleDown: Double
    public var scaleUp: Double
    public init(scaleDown: Double, scaleUp: Double) { self.scaleDown = scaleDown; self.scaleUp = scaleUp }
    public func isWithin(_ ratio: Double) -> Bool { (1 - scaleDown) <= ratio && ratio <= (1 + scaleUp) }
}

/// The controller-wide knobs Kubernetes exposes as --horizontal-pod-autoscaler-* flags.
public struct HPAConfig: Sendable, Hashable {
    public var tolerance: Double = 0.1
    /// A pod's cpu samples are distrusted this long after it starts (JVMs and the like burn cpu warming up).
    public var cpuInitializationPeriod: Double = 300
    /// Unready pods started less than this before their last readiness change are still initializing.
    public var delayOfInitialReadinessStatus: Double = 30
    /// Scale-down stabilization for HPAs without spec.behavior.scaleDown.stabilizationWindowSeconds.
    public var downscaleStabilizationWindow: Double = 300
    public init() {}
}

/// What one metric proposes, with what was measured.
public struct ReplicaProposal: Sendable, Hashable {
    public var replicas: Int
    /// Percent of request (Utilization targets only).
    public var utilization: Int?
    /// Average usage per counted pod, in milli-units.
    public var rawAverage: Int64
    /// Pods whose samples made up the first ratio (ready pods with metrics).
    public var podsCounted: Int
}

public enum HPAReplicaCalculator {
    struct Sample { var value: Int64; var timestamp: Date; var window: Double }

    /// Utilization target: desired replicas for `targetUtilization` percent of the pods' summed requests.
    public static func resourceReplicas(currentReplicas: Int, targetUtilization: Int, resource: String, tolerances: HPATolerances,
                                        pods: [Pod], samples: [PodMetricSample], now: Date, config: HPAConfig) throws -> ReplicaProposal {
        var metrics = sampleMap(samples, resource)
        guard !pods.isEmpty else { throw HPAError("no pods returned by selector while calculating replica count") }
        let g = groupPods(pods, metrics, resource: resource, now: now, config: config)
        for n in g.ignored.union(g.unready) { metrics.removeValue(forKey: n) }
        guard !metrics.isEmpty else { throw HPAError("did not receive metrics for targeted pods (pods might be unready)") }
        let requests = try podRequests(pods, resource: resource)
        let first = try utilizationRatio(metrics, requests, target: targetUtilization)
        let counted = metrics.count
        func result(_ n: Int) -> ReplicaProposal { ReplicaProposal(replicas: n, utilization: first.utilization, rawAverage: first.rawAverage, podsCounted: counted) }

        let scaleUpWithUnready = !g.unready.isEmpty && first.ratio > 1
        if !scaleUpWithUnready && g.missing.isEmpty {
            if tolerances.isWithin(first.ratio) { return result(currentReplicas) }
            return result(Int((first.ratio * Double(g.readyCount)).rounded(.up)))
        }
        if !g.missing.isEmpty {
            if first.ratio < 1 {
                // Scale-down: a pod without a sample is assumed busy, at its request (or the
                // target, when that is above 100 %), so a metrics gap never shrinks the workload.
                let fallback = Int64(max(100, targetUtilization))
                for n in g.missing { metrics[n] = Sample(value: (requests[n] ?? 0) * fallback / 100, timestamp: now, window: 0) }
            } else if first.ratio > 1 {
                for n in g.missing { metrics[n] = Sample(value: 0, timestamp: now, window: 0) }
            }
        }
        if scaleUpWithUnready { for n in g.unready { metrics[n] = Sample(value: 0, timestamp: now, window: 0) } }
        let second = try utilizationRatio(metrics, requests, target: targetUtilization)
        if tolerances.isWithin(second.ratio) || (first.ratio < 1 && second.ratio > 1) || (first.ratio > 1 && second.ratio < 1) {
            return result(currentReplicas)
        }
        let n = Int((second.ratio * Double(metrics.count)).rounded(.up))
        if (second.ratio < 1 && n > currentReplicas) || (second.ratio > 1 && n < currentReplicas) { return result(currentReplicas) }
        return result(n)
    }

    /// AverageValue target: desired replicas for `targetAverage` milli-units per pod.
    public static func rawResourceReplicas(currentReplicas: Int, targetAverage: Int64, resource: String, tolerances: HPATolerances,
                                           pods: [Pod], samples: [PodMetricSample], now: Date, config: HPAConfig) throws -> ReplicaProposal {
        try plainReplicas(currentReplicas: currentReplicas, targetAverage: targetAverage, resource: resource, tolerances: tolerances,
                          pods: pods, metrics: sampleMap(samples, resource), now: now, config: config)
    }

    /// A Pods metric (custom.metrics.k8s.io): desired replicas for `targetAverage` milli-units per pod.
    public static func podsMetricReplicas(currentReplicas: Int, targetAverage: Int64, tolerances: HPATolerances,
                                          pods: [Pod], values: [PodValueSample], now: Date, config: HPAConfig) throws -> ReplicaProposal {
        var metrics: [String: Sample] = [:]
        for v in values { metrics[v.pod] = Sample(value: v.milliValue, timestamp: v.timestamp, window: v.window) }
        return try plainReplicas(currentReplicas: currentReplicas, targetAverage: targetAverage, resource: "", tolerances: tolerances,
                                 pods: pods, metrics: metrics, now: now, config: config)
    }

    /// Kubernetes' calcPlainMetricReplicas: an average per pod against a target average; only
    /// cpu has the start-up (unready) rules, so other metrics count every running pod.
    static func plainReplicas(currentReplicas: Int, targetAverage: Int64, resource: String, tolerances: HPATolerances,
                              pods: [Pod], metrics: [String: Sample], now: Date, config: HPAConfig) throws -> ReplicaProposal {
        var metrics = metrics
        guard !pods.isEmpty else { throw HPAError("no pods returned by selector while calculating replica count") }
        let g = groupPods(pods, metrics, resource: resource, now: now, config: config)
        for n in g.ignored.union(g.unready) { metrics.removeValue(forKey: n) }
        guard !metrics.isEmpty else { throw HPAError("did not receive metrics for targeted pods (pods might be unready)") }
        let first = usageRatio(metrics, target: targetAverage)
        let counted = metrics.count
        func result(_ n: Int) -> ReplicaProposal { ReplicaProposal(replicas: n, utilization: nil, rawAverage: first.average, podsCounted: counted) }

        let scaleUpWithUnready = !g.unready.isEmpty && first.ratio > 1
        if !scaleUpWithUnready && g.missing.isEmpty {
            if tolerances.isWithin(first.ratio) { return result(currentReplicas) }
            return result(Int((first.ratio * Double(g.readyCount)).rounded(.up)))
        }
        if !g.missing.isEmpty {
            if first.ratio < 1 { for n in g.missing { metrics[n] = Sample(value: targetAverage, timestamp: now, window: 0) } }
            else if first.ratio > 1 { for n in g.missing { metrics[n] = Sample(value: 0, timestamp: now, window: 0) } }
        }
        if scaleUpWithUnready { for n in g.unready { metrics[n] = Sample(value: 0, timestamp: now, window: 0) } }
        let second = usageRatio(metrics, target: targetAverage)
        if tolerances.isWithin(second.ratio) || (first.ratio < 1 && second.ratio > 1) || (first.ratio > 1 && second.ratio < 1) {
            return result(currentReplicas)
        }
        let n = Int((second.ratio * Double(metrics.count)).rounded(.up))
        // The filled-in pods must not turn the direction around.
        if (second.ratio < 1 && n > currentReplicas) || (second.ratio > 1 && n < currentReplicas) { return result(currentReplicas) }
        return result(n)
    }

    static func sampleMap(_ samples: [PodMetricSample], _ resource: String) -> [String: Sample] {
        var m: [String: Sample] = [:]
        for s in samples { if let v = s.milliValue(resource) { m[s.pod] = Sample(value: v, timestamp: s.timestamp, window: s.window) } }
        return m
    }

    struct Groups { var readyCount = 0; var unready: Set<String> = []; var missing: Set<String> = []; var ignored: Set<String> = [] }

    /// Kubernetes' groupPods. Deleted and terminal pods are ignored outright; pending pods are
    /// unready; for cpu, a pod is also unready while its samples may still show start-up burn:
    /// within cpuInitializationPeriod of starting if it is not Ready or its sample does not yet
    /// cover a full window since it became Ready, and after that if it has never been Ready.
    static func groupPods(_ pods: [Pod], _ metrics: [String: Sample], resource: String, now: Date, config: HPAConfig) -> Groups {
        var g = Groups()
        for p in pods {
            if p.metadata.deletionTimestamp != nil || p.isTerminal { g.ignored.insert(p.name); continue }
            if p.phase == "Pending" { g.unready.insert(p.name); continue }
            guard let m = metrics[p.name] else { g.missing.insert(p.name); continue }
            if resource == "cpu" {
                let unready: Bool
                let ready = p.status?.condition("Ready")
                if let ready, let start = KubeTime.parse(p.status?.startTime) {
                    // A condition without a transition time counts from the epoch of Go's zero time.
                    let transition = KubeTime.parse(ready.lastTransitionTime) ?? .distantPast
                    if start.addingTimeInterval(config.cpuInitializationPeriod) > now {
                        unready = ready.status == "False" || m.timestamp < transition.addingTimeInterval(m.window)
                    } else {
                        unready = ready.status == "False" && start.addingTimeInterval(config.delayOfInitialReadinessStatus) > transition
                    }
                } else {
                    unready = true
                }
                if unready { g.unready.insert(p.name); continue }
            }
            g.readyCount += 1
        }
        return g
    }

    /// Summed container requests per pod (plus sidecars: init containers that keep running); a
    /// container without a request makes utilization undefined, so that is an error.
    static func podRequests(_ pods: [Pod], resource: String) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for p in pods {
            var containers = p.spec?.containers ?? []
            containers += (p.spec?.initContainers ?? []).filter { $0.restartPolicy == "Always" }
            var sum: Int64 = 0
            for c in containers {
                guard let q = c.resources?.requests?[resource] else {
                    throw HPAError("missing request for \(resource) in container \(c.name) of Pod \(p.name)")
                }
                sum += q.milli
            }
            out[p.name] = sum
        }
        return out
    }

    /// Kubernetes' GetResourceUtilizationRatio: utilization is truncated to whole percent before
    /// the ratio is taken, and samples of pods without a known request are extraneous.
    static func utilizationRatio(_ metrics: [String: Sample], _ requests: [String: Int64], target: Int) throws -> (ratio: Double, utilization: Int, rawAverage: Int64) {
        var total: Int64 = 0, reqTotal: Int64 = 0, n: Int64 = 0
        for (pod, s) in metrics {
            guard let r = requests[pod] else { continue }
            total += s.value; reqTotal += r; n += 1
        }
        guard reqTotal != 0 else { throw HPAError("no metrics returned matched known pods") }
        let utilization = Int(total * 100 / reqTotal)
        return (Double(utilization) / Double(target), utilization, total / n)
    }

    static func usageRatio(_ metrics: [String: Sample], target: Int64) -> (ratio: Double, average: Int64) {
        let total = metrics.values.reduce(Int64(0)) { $0 + $1.value }
        let average = total / Int64(metrics.count)
        return (Double(average) / Double(target), average)
    }
}
