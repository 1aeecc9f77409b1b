// The volume controller's decisions: binding, delayed binding and local-path provisioning,
// release and reclaim, protection; the StatefulSet's claims.
import Testing
import Foundation
import API
@testable import Controllers

private let now = Date(timeIntervalSince1970: 1_800_000_000)

private func claim(_ name: String = "data", size: String = "1Gi", modes: [String] = ["ReadWriteOnce"], sc: String? = "local-path",
                   volume: String? = nil, node: String? = nil, phase: String = "Pending") -> PersistentVolumeClaim {
    var c = PersistentVolumeClaim(metadata: ObjectMeta(name: name, namespace: "default"),
                                  spec: PersistentVolumeClaimSpec(accessModes: modes, storage: try! Quantity(parsing: size), storageClassName: sc))
    c.metadata.uid = "uid-\(name)"
    c.spec?.volumeName = volume
    if let node { c.metadata.annotations = [StorageNames.selectedNode: node] }
    c.applyDefaults()
    c.status = PersistentVolumeClaimStatus(phase: phase)
    return c
}

private func volume(_ name: String, size: String = "1Gi", sc: String = "", node: String? = nil, claimRef: PersistentVolumeClaim? = nil,
                    policy: String = "Retain", phase: String = "Available", provisioned: Bool = false) -> PersistentVolume {
    var spec = PersistentVolumeSpec()
    spec.capacity = ["storage": try! Quantity(parsing: size)]
    spec.accessModes = ["ReadWriteOnce"]
    spec.storageClassName = sc
    spec.persistentVolumeReclaimPolicy = policy
    spec.hostPath = Volume.HostPath(path: "/srv/\(name)")
    if let node { spec.nodeAffinity = PersistentVolume.hostnameAffinity(node) }
    if let c = claimRef { spec.claimRef = ObjectReference(kind: "PersistentVolumeClaim", namespace: c.namespace, name: c.name, uid: c.metadata.uid) }
    var pv = PersistentVolume(metadata: ObjectMeta(name: name), spec: spec)
    pv.status = PersistentVolumeStatus(phase: phase)
    if provisioned { pv.metadata.annotations = [StorageNames.provisionedBy: StorageNames.localPathProvisioner] }
    return pv
}

private func node(_ name: String, root: String? = "/var/lib/orchestrator/storage") -> Node {
    var n = Node(name: name)
    n.metadata.labels = ["kubernetes.io/hostname": name]
    if let root { n.metadata.annotations = [StorageNames.nodeStorageRoot: root] }
    return n
}

private let localPath: StorageClass = {
    var sc = StorageClass(metadata: ObjectMeta(name: "local-path"), provisioner: StorageNames.localPathProvisioner)
    sc.volumeBindingMode = "WaitForFirstConsumer"
    sc.applyDefaults()
    return sc
}()
private let classes = ["local-path": localPath]

@Suite struct VolumeLogicTests {
    @Test func aDelayedClaimWaitsForItsFirstPod() {
        let d = VolumeLogic.decideClaim(claim(), volumes: [], classes: classes, nodes: ["n1": node("n1")], podsUsing: [])
        #expect(d.provision == nil && d.bindTo == nil)
        #expect(d.events.map(\.reason) == ["WaitForFirstConsumer"])
    }

    @Test func theSelectedNodeGetsALocalPathVolume() {
        let c = claim(node: "n1")
        let d = VolumeLogic.decideClaim(c, volumes: [], classes: classes, nodes: ["n1": node("n1")], podsUsing: [])
        let pv = try! #require(d.provision)
        #expect(pv.name == "pvc-uid-data")
        #expect(pv.spec?.hostPath?.path == "/var/lib/orchestrator/storage/pvc-uid-data_default_data")
        #expect(pv.spec?.hostPath?.type == "DirectoryOrCreate")
        #expect(pv.pinnedNode == "n1")
        #expect(pv.spec?.claimRef?.uid == "uid-data")
        #expect(pv.spec?.persistentVolumeReclaimPolicy == "Delete")
        #expect(pv.spec?.capacity?["storage"]?.description == "1Gi")
        #expect(pv.metadata.finalizers == [StorageNames.localPathCleanup])
        #expect(pv.validate().isEmpty)
    }

