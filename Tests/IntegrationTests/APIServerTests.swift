import Testing
import Foundation
import API
import APIServer
import Client
import PKI

@Suite(.serialized) struct APIServerTests {
    @Test func crudConflictsAndScale() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let path = Resources.deployments.path(namespace: "default")
        let created = try await k.call(.POST, path, body: try deploymentJSON("web").encoded())
        #expect(created.status == 201)
        var d = try KubeJSON.decode(Deployment.self, from: created.body)
        #expect(d.metadata.uid != nil && d.metadata.generation == 1 && d.spec?.strategy?.type == "RollingUpdate")
        let rv = d.metadata.resourceVersion!

        // Update with the current revision succeeds and bumps generation; the stale one conflicts.
        d.spec?.replicas = 4
        let updated = try await k.update(d)
        #expect(updated.metadata.generation == 2)
        #expect(Int64(updated.metadata.resourceVersion!)! > Int64(rv)!)
        await #expect { try await k.update(d) } throws: { status($0)?.code == 409 && status($0)?.reason == "Conflict" }

        // A metadata-only change does not bump generation.
        let labelled = try await k.patch(Deployment.self, "web", mergePatch: .object(["metadata": .object(["labels": .object(["x": .string("y")])])]))
        #expect(labelled.metadata.generation == 2)

        // Spec writers cannot touch status; status writers cannot touch spec.
        var withStatus = labelled
        withStatus.status = DeploymentStatus(); withStatus.status?.replicas = 7
        withStatus.spec?.replicas = 9
        let st = try await k.updateStatus(withStatus)
        #expect(st.status?.replicas == 7 && st.spec?.replicas == 4)
        var specOnly = st
        specOnly.status?.replicas = 1
        let sp = try await k.update(specOnly)
        #expect(sp.status?.replicas == 7)

