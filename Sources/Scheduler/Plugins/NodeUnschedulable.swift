// Filter: nodes marked spec.unschedulable take no new pods unless the pod tolerates that taint.
import API

public struct NodeUnschedulable: FilterPlugin {
    public init() {}
    public let name = "NodeUnschedulable"
    public func filter(_ pod: Pod, _ request: PodRequest, _ node: NodeInfo) -> FilterResult {
        guard node.isUnschedulable else { return .fit }
        let taint = Taint(key: "node.kubernetes.io/unschedulable", effect: "NoSchedule")
        if (pod.spec?.tolerations ?? []).contains(where: { $0.tolerates(taint) }) { return .fit }
        return .unfit("node(s) were unschedulable")
    }
}
