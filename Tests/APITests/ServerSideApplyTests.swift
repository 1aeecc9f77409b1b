import XCTest
@testable import API

final class ServerSideApplyTests: XCTestCase {
    let msg = "apps/v1.Deployment"
    let t0 = "2026-01-01T00:00:00Z", t1 = "2026-01-01T00:01:00Z", t2 = "2026-01-01T00:02:00Z"

    func j(_ s: String) -> JSONValue { try! JSONValue.parse(Data(s.utf8)) }

    func deployment(replicas: Int = 3, labels: String = #""app":"web""#, containers: String = #"{"name":"web","image":"nginx:1"}"#) -> JSONValue {
        j("""
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{\(labels)}},
         "spec":{"replicas":\(replicas),"selector":{"matchLabels":{"app":"web"}},
                 "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[\(containers)]}}}}
        """)
    }

    func apply(_ live: JSONValue?, _ cfg: JSONValue, _ manager: String = "kubectl", force: Bool = false, now: String? = nil) throws -> JSONValue {
        try ServerSideApply.apply(live: live, applied: cfg, manager: manager, force: force, message: msg, apiVersion: "apps/v1", now: now ?? t0)
    }

    func entries(_ obj: JSONValue) -> [JSONValue] { obj["metadata"]?["managedFields"]?.arrayValue ?? [] }
    func entry(_ obj: JSONValue, _ manager: String) -> JSONValue? { entries(obj).first { $0["manager"]?.stringValue == manager } }
    func owned(_ obj: JSONValue, _ manager: String) -> Set<String> {
        guard let f = entry(obj, manager)?["fieldsV1"], let s = try? FieldSet(fieldsV1: f) else { return [] }
        return Set(s.paths.map(\.description))
    }

