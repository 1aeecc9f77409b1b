import Testing
import Foundation
import API
import Controllers

@Suite struct PodStartupTests {
    func pod(_ uid: String, created: String, ready: String?, deleting: Bool = false) -> Pod {
        var p = Pod(metadata: ObjectMeta(name: uid, namespace: "default"), spec: PodSpec(containers: []))
        p.metadata.uid = uid
        p.metadata.creationTimestamp = created
        if deleting { p.metadata.deletionTimestamp = ready ?? created }
        var st = PodStatus()
        st.conditions = [PodCondition(type: "Ready", status: ready == nil ? "False" : "True", lastTransitionTime: ready ?? created)]
        p.status = st
        return p
    }

    @Test func measuresEachPodOnceFromCreationToReady() {
        var t = PodStartupTracker()
        #expect(t.estimate == nil)
        t.observe([pod("a", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:04Z"),
                   pod("b", created: "2026-12-05T10:00:00Z", ready: nil),
                   pod("c", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:09Z", deleting: true)])
        #expect(t.recent == [4])
        // Seen again: not counted twice. b becomes Ready after 6 s.
        t.observe([pod("a", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:04Z"),
                   pod("b", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:06Z")])
        #expect(t.recent == [4, 6])
        #expect(t.estimate == 5)
        // A pod Ready again long after its creation (a restart) is no start-up; nor is a clock step back.
        t.observe([pod("old", created: "2026-12-04T10:00:00Z", ready: "2026-12-05T10:00:00Z"),
                   pod("neg", created: "2026-12-05T10:00:10Z", ready: "2026-12-05T10:00:00Z"),
                   pod("fast", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:00Z")])
        #expect(t.recent == [4, 6, 0])
        #expect(t.estimate == 4)
    }

    @Test func keepsTheNewestTwentyAndNeverLessThanASecond() {
        var t = PodStartupTracker()
        for i in 0..<25 {
            t.observe([pod("p\(i)", created: "2026-12-05T10:00:00Z", ready: String(format: "2026-12-05T10:00:%02dZ", i))])
        }
        #expect(t.recent.count == PodStartupTracker.keep && t.recent.first == 5 && t.recent.last == 24)
        #expect(t.estimate == 14.5)
        var z = PodStartupTracker()
        z.observe([pod("z", created: "2026-12-05T10:00:00Z", ready: "2026-12-05T10:00:00Z")])
        #expect(z.estimate == 1)
    }
}