        // scale subresource
        let scalePath = Resources.deployments.path(namespace: "default", name: "web", subresource: "scale")
        let s = try KubeJSON.decode(Scale.self, from: try await k.call(.GET, scalePath).body)
        #expect(s.spec?.replicas == 4 && s.status?.selector == "app=web")
        try await k.call(.PATCH, scalePath, body: Data(#"{"spec":{"replicas":3}}"#.utf8), contentType: "application/merge-patch+json")
        #expect(try await k.get(Deployment.self, "web").spec?.replicas == 3)
        await #expect { try await k.call(.PATCH, scalePath, body: Data(#"{"spec":{"replicas":-2}}"#.utf8), contentType: "application/merge-patch+json") } throws: { status($0)?.code == 422 }

        // delete
        try await k.delete(Deployment.self, "web")
        await #expect { _ = try await k.get(Deployment.self, "web") } throws: { status($0)?.code == 404 }
    }

    @Test func badInputGetsStatusErrorsNamingTheField() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let path = Resources.deployments.path(namespace: "default")
        func post(_ body: String) async throws -> RawResponse { try await k.request(.POST, path, body: Data(body.utf8)) }

        var withUnknown = deploymentJSON("x")
        withUnknown["spec"]?["replicaz"] = .int(1)
        let unknown = try await k.request(.POST, path, body: try withUnknown.encoded())
        #expect(unknown.status == 400)
        #expect(String(decoding: unknown.body, as: UTF8.self).contains(#"unknown field \"spec.replicaz\""#))

        let malformed = try await post("{not json")
        #expect(malformed.status == 400)

        let wrongType = try await post(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":"three"}}"#)
        #expect(wrongType.status == 400)
        #expect(String(decoding: wrongType.body, as: UTF8.self).contains("spec.replicas"))

        var invalid = deploymentJSON("bad", replicas: -1)
        invalid["spec"]?["template"]?["metadata"] = .object(["labels": .object(["app": .string("other")])])
        let inv = try await k.request(.POST, path, body: try invalid.encoded())
        #expect(inv.status == 422)
        let st = try KubeJSON.decode(Status.self, from: inv.body)
        #expect(Set(st.details?.causes?.compactMap(\.field) ?? []) == ["spec.replicas", "spec.template.metadata.labels"])

        let huge = try await k.request(.POST, path, body: Data(repeating: UInt8(ascii: " "), count: 4 << 20))
        #expect(huge.status == 413)

        let wrongNS = try await k.request(.POST, Resources.pods.path(namespace: "nowhere"), body: try KubeJSON.encode(pod("p", ns: "nowhere")))
        #expect(wrongNS.status == 404)

        // Nothing that was accepted is lost by bad requests: the store still answers.
        #expect(try await k.list(Namespace.self).items.count == 4)
    }

    @Test func watchResumesExactlyOnceAnd410sOnCompactedHistory() async throws {
        let c = try await TestCluster.start(inMemory: true) { $0.storeOptions.logCapacity = 20; $0.bookmarkInterval = .milliseconds(100) }
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        for i in 0..<3 { _ = try await k.create(ConfigMap(name: "cm\(i)", namespace: "default")) }
        let list = try await k.list(ConfigMap.self)
        let from = list.metadata.resourceVersion!

        let collected = Task { () -> [String] in
            var seen: [String] = []
            for try await (type, cm) in k.watch(ConfigMap.self, resourceVersion: from) {
                seen.append("\(type) \(cm.name) \(cm.metadata.resourceVersion ?? "")")
                if seen.count == 4 { break }
            }
            return seen
        }
        _ = try await eventually(5, "watch open") { c.server.store.watcherCount > 0 ? true : nil }
        let a = try await k.create(ConfigMap(name: "late1", namespace: "default"))
        var a2 = a; a2.data = ["k": "v"]
        let b = try await k.update(a2)
        try await k.delete(ConfigMap.self, "cm0")
        let d = try await k.create(ConfigMap(name: "late2", namespace: "default"))
        let events = try await collected.value
        #expect(events.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == ["ADDED late1", "MODIFIED late1", "DELETED cm0", "ADDED late2"])
        let revs = events.compactMap { Int64($0.split(separator: " ")[2]) }
        #expect(revs == revs.sorted() && Set(revs).count == 4 && revs.last == Int64(d.metadata.resourceVersion!))
        #expect(revs[1] == Int64(b.metadata.resourceVersion!))

        // Resuming from the middle delivers only what came after.
        var resumed: [String] = []
        for try await (type, cm) in k.watch(ConfigMap.self, resourceVersion: b.metadata.resourceVersion) {
            resumed.append("\(type) \(cm.name)")
            if resumed.count == 2 { break }
        }
        #expect(resumed == ["DELETED cm0", "ADDED late2"])

        // Push history past the retained window: the old revision is gone.
        for i in 0..<40 { _ = try await k.create(ConfigMap(name: "fill\(i)", namespace: "default")) }
        await #expect { for try await _ in k.watch(ConfigMap.self, resourceVersion: from) {} } throws: { status($0)?.code == 410 }

        // Bookmarks advance the revision even when nothing matches the selector.
        let now = try await k.list(ConfigMap.self).metadata.resourceVersion!
        let raw = k.watchRaw(path: Resources.configmaps.path(namespace: "default"),
                             query: ["resourceVersion": now, "allowWatchBookmarks": "true", "labelSelector": "none=here"])
        var bookmark: JSONValue?
        for try await ev in raw where ev["type"]?.stringValue == "BOOKMARK" { bookmark = ev; break }
        let bmRV = Int64(bookmark?["object"]?["metadata"]?["resourceVersion"]?.stringValue ?? "0") ?? 0
        #expect(bmRV >= Int64(d.metadata.resourceVersion!)! + 40)
    }

    @Test func selectorsOnListAndWatch() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(pod("a", node: "n1", labels: ["app": "web", "tier": "front"]))
        _ = try await k.create(pod("b", node: "n2", labels: ["app": "web"]))
        _ = try await k.create(pod("c", labels: ["app": "db"]))
        #expect(try await k.list(Pod.self, labelSelector: "app=web").items.map(\.name) == ["a", "b"])
        #expect(try await k.list(Pod.self, labelSelector: "app in (db),!tier").items.map(\.name) == ["c"])
        #expect(try await k.list(Pod.self, labelSelector: "tier").items.map(\.name) == ["a"])
        #expect(try await k.list(Pod.self, fieldSelector: "spec.nodeName=n2").items.map(\.name) == ["b"])
        #expect(try await k.list(Pod.self, fieldSelector: "status.phase=Pending,metadata.name!=a").items.map(\.name) == ["b", "c"])
        await #expect { _ = try await k.list(Pod.self, labelSelector: "app in web") } throws: { status($0)?.code == 400 }

        // A label change that leaves the selection is a DELETED event for that watcher.
        let watchersBefore = c.server.store.watcherCount
        let w = Task { () -> [String] in
            var out: [String] = []
            for try await (t, p) in k.watch(Pod.self, labelSelector: "app=web") { out.append("\(t) \(p.name)"); if out.count == 3 { break } }
            return out
        }
        _ = try await eventually(5, "watch open") { c.server.store.watcherCount > watchersBefore ? true : nil }
        _ = try await k.patch(Pod.self, "a", mergePatch: .object(["metadata": .object(["labels": .object(["app": .string("api")])])]))
        #expect(try await w.value == ["ADDED a", "ADDED b", "DELETED a"])
    }