    func testCreateViaApply() throws {
        let obj = try apply(nil, deployment())
        XCTAssertEqual(obj["spec"]?["replicas"], .int(3))
        XCTAssertEqual(obj["metadata"]?["name"], .string("web"))
        let es = entries(obj)
        XCTAssertEqual(es.count, 1)
        let e = es[0]
        XCTAssertEqual(e["manager"], .string("kubectl"))
        XCTAssertEqual(e["operation"], .string("Apply"))
        XCTAssertEqual(e["apiVersion"], .string("apps/v1"))
        XCTAssertEqual(e["time"], .string(t0))
        XCTAssertEqual(e["fieldsType"], .string("FieldsV1"))
        XCTAssertNil(e["subresource"])
        let expected = j(#"""
        {"f:metadata":{"f:labels":{"f:app":{}}},
         "f:spec":{"f:replicas":{},"f:selector":{},
                   "f:template":{"f:metadata":{"f:labels":{"f:app":{}}},
                                 "f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}
        """#)
        XCTAssertEqual(e["fieldsV1"], expected)
    }

    func testApplyChangedValue() throws {
        let a = try apply(nil, deployment(replicas: 3))
        let b = try apply(a, deployment(replicas: 5), now: t1)
        XCTAssertEqual(b["spec"]?["replicas"], .int(5))
        XCTAssertEqual(entries(b).count, 1)
        XCTAssertEqual(entry(b, "kubectl")?["time"], .string(t1))
        // Same manifest again: nothing changes, the time stays.
        let c = try apply(b, deployment(replicas: 5), now: t2)
        XCTAssertEqual(entry(c, "kubectl")?["time"], .string(t1))
    }

    func testDroppedFieldIsRemoved() throws {
        let a = try apply(nil, deployment(labels: #""app":"web","tier":"front""#))
        XCTAssertEqual(a["metadata"]?["labels"]?["tier"], .string("front"))
        var cfg = deployment()
        cfg["spec"]?["replicas"] = nil
        let b = try apply(a, cfg, now: t1)
        XCTAssertNil(b["metadata"]?["labels"]?["tier"])
        XCTAssertEqual(b["metadata"]?["labels"]?["app"], .string("web"))
        XCTAssertNil(b["spec"]?["replicas"])
        XCTAssertFalse(owned(b, "kubectl").contains(".spec.replicas"))
        XCTAssertFalse(owned(b, "kubectl").contains(".metadata.labels.tier"))
    }

    func testSharedFieldStaysWhenOneManagerDropsIt() throws {
        let a = try apply(nil, deployment(labels: #""app":"web","team":"x""#), "alice")
        let partial = j(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"team":"x"}}}"#)
        let b = try apply(a, partial, "bob", now: t1)   // same value: no conflict, shared
        XCTAssertTrue(owned(b, "alice").contains(".metadata.labels.team"))
        XCTAssertTrue(owned(b, "bob").contains(".metadata.labels.team"))
        let c = try apply(b, deployment(), "alice", now: t2)
        XCTAssertEqual(c["metadata"]?["labels"]?["team"], .string("x"))
        XCTAssertFalse(owned(c, "alice").contains(".metadata.labels.team"))
        XCTAssertEqual(owned(c, "bob"), [".metadata.labels.team"])
        // Bob drops it too: now it goes.
        let d = try apply(c, j(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"other":"y"}}}"#), "bob", now: t2)
        XCTAssertNil(d["metadata"]?["labels"]?["team"])
        XCTAssertEqual(d["metadata"]?["labels"]?["other"], .string("y"))
    }

    func testConflictBetweenAppliersAndForce() throws {
        let a = try apply(nil, deployment(replicas: 3), "alice")
        let partial = j(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":5}}"#)
        XCTAssertThrowsError(try apply(a, partial, "bob", now: t1)) { err in
            guard let c = err as? ApplyConflict else { return XCTFail("\(err)") }
            XCTAssertEqual(c.conflicts.count, 1)
            XCTAssertEqual(c.conflicts[0].manager, "alice")
            XCTAssertEqual(c.conflicts[0].path, ".spec.replicas")
            XCTAssertEqual(c.message, #"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#)
            XCTAssertEqual(c.causes[0].field, ".spec.replicas")
            XCTAssertEqual(c.causes[0].message, #"conflict with "alice""#)
        }
        let b = try apply(a, partial, "bob", force: true, now: t1)
        XCTAssertEqual(b["spec"]?["replicas"], .int(5))
        XCTAssertEqual(owned(b, "bob"), [".spec.replicas"])
        XCTAssertFalse(owned(b, "alice").contains(".spec.replicas"))
        // Alice now conflicts with Bob if she re-applies 3.
        XCTAssertThrowsError(try apply(b, deployment(replicas: 3), "alice", now: t2)) { err in
            XCTAssertEqual((err as? ApplyConflict)?.message, #"Apply failed with 1 conflict: conflict with "bob": .spec.replicas"#)
        }
    }

    func testUpdateManagerThenConflictsWithApplier() throws {
        let a = try apply(nil, deployment(replicas: 3))
        var scaled = a
        scaled["spec"]?["replicas"] = .int(10)
        let b = ServerSideApply.recordUpdate(old: a, new: scaled, manager: "kubectl-scale", message: msg,
                                             apiVersion: "apps/v1", now: t1, subresource: nil)
        XCTAssertEqual(owned(b, "kubectl-scale"), [".spec.replicas"])
        XCTAssertFalse(owned(b, "kubectl").contains(".spec.replicas"))
        let es = entries(b)
        XCTAssertEqual(es.map { $0["operation"]?.stringValue ?? "" }, ["Apply", "Update"])
        XCTAssertThrowsError(try apply(b, deployment(replicas: 3), now: t2)) { err in
            XCTAssertEqual((err as? ApplyConflict)?.message,
                           #"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#)
        }
        // Dropping replicas from the manifest leaves the scaled value alone.
        var cfg = deployment()
        cfg["spec"]?["replicas"] = nil
        let c = try apply(b, cfg, now: t2)
        XCTAssertEqual(c["spec"]?["replicas"], .int(10))
        // Scale subresource writes are recorded with their subresource.
        var scaled2 = c
        scaled2["spec"]?["replicas"] = .int(4)
        let d = ServerSideApply.recordUpdate(old: c, new: scaled2, manager: "hpa", message: msg, apiVersion: "apps/v1", now: t2, subresource: "scale")
        XCTAssertEqual(entry(d, "hpa")?["subresource"], .string("scale"))
        XCTAssertNil(entry(d, "kubectl-scale"))   // lost its only field
    }

    func testContainersKeyedByName() throws {
        let two = #"{"name":"web","image":"nginx:1"},{"name":"sidecar","image":"envoy:1"}"#
        let a = try apply(nil, deployment())
        let b = try apply(a, deployment(containers: two), now: t1)
        let names = b["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names, ["web", "sidecar"])
        XCTAssertTrue(owned(b, "kubectl").contains(#".spec.template.spec.containers[name="sidecar"].image"#))
        XCTAssertTrue(owned(b, "kubectl").contains(#".spec.template.spec.containers[name="sidecar"]"#))
        // Another writer adds env to web; the applier changes only sidecar's image.
        var withEnv = b
        withEnv["spec"]?["template"]?["spec"]?["containers"] = j(#"[{"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"}]},{"name":"sidecar","image":"envoy:1"}]"#)
        let c = ServerSideApply.recordUpdate(old: b, new: withEnv, manager: "editor", message: msg, apiVersion: "apps/v1", now: t1, subresource: nil)
        XCTAssertTrue(owned(c, "editor").contains(#".spec.template.spec.containers[name="web"].env[name="A"]"#))
        XCTAssertTrue(owned(c, "editor").contains(#".spec.template.spec.containers[name="web"].env[name="A"].value"#))
        // Removing sidecar from the manifest removes the container; web keeps its env.
        let d = try apply(c, deployment(), now: t2)
        let cs = d["spec"]?["template"]?["spec"]?["containers"]?.arrayValue ?? []
        XCTAssertEqual(cs.count, 1)
        XCTAssertEqual(cs.first?["name"], .string("web"))
        XCTAssertEqual(cs.first?["env"]?.arrayValue?.count, 1)
        XCTAssertFalse(owned(d, "kubectl").contains { $0.contains("sidecar") })
    }

    func testLabelsMapIsGranular() throws {
        let a = try apply(nil, deployment(), "alice")
        let bobCfg = j(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"owner":"bob"}}}"#)
        let b = try apply(a, bobCfg, "bob", now: t1)
        XCTAssertEqual(b["metadata"]?["labels"], j(#"{"app":"web","owner":"bob"}"#))
        XCTAssertEqual(owned(b, "bob"), [".metadata.labels.owner"])
        XCTAssertTrue(owned(b, "alice").contains(".metadata.labels.app"))
        XCTAssertEqual(entries(b).map { $0["manager"]?.stringValue ?? "" }, ["alice", "bob"])  // Apply entries by time
    }

    func testFieldsV1RoundTrip() throws {
        let text = #"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{}}}}}}}"#
        let fs = try FieldSet(fieldsV1: j(text))
        XCTAssertEqual(fs.sorted.map(\.description), [
            ".metadata.labels.app",
            #".spec.template.spec.containers[name="web"]"#,
            #".spec.template.spec.containers[name="web"].image"#,
        ])
        XCTAssertEqual(fs.fieldsV1, j(text))
        XCTAssertEqual(String(decoding: try fs.fieldsV1.encoded(), as: UTF8.self), text)
        // Multi-field keys are sorted by name; set elements use v:.
        let ports = try FieldSet(fieldsV1: j(#"{"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}},"f:finalizers":{"v:\"a\"":{}}}"#))
        XCTAssertTrue(ports.paths.map(\.description).contains(#".ports[containerPort=80,protocol="TCP"]"#))
        XCTAssertTrue(ports.paths.map(\.description).contains(#".finalizers[="a"]"#))
        XCTAssertEqual(try FieldSet(fieldsV1: ports.fieldsV1), ports)
        XCTAssertThrowsError(try FieldSet(fieldsV1: j(#"{"x:y":{}}"#)))
    }

    func testFieldSetOfObject() {
        let pod = j(#"""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a"]},
         "spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":80}],"args":["x"],"resources":{}}],
                 "nodeSelector":{"k":"v"}}}
        """#)
        let fs = ServerSideApply.fieldSet(of: pod, message: "core/v1.Pod").paths.map(\.description)
        XCTAssertEqual(Set(fs), [
            #".metadata.finalizers[="a"]"#,
            #".spec.containers[name="c"]"#, #".spec.containers[name="c"].name"#, #".spec.containers[name="c"].image"#,
            #".spec.containers[name="c"].ports[containerPort=80,protocol="TCP"]"#,
            #".spec.containers[name="c"].ports[containerPort=80,protocol="TCP"].containerPort"#,
            #".spec.containers[name="c"].args"#, #".spec.containers[name="c"].resources"#,
            ".spec.nodeSelector",
        ])
    }

    func testClientSideApplyMigration() throws {
        // Created by kubectl client-side apply: an Update owning everything.
        let created = ServerSideApply.recordUpdate(old: nil, new: deployment(), manager: "kubectl-client-side-apply", message: msg,
                                                   apiVersion: "apps/v1", now: t0, subresource: nil)
        let csa = owned(created, "kubectl-client-side-apply")
        XCTAssertTrue(csa.contains(".spec.replicas"))
        XCTAssertTrue(csa.contains(".metadata.labels"))   // the map appeared: its own "."
        XCTAssertTrue(csa.contains(#".spec.template.spec.containers[name="web"].image"#))
        XCTAssertFalse(csa.contains(".metadata.name"))
        XCTAssertEqual(entry(created, "kubectl-client-side-apply")?["operation"], .string("Update"))
        // Server-side apply with the same values: no conflict, shared ownership.
        let applied = try apply(created, deployment(), now: t1)
        XCTAssertTrue(owned(applied, "kubectl").contains(".spec.replicas"))
        XCTAssertTrue(owned(applied, "kubectl-client-side-apply").contains(".spec.replicas"))
        XCTAssertEqual(entries(applied).map { $0["operation"]?.stringValue ?? "" }, ["Apply", "Update"])
        // A different value conflicts with the client-side owner, in Kubernetes' words.
        let changed = deployment(replicas: 4, containers: #"{"name":"web","image":"nginx:2"}"#)
        XCTAssertThrowsError(try apply(applied, changed, now: t2)) { err in
            guard let c = err as? ApplyConflict else { return XCTFail("\(err)") }
            XCTAssertEqual(c.conflicts.count, 2)
            XCTAssertEqual(c.message, """
            Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:
            - .spec.replicas
            - .spec.template.spec.containers[name="web"].image
            """)
        }
    }

    func testStatusIgnoredOnApply() throws {
        var cfg = deployment()
        cfg["status"] = j(#"{"replicas":7}"#)
        let a = try apply(nil, cfg)
        XCTAssertNil(a["status"])
        XCTAssertFalse(owned(a, "kubectl").contains { $0.hasPrefix(".status") })
        // A status write is recorded against the status subresource and keeps spec ownership intact.
        var withStatus = a
        withStatus["status"] = j(#"{"replicas":3,"conditions":[{"type":"Available","status":"True"}]}"#)
        let b = ServerSideApply.recordUpdate(old: a, new: withStatus, manager: "controller", message: msg, apiVersion: "apps/v1", now: t1, subresource: "status")
        XCTAssertEqual(entry(b, "controller")?["subresource"], .string("status"))
        XCTAssertTrue(owned(b, "controller").contains(#".status.conditions[type="Available"].status"#))
        // Applying the main resource again does not touch status.
        let c = try apply(b, deployment(), now: t2)
        XCTAssertEqual(c["status"]?["replicas"], .int(3))
        XCTAssertNotNil(entry(c, "controller"))
    }

    func testUntrackedObjectGetsBeforeFirstApply() throws {
        let legacy = deployment(replicas: 2)
        XCTAssertThrowsError(try apply(legacy, deployment(replicas: 3), now: t1)) { err in
            XCTAssertEqual((err as? ApplyConflict)?.message,
                           #"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#)
        }
        let ok = try apply(legacy, deployment(replicas: 2), now: t1)
        XCTAssertNotNil(entry(ok, "before-first-apply"))
        XCTAssertNotNil(entry(ok, "kubectl"))
    }
}
