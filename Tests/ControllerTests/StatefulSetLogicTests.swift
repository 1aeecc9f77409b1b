// The StatefulSet controller's decisions: order, scaling, rolling updates with a partition.
import Testing
import Foundation
import API
@testable import Controllers

private let now = Date(timeIntervalSince1970: 1_800_000_000)

private func sts(replicas: Int = 3, policy: String = "OrderedReady", partition: Int = 0, onDelete: Bool = false) -> StatefulSet {
    var s = StatefulSet(metadata: ObjectMeta(name: "db", namespace: "default"), spec: StatefulSetSpec(
        replicas: replicas, selector: LabelSelector(matchLabels: ["app": "db"]),
        template: PodTemplateSpec(metadata: ObjectMeta(labels: ["app": "db"]), spec: PodSpec(containers: [Container(name: "c", image: "busybox")])),
        serviceName: "db"))
    s.metadata.uid = "sts-uid"
    s.spec?.podManagementPolicy = policy
    s.spec?.updateStrategy = onDelete ? StatefulSetUpdateStrategy(type: "OnDelete")
        : StatefulSetUpdateStrategy(type: "RollingUpdate", rollingUpdate: RollingUpdateStatefulSetStrategy(partition: partition))
    s.applyDefaults()
    return s
}

private func pod(_ i: Int, rev: String = "v1", ready: Bool = true, phase: String = "Running", deleting: Bool = false) -> Pod {
    var p = Pod(metadata: ObjectMeta(name: "db-\(i)", namespace: "default", labels: ["app": "db", ControllerRevision.hashLabel: rev]),
                spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))
    if deleting { p.metadata.deletionTimestamp = KubeTime.format(now) }
    p.status = PodStatus(phase: phase)
    p.status?.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False", lastTransitionTime: "2026-01-01T00:00:00Z")]
    return p
}

@Suite struct StatefulSetLogicTests {
    @Test func orderedReadyMakesOneAtATimeInOrder() {
        #expect(StatefulSetLogic.decide(sts(), pods: [], currentRevision: "v1", updateRevision: "v1", now: now).create.map(\.ordinal) == [0])
        #expect(StatefulSetLogic.decide(sts(), pods: [pod(0)], currentRevision: "v1", updateRevision: "v1", now: now).create.map(\.ordinal) == [1])
        #expect(StatefulSetLogic.decide(sts(), pods: [pod(0, ready: false)], currentRevision: "v1", updateRevision: "v1", now: now).create.isEmpty)
        #expect(StatefulSetLogic.decide(sts(policy: "Parallel"), pods: [], currentRevision: "v1", updateRevision: "v1", now: now).create.map(\.ordinal) == [0, 1, 2])
    }

    @Test func scaleDownRemovesTheHighestFirstOneAtATime() {
        let d = StatefulSetLogic.decide(sts(replicas: 1), pods: [pod(0), pod(1), pod(2)], currentRevision: "v1", updateRevision: "v1", now: now)
        #expect(d.delete == ["db-2"])
        let waiting = StatefulSetLogic.decide(sts(replicas: 1), pods: [pod(0), pod(1), pod(2, deleting: true)], currentRevision: "v1", updateRevision: "v1", now: now)
        #expect(waiting.delete.isEmpty)
        let parallel = StatefulSetLogic.decide(sts(replicas: 1, policy: "Parallel"), pods: [pod(0), pod(1), pod(2)], currentRevision: "v1", updateRevision: "v1", now: now)
        #expect(Set(parallel.delete) == ["db-1", "db-2"])
    }

    @Test func rollingUpdateFromTheTopDownToThePartition() {
        let all = [pod(0), pod(1), pod(2)]
        let d = StatefulSetLogic.decide(sts(), pods: all, currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(d.evict == ["db-2"] && d.delete.isEmpty)   // evicted: PodDisruptionBudgets hold it back
        // db-2 came back with v2 and is Ready: db-1 next.
        let next = StatefulSetLogic.decide(sts(), pods: [pod(0), pod(1), pod(2, rev: "v2")], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(next.evict == ["db-1"])
        // A replacement is made with the update revision above the partition, the current one below it.
        let part = StatefulSetLogic.decide(sts(partition: 2), pods: [pod(0), pod(2, rev: "v2")], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(part.create == [.init(ordinal: 1, revision: "v1")])
        let held = StatefulSetLogic.decide(sts(partition: 2), pods: [pod(0), pod(1), pod(2, rev: "v2")], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(held.evict.isEmpty && held.status.currentRevision == "v1")
        // Done: every pod at v2 makes v2 current.
        let done = StatefulSetLogic.decide(sts(), pods: [pod(0, rev: "v2"), pod(1, rev: "v2"), pod(2, rev: "v2")], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(done.status.currentRevision == "v2" && done.status.updatedReplicas == 3 && done.status.currentReplicas == 3)
        // OnDelete: nothing is replaced by the controller.
        #expect(StatefulSetLogic.decide(sts(onDelete: true), pods: all, currentRevision: "v1", updateRevision: "v2", now: now).evict.isEmpty)
    }

    @Test func scaledDownDuringARollingUpdate() {
        // Updating 3 → db-2 already at v2; scaled to 2: db-2 goes first, no update step meanwhile.
        let d = StatefulSetLogic.decide(sts(replicas: 2), pods: [pod(0), pod(1), pod(2, rev: "v2")], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(d.delete == ["db-2"])
        // Then the update goes on within the new size: db-1, then db-0.
        let after = StatefulSetLogic.decide(sts(replicas: 2), pods: [pod(0), pod(1)], currentRevision: "v1", updateRevision: "v2", now: now)
        #expect(after.evict == ["db-1"])
    }

    @Test func failedPodsAreReplacedAndNamesAreStable() {
        let d = StatefulSetLogic.decide(sts(), pods: [pod(0, phase: "Failed")], currentRevision: "v1", updateRevision: "v1", now: now)
        #expect(d.delete == ["db-0"] && d.create.isEmpty)
        let p = StatefulSetController.newPod(sts(), ordinal: 1, template: sts().spec!.template, revision: "v1")
        #expect(p.name == "db-1" && p.spec?.hostname == "db-1" && p.spec?.subdomain == "db")
        #expect(p.labels[StatefulSetLabels.podName] == "db-1" && p.labels[StatefulSetLabels.podIndex] == "1")
    }
}