    @Test func gracefulPodDeletionAndNamespaceDeletion() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(Namespace(name: "team"))
        _ = try await k.create(pod("bound", node: "n1", ns: "team"))
        _ = try await k.create(pod("unbound", ns: "team"))
        // An unscheduled pod goes at once; a bound one is marked and waits for its node.
        try await k.delete(Pod.self, "unbound", namespace: "team")
        await #expect { _ = try await k.get(Pod.self, "unbound", namespace: "team") } throws: { status($0)?.code == 404 }
        try await k.delete(Pod.self, "bound", namespace: "team")
        let marked = try await k.get(Pod.self, "bound", namespace: "team")
        #expect(marked.metadata.deletionTimestamp != nil && marked.metadata.deletionGracePeriodSeconds == 30)
        try await k.delete(Pod.self, "bound", namespace: "team", options: DeleteOptions(gracePeriodSeconds: 0))
        await #expect { _ = try await k.get(Pod.self, "bound", namespace: "team") } throws: { status($0)?.code == 404 }

        _ = try await k.create(ConfigMap(name: "cfg", namespace: "team"))
        try await k.delete(Namespace.self, "team")
        await #expect { _ = try await k.create(ConfigMap(name: "more", namespace: "team")) } throws: { status($0)?.code == 403 }
        _ = try await eventually(10, "namespace gone") { () -> Bool? in
            do { _ = try await k.get(Namespace.self, "team"); return nil } catch let s as Status where s.code == 404 { return true }
        }
        #expect(c.server.store.list(resource: "configmaps", namespace: "team").items.isEmpty)
    }

    /// Creates racing a namespace's deletion: each either fails (403, 404) or is deleted with the
    /// namespace; nothing outlives it.
    @Test func nothingOutlivesANamespaceDeletedDuringCreates() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        for round in 0..<5 {
            let ns = "race-\(round)"
            _ = try await k.create(Namespace(name: ns))
            let codes = try await withThrowingTaskGroup(of: Int.self) { g in
                for i in 0..<40 {
                    g.addTask {
                        do { _ = try await k.create(ConfigMap(name: "cm-\(i)", namespace: ns)); return 201 }
                        catch let s as Status { return s.code ?? 0 }
                    }
                }
                g.addTask { try await k.delete(Namespace.self, ns); return 0 }
                var out: [Int] = []
                for try await code in g { out.append(code) }
                return out
            }
            #expect(Set(codes).isSubset(of: [0, 201, 403, 404]), "round \(round): \(codes)")
            _ = try await eventually(10, "namespace \(ns) gone") { () -> Bool? in
                do { _ = try await k.get(Namespace.self, ns); return nil } catch let s as Status where s.code == 404 { return true }
            }
            #expect(c.server.store.list(resource: "configmaps", namespace: ns).items.isEmpty, "round \(round): left behind")
        }
    }

    @Test func bindingAndGenerateName() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        var p = pod("")
        p.metadata.name = nil
        p.metadata.generateName = "web-"
        let created = try await k.create(p)
        #expect(created.name.hasPrefix("web-") && created.name.count == 9)
        try await k.bind(pod: created.name, namespace: "default", node: "n1")
        let bound = try await k.get(Pod.self, created.name)
        #expect(bound.spec?.nodeName == "n1" && bound.status?.condition("PodScheduled")?.status == "True")
        await #expect { try await k.bind(pod: created.name, namespace: "default", node: "n2") } throws: { status($0)?.code == 409 }
    }

    @Test func batchBindingsBindEachWithItsOwnResult() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(Namespace(name: "other"))
        for i in 0..<20 { _ = try await k.create(pod("b\(i)")) }
        var o = pod("o1"); o.metadata.namespace = "other"
        _ = try await k.create(o)
        try await k.bind(pod: "b0", namespace: "default", node: "n9")
        var items = (0..<20).map { Binding(podName: "b\($0)", namespace: "default", nodeName: "n\($0 % 3)") }
        items.append(Binding(podName: "missing", namespace: "default", nodeName: "n1"))
        items.append(Binding(podName: "o1", namespace: "other", nodeName: "n2"))
        let sched = try c.client(user: "system:kube-scheduler", groups: [])
        let results = try #require(try await sched.bindMany(items))
        #expect(results.map(\.name) == items.map { $0.metadata.name! })
        #expect(results[0].code == 409 && results[0].message?.contains("already assigned to node \"n9\"") == true)
        #expect(results[20].code == 404)
        #expect(results.enumerated().allSatisfy { i, r in i == 0 || i == 20 || r.code == 201 })
        for i in 1..<20 {
            let p = try await k.get(Pod.self, "b\(i)")
            #expect(p.spec?.nodeName == "n\(i % 3)" && p.status?.condition("PodScheduled")?.status == "True")
        }
        #expect(try await k.get(Pod.self, "o1", namespace: "other").spec?.nodeName == "n2")

        // A malformed item refuses the whole list: nothing is bound.
        for i in 0..<2 { _ = try await k.create(pod("m\(i)")) }
        var bad = [Binding(podName: "m0", namespace: "default", nodeName: "n1"), Binding(podName: "m1", namespace: "default", nodeName: "")]
        await #expect { _ = try await sched.bindMany(bad) } throws: { status($0)?.code == 400 && status($0)?.message?.contains("items[1].target.name") == true }
        #expect(try await k.get(Pod.self, "m0").spec?.nodeName == nil)
        bad[1].target.name = "n1"
        #expect(try await sched.bindMany(bad)?.map(\.code) == [201, 201])

        // Only those who may create pods/binding in every namespace named.
        let stranger = try c.client(user: "bob", groups: ["devs"])
        await #expect { _ = try await stranger.bindMany([Binding(podName: "b1", namespace: "default", nodeName: "n1")]) } throws: {
            status($0)?.code == 403 && status($0)?.message?.contains("User \"bob\" cannot create resource \"pods/binding\"") == true
        }
        #expect(try await k.get(Pod.self, "b1").spec?.nodeName == "n1")
        // An empty list is how a scheduler asks whether the server offers batch bindings.
        #expect(try await sched.bindMany([]) == [])
    }
}
