// The Deployment controller's scale-up of a new ReplicaSet within maxSurge, on ReplicaSets as the
// informer shows them.
import Testing
import API
@testable import Controllers

private func rs(_ name: String, spec: Int, pods: Int) -> ReplicaSet {
    var r = ReplicaSet(metadata: ObjectMeta(name: name, namespace: "default"),
                       spec: ReplicaSetSpec(replicas: spec, minReadySeconds: nil, selector: LabelSelector(matchLabels: ["app": "web"]),
                                            template: PodTemplateSpec(metadata: nil, spec: nil)))
    r.status = ReplicaSetStatus(replicas: pods)
    return r
}

@Suite struct DeploymentSurgeTests {
    @Test func theNewReplicaSetGrowsIntoTheSurgeLeftByOldSpecs() {
        // 10 replicas, surge 3: the old ReplicaSet at 10 with its 10 pods leaves room for 3.
        #expect(DeploymentController.scaledUp(rs("new", spec: 0, pods: 0), old: [rs("old", spec: 10, pods: 10)], replicas: 10, maxSurge: 3) == 3)
        // Old scaled down to 7 and its pods gone: room for 6.
        #expect(DeploymentController.scaledUp(rs("new", spec: 3, pods: 3), old: [rs("old", spec: 7, pods: 7)], replicas: 10, maxSurge: 3) == 6)
        // Never past replicas.
        #expect(DeploymentController.scaledUp(rs("new", spec: 8, pods: 8), old: [rs("old", spec: 0, pods: 0)], replicas: 10, maxSurge: 3) == 10)
        #expect(DeploymentController.scaledUp(rs("new", spec: 12, pods: 12), old: [], replicas: 10, maxSurge: 3) == 10)
    }

    @Test func podsAnOldReplicaSetStillHasCountAgainstTheSurge() {
        // The old ReplicaSet was just scaled down to 7 but still has 10 pods: counting its spec
        // alone would grow the new one to 6 and run 16 pods at once (10 + 3 allowed).
        #expect(DeploymentController.scaledUp(rs("new", spec: 3, pods: 3), old: [rs("old", spec: 7, pods: 10)], replicas: 10, maxSurge: 3) == 3)
        // Two old ones, one still deleting two pods: 10 counted, room for 3 (their specs alone
        // would leave room for 5).
        #expect(DeploymentController.scaledUp(rs("new", spec: 3, pods: 3),
                                              old: [rs("a", spec: 2, pods: 4), rs("b", spec: 3, pods: 3)], replicas: 10, maxSurge: 3) == 6)
    }
}
