// The persistent-volume controller: binds claims to volumes, provisions local-path volumes on
// the node the scheduler picked for a claim's first pod, releases and reclaims volumes whose
// claims are gone, and lifts the protection finalizers of claims no pod uses and of volumes no
// claim holds.
//
//   claim Pending ──(matching Available volume)──────────────▶ volume.claimRef, claim.volumeName ─▶ Bound
//        │ class WaitForFirstConsumer: waits for the scheduler's selected-node annotation
//        └──(class provisioner is local-path)──▶ new volume pinned to that node ──────────────────▶ Bound
//   claim deleted ─▶ volume Released ─▶ Retain: kept │ Delete: the volume is deleted and its
//                                                     node's agent removes the directory
import Foundation
import Logging
import API
import Client

public struct VolumeEvent: Error, Equatable, Sendable {
    public var type: String
    public var reason: String
    public var message: String
    init(_ type: String, _ reason: String, _ message: String) { self.type = type; self.reason = reason; self.message = message }
}

public struct ClaimDecision: Equatable, Sendable {
    /// The status to write, when it changes.
    public var status: PersistentVolumeClaimStatus?
    /// An existing volume to bind the claim to.
    public var bindTo: String?
    /// A volume to create for the claim (the built-in provisioner).
    public var provision: PersistentVolume?
    /// The claim is deleted and unused: its protection finalizer goes.
    public var unprotect = false
    public var events: [VolumeEvent] = []
    public var requeueAfter: Double?
}

public struct VolumeDecision: Equatable, Sendable {
    public var status: PersistentVolumeStatus?
    /// The claim is gone and the policy is Delete: the volume object goes.
    public var delete = false
    /// The volume is deleted and no claim holds it: its protection finalizer goes.
    public var unprotect = false
    public var events: [VolumeEvent] = []
}

public enum VolumeLogic {
    static func claimKey(_ ns: String, _ name: String) -> String { "\(ns)/\(name)" }

    static func holds(_ pv: PersistentVolume, _ claim: PersistentVolumeClaim) -> Bool {
        guard let ref = pv.spec?.claimRef else { return false }
        return ref.name == claim.name && (ref.namespace ?? "") == claim.namespace && (ref.uid == nil || ref.uid == claim.metadata.uid)
    }

    /// Whether a volume can serve the claim (class, modes, size, mode, selector, node).
    static func fits(_ pv: PersistentVolume, _ claim: PersistentVolumeClaim, node: Node?) -> Bool {
        guard let ps = pv.spec, let cs = claim.spec, pv.metadata.deletionTimestamp == nil else { return false }
        if ps.claimRef != nil && !holds(pv, claim) { return false }
        if ps.claimRef == nil && pv.phase != "Available" { return false }
        if (ps.storageClassName ?? "") != (cs.storageClassName ?? "") { return false }
        if !Set(cs.accessModes ?? []).isSubset(of: Set(ps.accessModes ?? [])) { return false }
        if (ps.capacity?["storage"]?.milli ?? 0) < (cs.requestedStorage?.milli ?? 0) { return false }
        if (ps.volumeMode ?? "Filesystem") != (cs.volumeMode ?? "Filesystem") { return false }
        if let sel = cs.selector, !sel.matches(pv.labels) { return false }
        if let node, !pv.admits(nodeName: node.name, labels: node.labels) { return false }
        return true
    }

    static func boundStatus(_ claim: PersistentVolumeClaim, _ pv: PersistentVolume) -> PersistentVolumeClaimStatus {
        var st = claim.status ?? PersistentVolumeClaimStatus()
        st.phase = "Bound"
        st.accessModes = pv.spec?.accessModes
        st.capacity = pv.spec?.capacity
        return st
    }

