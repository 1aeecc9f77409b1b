// Garbage collection by ownerReferences: dependents of a deleted owner are deleted
// (background); owners with the foregroundDeletion finalizer go after their dependents;
// owners with the orphan finalizer release their dependents first.
import Foundation
import Logging
import Synchronization
import API
import Client

public final class GarbageCollector: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let clock: any ControlClock
    let period: Double
    let logger = Logger(label: "garbage-collector")
    /// Nodes that pods are bound to but that are missing, since when.
    let missingNodes = Mutex<[String: Date]>([:])
    static let orphanQuarantine = 40.0

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock(), period: Double = 1) {
        self.client = client; self.informers = informers; self.clock = clock; self.period = period
    }

    public func run() async {
        while !Task.isCancelled {
            await sweep()
            try? await clock.sleep(for: period)
        }
    }

    struct Owner { var uid: String; var deleting: Bool; var finalizers: [String]; var kind: String; var name: String; var namespace: String }

    func owners() -> [String: Owner] {
        var m: [String: Owner] = [:]
        for d in informers.deployments.list() { m[d.metadata.uid ?? ""] = Owner(uid: d.metadata.uid ?? "", deleting: d.metadata.deletionTimestamp != nil, finalizers: d.metadata.finalizers ?? [], kind: "Deployment", name: d.name, namespace: d.namespace) }
        for r in informers.replicaSets.list() { m[r.metadata.uid ?? ""] = Owner(uid: r.metadata.uid ?? "", deleting: r.metadata.deletionTimestamp != nil, finalizers: r.metadata.finalizers ?? [], kind: "ReplicaSet", name: r.name, namespace: r.namespace) }
        for x in informers.statefulSets.list() { m[x.metadata.uid ?? ""] = Owner(uid: x.metadata.uid ?? "", deleting: x.metadata.deletionTimestamp != nil, finalizers: x.metadata.finalizers ?? [], kind: "StatefulSet", name: x.name, namespace: x.namespace) }
        for x in informers.daemonSets.list() { m[x.metadata.uid ?? ""] = Owner(uid: x.metadata.uid ?? "", deleting: x.metadata.deletionTimestamp != nil, finalizers: x.metadata.finalizers ?? [], kind: "DaemonSet", name: x.name, namespace: x.namespace) }
        for c in informers.cronJobs.list() { m[c.metadata.uid ?? ""] = Owner(uid: c.metadata.uid ?? "", deleting: c.metadata.deletionTimestamp != nil, finalizers: c.metadata.finalizers ?? [], kind: "CronJob", name: c.name, namespace: c.namespace) }
        for j in informers.jobs.list() { m[j.metadata.uid ?? ""] = Owner(uid: j.metadata.uid ?? "", deleting: j.metadata.deletionTimestamp != nil, finalizers: j.metadata.finalizers ?? [], kind: "Job", name: j.name, namespace: j.namespace) }
        return m
    }

    /// Whether the owner is really gone: asked of the apiserver, not the cache, before deleting.
    func ownerGone(_ ref: OwnerReference, namespace: String) async -> Bool {
        do {
            switch ref.kind {
            case "Deployment": return try await client.get(Deployment.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "ReplicaSet": return try await client.get(ReplicaSet.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "Job": return try await client.get(Job.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "CronJob": return try await client.get(CronJob.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "DaemonSet": return try await client.get(DaemonSet.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "StatefulSet": return try await client.get(StatefulSet.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            case "Pod": return try await client.get(Pod.self, ref.name, namespace: namespace).metadata.uid != ref.uid
            default: return false
            }
        } catch let s as Status where s.code == 404 { return true } catch { return false }
    }

    /// Pods bound to a node that no longer exists (Kubernetes' PodGC): nothing will ever confirm
    /// their graceful end, so they go at once, once the node has been missing for the quarantine
    /// (40 s, as Kubernetes: a node being created or re-registering is not yet in the cache) and
    /// the apiserver confirms it is gone.
    func deleteOrphanedPods() async {
        guard informers.nodes.hasSynced else { return }
        let nodes = Set(informers.nodes.list().map(\.name))
        let now = clock.now()
        let bound = Set(informers.pods.list().compactMap { $0.spec?.nodeName }.filter { !$0.isEmpty && !nodes.contains($0) })
        let due = missingNodes.withLock { m -> Set<String> in
            m = m.filter { bound.contains($0.key) }
            for n in bound where m[n] == nil { m[n] = now }
            return Set(m.filter { now.timeIntervalSince($0.value) >= Self.orphanQuarantine }.keys)
        }
        for p in informers.pods.list() {
            guard let n = p.spec?.nodeName, due.contains(n) else { continue }
            do { _ = try await client.get(Node.self, n); continue } catch let s as Status where s.code == 404 {} catch { continue }
            logger.info("deleting a pod whose node is gone", metadata: ["pod": "\(p.namespace)/\(p.name)", "node": "\(n)"])
            await attempt("delete", "Pod \(p.namespace)/\(p.name)") { try await client.delete(Pod.self, p.name, namespace: p.namespace, options: DeleteOptions(gracePeriodSeconds: 0)) }
        }
    }

    /// Writes that failed, each said once until it works (the sweep tries again every period).
    let failing = Mutex<Set<String>>([])
    let failureCount = Mutex(0)
    /// How many of the collector's writes failed (404s, which mean "already done", not counted).
    public var writeFailures: Int { failureCount.withLock { $0 } }

    func attempt(_ what: String, _ object: String, _ body: () async throws -> Void) async {
        let id = "\(what) \(object)"
        do {
            try await body()
            failing.withLock { _ = $0.remove(id) }
        } catch let s as Status where s.code == 404 {
            failing.withLock { _ = $0.remove(id) }
        } catch {
            failureCount.withLock { $0 += 1 }
            ComponentMetrics.shared.failedWrite("garbage-collector")
            if failing.withLock({ $0.insert(id).inserted }) {
                logger.warning("garbage collector: a write failed; trying again on the next sweep", metadata: ["write": "\(what)", "object": "\(object)", "error": "\(error)"])
            }
        }
    }

    public func sweep() async {
        guard informers.deployments.hasSynced, informers.replicaSets.hasSynced, informers.pods.hasSynced, informers.jobs.hasSynced, informers.cronJobs.hasSynced,
              informers.daemonSets.hasSynced, informers.revisions.hasSynced, informers.statefulSets.hasSynced else { return }
        let all = owners()
        // Dependents whose owners are gone (background), or whose owners delete in the foreground.
        func handle<T: KubeObject>(_ type: T.Type, _ items: [T]) async {
            for o in items {
                guard let refs = o.metadata.ownerReferences, !refs.isEmpty else { continue }
                for ref in refs where ["Deployment", "ReplicaSet", "Job", "CronJob", "DaemonSet", "StatefulSet", "Pod"].contains(ref.kind) {
                    if ref.kind == "Pod" {
                        // Claims a StatefulSet scaled away from (whenScaled: Delete) go with their pod.
                        if informers.pods.get(namespace: o.namespace, name: ref.name)?.metadata.uid == ref.uid { continue }
                    }
                    if let owner = all[ref.uid] {
                        if owner.deleting && owner.finalizers.contains("orphan") {
                            let kept = refs.filter { $0.uid != ref.uid }
                            let patch: JSONValue = .object(["metadata": .object(["ownerReferences": kept.isEmpty ? .null : (try? JSONValue.from(kept)) ?? .null])])
                            await attempt("orphan", "\(T.resource.kind) \(o.namespace)/\(o.name)") { _ = try await client.patch(T.self, o.name, namespace: o.namespace, mergePatch: patch) }
                        } else if owner.deleting && owner.finalizers.contains("foregroundDeletion") && o.metadata.deletionTimestamp == nil {
                            await attempt("delete", "\(T.resource.kind) \(o.namespace)/\(o.name)") { try await client.delete(T.self, o.name, namespace: o.namespace, options: DeleteOptions(propagationPolicy: "Foreground")) }
                        }
                        continue
                    }
                    if o.metadata.deletionTimestamp == nil, await ownerGone(ref, namespace: o.namespace) {
                        logger.debug("deleting dependent of a deleted owner", metadata: ["object": "\(T.resource.kind) \(o.namespace)/\(o.name)", "owner": "\(ref.kind)/\(ref.name)"])
                        await attempt("delete", "\(T.resource.kind) \(o.namespace)/\(o.name)") { try await client.delete(T.self, o.name, namespace: o.namespace, options: DeleteOptions(propagationPolicy: "Background")) }
                    }
                }
            }
        }
        await handle(ReplicaSet.self, informers.replicaSets.list())
        await deleteOrphanedPods()
        await handle(Job.self, informers.jobs.list())
        await handle(ControllerRevision.self, informers.revisions.list())
        await handle(Pod.self, informers.pods.list())
        if informers.claims.hasSynced { await handle(PersistentVolumeClaim.self, informers.claims.list()) }
        // Objects waiting on finalizers whose dependents are all gone (or released) finish now.
        // Pods own nothing, so a pod deleted in the foreground finishes at once.
        var waiting = Array(all.values)
        for p in informers.pods.list() where p.metadata.deletionTimestamp != nil && (p.metadata.finalizers ?? []).contains("foregroundDeletion") {
            waiting.append(Owner(uid: p.metadata.uid ?? "", deleting: true, finalizers: p.metadata.finalizers ?? [], kind: "Pod", name: p.name, namespace: p.namespace))
        }
        for owner in waiting where owner.deleting {
            let dependents = informers.replicaSets.byIndex("owner", owner.uid).count + informers.pods.byIndex("owner", owner.uid).count
                + informers.jobs.byIndex("owner", owner.uid).count
            for f in ["foregroundDeletion", "orphan"] where owner.finalizers.contains(f) && dependents == 0 {
                let rest = owner.finalizers.filter { $0 != f }
                let patch: JSONValue = .object(["metadata": .object(["finalizers": rest.isEmpty ? .null : .array(rest.map { .string($0) })])])
                await attempt("remove finalizer \(f)", "\(owner.kind) \(owner.namespace)/\(owner.name)") {
                    switch owner.kind {
                    case "Deployment": _ = try await client.patch(Deployment.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    case "ReplicaSet": _ = try await client.patch(ReplicaSet.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    case "Job": _ = try await client.patch(Job.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    case "CronJob": _ = try await client.patch(CronJob.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    case "DaemonSet": _ = try await client.patch(DaemonSet.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    case "StatefulSet": _ = try await client.patch(StatefulSet.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    default: _ = try await client.patch(Pod.self, owner.name, namespace: owner.namespace, mergePatch: patch)
                    }
                }
            }
        }
    }
}
