// Whether a pod may run on a node by its spec.nodeSelector and required node affinity
// (nodeSelectorTerms ORed, their matchExpressions and matchFields ANDed; operators In, NotIn,
// Exists, DoesNotExist, Gt, Lt): the scheduler's filter, and the DaemonSet controller's.
public enum NodeSelection {
    public static func podFits(_ spec: PodSpec?, labels: [String: String], name: String) -> Bool {
        for (k, v) in spec?.nodeSelector ?? [:] where labels[k] != v { return false }
        guard let terms = spec?.affinity?["nodeAffinity"]?["requiredDuringSchedulingIgnoredDuringExecution"]?["nodeSelectorTerms"]?.arrayValue,
              !terms.isEmpty else { return true }
        return terms.contains { matches($0, labels: labels, name: name) }
    }

    public static func matches(_ term: JSONValue, labels: [String: String], name: String) -> Bool {
        let exprs = term["matchExpressions"]?.arrayValue ?? []
        let fields = term["matchFields"]?.arrayValue ?? []
        if exprs.isEmpty && fields.isEmpty { return false }
        for e in exprs where !requirement(e, labels) { return false }
        for f in fields where !requirement(f, ["metadata.name": name]) { return false }
        return true
    }

    public static func requirement(_ e: JSONValue, _ labels: [String: String]) -> Bool {
        guard let key = e["key"]?.stringValue, let op = e["operator"]?.stringValue else { return false }
        let values = (e["values"]?.arrayValue ?? []).compactMap(\.stringValue)
        let v = labels[key]
        switch op {
        case "In": return v.map { values.contains($0) } ?? false
        case "NotIn": return v.map { !values.contains($0) } ?? true
        case "Exists": return v != nil
        case "DoesNotExist": return v == nil
        case "Gt": if let v, let a = Int(v), let b = values.first.flatMap(Int.init) { return a > b }; return false
        case "Lt": if let v, let a = Int(v), let b = values.first.flatMap(Int.init) { return a < b }; return false
        default: return false
        }
    }
}
