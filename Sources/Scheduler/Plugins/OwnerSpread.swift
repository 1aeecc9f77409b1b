// Score plugin OwnerSpread.
import API

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
