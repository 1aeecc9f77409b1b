// StatefulSet: pods NAME-<ordinal> for ordinals start..start+replicas-1, each with hostname NAME-i
// and subdomain serviceName. OrderedReady makes them one at a time in order, each only once the
// ones before run and are Ready, and removes surplus ones highest first, one at a time, only
// while the rest are healthy; Parallel makes and removes them all at once. Templates are
// ControllerRevisions: RollingUpdate replaces pods from the highest ordinal down to `partition`,
// one at a time, each once all pods are Ready; OnDelete replaces pods deleted by hand. When every
// pod has the update revision it becomes the current one.
import Foundation
import Logging
import API
import Client

public struct StatefulSetDecision: Equatable, Sendable {
    public struct Create: Equatable, Sendable { public var ordinal: Int; public var revision: String }
    public var status: StatefulSetStatus
    public var create: [Create] = []
    public var delete: [String] = []
    /// The pod the rolling update replaces next (through eviction, so budgets are kept).
    public var evict: [String] = []
}

public enum StatefulSetLogic {
    public static func ordinal(of p: Pod, in sts: StatefulSet) -> Int? {
        let prefix = sts.name + "-"
        guard p.name.hasPrefix(prefix) else { return nil }
        return Int(p.name.dropFirst(prefix.count))
    }

    static func healthy(_ p: Pod) -> Bool { p.metadata.deletionTimestamp == nil && p.phase == "Running" && p.isReady }

    /// Decides for `sts` given its pods and its current and update revisions (template hashes).
    public static func decide(_ sts: StatefulSet, pods: [Pod], currentRevision: String, updateRevision: String, now: Date) -> StatefulSetDecision {
        var s = StatefulSetStatus()
        s.observedGeneration = sts.metadata.generation
        s.collisionCount = sts.status?.collisionCount
        s.currentRevision = currentRevision
        s.updateRevision = updateRevision
        var d = StatefulSetDecision(status: s)
        guard let spec = sts.spec else { return d }
        let start = spec.ordinals?.start ?? 0, replicas = spec.replicas ?? 1
        let range = start..<(start + replicas)
        let ordered = (spec.podManagementPolicy ?? "OrderedReady") == "OrderedReady"
        let rolling = (spec.updateStrategy?.type ?? "RollingUpdate") == "RollingUpdate"
        let partition = start + (spec.updateStrategy?.rollingUpdate?.partition ?? 0)
        func revision(_ p: Pod) -> String { p.labels[ControllerRevision.hashLabel] ?? "" }

        var byOrdinal: [Int: Pod] = [:]
        for p in pods { if let o = ordinal(of: p, in: sts) { byOrdinal[o] = p } }
        s.replicas = byOrdinal.count
        s.readyReplicas = byOrdinal.values.filter(\.isReady).count
        s.availableReplicas = byOrdinal.values.filter { $0.isAvailable(minReadySeconds: spec.minReadySeconds ?? 0, now: now) }.count
        s.currentReplicas = byOrdinal.values.filter { revision($0) == currentRevision }.count
        s.updatedReplicas = byOrdinal.values.filter { revision($0) == updateRevision }.count

        // 1. Every ordinal in range has a pod; failed ones are replaced.
        var blocked = false
        for o in range {
            guard let p = byOrdinal[o] else {
                let rev = rolling && o < partition ? currentRevision : updateRevision
                d.create.append(.init(ordinal: o, revision: rev))
                if ordered { blocked = true; break }
                continue
            }
            if p.phase == "Failed" && p.metadata.deletionTimestamp == nil {
                d.delete.append(p.name)
                if ordered { blocked = true; break }
                continue
            }
            if ordered && !healthy(p) { blocked = true; break }
        }
        let allHealthy = !blocked && range.allSatisfy { byOrdinal[$0].map(healthy) ?? false }

        // 2. Surplus pods go, highest ordinal first.
        let condemned = byOrdinal.keys.filter { !range.contains($0) }.sorted(by: >)
        if !condemned.isEmpty {
            if ordered {
                let terminating = condemned.contains { byOrdinal[$0]!.metadata.deletionTimestamp != nil }
                if allHealthy && !terminating { d.delete.append(byOrdinal[condemned[0]]!.name) }
            } else {
                d.delete += condemned.compactMap { byOrdinal[$0] }.filter { $0.metadata.deletionTimestamp == nil }.map(\.name)
            }
        }

        // 3. Rolling update: the highest ordinal not yet at the update revision, once all are Ready.
        if rolling && allHealthy && condemned.isEmpty && d.create.isEmpty && d.delete.isEmpty {
            if let o = range.reversed().first(where: { $0 >= partition && revision(byOrdinal[$0]!) != updateRevision }) {
                d.evict.append(byOrdinal[o]!.name)
            }
        }

        // The update is done when every pod has the update revision.
        if s.updatedReplicas == replicas && s.replicas == replicas && byOrdinal.values.allSatisfy({ revision($0) == updateRevision }) {
            s.currentRevision = updateRevision
            s.currentReplicas = s.updatedReplicas
        }
        d.status = s
        return d
    }
}

