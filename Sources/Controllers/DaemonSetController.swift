// DaemonSet: one pod on every node that should run it: its nodeSelector and required node
// affinity match, and every NoSchedule/NoExecute taint is tolerated, counting the tolerations
// DaemonSet pods always get (not-ready and unreachable NoExecute; unschedulable, disk, memory and
// pid pressure NoSchedule). Pods are placed on their node directly (spec.nodeName). A node that
// joins gets a pod; a node that leaves, stops matching, or is tainted NoExecute loses it (a
// NoSchedule taint added later keeps the pod it has). Templates are ControllerRevisions, pods
// carry their revision's hash; RollingUpdate replaces at most maxUnavailable pods at a time (or
// with maxSurge starts the new pod before the old one goes); OnDelete waits for pods to be deleted.
import Foundation
import Logging
import API
import Client

public struct DaemonSetDecision: Equatable, Sendable {
    public var status: DaemonSetStatus
    /// Nodes to start a pod on.
    public var create: [String] = []
    public var delete: [String] = []
    /// Old pods replaced by the rolling update (through eviction, so budgets are kept).
    public var evict: [String] = []
    public var requeueAfter: Double?
}

public enum DaemonSetLogic {
    /// The tolerations every DaemonSet pod gets (Kubernetes' AddOrUpdateDaemonPodTolerations).
    public static func defaultTolerations(hostNetwork: Bool) -> [Toleration] {
        var t = [Toleration(key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute"),
                 Toleration(key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute"),
                 Toleration(key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule"),
                 Toleration(key: "node.kubernetes.io/memory-pressure", operator: "Exists", effect: "NoSchedule"),
                 Toleration(key: "node.kubernetes.io/pid-pressure", operator: "Exists", effect: "NoSchedule"),
                 Toleration(key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule")]
        if hostNetwork { t.append(Toleration(key: "node.kubernetes.io/network-unavailable", operator: "Exists", effect: "NoSchedule")) }
        return t
    }

    static func tolerations(_ ds: DaemonSet) -> [Toleration] {
        let own = ds.spec?.template.spec?.tolerations ?? []
        return own + defaultTolerations(hostNetwork: ds.spec?.template.spec?.hostNetwork == true).filter { d in !own.contains(d) }
    }

    /// Whether a new pod may go on `node`, and whether a pod already there may stay.
    public static func placement(_ ds: DaemonSet, on node: Node) -> (run: Bool, keep: Bool) {
        guard NodeSelection.podFits(ds.spec?.template.spec, labels: node.labels, name: node.name) else { return (false, false) }
        let tol = tolerations(ds)
        var run = true, keep = true
        for taint in node.spec?.taints ?? [] where !tol.contains(where: { $0.tolerates(taint) }) {
            if taint.effect == "NoSchedule" { run = false }
            if taint.effect == "NoExecute" { run = false; keep = false }
        }
        return (run, keep)
    }

    static func available(_ p: Pod, _ ds: DaemonSet, _ now: Date) -> Bool { p.isAvailable(minReadySeconds: ds.spec?.minReadySeconds ?? 0, now: now) }

    /// Decides for `ds` over `nodes`, given the pods it controls and its current template hash.
    public static func decide(_ ds: DaemonSet, nodes: [Node], pods: [Pod], hash: String, now: Date) -> DaemonSetDecision {
        var s = DaemonSetStatus()
        s.observedGeneration = ds.metadata.generation
        s.collisionCount = ds.status?.collisionCount
        var d = DaemonSetDecision(status: s)
        var byNode: [String: [Pod]] = [:]
        for p in pods where p.metadata.deletionTimestamp == nil {
            if p.phase == "Failed" { d.delete.append(p.name); continue }   // replaced on the next pass
            byNode[p.spec?.nodeName ?? "", default: []].append(p)
        }
        let nodeNames = Set(nodes.map(\.name))
        // Pods on nodes that are gone.
        for (n, ps) in byNode where !nodeNames.contains(n) { d.delete += ps.map(\.name) }

        let rolling = (ds.spec?.updateStrategy?.type ?? "RollingUpdate") == "RollingUpdate"
        var desired = 0, unavailable = 0, surging = 0
        struct Old { var node: String; var old: [Pod]; var new: [Pod] }
        var updating: [Old] = []
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            let (run, keep) = placement(ds, on: node)
            var here = byNode[node.name] ?? []
            if !run && !here.isEmpty { s.numberMisscheduled += 1 }
            if !run && !(keep && !here.isEmpty) {
                if !keep { d.delete += here.map(\.name) }
                continue
            }
            if run { desired += 1 }
            if here.isEmpty {
                if run { d.create.append(node.name); unavailable += 1 }
                continue
            }
            // One pod of each revision at most: the oldest stays.
            here.sort { ($0.metadata.creationTimestamp ?? "") < ($1.metadata.creationTimestamp ?? "") }
            let new = here.filter { $0.labels[ControllerRevision.hashLabel] == hash }, old = here.filter { $0.labels[ControllerRevision.hashLabel] != hash }
            d.delete += new.dropFirst().map(\.name)
            if old.count > 1 && new.isEmpty { d.delete += old.dropFirst().map(\.name) }
            let keptNew = Array(new.prefix(1)), keptOld = new.isEmpty ? Array(old.prefix(1)) : old
            if run {
                s.currentNumberScheduled += 1
                if let shown = keptNew.first ?? keptOld.first, shown.isReady { s.numberReady += 1 }
                if keptNew.first.map({ available($0, ds, now) }) == true || (keptNew.isEmpty && keptOld.first.map { available($0, ds, now) } == true) {
                    s.numberAvailable = (s.numberAvailable ?? 0) + 1
                } else {
                    unavailable += 1
                }
                if !keptNew.isEmpty { s.updatedNumberScheduled = (s.updatedNumberScheduled ?? 0) + 1 }
            }
            if !keptOld.isEmpty && !keptNew.isEmpty { surging += 1 }
            if !keptOld.isEmpty { updating.append(Old(node: node.name, old: keptOld, new: keptNew)) }
        }
        s.desiredNumberScheduled = desired
        s.numberAvailable = s.numberAvailable ?? 0
        s.updatedNumberScheduled = s.updatedNumberScheduled ?? 0
        s.numberUnavailable = max(0, desired - (s.numberAvailable ?? 0))

        if rolling, !updating.isEmpty {
            let ru = ds.spec?.updateStrategy?.rollingUpdate
            let maxSurge = ru?.maxSurge?.scaled(total: desired, roundUp: true) ?? 0
            let maxUnavailable = ru?.maxUnavailable?.scaled(total: desired, roundUp: true) ?? (maxSurge > 0 ? 0 : 1)
            if maxSurge > 0 {
                // Start the new pod next to the old; the old one goes once the new is available.
                var budget = maxSurge - surging
                for u in updating {
                    if let n = u.new.first {
                        if available(n, ds, now) { d.evict += u.old.map(\.name) }
                    } else if budget > 0 {
                        d.create.append(u.node); budget -= 1
                    }
                }
            } else {
                // Old pods that are not available go first, at no cost; then up to the budget.
                var budget = maxUnavailable - unavailable
                for u in updating where u.new.isEmpty && !(u.old.first.map { available($0, ds, now) } ?? false) { d.delete += u.old.map(\.name) }
                for u in updating where u.new.isEmpty && (u.old.first.map { available($0, ds, now) } ?? false) && budget > 0 {
                    d.evict += u.old.map(\.name); budget -= 1
                }
            }
        }
        if let m = ds.spec?.minReadySeconds, m > 0, s.numberReady != (s.numberAvailable ?? 0) { d.requeueAfter = Double(m) }
        d.status = s
        return d
    }
}

public final class DaemonSetController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let expectations = Expectations()
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "daemonset-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "daemonset-controller", clock: clock)
        informers.daemonSets.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let x), .updated(_, let x): self.queue.add(Informer<DaemonSet>.key(x))
            case .deleted(let x): self.expectations.forget(Informer<DaemonSet>.key(x))
            }
        }
        expectations.trackPods(informers.pods, kind: "DaemonSet", queue: queue)
        // Nodes that join, leave, or change labels or taints: every DaemonSet looks again.
        informers.nodes.addHandler { [weak self] ev in
            guard let self else { return }
            if case .updated(let a, let b) = ev, a.labels == b.labels, a.spec?.taints == b.spec?.taints, a.spec?.unschedulable == b.spec?.unschedulable { return }
            for ds in self.informers.daemonSets.list() { self.queue.add(Informer<DaemonSet>.key(ds)) }
        }
    }

    public func run(workers: Int = 2) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let ds = informers.daemonSets.get(key), ds.metadata.deletionTimestamp == nil, let uid = ds.metadata.uid, let spec = ds.spec else {
            return .done
        }
        let hash = podTemplateHash(spec.template, collisionCount: ds.status?.collisionCount ?? 0)
        try await RevisionHistory.sync(client, informers, owner: ds, template: spec.template, hash: hash, limit: spec.revisionHistoryLimit ?? 10)
        let now = clock.now()
        let (satisfied, pods) = expectations.snapshot(key, now: now) { informers.pods.list(namespace: ds.namespace).filter { $0.metadata.controllerRef?.uid == uid } }
        var d = DaemonSetLogic.decide(ds, nodes: informers.nodes.list(), pods: pods, hash: hash, now: now)
        if !satisfied { d.create = []; d.delete = []; d.evict = [] }
        let written = await writePods(client, events, expectations, owner: ds, key: key, delete: d.delete, evict: d.evict,
                                      create: d.create.map { newPod(ds, node: $0, hash: hash) }, now: now)
        if try await !writeStatus(client, ds, \.status, d.status) { return .requeue(after: 0) }
        if written.blocked > 0 { return .requeue(after: 5) }
        if let r = d.requeueAfter { return .requeue(after: r) }
        return .done
    }

    public func newPod(_ ds: DaemonSet, node: String, hash: String) -> Pod {
        let t = ds.spec?.template
        var meta = ObjectMeta(name: nil, namespace: ds.namespace, labels: (t?.metadata?.labels ?? [:]).merging([ControllerRevision.hashLabel: hash]) { $1 },
                              annotations: t?.metadata?.annotations)
        meta.generateName = "\(ds.name)-"
        meta.ownerReferences = [ownerRef(ds)]
        var spec = t?.spec ?? PodSpec(containers: [])
        spec.nodeName = node
        spec.tolerations = DaemonSetLogic.tolerations(ds)
        return Pod(metadata: meta, spec: spec)
    }
}
