// The scheduler's view of a node: the Node object plus what the pods placed on it request.
//
// Pipeline, per pending pod:   filter (every plugin must say "fit") → score (weighted sum) → bind
//   filter plugins: NodeUnschedulable, NodeReady, NodeResourcesFit, NodeAffinity, TaintToleration, NodePorts
//   score plugins:  LeastAllocated, BalancedAllocation, OwnerSpread
import Foundation
import API

public struct PodRequest: Sendable, Hashable {
    public var cpuMilli: Int64 = 0
    public var memory: Int64 = 0
    public var hostPorts: [String] = []
    public var owner: String?

    public init(_ pod: Pod) {
        var cpu: Int64 = 0, mem: Int64 = 0
        for c in pod.spec?.containers ?? [] {
            cpu += c.resources?.requests?["cpu"]?.milli ?? 0
            mem += c.resources?.requests?["memory"]?.value ?? 0
            for p in c.ports ?? [] where (p.hostPort ?? 0) > 0 { hostPorts.append("\(p.protocol ?? "TCP")/\(p.hostIP ?? "0.0.0.0")/\(p.hostPort!)") }
        }
        for c in pod.spec?.initContainers ?? [] {
            cpu = max(cpu, c.resources?.requests?["cpu"]?.milli ?? 0)
            mem = max(mem, c.resources?.requests?["memory"]?.value ?? 0)
        }
        cpuMilli = cpu; memory = mem
        owner = pod.metadata.controllerRef?.uid
    }
    public init(cpuMilli: Int64, memory: Int64, hostPorts: [String] = [], owner: String? = nil) {
        self.cpuMilli = cpuMilli; self.memory = memory; self.hostPorts = hostPorts; self.owner = owner
    }
}

/// The Node behind one reference, so that a NodeInfo copies in a few retains, not the Node's
/// every field.
final class NodeBox: Sendable {
    let node: Node
    init(_ node: Node) { self.node = node }
}

public struct NodeInfo: Sendable {
    private var box: NodeBox
    /// The Node; what the filters and scores read of it on every decision (allocatable, Ready,
    /// unschedulable) is read out once here, when it changes, not per pod per node.
    public var node: Node {
        get { box.node }
        set { box = NodeBox(newValue); summarize() }
    }
    public var requestedCPU: Int64 = 0
    public var requestedMemory: Int64 = 0
    public var podCount = 0
    public var usedPorts: [String: Int] = [:]
    public var ownerCounts: [String: Int] = [:]
    public private(set) var name = ""
    public private(set) var allocatableCPU: Int64 = 0
    public private(set) var allocatableMemory: Int64 = 0
    public private(set) var allocatablePods = 110
    public private(set) var isReady = false
    public private(set) var isUnschedulable = false
    /// Its NoSchedule and NoExecute taints, the ones a pod must tolerate.
    public private(set) var schedulingTaints: [Taint] = []

    public init(node: Node) { box = NodeBox(node); summarize() }

    private mutating func summarize() {
        let resources = node.status?.allocatable ?? node.status?.capacity
        name = node.name
        allocatableCPU = resources?["cpu"]?.milli ?? 0
        allocatableMemory = resources?["memory"]?.value ?? 0
        allocatablePods = Int(resources?["pods"]?.value ?? 110)
        isReady = node.isReady
        isUnschedulable = node.spec?.unschedulable == true
        schedulingTaints = (node.spec?.taints ?? []).filter { $0.effect == "NoSchedule" || $0.effect == "NoExecute" }
    }

    public mutating func add(_ r: PodRequest, sign: Int = 1) {
        requestedCPU += Int64(sign) * r.cpuMilli
        requestedMemory += Int64(sign) * r.memory
        podCount += sign
        for p in r.hostPorts { usedPorts[p, default: 0] += sign; if usedPorts[p]! <= 0 { usedPorts.removeValue(forKey: p) } }
        if let o = r.owner { ownerCounts[o, default: 0] += sign; if ownerCounts[o]! <= 0 { ownerCounts.removeValue(forKey: o) } }
    }
}

public enum FilterResult: Sendable, Equatable {
    case fit
    case unfit(String)
}

public protocol FilterPlugin: Sendable {
    var name: String { get }
    func filter(_ pod: Pod, _ request: PodRequest, _ node: NodeInfo) -> FilterResult
}

public protocol ScorePlugin: Sendable {
    var name: String { get }
    var weight: Int { get }
    /// 0...100, higher is better.
    func score(_ pod: Pod, _ request: PodRequest, _ node: NodeInfo) -> Int
}

public enum Plugins {
    public static let filters: [any FilterPlugin] = [NodeUnschedulable(), NodeReady(), NodeResourcesFit(), NodeAffinity(), TaintToleration(), NodePorts()]
    public static let scores: [any ScorePlugin] = [LeastAllocated(), BalancedAllocation(), OwnerSpread()]
}
