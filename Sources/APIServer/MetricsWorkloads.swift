// What the metrics collector needs to know about a pod (labels, requests, which workload it
// belongs to), decoded once per stored revision, and how pod usage adds up per workload for the
// history: pods grouped by their controlling owner, a ReplicaSet folded into its Deployment.
import Foundation
import Synchronization
import API
import Store

/// A pod as the collector sees it. Derived from the stored object; cached by revision.
struct PodFacts: Sendable, Hashable {
    var namespace: String
    var name: String
    var uid: String
    var labels: [String: String]
    var workload: WorkloadRef
    /// Summed container requests (plus sidecars: init containers with restartPolicy Always,
    /// as the HPA counts them); nil when any of those containers has no request for it.
    var cpuRequestMillis: Int64?
    var memoryRequestBytes: Int64?

    init(namespace: String, name: String, uid: String, labels: [String: String] = [:], workload: WorkloadRef,
         cpuRequestMillis: Int64? = nil, memoryRequestBytes: Int64? = nil) {
        self.namespace = namespace; self.name = name; self.uid = uid; self.labels = labels; self.workload = workload
        self.cpuRequestMillis = cpuRequestMillis; self.memoryRequestBytes = memoryRequestBytes
    }

    /// `replicaSetOwner` answers "which controller owns ReplicaSet NAME in this namespace".
    init(pod: Pod, replicaSetOwner: (String, String) -> OwnerReference?) {
        namespace = pod.namespace; name = pod.name; uid = pod.metadata.uid ?? ""; labels = pod.labels
        workload = Self.workload(of: pod.metadata, replicaSetOwner: replicaSetOwner)
        var containers = pod.spec?.containers ?? []
        containers += (pod.spec?.initContainers ?? []).filter { $0.restartPolicy == "Always" }
        func sum(_ r: String, _ scale: (Quantity) -> Int64) -> Int64? {
            guard !containers.isEmpty else { return nil }
            var total: Int64 = 0
            for c in containers {
                guard let q = c.resources?.requests?[r] else { return nil }
                total += scale(q)
            }
            return total
        }
        cpuRequestMillis = sum("cpu") { $0.milli }
        memoryRequestBytes = sum("memory") { $0.value }
    }

    /// The workload a pod's usage is recorded under: its controller, with a ReplicaSet replaced
    /// by the Deployment controlling it (so a rollout's old and new pods share one history); a
    /// pod without a controller is its own workload.
    static func workload(of meta: ObjectMeta, replicaSetOwner: (String, String) -> OwnerReference?) -> WorkloadRef {
        let ns = meta.namespace ?? ""
        guard let owner = meta.controllerRef else { return WorkloadRef(namespace: ns, kind: "Pod", name: meta.name ?? "") }
        if owner.kind == "ReplicaSet", owner.apiVersion.hasPrefix("apps/"),
           let d = replicaSetOwner(ns, owner.name), d.kind == "Deployment" {
            return WorkloadRef(namespace: ns, kind: "Deployment", name: d.name)
        }
        return WorkloadRef(namespace: ns, kind: owner.kind, name: owner.name)
    }
}

/// Decodes pods and ReplicaSets from the store once per revision: the collector looks pods up
/// every interval, and most of them have not changed since the last time.
final class PodFactsCache: Sendable {
    private let store: any ObjectStore
    private struct State {
        var pods: [ObjectKey: (revision: Int64, facts: PodFacts?)] = [:]
        var replicaSets: [ObjectKey: (revision: Int64, owner: OwnerReference?)] = [:]
    }
    private let state = Mutex(State())

    init(store: any ObjectStore) { self.store = store }

    /// The facts of pod NS/NAME if it is stored with this uid (nil uid: any).
    func facts(namespace: String, name: String, uid: String? = nil) -> PodFacts? {
        let key = ObjectKey(resource: Resources.pods.groupResource, namespace: namespace, name: name)
        guard let o = store.get(key) else { state.withLock { _ = $0.pods.removeValue(forKey: key) }; return nil }
        if let hit = state.withLock({ $0.pods[key] }), hit.revision == o.revision {
            return uid == nil || hit.facts?.uid == uid ? hit.facts : nil
        }
        // Decoded outside the lock: a scrape of one node must not wait on another's decoding.
        let pod = try? KubeJSON.decode(Pod.self, from: o.data)
        let f = pod.map { PodFacts(pod: $0, replicaSetOwner: replicaSetOwner) }
        state.withLock { $0.pods[key] = (o.revision, f) }
        return uid == nil || f?.uid == uid ? f : nil
    }

    func replicaSetOwner(_ namespace: String, _ name: String) -> OwnerReference? {
        let key = ObjectKey(resource: Resources.replicasets.groupResource, namespace: namespace, name: name)
        guard let o = store.get(key) else { return nil }
        if let hit = state.withLock({ $0.replicaSets[key] }), hit.revision == o.revision { return hit.owner }
        let owner = (try? KubeJSON.decode(ReplicaSet.self, from: o.data))?.metadata.controllerRef
        state.withLock { $0.replicaSets[key] = (o.revision, owner) }
        return owner
    }

    /// Forgets entries of objects no longer stored (bounded memory under pod churn).
    func sweep() {
        let keys = state.withLock { (Array($0.pods.keys), Array($0.replicaSets.keys)) }
        let gonePods = keys.0.filter { store.get($0) == nil }, goneRS = keys.1.filter { store.get($0) == nil }
        state.withLock { s in
            for k in gonePods { s.pods.removeValue(forKey: k) }
            for k in goneRS { s.replicaSets.removeValue(forKey: k) }
        }
    }
}

/// Per-workload sums of the pods' latest usage: one history sample per workload per interval.
enum WorkloadAggregation {
    struct PodSample: Sendable {
        var facts: PodFacts
        var cpuNanoCores: UInt64
        var memoryBytes: UInt64
        /// The pod's requests_per_second, when Services send it traffic.
        var requestsPerSecond: Double? = nil
    }

    static func aggregate(_ pods: [PodSample], at time: Date, window: Double) -> [WorkloadRef: WorkloadMetricsSample] {
        var out: [WorkloadRef: WorkloadMetricsSample] = [:]
        for (ref, group) in Dictionary(grouping: pods, by: { $0.facts.workload }) {
            let n = Double(group.count)
            let cpu = group.reduce(0.0) { $0 + Double($1.cpuNanoCores) / 1e6 }
            let mem = group.reduce(0.0) { $0 + Double($1.memoryBytes) }
            let rates = group.compactMap(\.requestsPerSecond)
            func utilization(_ used: Double, _ request: (PodFacts) -> Int64?) -> Double? {
                var total: Int64 = 0
                for p in group { guard let r = request(p.facts), r > 0 else { return nil }; total += r }
                return used / Double(total) * 100
            }
            out[ref] = WorkloadMetricsSample(time: time, windowSeconds: window, pods: n, cpuTotalMillicores: cpu, cpuAverageMillicores: cpu / n,
                                             memoryAverageBytes: mem / n, cpuUtilization: utilization(cpu, \.cpuRequestMillis),
                                             memoryUtilization: utilization(mem, \.memoryRequestBytes),
                                             requestsPerSecond: rates.isEmpty ? nil : rates.reduce(0, +))
        }
        return out
    }
}
