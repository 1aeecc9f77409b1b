// Filter: every NoSchedule/NoExecute taint of the node must be tolerated by the pod.
import API

public struct TaintToleration: FilterPlugin {
    public init() {}
    public let name = "TaintToleration"
    public func filter(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> FilterResult {
        if n.schedulingTaints.isEmpty { return .fit }
        let tolerations = pod.spec?.tolerations ?? []
        for t in n.schedulingTaints {
            if !tolerations.contains(where: { $0.tolerates(t) }) {
                return .unfit("node(s) had untolerated taint {\(t.key): \(t.value ?? "")}")
            }
        }
        return .fit
    }
}
