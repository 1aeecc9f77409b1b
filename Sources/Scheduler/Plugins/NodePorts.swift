// Filter: host ports the pod asks for must be free on the node.
import API

public struct NodePorts: FilterPlugin {
    public init() {}
    public let name = "NodePorts"
    public func filter(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> FilterResult {
        for p in r.hostPorts {
            let parts = p.split(separator: "/", omittingEmptySubsequences: false)
            let wildcard = "\(parts[0])/0.0.0.0/\(parts[2])"
            if n.usedPorts[p] != nil || n.usedPorts[wildcard] != nil || (parts[1] == "0.0.0.0" && n.usedPorts.keys.contains { $0.hasPrefix("\(parts[0])/") && $0.hasSuffix("/\(parts[2])") }) {
                return .unfit("node(s) didn't have free ports for the requested pod ports")
            }
        }
        return .fit
    }
}
