// Persistent storage: v1 PersistentVolume and PersistentVolumeClaim, storage.k8s.io/v1
// StorageClass. A claim asks for storage; the volume controller binds it to a volume (or has the
// built-in local-path provisioner make one on the node where the claim's first pod is placed).
import Foundation

public struct VolumeResourceRequirements: Codable, Hashable, Sendable {
    public var limits: [String: Quantity]?
    public var requests: [String: Quantity]?
    public init(requests: [String: Quantity]? = nil) { self.requests = requests }
}

public struct LocalVolumeSource: Codable, Hashable, Sendable {
    public var path: String
    public var fsType: String?
}

public struct PersistentVolumeSpec: Codable, Hashable, Sendable {
    public var capacity: [String: Quantity]?
    public var accessModes: [String]?
    public var claimRef: ObjectReference?
    public var persistentVolumeReclaimPolicy: String?
    public var storageClassName: String?
    public var mountOptions: [String]?
    public var volumeMode: String?
    /// {"required": {"nodeSelectorTerms": [...]}}
    public var nodeAffinity: JSONValue?
    public var volumeAttributesClassName: String?
    public var hostPath: Volume.HostPath?
    public var local: LocalVolumeSource?
    public var nfs: JSONValue?
    public var csi: JSONValue?
    public init() {}

    /// The sources set, by their field names.
    public var sources: [String] {
        var s: [String] = []
        if hostPath != nil { s.append("hostPath") }
        if local != nil { s.append("local") }
        if nfs != nil { s.append("nfs") }
        if csi != nil { s.append("csi") }
        return s
    }
    /// The directory on the node, for the sources the agent mounts (hostPath and local).
    public var nodePath: String? { hostPath?.path ?? local?.path }
}

public struct PersistentVolumeStatus: Codable, Hashable, Sendable {
    public var phase: String?
    public var message: String?
    public var reason: String?
    public var lastPhaseTransitionTime: String?
    public init(phase: String? = nil) { self.phase = phase }
}

public struct PersistentVolume: KubeObject, Hashable {
    public static let resource = Resources.persistentvolumes
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PersistentVolumeSpec?
    public var status: PersistentVolumeStatus?
    public init(metadata: ObjectMeta, spec: PersistentVolumeSpec?) { apiVersion = "v1"; kind = "PersistentVolume"; self.metadata = metadata; self.spec = spec }

    public var phase: String { status?.phase ?? "Pending" }
    /// Whether the volume's node affinity admits the node (no affinity admits every node).
    public func admits(nodeName: String, labels: [String: String]) -> Bool {
        guard let terms = spec?.nodeAffinity?["required"]?["nodeSelectorTerms"]?.arrayValue, !terms.isEmpty else { return true }
        return terms.contains { NodeSelection.matches($0, labels: labels, name: nodeName) }
    }
    /// The single node the volume is pinned to by a kubernetes.io/hostname In [node] term, if any.
    public var pinnedNode: String? {
        guard let terms = spec?.nodeAffinity?["required"]?["nodeSelectorTerms"]?.arrayValue, terms.count == 1 else { return nil }
        for e in terms[0]["matchExpressions"]?.arrayValue ?? [] where e["key"]?.stringValue == "kubernetes.io/hostname" && e["operator"]?.stringValue == "In" {
            if let v = e["values"]?.arrayValue, v.count == 1 { return v[0].stringValue }
        }
        return nil
    }
    public static func hostnameAffinity(_ node: String) -> JSONValue {
        .object(["required": .object(["nodeSelectorTerms": .array([.object(["matchExpressions": .array([.object([
            "key": .string("kubernetes.io/hostname"), "operator": .string("In"), "values": .array([.string(node)])])])])])])])
    }
}