    @Test func aNodeWithoutAStorageRootCannotProvision() {
        let d = VolumeLogic.decideClaim(claim(node: "n1"), volumes: [], classes: classes, nodes: ["n1": node("n1", root: nil)], podsUsing: [])
        #expect(d.provision == nil)
        #expect(d.events.map(\.reason) == ["ProvisioningFailed"])
        #expect(d.requeueAfter != nil)
    }

    @Test func anAvailableVolumeOnTheSelectedNodeIsTakenBeforeProvisioning() {
        let here = volume("here", size: "2Gi", sc: "local-path", node: "n1")
        let there = volume("there", size: "1Gi", sc: "local-path", node: "n2")
        let d = VolumeLogic.decideClaim(claim(node: "n1"), volumes: [here, there], classes: classes, nodes: ["n1": node("n1"), "n2": node("n2")], podsUsing: [])
        #expect(d.bindTo == "here" && d.provision == nil)
    }

    @Test func immediateBindingTakesTheSmallestVolumeThatFits() {
        let vols = [volume("big", size: "10Gi"), volume("small", size: "1Gi"), volume("tiny", size: "500Mi"),
                    volume("ro", size: "1Gi").with { $0.spec?.accessModes = ["ReadOnlyMany"] }]
        let d = VolumeLogic.decideClaim(claim(sc: nil), volumes: vols, classes: classes, nodes: [:], podsUsing: [])
        #expect(d.bindTo == "small")
    }

    @Test func noVolumeAndNoClassIsReported() {
        let d = VolumeLogic.decideClaim(claim(sc: nil), volumes: [], classes: classes, nodes: [:], podsUsing: [])
        #expect(d.events.map(\.message) == ["no persistent volumes available for this claim and no storage class is set"])
        let e = VolumeLogic.decideClaim(claim(sc: "fast"), volumes: [], classes: classes, nodes: [:], podsUsing: [])
        #expect(e.events.map(\.message) == ["storageclass.storage.k8s.io \"fast\" not found"])
    }

    @Test func aBoundClaimReportsItsVolume() {
        let c = claim(volume: "pv1")
        let d = VolumeLogic.decideClaim(c, volumes: [volume("pv1", size: "5Gi", claimRef: c, phase: "Bound")], classes: classes, nodes: [:], podsUsing: [])
        #expect(d.status?.phase == "Bound")
        #expect(d.status?.capacity?["storage"]?.description == "5Gi")
        #expect(d.status?.accessModes == ["ReadWriteOnce"])
    }

    @Test func aClaimWhoseVolumeVanishedIsLost() {
        let d = VolumeLogic.decideClaim(claim(volume: "gone", phase: "Bound"), volumes: [], classes: classes, nodes: [:], podsUsing: [])
        #expect(d.status?.phase == "Lost")
        #expect(d.events.map(\.reason) == ["ClaimLost"])
    }

    @Test func aVolumeHeldByAnotherClaimIsNotTaken() {
        let other = claim("other")
        let d = VolumeLogic.decideClaim(claim(volume: "pv1"), volumes: [volume("pv1", claimRef: other, phase: "Bound")], classes: classes, nodes: [:], podsUsing: [])
        #expect(d.bindTo == nil)
        #expect(d.events.map(\.reason) == ["FailedBinding"])
    }

    @Test func aDeletedClaimKeepsItsFinalizerWhilePodsUseIt() {
        var c = claim(volume: "pv1", phase: "Bound")
        c.metadata.deletionTimestamp = KubeTime.format(now)
        c.metadata.finalizers = [StorageNames.pvcProtection]
        var p = Pod(metadata: ObjectMeta(name: "db-0", namespace: "default"), spec: PodSpec(containers: []))
        p.status = PodStatus(phase: "Running")
        #expect(!VolumeLogic.decideClaim(c, volumes: [], classes: classes, nodes: [:], podsUsing: [p]).unprotect)
        p.status = PodStatus(phase: "Succeeded")
        #expect(VolumeLogic.decideClaim(c, volumes: [], classes: classes, nodes: [:], podsUsing: [p]).unprotect)
        #expect(VolumeLogic.decideClaim(c, volumes: [], classes: classes, nodes: [:], podsUsing: []).unprotect)
    }

    @Test func volumePhasesFollowTheirClaims() {
        let c = claim(volume: "pv1")
        #expect(VolumeLogic.decideVolume(volume("pv1", phase: "Pending"), claim: nil, now: now).status?.phase == "Available")
        #expect(VolumeLogic.decideVolume(volume("pv1", claimRef: c), claim: c, now: now).status?.phase == "Bound")
        let released = VolumeLogic.decideVolume(volume("pv1", claimRef: c, phase: "Bound"), claim: nil, now: now)
        #expect(released.status?.phase == "Released" && !released.delete)
        #expect(released.status?.lastPhaseTransitionTime == KubeTime.format(now))
    }

