// Filter: the pod's cpu and memory requests, and one more pod, fit in what the node has left.
import API

public struct NodeResourcesFit: FilterPlugin {
    public init() {}
    public let name = "NodeResourcesFit"
    public func filter(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> FilterResult {
        if n.podCount + 1 > n.allocatablePods { return .unfit("Too many pods") }
        if r.cpuMilli > 0 && n.requestedCPU + r.cpuMilli > n.allocatableCPU { return .unfit("Insufficient cpu") }
        if r.memory > 0 && n.requestedMemory + r.memory > n.allocatableMemory { return .unfit("Insufficient memory") }
        return .fit
    }
}