public struct PersistentVolumeClaimSpec: Codable, Hashable, Sendable {
    public var accessModes: [String]?
    public var selector: LabelSelector?
    public var resources: VolumeResourceRequirements?
    public var volumeName: String?
    public var storageClassName: String?
    public var volumeMode: String?
    public var dataSource: JSONValue?
    public var dataSourceRef: JSONValue?
    public var volumeAttributesClassName: String?
    public init(accessModes: [String]? = nil, storage: Quantity? = nil, storageClassName: String? = nil) {
        self.accessModes = accessModes; self.storageClassName = storageClassName
        resources = storage.map { VolumeResourceRequirements(requests: ["storage": $0]) }
    }
    public var requestedStorage: Quantity? { resources?.requests?["storage"] }
}

public struct PersistentVolumeClaimStatus: Codable, Hashable, Sendable {
    public var phase: String?
    public var accessModes: [String]?
    public var capacity: [String: Quantity]?
    public var conditions: JSONValue?
    public var allocatedResources: [String: Quantity]?
    public var allocatedResourceStatuses: [String: String]?
    public var currentVolumeAttributesClassName: String?
    public var modifyVolumeStatus: JSONValue?
    public init(phase: String? = nil) { self.phase = phase }
}

public struct PersistentVolumeClaim: KubeObject, Hashable {
    public static let resource = Resources.persistentvolumeclaims
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PersistentVolumeClaimSpec?
    public var status: PersistentVolumeClaimStatus?
    public init(metadata: ObjectMeta, spec: PersistentVolumeClaimSpec?) { apiVersion = "v1"; kind = "PersistentVolumeClaim"; self.metadata = metadata; self.spec = spec }
    public var phase: String { status?.phase ?? "Pending" }
}

public struct StorageClass: KubeObject, Hashable {
    public static let resource = Resources.storageclasses
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var provisioner: String
    public var parameters: [String: String]?
    public var reclaimPolicy: String?
    public var mountOptions: [String]?
    public var allowVolumeExpansion: Bool?
    public var volumeBindingMode: String?
    public var allowedTopologies: JSONValue?
    public init(metadata: ObjectMeta, provisioner: String) { apiVersion = "storage.k8s.io/v1"; kind = "StorageClass"; self.metadata = metadata; self.provisioner = provisioner }
    public var isDefault: Bool { metadata.annotations?[StorageNames.defaultClassAnnotation] == "true" || metadata.annotations?[StorageNames.betaDefaultClassAnnotation] == "true" }
    public var waitsForFirstConsumer: Bool { volumeBindingMode == "WaitForFirstConsumer" }
}

/// Names that Kubernetes gives meaning to, and the built-in provisioner's.
public enum StorageNames {
    public static let defaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"
    public static let betaDefaultClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
    public static let selectedNode = "volume.kubernetes.io/selected-node"
    public static let storageProvisioner = "volume.kubernetes.io/storage-provisioner"
    public static let betaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
    public static let provisionedBy = "pv.kubernetes.io/provisioned-by"
    public static let bindCompleted = "pv.kubernetes.io/bind-completed"
    public static let boundByController = "pv.kubernetes.io/bound-by-controller"
    public static let pvcProtection = "kubernetes.io/pvc-protection"
    public static let pvProtection = "kubernetes.io/pv-protection"
    /// The built-in provisioner: a directory per claim on the node of its first pod.
    public static let localPathProvisioner = "orchestrator.io/local-path"
    public static let localPathClass = "local-path"
    /// Held by local-path volumes until their node's agent has removed the directory.
    public static let localPathCleanup = "orchestrator.io/local-path-cleanup"
    /// On a Node: the directory under which its agent keeps local-path volumes.
    public static let nodeStorageRoot = "orchestrator.io/local-path-root"
    /// On a local-path volume: the node its directory is on.
    public static let localPathNodeLabel = "orchestrator.io/local-path-node"
    public static let accessModes = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
    public static func shortMode(_ m: String) -> String {
        switch m { case "ReadWriteOnce": "RWO"; case "ReadOnlyMany": "ROX"; case "ReadWriteMany": "RWX"; case "ReadWriteOncePod": "RWOP"; default: m }
    }
}

// MARK: rules

