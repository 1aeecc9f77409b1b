// ReplicaSet: keeps spec.replicas active pods matching the selector, owned through
// ownerReferences; adopts matching orphans; deletes surplus unscheduled, not-ready, newest first.
import Foundation
import Logging
import API
import Client

public final class ReplicaSetController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let expectations = Expectations()
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "replicaset-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "replicaset-controller", clock: clock)
        informers.replicaSets.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let r), .updated(_, let r): self.queue.add(Informer<ReplicaSet>.key(r))
            case .deleted(let r): self.expectations.forget(Informer<ReplicaSet>.key(r))
            }
        }
        expectations.trackPods(informers.pods, kind: "ReplicaSet", queue: queue) { [weak self] p in self?.enqueueMatching(p) }
    }

    func enqueueMatching(_ p: Pod) {
        guard p.isActive else { return }
        for rs in informers.replicaSets.list(namespace: p.namespace) where rs.spec?.selector?.matches(p.labels) == true {
            queue.add(Informer<ReplicaSet>.key(rs))
        }
    }

    public func run(workers: Int = 4) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    /// Orders surplus pods so the least useful go first: unscheduled, pending, not ready, newest.
    static func deletionOrder(_ a: Pod, _ b: Pod) -> Bool {
        let aSched = !(a.spec?.nodeName ?? "").isEmpty, bSched = !(b.spec?.nodeName ?? "").isEmpty
        if aSched != bSched { return !aSched }
        let rank = ["Pending": 0, "Unknown": 1, "Running": 2]
        let ar = rank[a.phase] ?? 1, br = rank[b.phase] ?? 1
        if ar != br { return ar < br }
        if a.isReady != b.isReady { return !a.isReady }
        return (a.metadata.creationTimestamp ?? "") > (b.metadata.creationTimestamp ?? "")
    }

    /// Pure status from observed pods.
    static func computeStatus(_ rs: ReplicaSet, pods: [Pod], now: Date) -> ReplicaSetStatus {
        var s = ReplicaSetStatus(replicas: pods.count)
        let sel = rs.spec?.template?.metadata?.labels ?? [:]
        s.fullyLabeledReplicas = pods.filter { p in sel.allSatisfy { p.labels[$0.key] == $0.value } }.count
        s.readyReplicas = pods.filter(\.isReady).count
        s.availableReplicas = pods.filter { $0.isAvailable(minReadySeconds: rs.spec?.minReadySeconds ?? 0, now: now) }.count
        s.observedGeneration = rs.metadata.generation
        s.conditions = rs.status?.conditions
        return s
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let rs = informers.replicaSets.get(key) else { expectations.forget(key); return .done }
        if rs.metadata.deletionTimestamp != nil { return .done }
        guard let selector = try? rs.spec?.selector?.toSelector(), !selector.isEmpty else { return .done }
        let now = clock.now()
        var owned: [Pod] = []
        let (satisfied, pods) = expectations.snapshot(key, now: now) { informers.pods.list(namespace: rs.namespace) }
        for p in pods {
            if let ref = p.metadata.controllerRef {
                if ref.uid == rs.metadata.uid && p.isActive { owned.append(p) }
            } else if p.isActive && selector.matches(p.labels) {
                // Adopt the orphan.
                let refs: JSONValue = try JSONValue.from([ownerRef(rs)])
                let patch: JSONValue = .object(["metadata": .object(["ownerReferences": refs, "resourceVersion": .string(p.metadata.resourceVersion ?? "")])])
                if let adopted = try? await client.patch(Pod.self, p.name, namespace: p.namespace, mergePatch: patch) { owned.append(adopted) }
            }
        }
        let want = rs.spec?.replicas ?? 1
        if satisfied {
            let diff = want - owned.count
            if diff > 0 {
                expectations.expect(key, adds: diff, now: now)
                var failures = 0
                try await withThrowingTaskGroup(of: Bool.self) { g in
                    for _ in 0..<diff {
                        g.addTask {
                            do { _ = try await self.client.create(self.newPod(rs)); return true }
                            catch { self.expectations.observedAdd(key); return false }
                        }
                    }
                    for try await ok in g where !ok { failures += 1 }
                }
                if diff - failures > 0 { events.record(rs, reason: "SuccessfulCreate", message: "Created \(diff - failures) pod(s)") }
                if failures > 0 { events.record(rs, type: "Warning", reason: "FailedCreate", message: "Error creating \(failures) pod(s)") }
            } else if diff < 0 {
                let victims = owned.sorted(by: Self.deletionOrder).prefix(-diff)
                expectations.expect(key, adds: 0, deletes: Set(victims.map(\.name)), now: now)
                for v in victims {
                    do {
                        try await client.delete(Pod.self, v.name, namespace: v.namespace)
                        events.record(rs, reason: "SuccessfulDelete", message: "Deleted pod: \(v.name)")
                    } catch { expectations.observedDelete(key, pod: v.name) }
                }
            }
        }
        let status = Self.computeStatus(rs, pods: owned, now: now)
        if try await !writeStatus(client, rs, \.status, status) { return .requeue(after: 0) }
        // Ready pods become available after minReadySeconds: look again then.
        if let m = rs.spec?.minReadySeconds, m > 0, status.readyReplicas != status.availableReplicas { return .requeue(after: Double(m)) }
        return .done
    }

    func newPod(_ rs: ReplicaSet) -> Pod {
        let t = rs.spec?.template
        var meta = ObjectMeta(name: nil, namespace: rs.namespace, labels: t?.metadata?.labels, annotations: t?.metadata?.annotations)
        meta.generateName = "\(rs.name)-"
        meta.ownerReferences = [ownerRef(rs)]
        return Pod(metadata: meta, spec: t?.spec ?? PodSpec(containers: []))
    }
}
