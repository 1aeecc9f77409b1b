// Score plugin LeastAllocated.
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