    /// The local-path volume for a claim on a node, or why there cannot be one.
    public static func localPathVolume(for claim: PersistentVolumeClaim, class sc: StorageClass, node: Node) -> Result<PersistentVolume, VolumeEvent> {
        guard let root = node.metadata.annotations?[StorageNames.nodeStorageRoot], root.hasPrefix("/") else {
            return .failure(VolumeEvent("Warning", "ProvisioningFailed",
                "failed to provision volume with StorageClass \"\(sc.name)\": node \"\(node.name)\" does not say where its local volumes go (annotation \(StorageNames.nodeStorageRoot)); is its agent running?"))
        }
        let uid = claim.metadata.uid ?? ""
        var pv = PersistentVolume(metadata: ObjectMeta(name: "pvc-\(uid)"), spec: PersistentVolumeSpec())
        pv.metadata.annotations = [StorageNames.provisionedBy: sc.provisioner, StorageNames.selectedNode: node.name]
        pv.metadata.labels = [StorageNames.localPathNodeLabel: node.name]
        pv.metadata.finalizers = [StorageNames.localPathCleanup]
        let trimmed = root.hasSuffix("/") ? String(root.dropLast()) : root
        pv.spec!.hostPath = Volume.HostPath(path: "\(trimmed)/pvc-\(uid)_\(claim.namespace)_\(claim.name)", type: "DirectoryOrCreate")
        pv.spec!.capacity = claim.spec?.requestedStorage.map { ["storage": $0] }
        pv.spec!.accessModes = claim.spec?.accessModes
        pv.spec!.persistentVolumeReclaimPolicy = sc.reclaimPolicy ?? "Delete"
        pv.spec!.storageClassName = sc.name
        pv.spec!.volumeMode = claim.spec?.volumeMode ?? "Filesystem"
        pv.spec!.nodeAffinity = PersistentVolume.hostnameAffinity(node.name)
        pv.spec!.claimRef = ObjectReference(kind: "PersistentVolumeClaim", namespace: claim.namespace, name: claim.name, uid: uid, apiVersion: "v1")
        return .success(pv)
    }

    /// Decides for a claim given the volumes, classes, nodes and the pods using it.
    public static func decideClaim(_ claim: PersistentVolumeClaim, volumes: [PersistentVolume], classes: [String: StorageClass],
                                   nodes: [String: Node], podsUsing: [Pod]) -> ClaimDecision {
        var d = ClaimDecision()
        let key = claimKey(claim.namespace, claim.name)
        if claim.metadata.deletionTimestamp != nil {
            let used = podsUsing.contains { !$0.isTerminal }
            d.unprotect = !used && (claim.metadata.finalizers ?? []).contains(StorageNames.pvcProtection)
            return d
        }
        guard let spec = claim.spec else { return d }
        func setStatus(_ st: PersistentVolumeClaimStatus) { if st != claim.status { d.status = st } }

        if let vn = spec.volumeName, !vn.isEmpty {
            guard let pv = volumes.first(where: { $0.name == vn }) else {
                if claim.phase == "Bound" || claim.phase == "Lost" {
                    var st = claim.status ?? PersistentVolumeClaimStatus(); st.phase = "Lost"
                    if claim.phase != "Lost" { d.events.append(VolumeEvent("Warning", "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")) }
                    setStatus(st)
                } else {
                    d.events.append(VolumeEvent("Warning", "FailedBinding", "volume \"\(vn)\" not found"))
                    d.requeueAfter = 15
                }
                return d
            }
            if pv.spec?.claimRef == nil {
                d.bindTo = pv.name   // pre-bound by the claim: the volume takes it
            } else if holds(pv, claim) {
                setStatus(boundStatus(claim, pv))
            } else {
                d.events.append(VolumeEvent("Warning", "FailedBinding", "volume \"\(vn)\" already bound to a different claim."))
                var st = claim.status ?? PersistentVolumeClaimStatus(); st.phase = claim.phase == "Bound" ? "Lost" : "Pending"
                setStatus(st)
            }
            return d
        }

        let className = spec.storageClassName ?? ""
        let sc = classes[className]
        let delayed = sc?.waitsForFirstConsumer == true
        let selected = claim.metadata.annotations?[StorageNames.selectedNode]
        if delayed && selected == nil {
            d.events.append(VolumeEvent("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"))
            setStatus(PersistentVolumeClaimStatus(phase: "Pending"))
            return d
        }
        let node = selected.flatMap { nodes[$0] }
        if delayed && node == nil {
            d.events.append(VolumeEvent("Warning", "ProvisioningFailed", "the node \"\(selected!)\" selected for the claim's first pod does not exist"))
            d.requeueAfter = 15
            return d
        }
        // Volumes reserved for this claim first, then the smallest that fits (as Kubernetes).
        let candidates = volumes.filter { fits($0, claim, node: delayed ? node : nil) }
        if let pv = candidates.first(where: { $0.spec?.claimRef != nil }) ?? candidates.min(by: {
            ($0.spec?.capacity?["storage"]?.milli ?? 0, $0.name) < ($1.spec?.capacity?["storage"]?.milli ?? 0, $1.name) }) {
            d.bindTo = pv.name
            return d
        }
        guard let sc else {
            if className.isEmpty {
                d.events.append(VolumeEvent("Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set"))
            } else {
                d.events.append(VolumeEvent("Warning", "ProvisioningFailed", "storageclass.storage.k8s.io \"\(className)\" not found"))
            }
            setStatus(PersistentVolumeClaimStatus(phase: "Pending"))
            d.requeueAfter = 30
            return d
        }
        guard sc.provisioner == StorageNames.localPathProvisioner else {
            d.events.append(VolumeEvent("Normal", "ExternalProvisioning",
                "Waiting for a volume to be created either by the external provisioner '\(sc.provisioner)' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."))
            setStatus(PersistentVolumeClaimStatus(phase: "Pending"))
            d.requeueAfter = 30
            return d
        }
        guard let node else {
            d.events.append(VolumeEvent("Warning", "ProvisioningFailed", "the \(sc.provisioner) provisioner needs a node: use volumeBindingMode WaitForFirstConsumer"))
            return d
        }
        switch localPathVolume(for: claim, class: sc, node: node) {
        case .success(let pv):
            d.provision = pv
            d.events.append(VolumeEvent("Normal", "Provisioning", "External provisioner is provisioning volume for claim \"\(key)\""))
        case .failure(let e):
            d.events.append(e)
            d.requeueAfter = 10
        }
        setStatus(PersistentVolumeClaimStatus(phase: "Pending"))
        return d
    }