private func validateAccessModes(_ modes: [String]?, _ field: String, _ errs: inout [FieldError]) {
    guard let modes, !modes.isEmpty else { errs.append(.init(.required, field, "at least 1 access mode is required")); return }
    for (i, m) in modes.enumerated() where !StorageNames.accessModes.contains(m) {
        errs.append(.init(.notSupported, "\(field)[\(i)]", "\"\(m)\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""))
    }
    if modes.contains("ReadWriteOncePod") && modes.count > 1 {
        errs.append(.init(.forbidden, field, "may not use ReadWriteOncePod with other access modes"))
    }
}

private func validateVolumeMode(_ m: String?, _ field: String, _ errs: inout [FieldError]) {
    guard let m else { return }
    if m == "Block" { errs.append(.init(.forbidden, field, "\"Block\": raw block volumes are not served by this cluster; use \"Filesystem\"")) }
    else if m != "Filesystem" { errs.append(.init(.notSupported, field, "\"\(m)\": supported values: \"Block\", \"Filesystem\"")) }
}

extension PersistentVolume: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.persistentVolumeReclaimPolicy = spec!.persistentVolumeReclaimPolicy ?? "Retain"
        spec!.volumeMode = spec!.volumeMode ?? "Filesystem"
        if status?.phase == nil { status = PersistentVolumeStatus(phase: "Pending") }
    }
    public mutating func admitCreate() {
        if !(metadata.finalizers ?? []).contains(StorageNames.pvProtection) { metadata.finalizers = (metadata.finalizers ?? []) + [StorageNames.pvProtection] }
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: false)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        if let s = spec.capacity?["storage"] {
            if s.milli <= 0 { errs.append(.init(.invalid, "spec.capacity.storage", "\(s): must be greater than zero")) }
        } else { errs.append(.init(.required, "spec.capacity", "storage capacity is required")) }
        for k in (spec.capacity ?? [:]).keys.sorted() where k != "storage" {
            errs.append(.init(.notSupported, "spec.capacity", "\"\(k)\": supported values: \"storage\""))
        }
        validateAccessModes(spec.accessModes, "spec.accessModes", &errs)
        let sources = spec.sources
        if sources.isEmpty { errs.append(.init(.required, "spec", "must specify a volume type")) }
        for extra in sources.dropFirst() { errs.append(.init(.forbidden, "spec.\(extra)", "may not specify more than 1 volume type")) }
        if let h = spec.hostPath {
            if !h.path.hasPrefix("/") { errs.append(.init(.invalid, "spec.hostPath.path", "\"\(h.path)\": must be an absolute path")) }
            if h.path.split(separator: "/").contains("..") { errs.append(.init(.invalid, "spec.hostPath.path", "\"\(h.path)\": must not contain '..'")) }
            if let t = h.type, !["", "DirectoryOrCreate", "Directory"].contains(t) {
                errs.append(.init(.notSupported, "spec.hostPath.type", "\"\(t)\": supported values for persistent volumes here: \"\", \"Directory\", \"DirectoryOrCreate\""))
            }
        }
        if let l = spec.local {
            if !l.path.hasPrefix("/") { errs.append(.init(.invalid, "spec.local.path", "\"\(l.path)\": must be an absolute path")) }
            if l.path.split(separator: "/").contains("..") { errs.append(.init(.invalid, "spec.local.path", "\"\(l.path)\": must not contain '..'")) }
            if spec.nodeAffinity == nil { errs.append(.init(.required, "spec.nodeAffinity", "Local volume requires node affinity")) }
        }
        if let p = spec.persistentVolumeReclaimPolicy {
            if p == "Recycle" { errs.append(.init(.forbidden, "spec.persistentVolumeReclaimPolicy", "\"Recycle\" is deprecated and not served by this cluster; use \"Delete\" or \"Retain\"")) }
            else if !["Retain", "Delete"].contains(p) { errs.append(.init(.notSupported, "spec.persistentVolumeReclaimPolicy", "\"\(p)\": supported values: \"Delete\", \"Recycle\", \"Retain\"")) }
        }
        validateVolumeMode(spec.volumeMode, "spec.volumeMode", &errs)
        if let na = spec.nodeAffinity {
            let terms = na["required"]?["nodeSelectorTerms"]?.arrayValue
            if terms == nil || terms!.isEmpty { errs.append(.init(.required, "spec.nodeAffinity.required.nodeSelectorTerms", "must have at least one node selector term")) }
        }
        if let c = spec.claimRef, (c.name ?? "").isEmpty { errs.append(.init(.required, "spec.claimRef.name", "")) }
        if let c = spec.storageClassName, !c.isEmpty, let why = Validation.dns1123Subdomain(c) { errs.append(.init(.invalid, "spec.storageClassName", "\"\(c)\": \(why)")) }
        return errs
    }
    public func validateUpdate(old: PersistentVolume) -> [FieldError] {
        guard let a = spec, let b = old.spec else { return [] }
        var errs: [FieldError] = []
        if a.hostPath != b.hostPath || a.local != b.local || a.nfs != b.nfs || a.csi != b.csi {
            errs.append(.init(.forbidden, "spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation"))
        }
        if b.nodeAffinity != nil && a.nodeAffinity != b.nodeAffinity { errs.append(.init(.invalid, "spec.nodeAffinity", "field is immutable")) }
        if a.volumeMode != b.volumeMode { errs.append(.init(.invalid, "spec.volumeMode", "field is immutable")) }
        return errs
    }
    public var selectableFields: [String: String] { baseFields.merging(["status.phase": phase]) { $1 } }
}

