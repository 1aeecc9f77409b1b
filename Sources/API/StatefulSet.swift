// apps/v1 StatefulSet: pods with stable names NAME-0..N-1 (hostname and subdomain set, so the
// headless Service named by serviceName gives each a DNS name), made and removed in order.
import Foundation

public struct RollingUpdateStatefulSetStrategy: Codable, Hashable, Sendable {
    public var partition: Int?
    public var maxUnavailable: IntOrString?
    public init(partition: Int? = nil, maxUnavailable: IntOrString? = nil) { self.partition = partition; self.maxUnavailable = maxUnavailable }
}
public struct StatefulSetUpdateStrategy: Codable, Hashable, Sendable {
    public var type: String?
    public var rollingUpdate: RollingUpdateStatefulSetStrategy?
    public init(type: String? = nil, rollingUpdate: RollingUpdateStatefulSetStrategy? = nil) { self.type = type; self.rollingUpdate = rollingUpdate }
}
public struct StatefulSetPersistentVolumeClaimRetentionPolicy: Codable, Hashable, Sendable {
    public var whenDeleted: String?
    public var whenScaled: String?
}
public struct StatefulSetOrdinals: Codable, Hashable, Sendable {
    public var start: Int?
}
public struct StatefulSetSpec: Codable, Hashable, Sendable {
    public var replicas: Int?
    public var selector: LabelSelector?
    public var template: PodTemplateSpec
    public var volumeClaimTemplates: [PersistentVolumeClaim]?
    public var serviceName: String?
    public var podManagementPolicy: String?
    public var updateStrategy: StatefulSetUpdateStrategy?
    public var revisionHistoryLimit: Int?
    public var minReadySeconds: Int?
    public var persistentVolumeClaimRetentionPolicy: StatefulSetPersistentVolumeClaimRetentionPolicy?
    public var ordinals: StatefulSetOrdinals?
    public init(replicas: Int?, selector: LabelSelector?, template: PodTemplateSpec, serviceName: String? = nil) {
        self.replicas = replicas; self.selector = selector; self.template = template; self.serviceName = serviceName
    }
}
public struct StatefulSetStatus: Codable, Hashable, Sendable {
    public var observedGeneration: Int64?
    public var replicas: Int
    public var readyReplicas: Int?
    public var currentReplicas: Int?
    public var updatedReplicas: Int?
    public var currentRevision: String?
    public var updateRevision: String?
    public var collisionCount: Int?
    public var conditions: [WorkloadCondition]?
    public var availableReplicas: Int?
    public init() { replicas = 0 }
}
public struct StatefulSet: KubeObject, Hashable {
    public static let resource = Resources.statefulsets
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: StatefulSetSpec?
    public var status: StatefulSetStatus?
    public init(metadata: ObjectMeta, spec: StatefulSetSpec?) { apiVersion = "apps/v1"; kind = "StatefulSet"; self.metadata = metadata; self.spec = spec }
}

public enum StatefulSetLabels {
    public static let podName = "statefulset.kubernetes.io/pod-name"
    public static let podIndex = "apps.kubernetes.io/pod-index"
}

