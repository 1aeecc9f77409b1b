// Score plugin BalancedAllocation.
import API

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
