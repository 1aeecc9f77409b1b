// Filter: spec.nodeSelector and required node affinity (nodeSelectorTerms are ORed, their
// matchExpressions ANDed; operators In, NotIn, Exists, DoesNotExist, Gt, Lt).
import API

public struct NodeAffinity: FilterPlugin {
    public init() {}
    public let name = "NodeAffinity"
    static let reason = "node(s) didn't match Pod's node affinity/selector"

    public func filter(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> FilterResult {
        let labels = n.node.labels
        for (k, v) in pod.spec?.nodeSelector ?? [:] where labels[k] != v { return .unfit(Self.reason) }
        guard let terms = pod.spec?.affinity?["nodeAffinity"]?["requiredDuringSchedulingIgnoredDuringExecution"]?["nodeSelectorTerms"]?.arrayValue,
              !terms.isEmpty else { return .fit }
        for term in terms where Self.matches(term, labels: labels, name: n.name) { return .fit }
        return .unfit(Self.reason)
    }

    static func matches(_ term: JSONValue, labels: [String: String], name: String) -> Bool {
        let exprs = term["matchExpressions"]?.arrayValue ?? []
        let fields = term["matchFields"]?.arrayValue ?? []
        if exprs.isEmpty && fields.isEmpty { return false }
        for e in exprs where !requirement(e, labels) { return false }
        for f in fields where !requirement(f, ["metadata.name": name]) { return false }
        return true
    }

    static func requirement(_ e: JSONValue, _ labels: [String: String]) -> Bool {
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
