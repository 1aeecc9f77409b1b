import Testing
import Foundation
import API
import APIServer
import Client

/// The schema-driven API machinery against a real apiserver: protobuf bodies, lists and watch
/// frames; strategic merge; server-side apply with conflicts; strict decoding of empty values;
/// YAML bodies; eviction with a PodDisruptionBudget; access reviews; autoscaling/v1.
@Suite(.serialized) struct APIMachineryTests {
    static let proto = KubeProtobuf.mediaType

    /// Every page of a paginated list is read from the snapshot of the first: objects created,
    /// changed or deleted between pages do not show, and a bad token is a 400 naming the field.
    @Test func paginatedListsAreOneSnapshot() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        for i in 1...5 { _ = try await k.create(ConfigMap(name: "cm\(i)", namespace: "default", data: ["v": "old"])) }
        // kube-root-ca.crt is published into every namespace by a controller: wait for it first.
        let deadline = ContinuousClock.now + .seconds(20)
        while (try? await k.get(ConfigMap.self, "kube-root-ca.crt", namespace: "default")) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let path = Resources.configmaps.path(namespace: "default")
        func page(_ q: [String: String]) async throws -> (names: [String], values: [String], rv: String, next: String?) {
            let r = try await k.call(.GET, path, query: q)
            let j = try JSONValue.parse(r.body)
            let items = j["items"]?.arrayValue ?? []
            return (items.compactMap { $0["metadata"]?["name"]?.stringValue }, items.compactMap { $0["data"]?["v"]?.stringValue },
                    j["metadata"]?["resourceVersion"]?.stringValue ?? "", j["metadata"]?["continue"]?.stringValue)
        }
        let p1 = try await page(["limit": "2"])
        #expect(p1.names == ["cm1", "cm2"])
        let token = try #require(p1.next)
        // Between pages: a new object, a changed one, a deleted one.
        _ = try await k.create(ConfigMap(name: "cm0", namespace: "default"))
        _ = try await k.create(ConfigMap(name: "cm6", namespace: "default"))
        var cm3 = try await k.get(ConfigMap.self, "cm3", namespace: "default")
        cm3.data = ["v": "new"]
        _ = try await k.update(cm3)
        try await k.delete(ConfigMap.self, "cm4", namespace: "default")
        let p2 = try await page(["limit": "2", "continue": token])
        #expect(p2.names == ["cm3", "cm4"])
        #expect(p2.values == ["old", "old"])
        #expect(p2.rv == p1.rv)
        // (kube-root-ca.crt, published into every namespace, sorts last.)
        let p3 = try await page(["limit": "2", "continue": try #require(p2.next)])
        #expect(p3.names == ["cm5", "kube-root-ca.crt"])
        #expect(p3.next == nil)
        // A fresh list sees the changes.
        #expect(try await page([:]).names == ["cm0", "cm1", "cm2", "cm3", "cm5", "cm6", "kube-root-ca.crt"])
        let bad = try await k.request(.GET, path, query: ["limit": "2", "continue": "not-a-token"])
        #expect(bad.status == 400)
        #expect(String(decoding: bad.body, as: UTF8.self).contains("continue"))
    }

    @Test func protobufCreateGetListAndWatch() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let path = Resources.deployments.path(namespace: "default")
        let list0 = try await k.call(.GET, path)
        let rv0 = try JSONValue.parse(list0.body)["metadata"]?["resourceVersion"]?.stringValue ?? "0"

        // A protobuf body in, a protobuf answer out (client-go's typed clients).
        let body = Data(try KubeProtobuf.encodeObject(deploymentJSON("pb", replicas: 2)))
        let created = try await k.request(.POST, path, body: body, contentType: Self.proto, accept: "\(Self.proto),application/json")
        #expect(created.status == 201)
        let obj = try KubeProtobuf.decodeObject(created.body)
        #expect(obj["kind"]?.stringValue == "Deployment" && obj["apiVersion"]?.stringValue == "apps/v1")
        #expect(obj["spec"]?["replicas"]?.intValue == 2 && obj["metadata"]?["uid"]?.stringValue != nil)
        // The container came through protobuf, and the server's defaults came back.
        let c0 = obj["spec"]?["template"]?["spec"]?["containers"]?[0]
        #expect(c0?["name"]?.stringValue == "c" && c0?["image"]?.stringValue == "busybox:1" && c0?["imagePullPolicy"]?.stringValue == "IfNotPresent")

        // JSON stays the default; protobuf answers only when asked for first.
        let asJSON = try await k.request(.GET, Resources.deployments.path(namespace: "default", name: "pb"))
        #expect(try JSONValue.parse(asJSON.body)["metadata"]?["name"]?.stringValue == "pb")
        let list = try await k.request(.GET, path, accept: "\(Self.proto),application/json")
        let listObj = try KubeProtobuf.decodeObject(list.body)
        #expect(listObj["kind"]?.stringValue == "DeploymentList" && listObj["items"]?.arrayValue?.count == 1)

        // A body that is not protobuf is a 400, not a crash.
        let bad = try await k.request(.POST, path, body: Data("k8s\0garbage".utf8), contentType: Self.proto)
        #expect(bad.status == 400)

        // A watch from before the create: length-prefixed WatchEvents whose objects are enveloped.
        let w = try await k.request(.GET, path, query: ["watch": "true", "resourceVersion": rv0, "timeoutSeconds": "1"],
                                    accept: "\(Self.proto);stream=watch")
        #expect(w.status == 200)
        var bytes = [UInt8](w.body)
        var events: [(String, JSONValue)] = []
        while bytes.count >= 4 {
            let n = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
            #expect(bytes.count >= 4 + n)
            let ev = try KubeProtobuf.decode(bytes[4..<(4 + n)], message: "meta/v1.WatchEvent")
            events.append((ev["type"]?.stringValue ?? "", ev["object"] ?? .null))
            bytes.removeFirst(4 + n)
        }
        #expect(events.first?.0 == "ADDED")
        #expect(events.first?.1["metadata"]?["name"]?.stringValue == "pb")
        // A watch says Connection: close (the server closes it when the watch ends), so the next
        // request, a POST that cannot be retried, never lands on a dying connection.
        #expect(w.status == 200)
        for i in 0..<5 {
            let after = try await k.request(.POST, Resources.configmaps.path(namespace: "default"),
                                            body: try JSONValue.object(["metadata": .object(["name": .string("after-\(i)")])]).encoded())
            #expect(after.status == 201)
            _ = try await k.request(.GET, path, query: ["watch": "true", "timeoutSeconds": "1"])
        }

    }

