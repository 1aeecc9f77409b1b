// policy/v1 PodDisruptionBudget and Eviction: how many of a set of pods may be down at once by
// choice (drain, eviction), and the status the disruption controller keeps.
import Foundation

public struct PodDisruptionBudgetSpec: Codable, Hashable, Sendable {
    public var minAvailable: IntOrString?
    public var maxUnavailable: IntOrString?
    public var selector: LabelSelector?
    public var unhealthyPodEvictionPolicy: String?
    public init(minAvailable: IntOrString? = nil, maxUnavailable: IntOrString? = nil, selector: LabelSelector? = nil) {
        self.minAvailable = minAvailable; self.maxUnavailable = maxUnavailable; self.selector = selector
    }
}

public struct PodDisruptionBudgetStatus: Codable, Hashable, Sendable {
    public var observedGeneration: Int64?
    /// Pods evicted but not yet seen gone or unhealthy by the controller: name → eviction time.
    public var disruptedPods: [String: String]?
    public var disruptionsAllowed: Int
    public var currentHealthy: Int
    public var desiredHealthy: Int
    public var expectedPods: Int
    public var conditions: [Condition]?
    public init(disruptionsAllowed: Int = 0, currentHealthy: Int = 0, desiredHealthy: Int = 0, expectedPods: Int = 0) {
        self.disruptionsAllowed = disruptionsAllowed; self.currentHealthy = currentHealthy
        self.desiredHealthy = desiredHealthy; self.expectedPods = expectedPods
    }
}

public struct PodDisruptionBudget: KubeObject, Hashable {
    public static let resource = Resources.pdbs
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PodDisruptionBudgetSpec?
    public var status: PodDisruptionBudgetStatus?
    public init(name: String, namespace: String, spec: PodDisruptionBudgetSpec) {
        apiVersion = "policy/v1"; kind = "PodDisruptionBudget"; metadata = ObjectMeta(name: name, namespace: namespace); self.spec = spec
    }
}

/// The body of a pods/eviction request.
public struct Eviction: Codable, Hashable, Sendable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var deleteOptions: DeleteOptions?
}

/// The disruption arithmetic, kept pure for tests and shared by the controller and the eviction
/// handler.
public enum Disruption {
    /// A pod counts as healthy when it runs, is Ready and is not being deleted.
    public static func healthy(_ p: Pod) -> Bool {
        p.metadata.deletionTimestamp == nil && p.status?.phase == "Running" && p.isReady
    }

    /// The status a budget should have over `pods` (those its selector matches in its namespace).
    /// `disrupted`: pods evicted recently that still count against the budget.
    public static func status(_ pdb: PodDisruptionBudget, pods: [Pod], disrupted: [String: String], now: String) -> PodDisruptionBudgetStatus {
        let live = pods.filter { !$0.isTerminal }
        let expected = live.count
        let healthy = live.filter { Disruption.healthy($0) && disrupted[$0.name] == nil }.count
        var desired = 0
        if let min = pdb.spec?.minAvailable {
            desired = min.scaled(total: expected, roundUp: true) ?? 0
        } else if let max = pdb.spec?.maxUnavailable {
            desired = Swift.max(0, expected - (max.scaled(total: expected, roundUp: true) ?? 0))
        } else {
            desired = expected   // neither given: no voluntary disruption
        }
        var st = PodDisruptionBudgetStatus(disruptionsAllowed: Swift.max(0, healthy - desired), currentHealthy: healthy,
                                           desiredHealthy: desired, expectedPods: expected)
        st.observedGeneration = pdb.metadata.generation
        st.disruptedPods = disrupted.isEmpty ? nil : disrupted
        let allowed = st.disruptionsAllowed > 0
        let old = pdb.status?.conditions?.first { $0.type == "DisruptionAllowed" }
        let status = allowed ? "True" : "False"
        st.conditions = [Condition(type: "DisruptionAllowed", status: status,
                                   lastTransitionTime: old?.status == status ? (old?.lastTransitionTime ?? now) : now,
                                   reason: allowed ? "SufficientPods" : "InsufficientPods",
                                   message: allowed ? "" : "only \(healthy) of \(desired) required pods are healthy",
                                   observedGeneration: pdb.metadata.generation)]
        return st
    }
}

/// meta/v1 Condition, as the newer kinds (PodDisruptionBudget, Job, ...) carry it.
public struct Condition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var observedGeneration: Int64?
    public var lastTransitionTime: String
    public var reason: String
    public var message: String
    public init(type: String, status: String, lastTransitionTime: String, reason: String, message: String, observedGeneration: Int64? = nil) {
        self.type = type; self.status = status; self.lastTransitionTime = lastTransitionTime; self.reason = reason
        self.message = message; self.observedGeneration = observedGeneration
    }
}

extension PodDisruptionBudget: ServedKind {
    public mutating func applyDefaults() {
        if spec?.minAvailable == nil && spec?.maxUnavailable == nil { spec?.minAvailable = .int(1) }
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        if spec.minAvailable != nil && spec.maxUnavailable != nil {
            errs.append(.init(.invalid, "spec", "minAvailable and maxUnavailable cannot be both set"))
        }
        for (f, v) in [("spec.minAvailable", spec.minAvailable), ("spec.maxUnavailable", spec.maxUnavailable)] {
            guard let v else { continue }
            switch v {
            case .int(let i) where i < 0: errs.append(.init(.invalid, f, "\(i): must be greater than or equal to 0"))
            case .string(let s):
                if !s.hasSuffix("%") || Int(s.dropLast()) == nil || !(0...100).contains(Int(s.dropLast())!) {
                    errs.append(.init(.invalid, f, "\"\(s)\": must be an integer or a percentage between 0% and 100%"))
                }
            default: break
            }
        }
        if let p = spec.unhealthyPodEvictionPolicy, !["IfHealthyBudget", "AlwaysAllow"].contains(p) {
            errs.append(.init(.notSupported, "spec.unhealthyPodEvictionPolicy", "\"\(p)\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""))
        }
        if let sel = spec.selector, (try? sel.toSelector()) == nil { errs.append(.init(.invalid, "spec.selector", "not a valid label selector")) }
        return errs
    }
}

extension PodDisruptionBudget: TablePrintable {
    public static let columns = [nameCol, TableColumn("Min Available"), TableColumn("Max Unavailable"), TableColumn("Allowed Disruptions", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        [.string(name), .string(spec?.minAvailable?.description ?? "N/A"), .string(spec?.maxUnavailable?.description ?? "N/A"),
         .int(Int64(status?.disruptionsAllowed ?? 0)), age]
    }
}
