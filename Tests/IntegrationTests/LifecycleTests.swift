import Testing
import Foundation
import API
import APIServer
import Client
import Controllers
import PKI

@Suite(.serialized) struct LifecycleTests {
    func rs(_ name: String, replicas: Int) -> ReplicaSet {
        let t = PodTemplateSpec(metadata: ObjectMeta(labels: ["rs": name]), spec: PodSpec(containers: [Container(name: "c", image: "x")]))
        return ReplicaSet(metadata: ObjectMeta(name: name, namespace: "default"),
                          spec: ReplicaSetSpec(replicas: replicas, minReadySeconds: nil, selector: LabelSelector(matchLabels: ["rs": name]), template: t))
    }

    @Test func garbageCollectionHonoursPropagationPolicies() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []))
        let task = Task { await cm.run() }
        defer { task.cancel() }
        func pods(_ name: String) async throws -> [Pod] { try await k.list(Pod.self, labelSelector: "rs=\(name)").items }

        // Background (default): the owner goes at once, its pods follow.
        _ = try await k.create(rs("bg", replicas: 2))
        _ = try await eventually(30, "bg pods") { try await pods("bg").count == 2 ? true : nil }
        try await k.delete(ReplicaSet.self, "bg")
        _ = try await eventually(30, "bg pods collected") { try await pods("bg").isEmpty ? true : nil }

        // Orphan: the owner goes, its pods stay and lose their ownerReference.
        _ = try await k.create(rs("orph", replicas: 2))
        _ = try await eventually(30, "orph pods") { try await pods("orph").count == 2 ? true : nil }
        try await k.delete(ReplicaSet.self, "orph", options: DeleteOptions(propagationPolicy: "Orphan"))
        _ = try await eventually(30, "orph owner gone") { () -> Bool? in
            do { _ = try await k.get(ReplicaSet.self, "orph"); return nil } catch let s as Status where s.code == 404 { return true }
        }
        let orphans = try await pods("orph")
        #expect(orphans.count == 2 && orphans.allSatisfy { ($0.metadata.ownerReferences ?? []).isEmpty })

        // Foreground: the owner stays (being deleted) until its pods are gone.
        _ = try await k.create(rs("fg", replicas: 2))
        _ = try await eventually(30, "fg pods") { try await pods("fg").count == 2 ? true : nil }
        try await k.delete(ReplicaSet.self, "fg", options: DeleteOptions(propagationPolicy: "Foreground"))
        let marked = try await k.get(ReplicaSet.self, "fg")
        #expect(marked.metadata.deletionTimestamp != nil && marked.metadata.finalizers == ["foregroundDeletion"])
        _ = try await eventually(30, "fg owner and pods gone") { () -> Bool? in
            guard try await pods("fg").isEmpty else { return nil }
            do { _ = try await k.get(ReplicaSet.self, "fg"); return nil } catch let s as Status where s.code == 404 { return true }
        }
    }

    /// A garbage-collector write the apiserver refuses is counted (and logged once), not
    /// swallowed; the dependent stays until a write succeeds.
    @Test func garbageCollectorWritesThatFailAreCounted() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        // It sees everything (admin's informers) but may write nothing (a user with no role).
        let informers = SharedInformers(client: k)
        let gc = GarbageCollector(client: try c.client(user: "nobody", groups: []), informers: informers)
        let tasks = [Task { await informers.run() }, Task { await gc.run() }]
        defer { for t in tasks { t.cancel() } }
        var owner = rs("fg-owner", replicas: 0)
        owner = try await k.create(owner)
        var dependent = rs("fg-dependent", replicas: 0)
        dependent.metadata.ownerReferences = [OwnerReference(apiVersion: "apps/v1", kind: "ReplicaSet", name: "fg-owner", uid: owner.metadata.uid ?? "", controller: true, blockOwnerDeletion: true)]
        _ = try await k.create(dependent)
        try await k.delete(ReplicaSet.self, "fg-owner", options: DeleteOptions(propagationPolicy: "Foreground"))
        let before = ComponentMetrics.shared.value("orchestrator_failed_writes_total", ["writer": "garbage-collector"])
        _ = try await eventually(15, "a refused delete counted") { gc.writeFailures > 0 ? true : nil }
        // and in the process's metrics, which the components serve on /metrics
        #expect(ComponentMetrics.shared.value("orchestrator_failed_writes_total", ["writer": "garbage-collector"]) > before)
        #expect(try await k.get(ReplicaSet.self, "fg-dependent").metadata.deletionTimestamp == nil)
    }

    /// Events the apiserver refuses are counted by the recorder, never silently lost.
    @Test func refusedEventsAreCounted() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let recorder = EventRecorder(client: try c.client(user: "nobody", groups: []), component: "test")
        let target = try await c.admin().create(ConfigMap(name: "about", namespace: "default"))
        for i in 0..<3 { recorder.record(target, reason: "Test", message: "event \(i)") }
        _ = try await eventually(10, "3 refused events counted") { recorder.failedEvents == 3 ? true : nil }
        #expect(recorder.droppedEvents == 0)
    }

    /// A reason with a rate (the scheduler's Scheduled) writes its burst one by one, counts the
    /// rest, and after the window writes one combined Event per namespace on the last of them;
    /// other reasons are never limited.
    @Test func eventsOverTheirRateAreCombined() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        let clock = ManualClock()
        let recorder = EventRecorder(client: admin, component: "limits-test", clock: clock,
                                     limits: ["Scheduled": EventRateLimit(perSecond: 1, burst: 3)])
        for i in 0..<10 {
            let ref = ObjectReference(kind: "Pod", namespace: "default", name: "p\(i)", uid: "uid-\(i)", apiVersion: "v1")
            recorder.record(ref, namespace: "default", reason: "Scheduled", message: "Successfully assigned default/p\(i) to n1")
        }
        let target = try await admin.create(ConfigMap(name: "unlimited", namespace: "default"))
        for i in 0..<5 { recorder.record(target, type: "Warning", reason: "FailedScheduling", message: "attempt \(i)") }
        #expect(recorder.skippedEvents == 7)
        func events(_ reason: String) async throws -> [Event] {
            try await admin.list(Event.self, namespace: "default").items.filter { $0.reason == reason && $0.source?.component == "limits-test" }
        }
        _ = try await eventually(10, "3 Scheduled and 5 FailedScheduling events") {
            let scheduled = try await events("Scheduled").count, failed = try await events("FailedScheduling").count
            return scheduled == 3 && failed == 5 ? true : nil
        }
        #expect(try await events("Scheduled").map { $0.involvedObject.name ?? "" }.sorted() == ["p0", "p1", "p2"])
        // The window ends: one combined Event on the last skipped pod.
        _ = try await eventually(10, "the combining waits") { clock.sleeperCount() > 0 ? true : nil }
        clock.advance(by: 1)
        let combined = try await eventually(10, "the combined event") { try await events("Scheduled").first { $0.involvedObject.name == "p9" } }
        #expect(combined.message == "(combined from similar events): Successfully assigned default/p9 to n1 (and 6 more Scheduled events in 1 s)")
        #expect(try await events("Scheduled").count == 4)
        // A second later a token is back: the next one is written by itself.
        let ref = ObjectReference(kind: "Pod", namespace: "default", name: "p10", uid: "uid-10", apiVersion: "v1")
        recorder.record(ref, namespace: "default", reason: "Scheduled", message: "Successfully assigned default/p10 to n1")
        #expect(recorder.skippedEvents == 7)
        _ = try await eventually(10, "p10's own event") { try await events("Scheduled").first { $0.involvedObject.name == "p10" } }
    }

    /// A node may create and patch Events but not read them: an agent's repeated event (a probe
    /// failing again) grows the count with one patch, and one from an agent started again after
    /// the Event was made moves its lastTimestamp; nothing is refused.
    @Test func aNodeCountsRepeatedEventsWithoutReadingThem() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        let target = try await admin.create(ConfigMap(name: "probed", namespace: "default"))
        let node = try c.client(user: "system:node:n1", groups: ["system:nodes"])
        let recorder = EventRecorder(client: node, component: "kubelet", workers: 1)
        for _ in 0..<3 { recorder.record(target, type: "Warning", reason: "Unhealthy", message: "Readiness probe failed") }
        let counted = try await eventually(10, "one Event counted 3 times") { () -> Event? in
            let e = try await admin.list(Event.self, namespace: "default").items.filter { $0.reason == "Unhealthy" }
            return e.count == 1 && e[0].count == 3 ? e[0] : nil
        }
        #expect(recorder.failedEvents == 0)

        // An agent started again: it does not know the Event, may not read it, and moves it on.
        let again = EventRecorder(client: node, component: "kubelet", clock: ManualClock(start: Date(timeIntervalSinceNow: 60)), workers: 1)
        again.record(target, type: "Warning", reason: "Unhealthy", message: "Readiness probe failed")
        _ = try await eventually(10, "lastTimestamp moved") { () -> Bool? in
            let e = try await admin.get(Event.self, counted.name, namespace: "default")
            return e.lastTimestamp != counted.lastTimestamp ? true : nil
        }
        #expect(again.failedEvents == 0)
        #expect(try await admin.list(Event.self, namespace: "default").items.filter { $0.reason == "Unhealthy" }.count == 1)
    }

    @Test func nodeJoinsWithTheTokenThroughACertificateSigningRequest() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        var config = ControllerManagerConfig()
        config.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: config)
        let task = Task { await cm.run() }
        defer { task.cancel() }
        let token = c.server.pki.token
        let boot = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: nil, keyPEM: nil, token: token.bearer, namespace: "default", tlsServerName: nil))
        let (csrPEM, keyPEM) = try makeCSR(commonName: "system:node:joiner", organizations: ["system:nodes"])
        _ = try await boot.create(CertificateSigningRequest(name: "node-joiner", spec: CSRSpec(request: Data(csrPEM.utf8).base64EncodedString(), signerName: CSRSigner.signerName, usages: ["client auth"])))
        let issued = try await eventually(10, "certificate issued") { () -> CertificateSigningRequest? in
            let r = try await boot.get(CertificateSigningRequest.self, "node-joiner"); return r.status?.certificate != nil ? r : nil
        }
        #expect(issued.spec?.username == "system:bootstrap:\(token.id)")
        #expect(issued.status?.conditions?.contains { $0.type == "Approved" } == true)
        let certPEM = String(decoding: Data(base64Encoded: issued.status!.certificate!)!, as: UTF8.self)
        let node = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: certPEM, keyPEM: keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        _ = try await node.create(Node(name: "joiner"))
        await #expect { _ = try await node.create(Node(name: "impostor")) } throws: { status($0)?.code == 403 }

        // Asking for someone else's identity, or an admin one, is denied.
        let (evil, _) = try makeCSR(commonName: "admin", organizations: ["system:masters"])
        _ = try await boot.create(CertificateSigningRequest(name: "evil", spec: CSRSpec(request: Data(evil.utf8).base64EncodedString(), signerName: CSRSigner.signerName)))
        let denied = try await eventually(10, "denied") { () -> CertificateSigningRequest? in
            let r = try await boot.get(CertificateSigningRequest.self, "evil"); return r.status?.conditions?.contains { $0.type == "Denied" } == true ? r : nil
        }
        #expect(denied.status?.certificate == nil)
    }

    @Test func informerSurvivesAnApiserverRestart() async throws {
        let port = Int.random(in: 20000...40000)
        let c = try await TestCluster.start { $0.securePort = port }
        let k = try c.admin()
        let inf = Informer<ConfigMap>(client: k, namespace: "default")
        let task = Task { await inf.run() }
        defer { task.cancel() }
        _ = try await k.create(ConfigMap(name: "before", namespace: "default"))
        _ = try await eventually(10, "seen before") { inf.get(namespace: "default", name: "before") != nil ? true : nil }
        await c.stop()
        let again = try await TestCluster.start(dir: c.dir) { $0.securePort = port }
        defer { Task { await again.cleanup() } }
        let k2 = try again.admin()
        _ = try await k2.create(ConfigMap(name: "after", namespace: "default"))
        try await k2.delete(ConfigMap.self, "before")
        _ = try await eventually(15, "informer caught up") { () -> Bool? in
            inf.get(namespace: "default", name: "after") != nil && inf.get(namespace: "default", name: "before") == nil ? true : nil
        }
    }
}