struct StatefulSetError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

public final class StatefulSetController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "statefulset-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "statefulset-controller", clock: clock)
        informers.statefulSets.addHandler { [weak self] ev in
            switch ev { case .added(let x), .updated(_, let x), .deleted(let x): self?.queue.add(Informer<StatefulSet>.key(x)) }
        }
        informers.pods.addHandler { [weak self] ev in
            switch ev {
            case .added(let p), .updated(_, let p), .deleted(let p):
                if let ref = p.metadata.controllerRef, ref.kind == "StatefulSet" { self?.queue.add("\(p.namespace)/\(ref.name)") }
            }
        }
    }

    public func run(workers: Int = 2) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let sts = informers.statefulSets.get(key), sts.metadata.deletionTimestamp == nil, let uid = sts.metadata.uid, let spec = sts.spec else {
            return .done
        }
        let updateRevision = podTemplateHash(spec.template, collisionCount: sts.status?.collisionCount ?? 0)
        try await RevisionHistory.sync(client, informers, owner: sts, template: spec.template, hash: updateRevision, limit: spec.revisionHistoryLimit ?? 10)
        let currentRevision = sts.status?.currentRevision ?? updateRevision
        let pods = informers.pods.list(namespace: sts.namespace).filter { $0.metadata.controllerRef?.uid == uid }
        let d = StatefulSetLogic.decide(sts, pods: pods, currentRevision: currentRevision, updateRevision: updateRevision, now: clock.now())
        let range = (spec.ordinals?.start ?? 0)..<((spec.ordinals?.start ?? 0) + (spec.replicas ?? 1))
        for n in d.delete {
            // whenScaled: Delete: a surplus pod's claims go with it (they name it their owner first).
            if spec.persistentVolumeClaimRetentionPolicy?.whenScaled == "Delete", let p = pods.first(where: { $0.name == n }),
               let o = StatefulSetLogic.ordinal(of: p, in: sts), !range.contains(o) {
                try await adoptClaims(sts, ordinal: o, owner: ownerRef(p, controller: false))
            }
            do {
                try await client.delete(Pod.self, n, namespace: sts.namespace)
                events.record(sts, reason: "SuccessfulDelete", message: "delete Pod \(n) in StatefulSet \(sts.name) successful")
            } catch let s as Status where s.code == 404 {}
        }
        if await evictPods(client, events, owner: sts, d.evict) > 0 {
            if try await !writeStatus(client, sts, \.status, d.status) { return .requeue(after: 0) }
            return .requeue(after: 5)
        }
        for c in d.create {
            do { try await ensureClaims(sts, ordinal: c.ordinal) } catch {
                events.record(sts, type: "Warning", reason: "FailedCreate", message: "create Pod \(sts.name)-\(c.ordinal) in StatefulSet \(sts.name) failed error: \(error)")
                return .requeue(after: 5)
            }
            let template = c.revision == updateRevision ? spec.template
                : informers.revisions.get(namespace: sts.namespace, name: "\(sts.name)-\(c.revision)").flatMap(RevisionHistory.template(of:)) ?? spec.template
            do {
                let p = try await client.create(Self.newPod(sts, ordinal: c.ordinal, template: template, revision: c.revision))
                events.record(sts, reason: "SuccessfulCreate", message: "create Pod \(p.name) in StatefulSet \(sts.name) successful")
            } catch let s as Status where s.code == 409 {
                // Made already; the informer has not shown it yet.
            } catch {
                events.record(sts, type: "Warning", reason: "FailedCreate", message: "create Pod \(sts.name)-\(c.ordinal) in StatefulSet \(sts.name) failed error: \(error)")
            }
        }
        if try await !writeStatus(client, sts, \.status, d.status) { return .requeue(after: 0) }
        if let m = spec.minReadySeconds, m > 0, d.status.readyReplicas != d.status.availableReplicas { return .requeue(after: Double(m)) }
        return .done
    }

    public static func claimName(_ sts: StatefulSet, template: String, ordinal: Int) -> String { "\(template)-\(sts.name)-\(ordinal)" }

    /// The claim of one template for one ordinal, as Kubernetes makes it.
    public static func newClaim(_ sts: StatefulSet, template t: PersistentVolumeClaim, ordinal: Int) -> PersistentVolumeClaim {
        var labels = t.metadata.labels ?? [:]
        for (k, v) in sts.spec?.selector?.matchLabels ?? [:] { labels[k] = v }
        var meta = ObjectMeta(name: claimName(sts, template: t.name, ordinal: ordinal), namespace: sts.namespace, labels: labels, annotations: t.metadata.annotations)
        if sts.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted == "Delete" { meta.ownerReferences = [ownerRef(sts, controller: false)] }
        return PersistentVolumeClaim(metadata: meta, spec: t.spec)
    }

    /// Makes the claims a pod needs before the pod; a claim being deleted holds the pod back.
    func ensureClaims(_ sts: StatefulSet, ordinal: Int) async throws {
        for t in sts.spec?.volumeClaimTemplates ?? [] {
            let name = Self.claimName(sts, template: t.name, ordinal: ordinal)
            if let c = informers.claims.get(namespace: sts.namespace, name: name) {
                if c.metadata.deletionTimestamp != nil { throw StatefulSetError("PersistentVolumeClaim \(name) is being deleted; the pod waits for it to go") }
                continue
            }
            do {
                _ = try await client.create(Self.newClaim(sts, template: t, ordinal: ordinal))
                events.record(sts, reason: "SuccessfulCreate", message: "create Claim \(name) Pod \(sts.name)-\(ordinal) in StatefulSet \(sts.name) success")
            } catch let s as Status where s.code == 409 {}
        }
    }

    /// Names `owner` an owner of the ordinal's claims (for the garbage collector).
    func adoptClaims(_ sts: StatefulSet, ordinal: Int, owner: OwnerReference) async throws {
        for t in sts.spec?.volumeClaimTemplates ?? [] {
            let name = Self.claimName(sts, template: t.name, ordinal: ordinal)
            guard let c = informers.claims.get(namespace: sts.namespace, name: name), !(c.metadata.ownerReferences ?? []).contains(where: { $0.uid == owner.uid }) else { continue }
            let refs = (c.metadata.ownerReferences ?? []) + [owner]
            _ = try? await client.patch(PersistentVolumeClaim.self, name, namespace: sts.namespace,
                                        mergePatch: .object(["metadata": .object(["ownerReferences": (try? JSONValue.from(refs)) ?? .null])]))
        }
    }

    public static func newPod(_ sts: StatefulSet, ordinal: Int, template: PodTemplateSpec, revision: String) -> Pod {
        let name = "\(sts.name)-\(ordinal)"
        var labels = template.metadata?.labels ?? [:]
        labels[ControllerRevision.hashLabel] = revision
        labels[StatefulSetLabels.podName] = name
        labels[StatefulSetLabels.podIndex] = String(ordinal)
        var meta = ObjectMeta(name: name, namespace: sts.namespace, labels: labels, annotations: template.metadata?.annotations)
        meta.ownerReferences = [ownerRef(sts)]
        var spec = template.spec ?? PodSpec(containers: [])
        spec.hostname = name
        if let svc = sts.spec?.serviceName, !svc.isEmpty { spec.subdomain = svc }
        for t in sts.spec?.volumeClaimTemplates ?? [] {
            let v = Volume(name: t.name, persistentVolumeClaim: .object(["claimName": .string(claimName(sts, template: t.name, ordinal: ordinal))]))
            var vols = spec.volumes ?? []
            if let i = vols.firstIndex(where: { $0.name == t.name }) { vols[i] = v } else { vols.append(v) }
            spec.volumes = vols
        }
        return Pod(metadata: meta, spec: spec)
    }
}
