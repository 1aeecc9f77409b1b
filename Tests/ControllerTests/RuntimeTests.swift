import Testing
import Foundation
@testable import Client
@testable import Controllers
import API

@Suite struct WorkQueueTests {
    @Test func deduplicatesAndKeepsOneWorkerPerKey() async {
        let q = WorkQueue()
        q.add("a"); q.add("a"); q.add("b")
        #expect(q.length == 2)
        let first = await q.next()
        #expect(first == "a")
        q.add("a")                       // while "a" is processing: queued for after
        let second = await q.next()
        #expect(second == "b")
        #expect(q.length == 0)
        q.done("a")                      // now "a" comes back, once
        let third = await q.next()
        #expect(third == "a")
        q.shutdown()
        #expect(await q.next() == nil)
    }

    @Test func backoffGrowsPerKeyOnTheInjectedClock() async throws {
        let clock = ManualClock()
        let q = WorkQueue(clock: clock, baseDelay: 1, maxDelay: 8)
        q.addRateLimited("k")            // 1 s
        try await waitUntil { clock.pendingSleepers == 1 }
        #expect(q.length == 0)
        clock.advance(by: 1)
        try await waitUntil { q.length == 1 }
        _ = await q.next(); q.done("k")
        q.addRateLimited("k")            // 2 s now
        try await waitUntil { clock.pendingSleepers == 1 }
        clock.advance(by: 1.5)
        #expect(q.length == 0)
        clock.advance(by: 0.5)
        try await waitUntil { q.length == 1 }
        q.forget("k")
    }
}

func waitUntil(_ seconds: Double = 5, _ check: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !check() {
        if Date() > deadline { Issue.record("condition not reached"); return }
        try await Task.sleep(for: .milliseconds(5))
    }
}

extension ManualClock {
    var pendingSleepers: Int { sleeperCount() }
}

@Suite struct ControllerLogicTests {
    func pod(_ name: String, node: String? = nil, phase: String = "Running", ready: Bool = true, created: String = "2026-01-01T00:00:00Z") -> Pod {
        var p = Pod(metadata: ObjectMeta(name: name, namespace: "default"), spec: PodSpec(containers: [Container(name: "c", image: "x")]))
        p.metadata.creationTimestamp = created
        p.spec?.nodeName = node
        var st = PodStatus(phase: phase)
        st.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False", lastTransitionTime: "2026-01-01T00:00:00Z")]
        p.status = st
        return p
    }

    @Test func surplusPodsGoUnscheduledFirstThenNotReadyThenNewest() {
        let pods = [pod("old-ready", node: "n"), pod("new-ready", node: "n", created: "2026-01-02T00:00:00Z"),
                    pod("not-ready", node: "n", ready: false), pod("unscheduled", phase: "Pending", ready: false),
                    pod("pending", node: "n", phase: "Pending", ready: false)]
        #expect(pods.sorted(by: ReplicaSetController.deletionOrder).map(\.name) == ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"])
    }

    @Test func statusCountsReadyAndAvailableAfterMinReadySeconds() {
        var rs = ReplicaSet(metadata: ObjectMeta(name: "rs"), spec: ReplicaSetSpec(replicas: 3, minReadySeconds: 60, selector: nil, template: nil))
        rs.metadata.generation = 4
        let pods = [pod("a"), pod("b"), pod("c", ready: false)]
        let early = ReplicaSetController.computeStatus(rs, pods: pods, now: KubeTime.parse("2026-01-01T00:00:30Z")!)
        #expect(early.replicas == 3 && early.readyReplicas == 2 && early.availableReplicas == 0 && early.observedGeneration == 4)
        let later = ReplicaSetController.computeStatus(rs, pods: pods, now: KubeTime.parse("2026-01-01T00:01:00Z")!)
        #expect(later.availableReplicas == 2)
    }

    @Test func expectationsWaitForObservedCreates() {
        let e = Expectations(timeout: 30)
        let t0 = Date()
        e.expect("rs", adds: 2, now: t0)
        #expect(!e.satisfied("rs", now: t0))
        e.observedAdd("rs")
        #expect(!e.satisfied("rs", now: t0))
        e.observedAdd("rs")
        #expect(e.satisfied("rs", now: t0))
        e.expect("rs", adds: 0, deletes: ["x"], now: t0)
        #expect(!e.satisfied("rs", now: t0))
        #expect(e.satisfied("rs", now: t0.addingTimeInterval(31)))   // expired expectations do not block forever
    }

    @Test func anAddObservedWhileListingNeverPairsAStaleListWithGo() {
        // The pod's add event lands between the two reads: the list taken is without the pod,
        // so the answer must be "wait" (read first), not "go" with a list that lacks it.
        let e = Expectations(timeout: 30)
        let t0 = Date()
        e.expect("job", adds: 1, now: t0)
        let (ok, pods) = e.snapshot("job", now: t0) { () -> [String] in e.observedAdd("job"); return [] }
        #expect(pods.isEmpty)
        #expect(!ok)
        let (ok2, pods2) = e.snapshot("job", now: t0) { ["job-3-x"] }
        #expect(ok2 && pods2 == ["job-3-x"])
    }

    @Test func templateHashIsStableAndSensitive() {
        let t = PodTemplateSpec(metadata: ObjectMeta(labels: ["app": "x"]), spec: PodSpec(containers: [Container(name: "c", image: "a")]))
        var u = t
        u.spec?.containers[0].image = "b"
        #expect(podTemplateHash(t) == podTemplateHash(t))
        #expect(podTemplateHash(t) != podTemplateHash(u))
        #expect(podTemplateHash(t) != podTemplateHash(t, collisionCount: 1))
        #expect(podTemplateHash(t).allSatisfy { "bcdfghjklmnpqrstvwxz2456789".contains($0) })
    }
}

@Suite struct GlobalRateLimitTests {
    @Test func retriesBeyondTheBurstAreSpreadAtTheGlobalRate() {
        let clock = ManualClock()
        let q = WorkQueue(clock: clock, baseDelay: 0, maxDelay: 1, retryQPS: 10, retryBurst: 2)
        #expect(q.globalDelay() == 0)
        #expect(q.globalDelay() == 0)
        #expect(abs(q.globalDelay() - 0.1) < 1e-9)
        #expect(abs(q.globalDelay() - 0.2) < 1e-9)
        clock.advance(by: 1)
        #expect(q.globalDelay() == 0)
    }
}