    @Test func strictDecodingSeesEmptyValuesAndFreeJSON() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let path = Resources.deployments.path(namespace: "default")
        for (extra, field) in [("null", "spec.bogus"), ("{}", "spec.bogus"), ("[]", "spec.bogus")] {
            var d = deploymentJSON("s")
            d["spec"]?["bogus"] = try JSONValue.parse(Data(extra.utf8))
            let r = try await k.request(.POST, path, body: try d.encoded())
            #expect(r.status == 400)
            #expect(String(decoding: r.body, as: UTF8.self).contains("unknown field \\\"\(field)\\\""))
        }
        // Inside a part our own types keep as free JSON (env valueFrom).
        var d = deploymentJSON("s")
        d["spec"]?["template"]?["spec"]?["containers"] = .array([.object(["name": "web", "image": "busybox",
            "env": .array([.object(["name": "A", "valueFrom": .object(["fieldRef": .object(["fieldPath": "metadata.name", "typo": "x"])])])])])])
        let r = try await k.request(.POST, path, body: try d.encoded())
        #expect(r.status == 400)
        #expect(String(decoding: r.body, as: UTF8.self).contains("spec.template.spec.containers[0].env[0].valueFrom.fieldRef.typo"))
        // Warn keeps the object and says why.
        var w = deploymentJSON("warned"); w["spec"]?["bogus"] = .null
        let warned = try await k.request(.POST, path, query: ["fieldValidation": "Warn"], body: try w.encoded())
        #expect(warned.status == 201 && warned.warnings.contains { $0.contains("spec.bogus") }, "\(warned.warnings)")
    }

    @Test func strategicMergeKeepsOtherContainersAndStatusKeyOrder() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        var d = deploymentJSON("smp")
        d["spec"]?["template"]?["spec"]?["containers"] = .array([.object(["name": "web", "image": "a"]), .object(["name": "sidecar", "image": "b"])])
        try await k.call(.POST, Resources.deployments.path(namespace: "default"), body: try d.encoded())
        let item = Resources.deployments.path(namespace: "default", name: "smp")
        let patch = #"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],"containers":[{"name":"web","image":"a2"}]}}}}"#
        let r = try await k.call(.PATCH, item, body: Data(patch.utf8), contentType: "application/strategic-merge-patch+json")
        let cs = try JSONValue.parse(r.body)["spec"]?["template"]?["spec"]?["containers"]?.arrayValue ?? []
        #expect(cs.map { $0["name"]?.stringValue ?? "" } == ["web", "sidecar"])
        #expect(cs.map { $0["image"]?.stringValue ?? "" } == ["a2", "b"])
        // A broken directive is refused, and the object is unchanged.
        let bad = try await k.request(.PATCH, item, body: Data(#"{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#.utf8),
                                      contentType: "application/strategic-merge-patch+json")
        #expect(bad.status == 400 && String(decoding: bad.body, as: UTF8.self).contains("missing merge key"))
        // Status errors in Kubernetes' key order.
        let missing = try await k.request(.GET, Resources.deployments.path(namespace: "default", name: "nope"))
        #expect(String(decoding: missing.body, as: UTF8.self) ==
                #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"nope\" not found","reason":"NotFound","details":{"name":"nope","group":"apps","kind":"deployments"},"code":404}"#)
    }

    @Test func serverSideApplyOwnsFieldsAndReportsConflicts() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let item = Resources.configmaps.path(namespace: "default", name: "cfg")
        func apply(_ yaml: String, _ manager: String, force: Bool = false, dryRun: Bool = false) async throws -> RawResponse {
            var q = ["fieldManager": manager]
            if force { q["force"] = "true" }
            if dryRun { q["dryRun"] = "All" }
            return try await k.request(.PATCH, item, query: q, body: Data(yaml.utf8), contentType: "application/apply-patch+yaml")
        }
        let y1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n  b: \"2\"\n"
        #expect(try await apply(y1, "alice").status == 201)
        let dry = try await apply(y1.replacingOccurrences(of: "\"2\"", with: "\"3\""), "alice", dryRun: true)
        #expect(dry.status == 200)
        #expect(try JSONValue.parse(try await k.call(.GET, item).body)["data"]?["b"]?.stringValue == "2")
        // Dropping a field from the manifest removes it.
        #expect(try await apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n", "alice").status == 200)
        var got = try JSONValue.parse(try await k.call(.GET, item).body)
        #expect(got["data"]?["b"] == nil)
        #expect(got["metadata"]?["managedFields"]?[0]?["manager"]?.stringValue == "alice")
        // Another manager setting a different value: 409 naming the field and the owner.
        let conflict = try await apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"9\"\n", "bob")
        #expect(conflict.status == 409)
        let st = try KubeJSON.decode(Status.self, from: conflict.body)
        #expect(st.reason == "Conflict" && st.details?.causes?.first?.reason == "FieldManagerConflict" && st.details?.causes?.first?.field == ".data.a")
        #expect(st.message?.contains("conflict with \"alice\"") == true)
        #expect(try await apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"9\"\n", "bob", force: true).status == 200)
        got = try JSONValue.parse(try await k.call(.GET, item).body)
        #expect(got["data"]?["a"]?.stringValue == "9")
        // An ordinary update records its manager too.
        _ = try await k.call(.PATCH, item, query: ["fieldManager": "carol"], body: Data(#"{"data":{"c":"3"}}"#.utf8), contentType: "application/merge-patch+json")
        got = try JSONValue.parse(try await k.call(.GET, item).body)
        let managers = (got["metadata"]?["managedFields"]?.arrayValue ?? []).map { "\($0["manager"]?.stringValue ?? ""):\($0["operation"]?.stringValue ?? "")" }
        #expect(managers.contains("carol:Update") && managers.contains("bob:Apply"))
        // Apply needs a field manager; bad YAML is a 400.
        #expect(try await k.request(.PATCH, item, body: Data(y1.utf8), contentType: "application/apply-patch+yaml").status == 400)
        #expect(try await apply("apiVersion: v1\nkind: [\n", "alice").status == 400)
        #expect(try await apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  managedFields: [{manager: x}]\n", "alice").status == 400)
    }

    @Test func yamlBodiesAndAccessReviews() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let r = try await k.request(.POST, Resources.configmaps.path(namespace: "default"),
                                    body: Data("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n".utf8), contentType: "application/yaml")
        #expect(r.status == 201)
        let twoDocs = try await k.request(.POST, Resources.configmaps.path(namespace: "default"),
                                          body: Data("kind: ConfigMap\n---\nkind: ConfigMap\n".utf8), contentType: "application/yaml")
        #expect(twoDocs.status == 400)

        let review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        func can(_ client: KubeClient, _ verb: String, _ resource: String, group: String = "", ns: String = "default") async throws -> Bool {
            let body: JSONValue = .object(["apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                           "spec": .object(["resourceAttributes": .object(["verb": .string(verb), "resource": .string(resource),
                                                                                           "group": .string(group), "namespace": .string(ns)])])])
            let r = try await client.call(.POST, review, body: try body.encoded())
            return try JSONValue.parse(r.body)["status"]?["allowed"] == .bool(true)
        }
        #expect(try await can(k, "delete", "nodes"))
        let sched = try c.client(user: "system:kube-scheduler", groups: [])
        #expect(try await can(sched, "create", "pods", ns: "default") == false)
        #expect(try await can(sched, "list", "pods"))
        let rules = try await sched.call(.POST, "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                         body: try JSONValue.object(["spec": .object(["namespace": "default"])]).encoded())
        let rr = try JSONValue.parse(rules.body)["status"]?["resourceRules"]?.arrayValue ?? []
        #expect(rr.contains { $0["resources"]?[0]?.stringValue == "pods/binding" })
    }

    @Test func evictionHonoursTheDisruptionBudget() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        // Two running, ready pods, as an agent would report them.
        for name in ["e1", "e2"] {
            var p = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: ["app": "e"]), spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))
            p.spec?.nodeName = "n1"
            let created = try await k.create(p)
            var st = created
            st.status = PodStatus(phase: "Running")
            st.status?.conditions = [PodCondition(type: "Ready", status: "True")]
            _ = try await k.updateStatus(st)
        }
        var pdb = PodDisruptionBudget(name: "e", namespace: "default", spec: PodDisruptionBudgetSpec(minAvailable: .int(1), selector: LabelSelector(matchLabels: ["app": "e"])))
        pdb = try await k.create(pdb)
        let evict: (String) async throws -> RawResponse = { name in
            let body: JSONValue = .object(["apiVersion": "policy/v1", "kind": "Eviction", "metadata": .object(["name": .string(name), "namespace": "default"])])
            return try await k.request(.POST, Resources.pods.path(namespace: "default", name: name, subresource: "eviction"), body: try body.encoded())
        }
        // No status yet (no controller ran): refused, the budget is not processed.
        #expect(try await evict("e1").status == 429)
        // The status the disruption controller computes: 2 healthy, 1 desired, 1 allowed.
        let pods = try await k.list(Pod.self, labelSelector: "app=e").items
        pdb.status = Disruption.status(pdb, pods: pods, disrupted: [:], now: KubeTime.format(Date()))
        #expect(pdb.status?.disruptionsAllowed == 1 && pdb.status?.currentHealthy == 2 && pdb.status?.desiredHealthy == 1)
        pdb = try await k.updateStatus(pdb)
        #expect(try await evict("e1").status == 201)
        let after = try await k.get(PodDisruptionBudget.self, "e")
        #expect(after.status?.disruptionsAllowed == 0 && after.status?.disruptedPods?["e1"] != nil)
        // The budget is used up: the second eviction is 429 with a DisruptionBudget cause.
        let refused = try await evict("e2")
        #expect(refused.status == 429)
        let st = try KubeJSON.decode(Status.self, from: refused.body)
        #expect(st.reason == "TooManyRequests" && st.details?.causes?.first?.reason == "DisruptionBudget")
        #expect(try await k.request(.GET, Resources.pods.path(namespace: "default", name: "e2")).status == 200)
    }

    @Test func autoscalingV1IsServedByConversion() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
        let body: JSONValue = .object(["apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": .object(["name": "h"]),
                                       "spec": .object(["scaleTargetRef": .object(["apiVersion": "apps/v1", "kind": "Deployment", "name": "web"]),
                                                        "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 65])])
        let r = try await k.call(.POST, v1, body: try body.encoded())
        let got = try JSONValue.parse(r.body)
        #expect(got["apiVersion"]?.stringValue == "autoscaling/v1" && got["spec"]?["targetCPUUtilizationPercentage"]?.intValue == 65)
        // Stored as v2: the CPU target is a Resource metric.
        let v2 = try await k.get(HorizontalPodAutoscaler.self, "h")
        let m = try JSONValue.from(v2)["spec"]?["metrics"]?[0]
        #expect(m?["resource"]?["target"]?["averageUtilization"]?.intValue == 65)
        // A v1 merge patch changes the v2 object.
        _ = try await k.call(.PATCH, "\(v1)/h", body: Data(#"{"spec":{"targetCPUUtilizationPercentage":80}}"#.utf8), contentType: "application/merge-patch+json")
        let m2 = try JSONValue.from(try await k.get(HorizontalPodAutoscaler.self, "h"))["spec"]?["metrics"]?[0]
        #expect(m2?["resource"]?["target"]?["averageUtilization"]?.intValue == 80)
        // Lists and discovery.
        let list = try JSONValue.parse(try await k.call(.GET, v1).body)
        #expect(list["apiVersion"]?.stringValue == "autoscaling/v1" && list["items"]?[0]?["spec"]?["targetCPUUtilizationPercentage"]?.intValue == 80)
        let group = try JSONValue.parse(try await k.call(.GET, "/apis/autoscaling").body)
        #expect(group["preferredVersion"]?["version"]?.stringValue == "v2" && group["versions"]?.arrayValue?.count == 2)
    }
}

extension JSONValue {
    subscript(index: Int) -> JSONValue? {
        guard case .array(let a) = self, a.indices.contains(index) else { return nil }
        return a[index]
    }
}