    @Test func releasedVolumesAreReclaimedByPolicy() {
        let c = claim(volume: "pv1")
        let provisioned = VolumeLogic.decideVolume(volume("pv1", claimRef: c, policy: "Delete", phase: "Bound", provisioned: true), claim: nil, now: now)
        #expect(provisioned.delete)
        let manual = VolumeLogic.decideVolume(volume("pv1", claimRef: c, policy: "Delete", phase: "Bound"), claim: nil, now: now)
        #expect(!manual.delete && manual.status?.phase == "Failed")
        // A new claim with the same name is not the one the volume was bound to.
        var again = claim(volume: nil); again.metadata.uid = "another"
        #expect(VolumeLogic.decideVolume(volume("pv1", claimRef: c, policy: "Retain", phase: "Bound"), claim: again, now: now).status?.phase == "Released")
    }

    @Test func aDeletedVolumeKeepsItsFinalizerWhileBound() {
        let c = claim(volume: "pv1", phase: "Bound")
        var pv = volume("pv1", claimRef: c, phase: "Bound")
        pv.metadata.deletionTimestamp = KubeTime.format(now)
        pv.metadata.finalizers = [StorageNames.pvProtection]
        #expect(!VolumeLogic.decideVolume(pv, claim: c, now: now).unprotect)
        #expect(VolumeLogic.decideVolume(pv, claim: nil, now: now).unprotect)
    }

    @Test func statefulSetClaimsAndVolumes() {
        var s = StatefulSet(metadata: ObjectMeta(name: "db", namespace: "default"), spec: StatefulSetSpec(
            replicas: 2, selector: LabelSelector(matchLabels: ["app": "db"]),
            template: PodTemplateSpec(metadata: ObjectMeta(labels: ["app": "db"]), spec: PodSpec(containers: [Container(name: "c", image: "busybox")])),
            serviceName: "db"))
        s.metadata.uid = "sts-uid"
        s.spec?.volumeClaimTemplates = [PersistentVolumeClaim(metadata: ObjectMeta(name: "data", labels: ["tier": "disk"]),
                                                              spec: PersistentVolumeClaimSpec(accessModes: ["ReadWriteOnce"], storage: try! Quantity(parsing: "1Gi")))]
        s.applyDefaults()
        #expect(s.validate().isEmpty)
        let p = StatefulSetController.newPod(s, ordinal: 1, template: s.spec!.template, revision: "r1")
        #expect(p.spec?.volumes?.map(\.name) == ["data"])
        #expect(p.spec?.volumes?.first?.claimName == "data-db-1")
        let retained = StatefulSetController.newClaim(s, template: s.spec!.volumeClaimTemplates![0], ordinal: 1)
        #expect(retained.name == "data-db-1")
        #expect(retained.labels == ["app": "db", "tier": "disk"])
        #expect(retained.metadata.ownerReferences == nil)
        s.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted = "Delete"
        let owned = StatefulSetController.newClaim(s, template: s.spec!.volumeClaimTemplates![0], ordinal: 1)
        #expect(owned.metadata.ownerReferences?.map(\.uid) == ["sts-uid"])
        #expect(owned.metadata.ownerReferences?.first?.controller == false)
    }

    @Test func statefulSetClaimTemplatesAreValidated() {
        var s = StatefulSet(metadata: ObjectMeta(name: "db", namespace: "default"), spec: StatefulSetSpec(
            replicas: 1, selector: LabelSelector(matchLabels: ["app": "db"]),
            template: PodTemplateSpec(metadata: ObjectMeta(labels: ["app": "db"]), spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))))
        s.spec?.volumeClaimTemplates = [PersistentVolumeClaim(metadata: ObjectMeta(name: "data"), spec: PersistentVolumeClaimSpec(accessModes: ["ReadWriteOnce"]))]
        s.applyDefaults()
        #expect(s.validate().map(\.field) == ["spec.volumeClaimTemplates[0].spec.resources.requests[storage]"])
    }
}

extension PersistentVolume {
    func with(_ f: (inout PersistentVolume) -> Void) -> PersistentVolume { var x = self; f(&x); return x }
}
