// apps/v1 DaemonSet (a pod on every eligible node) and ControllerRevision (the templates a
// DaemonSet has had, for rollout history and undo).
import Foundation

public struct RollingUpdateDaemonSet: Codable, Hashable, Sendable {
    public var maxUnavailable: IntOrString?
    public var maxSurge: IntOrString?
    public init(maxUnavailable: IntOrString? = nil, maxSurge: IntOrString? = nil) { self.maxUnavailable = maxUnavailable; self.maxSurge = maxSurge }
}
public struct DaemonSetUpdateStrategy: Codable, Hashable, Sendable {
    public var type: String?
    public var rollingUpdate: RollingUpdateDaemonSet?
    public init(type: String? = nil, rollingUpdate: RollingUpdateDaemonSet? = nil) { self.type = type; self.rollingUpdate = rollingUpdate }
}
public struct DaemonSetSpec: Codable, Hashable, Sendable {
    public var selector: LabelSelector?
    public var template: PodTemplateSpec
    public var updateStrategy: DaemonSetUpdateStrategy?
    public var minReadySeconds: Int?
    public var revisionHistoryLimit: Int?
    public init(selector: LabelSelector?, template: PodTemplateSpec) { self.selector = selector; self.template = template }
}
public struct DaemonSetStatus: Codable, Hashable, Sendable {
    public var currentNumberScheduled: Int
    public var numberMisscheduled: Int
    public var desiredNumberScheduled: Int
    public var numberReady: Int
    public var observedGeneration: Int64?
    public var updatedNumberScheduled: Int?
    public var numberAvailable: Int?
    public var numberUnavailable: Int?
    public var collisionCount: Int?
    public var conditions: [WorkloadCondition]?
    public init() { currentNumberScheduled = 0; numberMisscheduled = 0; desiredNumberScheduled = 0; numberReady = 0 }
}
public struct DaemonSet: KubeObject, Hashable {
    public static let resource = Resources.daemonsets
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: DaemonSetSpec?
    public var status: DaemonSetStatus?
    public init(metadata: ObjectMeta, spec: DaemonSetSpec?) { apiVersion = "apps/v1"; kind = "DaemonSet"; self.metadata = metadata; self.spec = spec }
}

public struct ControllerRevision: KubeObject, Hashable {
    public static let resource = Resources.controllerrevisions
    /// The label naming the revision (template hash) of a DaemonSet's or StatefulSet's pods.
    public static let hashLabel = "controller-revision-hash"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var data: JSONValue?
    public var revision: Int64
    public init(metadata: ObjectMeta, data: JSONValue?, revision: Int64) {
        apiVersion = "apps/v1"; kind = "ControllerRevision"; self.metadata = metadata; self.data = data; self.revision = revision
    }
}

extension DaemonSet: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        var s = spec!.updateStrategy ?? DaemonSetUpdateStrategy()
        s.type = s.type ?? "RollingUpdate"
        if s.type == "RollingUpdate" {
            var ru = s.rollingUpdate ?? RollingUpdateDaemonSet()
            ru.maxUnavailable = ru.maxUnavailable ?? .int(1)
            ru.maxSurge = ru.maxSurge ?? .int(0)
            s.rollingUpdate = ru
        }
        spec!.updateStrategy = s
        spec!.revisionHistoryLimit = spec!.revisionHistoryLimit ?? 10
        spec!.minReadySeconds = spec!.minReadySeconds ?? 0
        spec!.template.spec?.applyDefaults()
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        errs += validateTemplate(spec.selector, spec.template, replicas: nil)
        if let s = spec.updateStrategy {
            if let t = s.type, !["RollingUpdate", "OnDelete"].contains(t) {
                errs.append(.init(.notSupported, "spec.updateStrategy.type", "\"\(t)\": supported values: \"OnDelete\", \"RollingUpdate\""))
            }
            if let ru = s.rollingUpdate, s.type == "RollingUpdate" {
                let surge = ru.maxSurge?.scaled(total: 100, roundUp: true) ?? 0
                let unavail = ru.maxUnavailable?.scaled(total: 100, roundUp: true) ?? 0
                if surge < 0 { errs.append(.init(.invalid, "spec.updateStrategy.rollingUpdate.maxSurge", "must be greater than or equal to 0")) }
                if unavail < 0 { errs.append(.init(.invalid, "spec.updateStrategy.rollingUpdate.maxUnavailable", "must be greater than or equal to 0")) }
                if surge == 0 && unavail == 0 {
                    errs.append(.init(.invalid, "spec.updateStrategy.rollingUpdate.maxUnavailable", "\(ru.maxUnavailable?.description ?? "0"): may not be 0 when maxSurge is 0"))
                }
                if surge > 0 && unavail > 0 {
                    errs.append(.init(.invalid, "spec.updateStrategy.rollingUpdate.maxUnavailable", "\(ru.maxUnavailable?.description ?? ""): may not be set when maxSurge is set"))
                }
            }
        }
        if let m = spec.minReadySeconds, m < 0 { errs.append(.init(.invalid, "spec.minReadySeconds", "\(m): must be greater than or equal to 0")) }
        return errs
    }
    public func validateUpdate(old: DaemonSet) -> [FieldError] {
        old.spec?.selector != spec?.selector ? [.init(.invalid, "spec.selector", "field is immutable")] : []
    }
}

extension DaemonSet: TablePrintable {
    public static let columns = [nameCol, TableColumn("Desired", "integer"), TableColumn("Current", "integer"), TableColumn("Ready", "integer"),
                                 TableColumn("Up-to-date", "integer"), TableColumn("Available", "integer"), TableColumn("Node Selector"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        let sel = (spec?.template.spec?.nodeSelector ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        return [.string(name), .int(Int64(status?.desiredNumberScheduled ?? 0)), .int(Int64(status?.currentNumberScheduled ?? 0)),
                .int(Int64(status?.numberReady ?? 0)), .int(Int64(status?.updatedNumberScheduled ?? 0)), .int(Int64(status?.numberAvailable ?? 0)),
                .string(sel.isEmpty ? "<none>" : sel), age]
    }
}

extension ControllerRevision: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        if revision < 0 { errs.append(.init(.invalid, "revision", "\(revision): must be greater than or equal to 0")) }
        return errs
    }
    public func validateUpdate(old: ControllerRevision) -> [FieldError] {
        old.data != data ? [.init(.invalid, "data", "field is immutable")] : []
    }
}

extension ControllerRevision: TablePrintable {
    public static let columns = [nameCol, TableColumn("Controller"), TableColumn("Revision", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        let owner = metadata.controllerRef.map { "\($0.kind.lowercased()).\($0.apiVersion.split(separator: "/").first.map(String.init) ?? "")/\($0.name)" } ?? "<none>"
        return [.string(name), .string(owner), .int(revision), age]
    }
}
