// Filter: a pod's persistent volume claims. A bound claim keeps the pod on the nodes its
// volume's node affinity admits (a local-path volume: the one node its directory is on). A
// claim of a WaitForFirstConsumer class that is not bound yet needs a node where it can be
// served: an available volume there, or a provisioner that can make one there. Once a node is
// picked, the scheduler names it on such claims (volume.kubernetes.io/selected-node) before
// binding the pod, and the volume controller binds or provisions for it.
import API

public struct VolumeRequirements: Sendable {
    public struct Bound: Sendable { public var claim: String; public var volume: PersistentVolume }
    public struct Delayed: Sendable { public var claim: PersistentVolumeClaim; public var storageClass: StorageClass; public var candidates: [PersistentVolume] }
    public var bound: [Bound] = []
    public var delayed: [Delayed] = []
    public var isEmpty: Bool { bound.isEmpty && delayed.isEmpty }

    /// What the pod's claims ask of its node, or why no node can take it now.
    public static func of(_ pod: Pod, claim: (String) -> PersistentVolumeClaim?, volume: (String) -> PersistentVolume?,
                          volumes: () -> [PersistentVolume], storageClass: (String) -> StorageClass?) -> Result<VolumeRequirements, UnschedulableReason> {
        var r = VolumeRequirements()
        for v in pod.spec?.volumes ?? [] {
            guard let name = v.claimName else { continue }
            guard let c = claim(name) else { return .failure(.init("persistentvolumeclaim \"\(name)\" not found")) }
            if c.metadata.deletionTimestamp != nil { return .failure(.init("persistentvolumeclaim \"\(name)\" is being deleted")) }
            if let vn = c.spec?.volumeName, !vn.isEmpty {
                guard let pv = volume(vn) else { return .failure(.init("persistentvolumeclaim \"\(name)\" bound to non-existent persistentvolume \"\(vn)\"")) }
                r.bound.append(Bound(claim: name, volume: pv))
                continue
            }
            let className = c.spec?.storageClassName ?? ""
            guard let sc = storageClass(className), sc.waitsForFirstConsumer else {
                return .failure(.init("pod has unbound immediate PersistentVolumeClaims"))
            }
            // Volumes this claim could take, wherever they are.
            let candidates = volumes().filter { pv in
                guard let ps = pv.spec, pv.metadata.deletionTimestamp == nil, (ps.storageClassName ?? "") == className else { return false }
                if let ref = ps.claimRef { return ref.name == c.name && ref.namespace == c.namespace && (ref.uid == nil || ref.uid == c.metadata.uid) }
                return pv.phase == "Available" && (ps.capacity?["storage"]?.milli ?? 0) >= (c.spec?.requestedStorage?.milli ?? 0)
                    && Set(c.spec?.accessModes ?? []).isSubset(of: Set(ps.accessModes ?? []))
            }
            r.delayed.append(Delayed(claim: c, storageClass: sc, candidates: candidates))
        }
        return .success(r)
    }

    /// For the unschedulable message: where the pod's bound volumes are.
    public var placementNote: String {
        let pinned = bound.compactMap { b in b.volume.pinnedNode.map { "persistentvolume \"\(b.volume.name)\" of claim \"\(b.claim)\" is on node \"\($0)\"" } }
        return pinned.isEmpty ? "" : " (" + pinned.joined(separator: "; ") + ")"
    }
}

public struct UnschedulableReason: Error, Sendable {
    public var message: String
    init(_ m: String) { message = m }
}

public struct VolumeBinding: FilterPlugin {
    public let name = "VolumeBinding"
    let requirements: VolumeRequirements
    public init(_ r: VolumeRequirements) { requirements = r }
    static let conflict = "node(s) had volume node affinity conflict"
    static let noVolume = "node(s) didn't find available persistent volumes to bind"
    static let noRoot = "node(s) did not say where local-path volumes go"

    public func filter(_ pod: Pod, _ request: PodRequest, _ n: NodeInfo) -> FilterResult {
        let labels = n.node.labels
        for b in requirements.bound where !b.volume.admits(nodeName: n.name, labels: labels) { return .unfit(Self.conflict) }
        for d in requirements.delayed {
            if d.candidates.contains(where: { $0.admits(nodeName: n.name, labels: labels) }) { continue }
            switch d.storageClass.provisioner {
            case StorageNames.localPathProvisioner:
                if n.node.metadata.annotations?[StorageNames.nodeStorageRoot] == nil { return .unfit(Self.noRoot) }
            case "kubernetes.io/no-provisioner":
                return .unfit(Self.noVolume)
            default:
                break   // an external provisioner decides where it can make the volume
            }
        }
        return .fit
    }
}