    /// Decides for a volume given the claim its claimRef names (nil when there is none).
    public static func decideVolume(_ pv: PersistentVolume, claim: PersistentVolumeClaim?, now: Date) -> VolumeDecision {
        var d = VolumeDecision()
        let ref = pv.spec?.claimRef
        let heldBy = claim.flatMap { holds(pv, $0) ? $0 : nil }
        if pv.metadata.deletionTimestamp != nil {
            let inUse = heldBy.map { $0.metadata.deletionTimestamp == nil && $0.spec?.volumeName == pv.name } ?? false
            d.unprotect = !inUse && (pv.metadata.finalizers ?? []).contains(StorageNames.pvProtection)
            return d
        }
        var st = pv.status ?? PersistentVolumeStatus()
        let old = st
        if ref == nil {
            st.phase = "Available"; st.message = nil; st.reason = nil
        } else if let c = heldBy {
            // Bound once the claim names it (or while the binding is being written).
            if (c.spec?.volumeName ?? "").isEmpty || c.spec?.volumeName == pv.name { st.phase = "Bound"; st.message = nil; st.reason = nil }
        } else if ref?.uid == nil {
            st.phase = "Available"   // reserved for a claim that does not exist yet
        } else if pv.phase != "Released" && pv.phase != "Failed" {
            st.phase = "Released"
            st.message = nil
        }
        if st.phase == "Released" {
            switch pv.spec?.persistentVolumeReclaimPolicy ?? "Retain" {
            case "Delete":
                if pv.metadata.annotations?[StorageNames.provisionedBy] == StorageNames.localPathProvisioner {
                    d.delete = true
                } else {
                    st.phase = "Failed"
                    st.message = "this cluster deletes only the volumes its local-path provisioner made; remove the data and the PersistentVolume by hand"
                    d.events.append(VolumeEvent("Warning", "VolumeFailedDelete", st.message!))
                }
            default: break
            }
        }
        if st.phase != old.phase { st.lastPhaseTransitionTime = KubeTime.format(now) }
        if st != pv.status { d.status = st }
        return d
    }
}

