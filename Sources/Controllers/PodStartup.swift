// How long a workload's pods take from creation to Ready, measured on the pods the HPA selects.
// Predictive mode looks that far ahead unless the HPA sets a lookahead: a forecast further out
// brings pods up early for nothing, a nearer one brings them up after the load.
import Foundation
import API

public struct PodStartupTracker: Sendable, Hashable {
    /// The newest measurements, seconds, oldest first.
    public private(set) var recent: [Double] = []
    /// Pods already measured (or found Ready without a usable time), so each counts once.
    var seen: Set<String> = []
    public static let keep = 20
    /// Longer than this is not a start-up (a pod Ready again after a failure, a clock step).
    public static let longest: Double = 1800

    public init() {}

    /// Records each pod the first time it is seen Ready: its Ready condition's transition time
    /// less its creation time. Pods seen before, not Ready, or terminating are skipped.
    public mutating func observe(_ pods: [Pod]) {
        var live: Set<String> = []
        for p in pods {
            guard let uid = p.metadata.uid else { continue }
            live.insert(uid)
            guard !seen.contains(uid), p.metadata.deletionTimestamp == nil,
                  let ready = p.status?.conditions?.first(where: { $0.type == "Ready" }), ready.status == "True" else { continue }
            seen.insert(uid)
            guard let created = KubeTime.parse(p.metadata.creationTimestamp), let at = KubeTime.parse(ready.lastTransitionTime) else { continue }
            let s = at.timeIntervalSince(created)
            guard s >= 0, s <= Self.longest else { continue }
            recent.append(s)
            if recent.count > Self.keep { recent.removeFirst(recent.count - Self.keep) }
        }
        // Forget pods that are gone, so the set stays the size of the workload.
        seen.formIntersection(live)
    }

    /// The median of the recent measurements (at least one second); nil before the first.
    public var estimate: Double? {
        guard !recent.isEmpty else { return nil }
        let s = recent.sorted(), n = s.count
        let m = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
        return max(1, m)
    }
}
