// The DaemonSet controller's decisions over nodes and pods, with a manual clock.
import Testing
import Foundation
import API
@testable import Controllers

private let now = Date(timeIntervalSince1970: 1_800_000_000)

private func ds(_ strategy: DaemonSetUpdateStrategy? = nil, nodeSelector: [String: String]? = nil) -> DaemonSet {
    var d = DaemonSet(metadata: ObjectMeta(name: "agent", namespace: "default"), spec: DaemonSetSpec(
        selector: LabelSelector(matchLabels: ["app": "agent"]),
        template: PodTemplateSpec(metadata: ObjectMeta(labels: ["app": "agent"]), spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))))
    d.metadata.uid = "ds-uid"
    d.spec?.updateStrategy = strategy
    d.spec?.template.spec?.nodeSelector = nodeSelector
    d.applyDefaults()
    return d
}

private func node(_ name: String, labels: [String: String] = [:], taints: [Taint] = []) -> Node {
    var n = Node(name: name)
    n.metadata.labels = labels
    n.spec = NodeSpec()
    n.spec?.taints = taints.isEmpty ? nil : taints
    return n
}

private func pod(_ name: String, on node: String, hash: String = "new", ready: Bool = true, phase: String = "Running", created: String = "2026-01-01T00:00:00Z") -> Pod {
    var p = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: ["app": "agent", ControllerRevision.hashLabel: hash]),
                spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))
    p.metadata.creationTimestamp = created
    p.spec?.nodeName = node
    p.status = PodStatus(phase: phase)
    p.status?.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False", lastTransitionTime: "2026-01-01T00:00:00Z")]
    return p
}

@Suite struct DaemonSetLogicTests {
    @Test func onePodPerEligibleNode() {
        let nodes = [node("a", labels: ["disk": "ssd"]), node("b"), node("c", labels: ["disk": "ssd"], taints: [Taint(key: "dedicated", value: "db", effect: "NoSchedule")]),
                     node("d", labels: ["disk": "ssd"], taints: [Taint(key: "node.kubernetes.io/unschedulable", effect: "NoSchedule")])]
        let all = DaemonSetLogic.decide(ds(), nodes: nodes, pods: [], hash: "new", now: now)
        #expect(all.create == ["a", "b", "d"])   // c's taint is not tolerated; a cordoned node still runs it
        #expect(all.status.desiredNumberScheduled == 3)
        let ssd = DaemonSetLogic.decide(ds(nodeSelector: ["disk": "ssd"]), nodes: nodes, pods: [pod("p-a", on: "a")], hash: "new", now: now)
        #expect(ssd.create == ["d"])
        #expect(ssd.status.currentNumberScheduled == 1 && ssd.status.numberReady == 1 && ssd.status.updatedNumberScheduled == 1)
    }

    @Test func nodesThatLeaveOrAreTaintedLater() {
        let pods = [pod("p-a", on: "a"), pod("p-b", on: "b"), pod("p-gone", on: "gone")]
        // b tainted NoSchedule after its pod started: the pod stays, counted as misscheduled.
        let soft = DaemonSetLogic.decide(ds(), nodes: [node("a"), node("b", taints: [Taint(key: "x", effect: "NoSchedule")])], pods: pods, hash: "new", now: now)
        #expect(soft.delete == ["p-gone"])
        #expect(soft.status.desiredNumberScheduled == 1 && soft.status.numberMisscheduled == 1)
        // NoExecute: the pod goes.
        let hard = DaemonSetLogic.decide(ds(), nodes: [node("a"), node("b", taints: [Taint(key: "x", effect: "NoExecute")])], pods: pods, hash: "new", now: now)
        #expect(Set(hard.delete) == ["p-gone", "p-b"])
        // Not-ready and unreachable nodes keep their pods (tolerated by every DaemonSet pod).
        let down = DaemonSetLogic.decide(ds(), nodes: [node("a", taints: [Taint(key: "node.kubernetes.io/unreachable", effect: "NoExecute")])],
                                         pods: [pod("p-a", on: "a")], hash: "new", now: now)
        #expect(down.delete.isEmpty && down.create.isEmpty)
    }

    @Test func failedAndDuplicatePodsGo() {
        let d = DaemonSetLogic.decide(ds(), nodes: [node("a"), node("b")],
                                      pods: [pod("x", on: "a", phase: "Failed"), pod("b1", on: "b"), pod("b2", on: "b", created: "2026-01-02T00:00:00Z")], hash: "new", now: now)
        #expect(Set(d.delete) == ["x", "b2"])
        #expect(d.create == ["a"])
    }

    @Test func rollingUpdateWithMaxUnavailable() {
        let nodes = [node("a"), node("b"), node("c")]
        let old = [pod("pa", on: "a", hash: "old"), pod("pb", on: "b", hash: "old"), pod("pc", on: "c", hash: "old")]
        let d = DaemonSetLogic.decide(ds(), nodes: nodes, pods: old, hash: "new", now: now)
        #expect(d.evict == ["pa"] && d.delete.isEmpty && d.create.isEmpty)   // maxUnavailable 1, evicted (budgets hold it back)
        // a's replacement is not ready yet: nothing else goes.
        let waiting = DaemonSetLogic.decide(ds(), nodes: nodes, pods: [pod("na", on: "a", ready: false), old[1], old[2]], hash: "new", now: now)
        #expect(waiting.delete.isEmpty && waiting.evict.isEmpty)
        // An old pod that is not available goes at once, whatever the budget.
        let broken = DaemonSetLogic.decide(ds(), nodes: nodes, pods: [pod("na", on: "a", ready: false), pod("pb", on: "b", hash: "old", ready: false), old[2]], hash: "new", now: now)
        #expect(broken.delete == ["pb"])
        // OnDelete: nothing is replaced until deleted by hand.
        let manual = DaemonSetLogic.decide(ds(DaemonSetUpdateStrategy(type: "OnDelete")), nodes: nodes, pods: old, hash: "new", now: now)
        #expect(manual.evict.isEmpty && manual.status.updatedNumberScheduled == 0)
    }

    @Test func rollingUpdateWithMaxSurge() {
        let surge = ds(DaemonSetUpdateStrategy(type: "RollingUpdate", rollingUpdate: RollingUpdateDaemonSet(maxUnavailable: .int(0), maxSurge: .int(1))))
        let nodes = [node("a"), node("b")]
        let start = DaemonSetLogic.decide(surge, nodes: nodes, pods: [pod("pa", on: "a", hash: "old"), pod("pb", on: "b", hash: "old")], hash: "new", now: now)
        #expect(start.create == ["a"] && start.evict.isEmpty)
        let ready = DaemonSetLogic.decide(surge, nodes: nodes, pods: [pod("pa", on: "a", hash: "old"), pod("na", on: "a"), pod("pb", on: "b", hash: "old")], hash: "new", now: now)
        #expect(ready.evict == ["pa"] && ready.create.isEmpty)
    }

    @Test func validation() {
        var bad = ds(DaemonSetUpdateStrategy(type: "RollingUpdate", rollingUpdate: RollingUpdateDaemonSet(maxUnavailable: .int(0), maxSurge: .int(0))))
        bad.spec?.template.spec?.restartPolicy = "Never"
        let fields = bad.validate().map(\.field)
        #expect(fields.contains("spec.updateStrategy.rollingUpdate.maxUnavailable") && fields.contains("spec.template.spec.restartPolicy"))
        var moved = ds()
        moved.spec?.selector = LabelSelector(matchLabels: ["app": "other"])
        #expect(moved.validateUpdate(old: ds()).contains { $0.field == "spec.selector" })
    }
}
