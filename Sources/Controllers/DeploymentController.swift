// Deployment: one ReplicaSet per pod-template hash; RollingUpdate within maxSurge and
// maxUnavailable (Kubernetes' algorithm), Recreate, paused, revisionHistoryLimit, revisions,
// and the Available / Progressing conditions.
import Foundation
import Logging
import API
import Client

public final class DeploymentController: Sendable {
    static let revisionKey = "deployment.kubernetes.io/revision"
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "deployment-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "deployment-controller", clock: clock)
        informers.deployments.addHandler { [weak self] ev in
            switch ev {
            case .added(let d), .updated(_, let d): self?.queue.add(Informer<Deployment>.key(d))
            case .deleted: break
            }
        }
        informers.replicaSets.addHandler { [weak self] ev in
            let rs: ReplicaSet
            switch ev { case .added(let r), .updated(_, let r), .deleted(let r): rs = r }
            if let ref = rs.metadata.controllerRef, ref.kind == "Deployment" { self?.queue.add("\(rs.namespace)/\(ref.name)") }
        }
        informers.pods.addHandler { [weak self] ev in
            // Pods going away matter to Recreate, which waits for old pods to be gone.
            guard case .deleted(let p) = ev, let self, let ref = p.metadata.controllerRef, ref.kind == "ReplicaSet",
                  let rs = self.informers.replicaSets.get(namespace: p.namespace, name: ref.name),
                  let dref = rs.metadata.controllerRef, dref.kind == "Deployment" else { return }
            self.queue.add("\(p.namespace)/\(dref.name)")
        }
    }

    public func run(workers: Int = 4) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    static func revision(_ rs: ReplicaSet) -> Int { Int(rs.metadata.annotations?[revisionKey] ?? "") ?? 0 }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let d = informers.deployments.get(key), let spec = d.spec else { return .done }
        if d.metadata.deletionTimestamp != nil { return .done }
        let owned = informers.replicaSets.byIndex("owner", d.metadata.uid ?? "").filter { $0.metadata.controllerRef?.uid == d.metadata.uid }
        let hash = podTemplateHash(spec.template, collisionCount: d.status?.collisionCount ?? 0)
        let newRS = owned.first { $0.metadata.labels?["pod-template-hash"] == hash }
        var oldRSs = owned.filter { $0.metadata.uid != newRS?.metadata.uid }.sorted { Self.revision($0) < Self.revision($1) }
        let replicas = spec.replicas ?? 1

        if spec.paused == true {
            // Paused: no rollout; scaling still applies to the current ReplicaSet.
            if let n = newRS ?? oldRSs.last, (n.spec?.replicas ?? 0) != replicas, oldRSs.allSatisfy({ ($0.spec?.replicas ?? 0) == 0 }) || newRS == nil {
                _ = try await scale(n, to: replicas, d)
            }
            try await syncStatus(d, newRS: newRS, all: owned, paused: true)
            return .done
        }

        if newRS == nil {
            let maxRev = owned.map(Self.revision).max() ?? 0
            var t = spec.template
            var labels = t.metadata?.labels ?? [:]
            labels["pod-template-hash"] = hash
            if t.metadata == nil { t.metadata = ObjectMeta() }
            t.metadata?.labels = labels
            var sel = spec.selector ?? LabelSelector()
            var ml = sel.matchLabels ?? [:]
            ml["pod-template-hash"] = hash
            sel.matchLabels = ml
            var meta = ObjectMeta(name: "\(d.name)-\(hash)", namespace: d.namespace, labels: labels, annotations: [Self.revisionKey: "\(maxRev + 1)"])
            meta.ownerReferences = [ownerRef(d)]
            var rs = ReplicaSet(apiVersion: "apps/v1", kind: "ReplicaSet", metadata: meta,
                                spec: ReplicaSetSpec(replicas: 0, minReadySeconds: spec.minReadySeconds, selector: sel, template: t), status: nil)
            // New ReplicaSets start at 0; the strategy below scales them within its bounds.
            do { rs = try await client.create(rs) } catch let s as Status where s.code == 409 { return .requeue(after: 0.1) }
            return .requeue(after: 0)   // continue once the informer has it
        }
        guard let nrs = newRS else { return .done }
        // The Deployment shows its new ReplicaSet's revision (kubectl rollout history reads it):
        // written here, not only at creation, so a failed write is made good on the next pass.
        let rev = "\(Self.revision(nrs))"
        if (Int(d.metadata.annotations?[Self.revisionKey] ?? "") ?? 0) < Self.revision(nrs) {
            do {
                _ = try await client.patch(Deployment.self, d.name, namespace: d.namespace,
                                           mergePatch: .object(["metadata": .object(["annotations": .object([Self.revisionKey: .string(rev)])])]))
            } catch let s as Status where s.code == 404 {
                return .done
            } catch {
                ComponentMetrics.shared.failedWrite("deployment-revision")
                logger.warning("could not write the Deployment's revision annotation; retrying", metadata: ["deployment": "\(d.namespace)/\(d.name)", "revision": "\(rev)", "error": "\(error)"])
                return .requeue(after: 1)
            }
        }

        if spec.strategy?.type == "Recreate" {
            for old in oldRSs where (old.spec?.replicas ?? 0) > 0 { _ = try await scale(old, to: 0, d) }
            let oldPods = oldRSs.flatMap { informers.pods.byIndex("owner", $0.metadata.uid ?? "") }.filter { !$0.isTerminal }
            if oldPods.isEmpty && (nrs.spec?.replicas ?? 0) != replicas { _ = try await scale(nrs, to: replicas, d) }
        } else {
            try await rollingUpdate(d, spec: spec, newRS: nrs, oldRSs: &oldRSs)
        }
        try await cleanupHistory(d, old: oldRSs)
        try await syncStatus(d, newRS: nrs, all: owned, paused: false)
        // Progress depends on pods becoming available; look again soon while rolling.
        let done = (nrs.status?.availableReplicas ?? 0) >= replicas && oldRSs.allSatisfy { ($0.status?.replicas ?? 0) == 0 }
        return done ? .done : .requeue(after: 1)
    }

    /// Available pods an RS can be counted on for: never more than its (possibly just lowered)
    /// spec.replicas, so a status not yet updated after a scale-down cannot be counted twice.
    static func available(_ rs: ReplicaSet) -> Int {
        min(rs.status?.availableReplicas ?? 0, rs.spec?.replicas ?? 0)
    }

    /// The new ReplicaSet's size after a scale-up within maxSurge. Pods that count against the
    /// surge: the new ReplicaSet's spec, and for each old one its spec or the pods it still has,
    /// whichever is more. An old ReplicaSet just scaled down keeps its pods until its controller
    /// deletes them; counting only its spec (as Kubernetes' controller does) lets the new one
    /// grow into that window and the Deployment briefly run more than replicas + maxSurge pods.
    static func scaledUp(_ newRS: ReplicaSet, old oldRSs: [ReplicaSet], replicas: Int, maxSurge: Int) -> Int {
        let current = newRS.spec?.replicas ?? 0
        guard current < replicas else { return replicas }
        let total = current + oldRSs.reduce(0) { $0 + max($1.spec?.replicas ?? 0, $1.status?.replicas ?? 0) }
        let room = replicas + maxSurge - total
        return room > 0 ? min(replicas, current + room) : current
    }

    func rollingUpdate(_ d: Deployment, spec: DeploymentSpec, newRS: ReplicaSet, oldRSs: inout [ReplicaSet]) async throws {
        let replicas = spec.replicas ?? 1
        var maxSurge = spec.strategy?.rollingUpdate?.maxSurge?.scaled(total: replicas, roundUp: true) ?? 1
        var maxUnavailable = spec.strategy?.rollingUpdate?.maxUnavailable?.scaled(total: replicas, roundUp: false) ?? 0
        if maxSurge == 0 && maxUnavailable == 0 { maxUnavailable = 1 }
        maxSurge = max(0, maxSurge); maxUnavailable = max(0, min(maxUnavailable, replicas))
        let newReplicas = Self.scaledUp(newRS, old: oldRSs, replicas: replicas, maxSurge: maxSurge)
        if newReplicas != (newRS.spec?.replicas ?? 0) { _ = try await scale(newRS, to: newReplicas, d) }
        // Scale down old ReplicaSets, keeping at least replicas - maxUnavailable available.
        let oldCount = oldRSs.reduce(0) { $0 + ($1.spec?.replicas ?? 0) }
        guard oldCount > 0 else { return }
        let allPods = oldCount + (newRS.spec?.replicas ?? 0)
        let minAvailable = replicas - maxUnavailable
        let newUnavailable = (newRS.spec?.replicas ?? 0) - Self.available(newRS)
        var maxScaledDown = allPods - minAvailable - newUnavailable
        guard maxScaledDown > 0 else { return }
        // First old pods that are not available anyway.
        for i in oldRSs.indices {
            guard maxScaledDown > 0 else { break }
            let r = oldRSs[i].spec?.replicas ?? 0, avail = Self.available(oldRSs[i])
            guard r > avail else { continue }
            let down = min(maxScaledDown, r - avail)
            oldRSs[i] = try await scale(oldRSs[i], to: r - down, d)
            maxScaledDown -= down
        }
        // Then available ones, oldest first, never below minAvailable.
        let available = ([newRS] + oldRSs).reduce(0) { $0 + Self.available($1) }
        var canDown = available - minAvailable
        for i in oldRSs.indices where canDown > 0 {
            let r = oldRSs[i].spec?.replicas ?? 0
            guard r > 0 else { continue }
            let down = min(r, canDown)
            oldRSs[i] = try await scale(oldRSs[i], to: r - down, d)
            canDown -= down
        }
    }

    @discardableResult
    func scale(_ rs: ReplicaSet, to n: Int, _ d: Deployment) async throws -> ReplicaSet {
        let from = rs.spec?.replicas ?? 0
        guard from != n else { return rs }
        let patch: JSONValue = .object(["spec": .object(["replicas": .int(Int64(n))]),
                                        "metadata": .object(["resourceVersion": .string(rs.metadata.resourceVersion ?? "")])])
        let updated = try await client.patch(ReplicaSet.self, rs.name, namespace: rs.namespace, mergePatch: patch)
        events.record(d, reason: "ScalingReplicaSet", message: "Scaled \(n > from ? "up" : "down") replica set \(rs.name) from \(from) to \(n)")
        return updated
    }

    func cleanupHistory(_ d: Deployment, old: [ReplicaSet]) async throws {
        let limit = d.spec?.revisionHistoryLimit ?? 10
        let idle = old.filter { ($0.spec?.replicas ?? 0) == 0 && ($0.status?.replicas ?? 0) == 0 }
        guard idle.count > limit else { return }
        for rs in idle.sorted(by: { Self.revision($0) < Self.revision($1) }).prefix(idle.count - limit) {
            do { try await client.delete(ReplicaSet.self, rs.name, namespace: rs.namespace) }
            catch let s as Status where s.code == 404 {}
            catch {
                // Tried again on the Deployment's next pass (the ReplicaSet is still idle and old).
                ComponentMetrics.shared.failedWrite("deployment-history")
                logger.warning("could not delete an old ReplicaSet of the history", metadata: ["replicaset": "\(rs.namespace)/\(rs.name)", "error": "\(error)"])
            }
        }
    }

    func syncStatus(_ d: Deployment, newRS: ReplicaSet?, all: [ReplicaSet], paused: Bool) async throws {
        let spec = d.spec!
        let replicas = spec.replicas ?? 1
        var st = DeploymentStatus()
        st.observedGeneration = d.metadata.generation
        st.replicas = all.reduce(0) { $0 + ($1.status?.replicas ?? 0) }
        st.updatedReplicas = newRS?.status?.replicas ?? 0
        st.readyReplicas = all.reduce(0) { $0 + ($1.status?.readyReplicas ?? 0) }
        st.availableReplicas = all.reduce(0) { $0 + ($1.status?.availableReplicas ?? 0) }
        st.unavailableReplicas = max(0, replicas - (st.availableReplicas ?? 0))
        st.collisionCount = d.status?.collisionCount
        let now = KubeTime.format(clock.now())
        let maxUnavailable = spec.strategy?.type == "Recreate" ? 0 : (spec.strategy?.rollingUpdate?.maxUnavailable?.scaled(total: replicas, roundUp: false) ?? 0)
        var conds = d.status?.conditions ?? []
        func set(_ type: String, _ status: String, _ reason: String, _ message: String) {
            var c = WorkloadCondition(type: type, status: status, reason: reason, message: message)
            c.lastUpdateTime = now
            if let i = conds.firstIndex(where: { $0.type == type }) {
                let old = conds[i]
                c.lastTransitionTime = old.status == status ? old.lastTransitionTime : now
                if old.status == status && old.reason == reason && old.message == message { c.lastUpdateTime = old.lastUpdateTime }
                conds[i] = c
            } else { c.lastTransitionTime = now; conds.append(c) }
        }
        if (st.availableReplicas ?? 0) >= replicas - maxUnavailable {
            set("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            set("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        }
        let rsName = newRS?.name ?? ""
        let complete = (st.updatedReplicas ?? 0) == replicas && (st.replicas ?? 0) == replicas && (st.availableReplicas ?? 0) == replicas
        if paused {
            set("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        } else if complete {
            set("Progressing", "True", "NewReplicaSetAvailable", "ReplicaSet \"\(rsName)\" has successfully progressed.")
        } else {
            let prog = conds.first { $0.type == "Progressing" }
            let deadline = Double(spec.progressDeadlineSeconds ?? 600)
            let changed = d.status?.updatedReplicas != st.updatedReplicas || d.status?.availableReplicas != st.availableReplicas || prog?.reason == "NewReplicaSetAvailable" || prog == nil
            if changed {
                set("Progressing", "True", "ReplicaSetUpdated", "ReplicaSet \"\(rsName)\" is progressing.")
            } else if let last = KubeTime.parse(prog?.lastUpdateTime), clock.now().timeIntervalSince(last) > deadline, prog?.reason != "ProgressDeadlineExceeded" {
                set("Progressing", "False", "ProgressDeadlineExceeded", "ReplicaSet \"\(rsName)\" has timed out progressing.")
                events.record(d, type: "Warning", reason: "ProgressDeadlineExceeded", message: "Deployment \(d.name) has timed out progressing")
            }
        }
        st.conditions = conds
        var cmp = st; cmp.conditions = cmp.conditions?.map { var c = $0; c.lastUpdateTime = nil; return c }
        var old = d.status ?? DeploymentStatus(); old.conditions = old.conditions?.map { var c = $0; c.lastUpdateTime = nil; return c }
        guard cmp != old else { return }
        var next = d
        next.status = st
        _ = try await client.updateStatus(next)
    }
}
