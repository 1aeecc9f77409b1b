// Persistent volumes end to end on a hollow node: the apiserver (with its default local-path
// class), controller-manager, scheduler and a hollow agent in process. A StatefulSet's claim is
// provisioned on the pod's node; a PodDisruptionBudget holds its rolling update back; deleting
// the claim deletes the volume and the agent removes the directory.
import Testing
import Foundation
import API
import APIServer
import Agent
import Client
import Controllers
import Scheduler

@Suite(.serialized) struct VolumeTests {
    @Test func statefulSetClaimsAreProvisionedOnThePodsNodeAndBudgetsHoldUpdates() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let hollow = try await startControlPlaneAndHollowNode(c, node: "v1", address: "198.18.0.31", tweak: { $0.storageRoot = c.dir + "/storage-v1" })
        defer { hollow.stop() }
        let k = try c.admin()
        let sc = try await k.get(StorageClass.self, "local-path")
        #expect(sc.isDefault && sc.volumeBindingMode == "WaitForFirstConsumer")

        let doc = try Manifests.parse("""
            apiVersion: apps/v1
            kind: StatefulSet
            metadata: {name: db}
            spec:
              replicas: 1
              serviceName: db
              selector: {matchLabels: {app: db}}
              template:
                metadata: {labels: {app: db}}
                spec:
                  containers: [{name: c, image: busybox:1, volumeMounts: [{name: data, mountPath: /data}]}]
              volumeClaimTemplates:
              - metadata: {name: data}
                spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
            """, file: "sts.yaml")[0]
        _ = try await k.create(try KubeJSON.decode(StatefulSet.self, from: doc.object.encoded()))
        let claim = try await eventually(30, "the claim is bound") { () -> PersistentVolumeClaim? in
            let c = try? await k.get(PersistentVolumeClaim.self, "data-db-0"); return c?.phase == "Bound" ? c : nil
        }
        #expect(claim.spec?.storageClassName == "local-path")
        #expect(claim.metadata.annotations?[StorageNames.selectedNode] == "v1")
        #expect(claim.metadata.finalizers == [StorageNames.pvcProtection])
        let pv = try await k.get(PersistentVolume.self, claim.spec!.volumeName!)
        #expect(pv.pinnedNode == "v1")
        #expect(pv.spec?.hostPath?.path == "\(c.dir)/storage-v1/pvc-\(claim.metadata.uid!)_default_data-db-0")
        _ = try await eventually(30, "db-0 Running") { try? await k.get(Pod.self, "db-0").phase == "Running" ? true : nil }
        let firstUID = try await k.get(Pod.self, "db-0").metadata.uid

        // A budget that allows no disruption holds the rolling update back; without it, it goes on.
        _ = try await k.create(PodDisruptionBudget(name: "db", namespace: "default",
                                                   spec: PodDisruptionBudgetSpec(minAvailable: .int(1), selector: LabelSelector(matchLabels: ["app": "db"]))))
        _ = try await eventually(15, "the budget is computed") { try? await k.get(PodDisruptionBudget.self, "db").status?.currentHealthy == 1 ? true : nil }
        var sts = try await k.get(StatefulSet.self, "db")
        sts.spec?.template.spec?.containers[0].image = "busybox:2"
        _ = try await k.update(sts)
        _ = try await eventually(20, "the update is held back") { () -> Bool? in
            let evs = try await k.list(Event.self).items
            return evs.contains { $0.reason == "UpdateBlocked" && $0.involvedObject.name == "db" } ? true : nil
        }
        #expect(try await k.get(Pod.self, "db-0").metadata.uid == firstUID)
        try await k.delete(PodDisruptionBudget.self, "db")
        _ = try await eventually(30, "db-0 replaced") { () -> Bool? in
            guard let p = try? await k.get(Pod.self, "db-0") else { return nil }
            return p.metadata.uid != firstUID && p.spec?.containers[0].image == "busybox:2" && p.phase == "Running" ? true : nil
        }

        // The StatefulSet goes, the claim stays (Retain); the claim goes, so do the volume and its directory.
        try FileManager.default.createDirectory(atPath: pv.spec!.hostPath!.path, withIntermediateDirectories: true)
        try await k.delete(StatefulSet.self, "db")
        _ = try await eventually(30, "db-0 gone") { () -> Bool? in ((try? await k.get(Pod.self, "db-0")) == nil) ? true : nil }
        #expect(try await k.get(PersistentVolumeClaim.self, "data-db-0").phase == "Bound")
        try await k.delete(PersistentVolumeClaim.self, "data-db-0")
        _ = try await eventually(30, "the volume is gone") { () -> Bool? in ((try? await k.get(PersistentVolume.self, pv.name)) == nil) ? true : nil }
        #expect(!FileManager.default.fileExists(atPath: pv.spec!.hostPath!.path))
    }
}
