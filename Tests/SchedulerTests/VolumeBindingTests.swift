// The VolumeBinding filter: bound volumes keep pods on their nodes; delayed claims need a node
// that can serve them; missing or immediate unbound claims make the pod unschedulable.
import Testing
import Foundation
@testable import Scheduler
import API

private func claimPod(_ claims: [String]) -> Pod {
    var p = pod()
    p.spec?.volumes = claims.map { Volume(name: $0, persistentVolumeClaim: .object(["claimName": .string($0)])) }
    return p
}

private func pvc(_ name: String, volume: String? = nil, sc: String = "local-path") -> PersistentVolumeClaim {
    var c = PersistentVolumeClaim(metadata: ObjectMeta(name: name, namespace: "default"),
                                  spec: PersistentVolumeClaimSpec(accessModes: ["ReadWriteOnce"], storage: try! Quantity(parsing: "1Gi"), storageClassName: sc))
    c.spec?.volumeName = volume
    return c
}

private func pinned(_ name: String, to node: String) -> PersistentVolume {
    var spec = PersistentVolumeSpec()
    spec.nodeAffinity = PersistentVolume.hostnameAffinity(node)
    spec.hostPath = Volume.HostPath(path: "/srv")
    return PersistentVolume(metadata: ObjectMeta(name: name), spec: spec)
}

private func sc(_ name: String, provisioner: String, wait: Bool) -> StorageClass {
    var s = StorageClass(metadata: ObjectMeta(name: name), provisioner: provisioner)
    s.volumeBindingMode = wait ? "WaitForFirstConsumer" : "Immediate"
    return s
}

private func requirements(_ p: Pod, claims: [PersistentVolumeClaim], volumes: [PersistentVolume] = [], classes: [StorageClass] = [sc("local-path", provisioner: StorageNames.localPathProvisioner, wait: true)]) -> Result<VolumeRequirements, UnschedulableReason> {
    VolumeRequirements.of(p, claim: { n in claims.first { $0.name == n } }, volume: { n in volumes.first { $0.name == n } },
                          volumes: { volumes }, storageClass: { n in classes.first { $0.name == n } })
}

private func withRoot(_ n: NodeInfo) -> NodeInfo {
    var n = n
    n.node.metadata.annotations = [StorageNames.nodeStorageRoot: "/srv"]
    return n
}

@Suite struct VolumeBindingTests {
    @Test func aBoundLocalVolumeKeepsThePodOnItsNode() throws {
        let p = claimPod(["data"])
        let r = try requirements(p, claims: [pvc("data", volume: "pv1")], volumes: [pinned("pv1", to: "n2")]).get()
        let f = VolumeBinding(r)
        #expect(run(f, p, node("n1", labels: ["kubernetes.io/hostname": "n1"])) == .unfit("node(s) had volume node affinity conflict"))
        #expect(run(f, p, node("n2", labels: ["kubernetes.io/hostname": "n2"])) == .fit)
        #expect(r.placementNote == " (persistentvolume \"pv1\" of claim \"data\" is on node \"n2\")")
    }

    @Test func missingAndImmediateUnboundClaimsAreUnschedulable() {
        let p = claimPod(["data"])
        if case .failure(let why) = requirements(p, claims: []) { #expect(why.message == "persistentvolumeclaim \"data\" not found") } else { Issue.record("expected a failure") }
        let immediate = [sc("fast", provisioner: "example.com/x", wait: false)]
        if case .failure(let why) = requirements(p, claims: [pvc("data", sc: "fast")], classes: immediate) {
            #expect(why.message == "pod has unbound immediate PersistentVolumeClaims")
        } else { Issue.record("expected a failure") }
    }

    @Test func aDelayedLocalPathClaimNeedsANodeWithAStorageRoot() throws {
        let p = claimPod(["data"])
        let f = VolumeBinding(try requirements(p, claims: [pvc("data")]).get())
        #expect(run(f, p, node("n1")) == .unfit("node(s) did not say where local-path volumes go"))
        #expect(run(f, p, withRoot(node("n1"))) == .fit)
    }

    @Test func aDelayedClaimWithoutProvisionerNeedsAnAvailableVolumeOnTheNode() throws {
        let p = claimPod(["data"])
        var pv = pinned("pv1", to: "n2")
        pv.spec?.storageClassName = "manual"; pv.spec?.capacity = ["storage": try Quantity(parsing: "5Gi")]; pv.spec?.accessModes = ["ReadWriteOnce"]
        pv.status = PersistentVolumeStatus(phase: "Available")
        let f = VolumeBinding(try requirements(p, claims: [pvc("data", sc: "manual")], volumes: [pv],
                                               classes: [sc("manual", provisioner: "kubernetes.io/no-provisioner", wait: true)]).get())
        #expect(run(f, p, node("n1", labels: ["kubernetes.io/hostname": "n1"])) == .unfit("node(s) didn't find available persistent volumes to bind"))
        #expect(run(f, p, node("n2", labels: ["kubernetes.io/hostname": "n2"])) == .fit)
    }
}
