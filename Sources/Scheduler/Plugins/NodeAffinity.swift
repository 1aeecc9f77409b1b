// Filter: spec.nodeSelector and required node affinity (nodeSelectorTerms are ORed, their
// matchExpressions ANDed; operators In, NotIn, Exists, DoesNotExist, Gt, Lt).
import API

public struct NodeAffinity: FilterPlugin {
    public init() {}
    public let name = "NodeAffinity"
    static let reason = "node(s) didn't match Pod's node affinity/selector"

    public func filter(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> FilterResult {
        NodeSelection.podFits(pod.spec, labels: n.node.labels, name: n.name) ? .fit : .unfit(Self.reason)
    }
}