extension PersistentVolumeClaim: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.volumeMode = spec!.volumeMode ?? "Filesystem"
        if status?.phase == nil { status = PersistentVolumeClaimStatus(phase: "Pending") }
    }
    public mutating func admitCreate() {
        if !(metadata.finalizers ?? []).contains(StorageNames.pvcProtection) { metadata.finalizers = (metadata.finalizers ?? []) + [StorageNames.pvcProtection] }
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        validateAccessModes(spec.accessModes, "spec.accessModes", &errs)
        if let s = spec.requestedStorage {
            if s.milli <= 0 { errs.append(.init(.invalid, "spec.resources.requests[storage]", "\(s): must be greater than zero")) }
        } else { errs.append(.init(.required, "spec.resources.requests[storage]", "")) }
        validateVolumeMode(spec.volumeMode, "spec.volumeMode", &errs)
        if let c = spec.storageClassName, !c.isEmpty, let why = Validation.dns1123Subdomain(c) { errs.append(.init(.invalid, "spec.storageClassName", "\"\(c)\": \(why)")) }
        if spec.dataSource != nil || spec.dataSourceRef != nil {
            errs.append(.init(.forbidden, "spec.dataSource", "volume populators and snapshots are not served by this cluster"))
        }
        return errs
    }
    public func validateUpdate(old: PersistentVolumeClaim) -> [FieldError] {
        guard var a = spec, var b = old.spec else { return [] }
        var errs: [FieldError] = []
        if let n = a.requestedStorage, let o = b.requestedStorage, n.milli < o.milli {
            errs.append(.init(.forbidden, "spec.resources.requests.storage", "field can not be less than status.capacity"))
        }
        // The binder fills volumeName and a missing class once; the rest is fixed at creation.
        if (b.volumeName ?? "").isEmpty { b.volumeName = a.volumeName }
        if b.storageClassName == nil { b.storageClassName = a.storageClassName }
        a.resources = nil; b.resources = nil
        if a != b { errs.append(.init(.forbidden, "spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")) }
        return errs
    }
    public var selectableFields: [String: String] { baseFields.merging(["status.phase": phase]) { $1 } }
}

