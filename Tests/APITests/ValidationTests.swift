import Testing
import Foundation
@testable import API

@Suite struct ValidationTests {
    func deployment(_ yamlJSON: String) throws -> Deployment {
        try KubeJSON.decode(Deployment.self, from: Data(yamlJSON.utf8))
    }
    let good = #"{"metadata":{"name":"web"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"containerPort":80}]}]}}}}"#

    @Test func validDeploymentPassesAndIsDefaulted() throws {
        var d = try deployment(good)
        d.applyDefaults()
        #expect(d.validate().isEmpty)
        #expect(d.spec?.strategy?.rollingUpdate?.maxSurge == .string("25%"))
        #expect(d.spec?.revisionHistoryLimit == 10)
        #expect(d.spec?.template.spec?.restartPolicy == "Always")
        #expect(d.spec?.template.spec?.containers[0].imagePullPolicy == "Always")
        #expect(d.spec?.template.spec?.containers[0].ports?[0].protocol == "TCP")
    }

    @Test(arguments: [
        (#""replicas":2"#, #""replicas":-1"#, "spec.replicas"),
        (#""labels":{"app":"web"}},"spec""#, #""labels":{"app":"other"}},"spec""#, "spec.template.metadata.labels"),
        (#""name":"c","image":"busybox""#, #""name":"C_bad","image":"busybox""#, "spec.template.spec.containers[0].name"),
        (#""name":"c","image":"busybox""#, #""name":"c","image":"""#, "spec.template.spec.containers[0].image"),
        (#""containerPort":80"#, #""containerPort":70000"#, "spec.template.spec.containers[0].ports[0].containerPort"),
        (#""name":"web""#, #""name":"Web!""#, "metadata.name"),
    ])
    func invalidFieldsAreNamed(from: String, to: String, field: String) throws {
        var d = try deployment(good.replacingOccurrences(of: from, with: to))
        d.applyDefaults()
        let errs = d.validate()
        #expect(errs.contains { $0.field == field }, "errors: \(errs)")
    }

    @Test func selectorIsImmutable() throws {
        let old = try deployment(good)
        var new = old
        new.spec?.selector = LabelSelector(matchLabels: ["app": "x"])
        #expect(new.validateUpdate(old: old).map(\.field) == ["spec.selector"])
    }

    @Test func podUpdatesMayOnlyChangeImages() throws {
        let pod = Pod(metadata: ObjectMeta(name: "p", namespace: "default"), spec: PodSpec(containers: [Container(name: "c", image: "a")]))
        var img = pod; img.spec?.containers[0].image = "b"
        #expect(img.validateUpdate(old: pod).isEmpty)
        var cmd = pod; cmd.spec?.containers[0].command = ["x"]
        #expect(cmd.validateUpdate(old: pod).first?.field == "spec")
    }

    @Test func imagePullPolicyDefaults() {
        for (image, policy) in [("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"), ("127.0.0.1:5000/x", "Always"), ("127.0.0.1:5000/x:1", "IfNotPresent")] {
            var c = Container(name: "c", image: image)
            c.applyDefaults()
            #expect(c.imagePullPolicy == policy, "\(image)")
        }
    }

    @Test func hpaBounds() throws {
        var h = try KubeJSON.decode(HorizontalPodAutoscaler.self, from: Data(#"{"metadata":{"name":"h"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"w"},"minReplicas":5,"maxReplicas":2}}"#.utf8))
        h.applyDefaults()
        #expect(h.validate().contains { $0.field == "spec.maxReplicas" })
        #expect(h.spec?.metrics?.first?.resource?.target.averageUtilization == 80)
    }

    @Test func podStatusColumn() {
        var p = Pod(metadata: ObjectMeta(name: "p"), spec: PodSpec(containers: [Container(name: "c", image: "x")]))
        p.status = PodStatus(phase: "Running")
        var cs = ContainerStatus(name: "c", image: "x")
        cs.state = ContainerState(waiting: ContainerStateWaiting(reason: "CrashLoopBackOff"))
        p.status?.containerStatuses = [cs]
        #expect(p.displayStatus == "CrashLoopBackOff")
        p.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
        #expect(p.displayStatus == "Terminating")
    }
}

@Suite struct StorageValidationTests {
    func decode<T: Decodable>(_ t: T.Type, _ json: String) throws -> T { try KubeJSON.decode(T.self, from: Data(json.utf8)) }

    @Test func claimsNeedModesAndSize() throws {
        var c = try decode(PersistentVolumeClaim.self, #"{"metadata":{"name":"d","namespace":"default"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}"#)
        c.applyDefaults(); c.admitCreate()
        #expect(c.validate().isEmpty)
        #expect(c.spec?.volumeMode == "Filesystem" && c.status?.phase == "Pending")
        #expect(c.metadata.finalizers == ["kubernetes.io/pvc-protection"])
        let bad = try decode(PersistentVolumeClaim.self, #"{"metadata":{"name":"d","namespace":"default"},"spec":{"accessModes":["ReadWriteSometimes"]}}"#)
        #expect(bad.validate().map(\.field) == ["spec.accessModes[0]", "spec.resources.requests[storage]"])
    }

    @Test func claimSpecsAreImmutableButMayGrow() throws {
        let old = try decode(PersistentVolumeClaim.self, #"{"metadata":{"name":"d","namespace":"default"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"storageClassName":"local-path"}}"#)
        var grown = old; grown.spec?.resources?.requests?["storage"] = try Quantity(parsing: "2Gi")
        #expect(grown.validateUpdate(old: old).isEmpty)
        var shrunk = old; shrunk.spec?.resources?.requests?["storage"] = try Quantity(parsing: "500Mi")
        #expect(shrunk.validateUpdate(old: old).map(\.field) == ["spec.resources.requests.storage"])
        var bound = old; bound.spec?.volumeName = "pv1"
        #expect(bound.validateUpdate(old: old).isEmpty)
        var moved = old; moved.spec?.accessModes = ["ReadWriteMany"]
        #expect(moved.validateUpdate(old: old).map(\.field) == ["spec"])
    }

    @Test func volumesNeedOneSourceCapacityAndModes() throws {
        var pv = try decode(PersistentVolume.self, #"{"metadata":{"name":"v"},"spec":{"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"],"hostPath":{"path":"/srv/v"}}}"#)
        pv.applyDefaults()
        #expect(pv.validate().isEmpty)
        #expect(pv.spec?.persistentVolumeReclaimPolicy == "Retain")
        let none = try decode(PersistentVolume.self, #"{"metadata":{"name":"v"},"spec":{"accessModes":["ReadWriteOnce"]}}"#)
        #expect(none.validate().map(\.field) == ["spec.capacity", "spec"])
        let local = try decode(PersistentVolume.self, #"{"metadata":{"name":"v"},"spec":{"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"],"local":{"path":"rel"},"hostPath":{"path":"/x"}}}"#)
        #expect(Set(local.validate().map(\.field)) == ["spec.local", "spec.local.path", "spec.nodeAffinity"])
        var moved = pv; moved.spec?.hostPath?.path = "/elsewhere"
        #expect(moved.validateUpdate(old: pv).map(\.field) == ["spec.persistentvolumesource"])
    }

    @Test func storageClassesAreCheckedAndFixed() throws {
        var sc = try decode(StorageClass.self, #"{"metadata":{"name":"s"},"provisioner":"example.com/disk"}"#)
        sc.applyDefaults()
        #expect(sc.validate().isEmpty && sc.reclaimPolicy == "Delete" && sc.volumeBindingMode == "Immediate")
        let bad = try decode(StorageClass.self, #"{"metadata":{"name":"s"},"provisioner":"","reclaimPolicy":"Recycle","volumeBindingMode":"Later"}"#)
        #expect(bad.validate().map(\.field) == ["provisioner", "reclaimPolicy", "volumeBindingMode"])
        var changed = sc; changed.reclaimPolicy = "Retain"
        #expect(changed.validateUpdate(old: sc).map(\.field) == ["reclaimPolicy"])
    }
}

@Suite struct ConfigValidationTests {
    func pod(_ volumes: String, env: String = "[]") throws -> Pod {
        try KubeJSON.decode(Pod.self, from: Data(#"{"metadata":{"name":"p","namespace":"default"},"spec":{"volumes":\#(volumes),"containers":[{"name":"c","image":"busybox","env":\#(env)}]}}"#.utf8))
    }

    @Test func itemPathsStayInsideTheVolume() throws {
        var p = try pod(#"[{"name":"a","configMap":{"name":"cm","items":[{"key":"k","path":"../etc/passwd"},{"key":"k","path":"/abs"},{"key":"k","path":"ok"},{"key":"k","path":"ok"}]}},{"name":"b","secret":{"secretName":"s","defaultMode":1000}}]"#)
        p.applyDefaults()
        let errs = p.validate().map(\.field)
        #expect(errs == ["spec.volumes[0].configMap.items[0].path", "spec.volumes[0].configMap.items[1].path", "spec.volumes[0].configMap.items[3].path", "spec.volumes[1].secret.defaultMode"])
    }

    @Test func envReferencesAreChecked() throws {
        var p = try pod("[]", env: #"[{"name":"1BAD","value":"x"},{"name":"A","valueFrom":{"secretKeyRef":{"name":"s"}}},{"name":"B","valueFrom":{"configMapKeyRef":{"name":"c","key":"k"},"secretKeyRef":{"name":"s","key":"k"}}}]"#)
        p.applyDefaults()
        #expect(p.validate().map(\.field) == ["spec.containers[0].env[0].name", "spec.containers[0].env[1].valueFrom.secretKeyRef.key", "spec.containers[0].env[2].valueFrom"])
    }

    @Test func secretsAndConfigMapsAreAtMostOneMebibyte() {
        var s = Secret(name: "big", namespace: "default")
        s.data = ["blob": Data(count: 1024 * 1024 + 1).base64EncodedString()]
        #expect(s.validate().map(\.description) == ["data: Too long: must have at most 1048576 bytes"])
        s.data = ["blob": Data(count: 1024).base64EncodedString(), "bad/key": "eA=="]
        #expect(s.validate().map(\.field) == ["data[bad/key]"])
        let c = ConfigMap(name: "big", namespace: "default", data: ["k": String(repeating: "x", count: 1024 * 1024 + 1)])
        #expect(c.validate().map(\.field) == ["data"])
    }
}