public final class VolumeController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "persistentvolume-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "persistentvolume-controller", clock: clock)
        informers.claims.addHandler { [weak self] ev in
            switch ev {
            case .added(let c), .updated(_, let c), .deleted(let c):
                self?.queue.add("pvc:\(c.namespace)/\(c.name)")
                if let v = c.spec?.volumeName, !v.isEmpty { self?.queue.add("pv:\(v)") }
            }
        }
        informers.volumes.addHandler { [weak self] ev in
            switch ev {
            case .added(let v), .updated(_, let v), .deleted(let v):
                self?.queue.add("pv:\(v.name)")
                if let r = v.spec?.claimRef, let n = r.name { self?.queue.add("pvc:\(r.namespace ?? "")/\(n)") }
                // A volume came free: claims still waiting may take it.
                if case .deleted = ev {} else if v.spec?.claimRef == nil { self?.queuePendingClaims() }
            }
        }
        informers.storageClasses.addHandler { [weak self] _ in self?.queuePendingClaims() }
        informers.pods.addHandler { [weak self] ev in
            switch ev {
            case .added(let p), .updated(_, let p), .deleted(let p):
                for v in p.spec?.volumes ?? [] { if let n = v.persistentVolumeClaim?["claimName"]?.stringValue { self?.queue.add("pvc:\(p.namespace)/\(n)") } }
            }
        }
    }

    func queuePendingClaims() {
        for c in informers.claims.list() where (c.spec?.volumeName ?? "").isEmpty { queue.add("pvc:\(c.namespace)/\(c.name)") }
    }

    public func run(workers: Int = 2) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in
            if key.hasPrefix("pvc:") { return try await self.syncClaim(String(key.dropFirst(4))) }
            return try await self.syncVolume(String(key.dropFirst(3)))
        }
    }

    func record(_ obj: some KubeObject, _ e: VolumeEvent) { events.record(obj, type: e.type, reason: e.reason, message: e.message) }

    func syncClaim(_ key: String) async throws -> ReconcileResult {
        guard let claim = informers.claims.get(key) else { return .done }
        let classes = Dictionary(informers.storageClasses.list().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let nodes = Dictionary(informers.nodes.list().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let d = VolumeLogic.decideClaim(claim, volumes: informers.volumes.list(), classes: classes, nodes: nodes,
                                        podsUsing: informers.pods.byIndex("claim", key))
        for e in d.events { record(claim, e) }
        if d.unprotect {
            let rest = (claim.metadata.finalizers ?? []).filter { $0 != StorageNames.pvcProtection }
            _ = try await client.patch(PersistentVolumeClaim.self, claim.name, namespace: claim.namespace,
                                       mergePatch: .object(["metadata": .object(["finalizers": rest.isEmpty ? .null : .array(rest.map { .string($0) })])]))
            return .done
        }
        if var pv = d.provision {
            do {
                pv = try await client.create(pv)
                events.record(claim, reason: "ProvisioningSucceeded", message: "Successfully provisioned volume \(pv.name)")
            } catch let s as Status where s.code == 409 {
                pv = try await client.get(PersistentVolume.self, pv.name)
            }
            try await setVolumeName(claim, pv.name)
            return .done
        }
        if let name = d.bindTo {
            guard var pv = informers.volumes.get(name) else { return .requeue(after: 1) }
            if pv.spec?.claimRef?.uid == nil {
                pv.spec!.claimRef = ObjectReference(kind: "PersistentVolumeClaim", namespace: claim.namespace, name: claim.name, uid: claim.metadata.uid, apiVersion: "v1")
                pv.metadata.annotations = (pv.metadata.annotations ?? [:]).merging([StorageNames.boundByController: "yes"]) { $1 }
                do { _ = try await client.update(pv) } catch let s as Status where s.code == 409 { return .requeue(after: 0.2) }
            }
            try await setVolumeName(claim, name)
            return .done
        }
        if let st = d.status {
            var c = claim
            c.status = st
            do { _ = try await client.updateStatus(c) } catch let s as Status where s.code == 409 || s.code == 404 { return .requeue(after: 0.2) }
            if st.phase == "Bound" && claim.phase != "Bound", let v = claim.spec?.volumeName {
                logger.info("claim bound", metadata: ["claim": "\(key)", "volume": "\(v)"])
            }
        }
        return d.requeueAfter.map { .requeue(after: $0) } ?? .done
    }

    func setVolumeName(_ claim: PersistentVolumeClaim, _ volume: String) async throws {
        var c = claim
        c.spec!.volumeName = volume
        c.metadata.annotations = (c.metadata.annotations ?? [:]).merging([StorageNames.bindCompleted: "yes", StorageNames.boundByController: "yes"]) { $1 }
        do { _ = try await client.update(c) } catch let s as Status where s.code == 409 { queue.add("pvc:\(claim.namespace)/\(claim.name)") }
    }

    func syncVolume(_ name: String) async throws -> ReconcileResult {
        guard let pv = informers.volumes.get(name) else { return .done }
        let claim = pv.spec?.claimRef.flatMap { r in r.name.flatMap { informers.claims.get("\(r.namespace ?? "")/\($0)") } }
        let d = VolumeLogic.decideVolume(pv, claim: claim, now: clock.now())
        if d.delete || d.status?.phase == "Released", let r = pv.spec?.claimRef, let n = r.name {
            // The cache may lag: the apiserver confirms the claim is gone before anything is let go.
            do {
                let live = try await client.get(PersistentVolumeClaim.self, n, namespace: r.namespace ?? "")
                if r.uid == nil || live.metadata.uid == r.uid { return .requeue(after: 1) }
            } catch let s as Status where s.code == 404 {}
        }
        for e in d.events { record(pv, e) }
        if d.unprotect {
            let rest = (pv.metadata.finalizers ?? []).filter { $0 != StorageNames.pvProtection }
            _ = try await client.patch(PersistentVolume.self, pv.name,
                                       mergePatch: .object(["metadata": .object(["finalizers": rest.isEmpty ? .null : .array(rest.map { .string($0) })])]))
            return .done
        }
        if let st = d.status {
            var v = pv
            v.status = st
            do { _ = try await client.updateStatus(v) } catch let s as Status where s.code == 409 || s.code == 404 { return .requeue(after: 0.2) }
        }
        if d.delete {
            logger.info("deleting a released volume", metadata: ["volume": "\(name)"])
            do { try await client.delete(PersistentVolume.self, name) } catch let s as Status where s.code == 404 {}
        }
        return .done
    }
}