extension StorageClass: ServedKind {
    public mutating func applyDefaults() {
        reclaimPolicy = reclaimPolicy ?? "Delete"
        volumeBindingMode = volumeBindingMode ?? "Immediate"
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: false)
        if provisioner.isEmpty { errs.append(.init(.required, "provisioner", "")) }
        else if let why = Validation.qualifiedName(provisioner) { errs.append(.init(.invalid, "provisioner", "\"\(provisioner)\": \(why)")) }
        if let p = reclaimPolicy, !["Retain", "Delete"].contains(p) { errs.append(.init(.notSupported, "reclaimPolicy", "\"\(p)\": supported values: \"Delete\", \"Retain\"")) }
        if let m = volumeBindingMode, !["Immediate", "WaitForFirstConsumer"].contains(m) {
            errs.append(.init(.notSupported, "volumeBindingMode", "\"\(m)\": supported values: \"Immediate\", \"WaitForFirstConsumer\""))
        }
        if provisioner == StorageNames.localPathProvisioner && volumeBindingMode == "Immediate" {
            errs.append(.init(.invalid, "volumeBindingMode", "\"Immediate\": the \(StorageNames.localPathProvisioner) provisioner needs \"WaitForFirstConsumer\": a directory is made on the node of the claim's first pod"))
        }
        return errs
    }
    public func validateUpdate(old: StorageClass) -> [FieldError] {
        var errs: [FieldError] = []
        if parameters ?? [:] != old.parameters ?? [:] { errs.append(.init(.forbidden, "parameters", "updates to parameters are forbidden.")) }
        if provisioner != old.provisioner { errs.append(.init(.forbidden, "provisioner", "updates to provisioner are forbidden.")) }
        if reclaimPolicy != old.reclaimPolicy { errs.append(.init(.forbidden, "reclaimPolicy", "updates to reclaimPolicy are forbidden.")) }
        if volumeBindingMode != old.volumeBindingMode { errs.append(.init(.forbidden, "volumeBindingMode", "field is immutable")) }
        return errs
    }
}

// MARK: tables

extension PersistentVolume: TablePrintable {
    public static let columns = [nameCol, TableColumn("Capacity"), TableColumn("Access Modes"), TableColumn("Reclaim Policy"), TableColumn("Status"),
                                 TableColumn("Claim"), TableColumn("StorageClass"), TableColumn("VolumeAttributesClass"), TableColumn("Reason"), ageCol,
                                 TableColumn("VolumeMode", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let claim = spec?.claimRef.map { "\($0.namespace ?? "")/\($0.name ?? "")" } ?? ""
        return [.string(name), .string(spec?.capacity?["storage"]?.description ?? ""), .string((spec?.accessModes ?? []).map(StorageNames.shortMode).joined(separator: ",")),
                .string(spec?.persistentVolumeReclaimPolicy ?? ""), .string(phase), .string(claim), .string(spec?.storageClassName ?? ""),
                .string(spec?.volumeAttributesClassName ?? "<unset>"), .string(status?.reason ?? ""), age, .string(spec?.volumeMode ?? "Filesystem")]
    }
}

extension PersistentVolumeClaim: TablePrintable {
    public static let columns = [nameCol, TableColumn("Status"), TableColumn("Volume"), TableColumn("Capacity"), TableColumn("Access Modes"),
                                 TableColumn("StorageClass"), TableColumn("VolumeAttributesClass"), ageCol, TableColumn("VolumeMode", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let bound = phase == "Bound"
        return [.string(name), .string(metadata.deletionTimestamp != nil ? "Terminating" : phase), .string(spec?.volumeName ?? ""),
                .string(bound ? status?.capacity?["storage"]?.description ?? "" : ""),
                .string(bound ? (status?.accessModes ?? []).map(StorageNames.shortMode).joined(separator: ",") : ""),
                .string(spec?.storageClassName ?? ""), .string(spec?.volumeAttributesClassName ?? "<unset>"), age, .string(spec?.volumeMode ?? "Filesystem")]
    }
}

extension StorageClass: TablePrintable {
    public static let columns = [nameCol, TableColumn("Provisioner"), TableColumn("ReclaimPolicy"), TableColumn("VolumeBindingMode"),
                                 TableColumn("AllowVolumeExpansion"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        [.string(isDefault ? "\(name) (default)" : name), .string(provisioner), .string(reclaimPolicy ?? "Delete"), .string(volumeBindingMode ?? "Immediate"),
         .string(allowVolumeExpansion == true ? "true" : "false"), age]
    }
}
