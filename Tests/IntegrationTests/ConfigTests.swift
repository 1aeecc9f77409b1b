// Config into pods end to end on a hollow node: a ConfigMap volume and Secret environment are
// projected, a changed ConfigMap is rewritten, and a pod waiting for a missing ConfigMap starts
// once it appears.
import Testing
import Foundation
import API
import APIServer
import Agent
import Client
import Controllers
import Scheduler

@Suite(.serialized) struct ConfigTests {
    @Test func configMapsAndSecretsReachPodsAndFollowChanges() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let hollow = try await startControlPlaneAndHollowNode(c, node: "c1", address: "198.18.0.41")
        defer { hollow.stop() }
        let rt = hollow.runtime
        let k = try c.admin()

        _ = try await k.create(ConfigMap(name: "app", namespace: "default", data: ["app.conf": "v1"]))
        _ = try await k.create(Secret(name: "creds", namespace: "default", stringData: ["password": "hunter2"]))
        let doc = try Manifests.parse("""
            apiVersion: v1
            kind: Pod
            metadata: {name: cfg}
            spec:
              volumes:
              - {name: conf, configMap: {name: app}}
              - {name: later, configMap: {name: later}}
              containers:
              - name: c
                image: busybox
                env: [{name: PW, valueFrom: {secretKeyRef: {name: creds, key: password}}}]
                volumeMounts: [{name: conf, mountPath: /etc/app}, {name: later, mountPath: /etc/later}]
            """, file: "pod.yaml")[0]
        let pod = try await k.create(try KubeJSON.decode(Pod.self, from: doc.object.encoded()))
        let uid = pod.metadata.uid!

        // The ConfigMap "later" does not exist: the pod waits, saying which volume and why.
        let waiting = try await eventually(15, "the pod waits for its volume") { () -> Pod? in
            let p = try await k.get(Pod.self, "cfg"); return p.status?.condition("Ready")?.reason == "VolumesNotReady" ? p : nil
        }
        #expect(waiting.status?.condition("Ready")?.message?.contains("configmap \"later\" not found") == true)
        #expect(waiting.status?.containerStatuses?.first?.state?.waiting?.reason == "ContainerCreating")
        _ = try await k.create(ConfigMap(name: "later", namespace: "default", data: ["x": "y"]))
        _ = try await eventually(15, "the pod runs once the ConfigMap exists") { try? await k.get(Pod.self, "cfg").phase == "Running" ? true : nil }
        #expect(rt.volumeFiles(podUID: uid, name: "conf")?.map { String(decoding: $0.data, as: UTF8.self) } == ["v1"])
        #expect(rt.startedEnv(podUID: uid, container: "c")?.first { $0.name == "PW" }?.value == "hunter2")

        // A changed ConfigMap is written again within seconds.
        var app = try await k.get(ConfigMap.self, "app", namespace: "default")
        app.data = ["app.conf": "v2"]
        _ = try await k.update(app)
        _ = try await eventually(10, "the volume shows the new content") { () -> Bool? in
            rt.volumeFiles(podUID: uid, name: "conf")?.first.map { String(decoding: $0.data, as: UTF8.self) } == "v2" ? true : nil
        }

        // A container whose env names a missing Secret key: CreateContainerConfigError, then it starts.
        let doc2 = try Manifests.parse("""
            apiVersion: v1
            kind: Pod
            metadata: {name: envwait}
            spec:
              containers:
              - name: c
                image: busybox
                envFrom: [{secretRef: {name: token}, prefix: T_}]
            """, file: "pod2.yaml")[0]
        _ = try await k.create(try KubeJSON.decode(Pod.self, from: doc2.object.encoded()))
        let blocked = try await eventually(15, "CreateContainerConfigError") { () -> ContainerStateWaiting? in
            let w = try await k.get(Pod.self, "envwait").status?.containerStatuses?.first?.state?.waiting
            return w?.reason == "CreateContainerConfigError" ? w : nil
        }
        #expect(blocked.message == "secret \"token\" not found")
        _ = try await k.create(Secret(name: "token", namespace: "default", stringData: ["value": "abc"]))
        let started = try await eventually(15, "envwait runs") { () -> Pod? in
            let p = try await k.get(Pod.self, "envwait"); return p.phase == "Running" ? p : nil
        }
        #expect(rt.startedEnv(podUID: started.metadata.uid!, container: "c")?.first { $0.name == "T_value" }?.value == "abc")
    }
}