extension StatefulSet: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.replicas = spec!.replicas ?? 1
        spec!.podManagementPolicy = spec!.podManagementPolicy ?? "OrderedReady"
        var u = spec!.updateStrategy ?? StatefulSetUpdateStrategy()
        u.type = u.type ?? "RollingUpdate"
        if u.type == "RollingUpdate" {
            var ru = u.rollingUpdate ?? RollingUpdateStatefulSetStrategy()
            ru.partition = ru.partition ?? 0
            u.rollingUpdate = ru
        }
        spec!.updateStrategy = u
        spec!.revisionHistoryLimit = spec!.revisionHistoryLimit ?? 10
        var r = spec!.persistentVolumeClaimRetentionPolicy ?? StatefulSetPersistentVolumeClaimRetentionPolicy()
        r.whenDeleted = r.whenDeleted ?? "Retain"; r.whenScaled = r.whenScaled ?? "Retain"
        spec!.persistentVolumeClaimRetentionPolicy = r
        spec!.template.spec?.applyDefaults()
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        // The claim templates are volumes of every pod.
        var template = spec.template
        if let ts = spec.volumeClaimTemplates, !ts.isEmpty, template.spec != nil {
            var vols = template.spec!.volumes ?? []
            for t in ts where !vols.contains(where: { $0.name == (t.metadata.name ?? "") }) {
                vols.append(Volume(name: t.metadata.name ?? "", persistentVolumeClaim: .object(["claimName": .string("\(t.metadata.name ?? "")-\(name)-0")])))
            }
            template.spec!.volumes = vols
        }
        errs += validateTemplate(spec.selector, template, replicas: spec.replicas)
        if let p = spec.podManagementPolicy, !["OrderedReady", "Parallel"].contains(p) {
            errs.append(.init(.notSupported, "spec.podManagementPolicy", "\"\(p)\": supported values: \"OrderedReady\", \"Parallel\""))
        }
        if let t = spec.updateStrategy?.type, !["RollingUpdate", "OnDelete"].contains(t) {
            errs.append(.init(.notSupported, "spec.updateStrategy.type", "\"\(t)\": supported values: \"OnDelete\", \"RollingUpdate\""))
        }
        if let p = spec.updateStrategy?.rollingUpdate?.partition, p < 0 {
            errs.append(.init(.invalid, "spec.updateStrategy.rollingUpdate.partition", "\(p): must be greater than or equal to 0"))
        }
        for (f, v) in [("whenDeleted", spec.persistentVolumeClaimRetentionPolicy?.whenDeleted), ("whenScaled", spec.persistentVolumeClaimRetentionPolicy?.whenScaled)] {
            if let v, !["Retain", "Delete"].contains(v) {
                errs.append(.init(.notSupported, "spec.persistentVolumeClaimRetentionPolicy.\(f)", "\"\(v)\": supported values: \"Delete\", \"Retain\""))
            }
        }
        if let s = spec.ordinals?.start, s < 0 { errs.append(.init(.invalid, "spec.ordinals.start", "\(s): must be greater than or equal to 0")) }
        var seen = Set<String>()
        for (i, t) in (spec.volumeClaimTemplates ?? []).enumerated() {
            let f = "spec.volumeClaimTemplates[\(i)]"
            let n = t.metadata.name ?? ""
            if n.isEmpty { errs.append(.init(.required, "\(f).metadata.name", "")); continue }
            if let why = Validation.dns1123Label(n) { errs.append(.init(.invalid, "\(f).metadata.name", "\"\(n)\": \(why)")) }
            if !seen.insert(n).inserted { errs.append(.init(.duplicate, "\(f).metadata.name", "\"\(n)\"")) }
            // The claim each ordinal gets is checked as a claim would be (its name stands in).
            var claim = t
            claim.metadata.name = "\(n)-\(name)-0"; claim.metadata.namespace = namespace
            for e in claim.validate() where e.field.hasPrefix("spec") { errs.append(.init(e.kind, "\(f).\(e.field)", e.message)) }
        }
        return errs
    }
    public func validateUpdate(old: StatefulSet) -> [FieldError] {
        var errs: [FieldError] = []
        guard let spec, let o = old.spec else { return errs }
        // As Kubernetes: only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
        // persistentVolumeClaimRetentionPolicy and minReadySeconds may change.
        var a = spec, b = o
        a.replicas = nil; b.replicas = nil; a.template = b.template; a.updateStrategy = nil; b.updateStrategy = nil
        a.revisionHistoryLimit = nil; b.revisionHistoryLimit = nil; a.persistentVolumeClaimRetentionPolicy = nil; b.persistentVolumeClaimRetentionPolicy = nil
        a.minReadySeconds = nil; b.minReadySeconds = nil; a.ordinals = nil; b.ordinals = nil
        if a != b {
            errs.append(.init(.forbidden, "spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
        }
        return errs
    }
}

extension StatefulSet: TablePrintable {
    public static let columns = [nameCol, TableColumn("Ready"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        [.string(name), .string("\(status?.readyReplicas ?? 0)/\(spec?.replicas ?? 0)"), age]
    }
}
