// Filter: only nodes whose Ready condition is True take new pods.
import API

public struct NodeReady: FilterPlugin {
    public init() {}
    public let name = "NodeReady"
    public func filter(_ pod: Pod, _ request: PodRequest, _ node: NodeInfo) -> FilterResult {
        node.isReady ? .fit : .unfit("node(s) were not ready")
    }
}
