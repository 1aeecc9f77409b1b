// Score plugins: prefer emptier nodes, balanced cpu/memory use, and spreading one owner's pods.
import API

/// (free after placing / allocatable), averaged over cpu and memory.
public struct LeastAllocated: ScorePlugin {
    public init() {}
    public let name = "LeastAllocated"
    public let weight = 1
    public func score(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> Int {
        func part(_ used: Int64, _ alloc: Int64) -> Double { alloc <= 0 ? 0 : max(0, Double(alloc - used) / Double(alloc)) }
        let cpu = part(n.requestedCPU + r.cpuMilli, n.allocatableCPU)
        let mem = part(n.requestedMemory + r.memory, n.allocatableMemory)
        return Int(((cpu + mem) / 2 * 100).rounded())
    }
}

/// 100 when cpu and memory would be used in the same proportion.
public struct BalancedAllocation: ScorePlugin {
    public init() {}
    public let name = "BalancedAllocation"
    public let weight = 1
    public func score(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> Int {
        guard n.allocatableCPU > 0, n.allocatableMemory > 0 else { return 0 }
        let cpu = min(1, Double(n.requestedCPU + r.cpuMilli) / Double(n.allocatableCPU))
        let mem = min(1, Double(n.requestedMemory + r.memory) / Double(n.allocatableMemory))
        return Int(((1 - abs(cpu - mem)) * 100).rounded())
    }
}

/// Fewer pods of the same owner on the node score higher, so replicas spread out.
public struct OwnerSpread: ScorePlugin {
    public init() {}
    public let name = "OwnerSpread"
    public let weight = 2
    public func score(_ pod: Pod, _ r: PodRequest, _ n: NodeInfo) -> Int {
        guard let o = r.owner else { return 100 }
        return max(0, 100 - 20 * (n.ownerCounts[o] ?? 0))
    }
}
