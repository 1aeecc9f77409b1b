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

public struct NodeInfo: Sendable {
    public var node: Node
    public var requestedCPU: Int64 = 0
    public var requestedMemory: Int64 = 0
    public var podCount = 0
    public var usedPorts: [String: Int] = [:]
    public var ownerCounts: [String: Int] = [:]

    public init(node: Node) { self.node = node }
    public var name: String { node.name }
    public var allocatableCPU: Int64 { (node.status?.allocatable ?? node.status?.capacity)?["cpu"]?.milli ?? 0 }
    public var allocatableMemory: Int64 { (node.status?.allocatable ?? node.status?.capacity)?["memory"]?.value ?? 0 }
    public var allocatablePods: Int { Int((node.status?.allocatable ?? node.status?.capacity)?["pods"]?.value ?? 110) }

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
