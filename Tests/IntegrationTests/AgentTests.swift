import Testing
import Foundation
import Synchronization
import API
import APIServer
@testable import Agent
import PKI
import Client
import Controllers
import Scheduler

@Suite(.serialized) struct AgentTests {
    @Test func hollowAgentJoinsRegistersAndRunsPods() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        var cmConfig = ControllerManagerConfig()
        cmConfig.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cmConfig)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let dir = c.dir + "/agent-h1"
        // A wrong token is refused with a clear message before anything is stored.
        let bad = "K1-sha256:" + String(repeating: "0", count: 64) + "::abcdef.0123456789abcdef"
        await #expect { _ = try await Join.credentials(server: c.url, token: bad, nodeName: "h1", dataDir: dir) } throws: {
            "\($0)".contains("join token expects")
        }
        let tasks = [Task { await cm.run() }, Task { await sched.run() }]
        defer { for t in tasks { t.cancel() } }
        let creds = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: "h1", dataDir: dir)
        let agentClient = try KubeClient(config: .init(server: c.url, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        var config = AgentConfig(nodeName: "h1")
        config.labels = ["pool": "hollow"]
        config.address = "198.18.0.11"
        let agent = NodeAgent(client: agentClient, config: config, runtime: FakeRuntime())
        let run = Task { try? await agent.run() }
        defer { run.cancel() }
        // A second start reuses the stored certificate without the token.
        _ = try await Join.credentials(server: c.url, token: nil, nodeName: "h1", dataDir: dir)

        let k = try c.admin()
        let node = try await eventually(10, "node Ready") { () -> Node? in
            let n = try? await k.get(Node.self, "h1"); return n?.isReady == true ? n : nil
        }
        #expect(node.metadata.labels?["pool"] == "hollow")
        #expect((node.status?.capacity?["cpu"]?.milli ?? 0) >= 1000)
        #expect(node.status?.addresses?.first == NodeAddress(type: "InternalIP", address: "198.18.0.11"))
        let lease1 = try await eventually(15, "lease") { try? await k.get(Lease.self, "h1", namespace: "kube-node-lease").spec?.renewTime }
        _ = try await eventually(15, "lease renewed") { () -> Bool? in
            try await k.get(Lease.self, "h1", namespace: "kube-node-lease").spec?.renewTime != lease1 ? true : nil
        }

        _ = try await k.create(try webDeployment("hollow", replicas: 3))
        let pods = try await eventually(20, "3 running pods") { () -> [Pod]? in
            let p = try await k.list(Pod.self, labelSelector: "app=hollow").items.filter { $0.isReady && $0.phase == "Running" }
            return p.count == 3 ? p : nil
        }
        #expect(pods.allSatisfy { $0.spec?.nodeName == "h1" && $0.status?.podIP != nil && $0.status?.hostIP == "198.18.0.11" })
        // Scale down: the agent finishes the graceful deletions.
        try await k.call(.PATCH, Resources.deployments.path(namespace: "default", name: "hollow", subresource: "scale"),
                         body: Data(#"{"spec":{"replicas":1}}"#.utf8), contentType: "application/merge-patch+json")
        _ = try await eventually(20, "scaled down") { () -> Bool? in
            try await k.list(Pod.self, labelSelector: "app=hollow").items.count == 1 ? true : nil
        }
    }

    /// The node's Lease is renewed with one write of the copy last written (as the kubelet does),
    /// not a read and a write each time; a change by someone else makes the agent read it again,
    /// and the change is kept.
    @Test func theNodeLeaseIsRenewedWithOneRequest() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)   // signs the node's certificate
        defer { cm.cancel() }
        let k = try c.admin()
        let agentClient = try await joinedNodeClient(c, node: "h9")
        var config = AgentConfig(nodeName: "h9")
        config.proxy.mode = "none"
        let agent = NodeAgent(client: agentClient, config: config, runtime: FakeRuntime())
        #expect(await agent.renewLeaseOnce())   // creates it
        let gets0 = try await requestCount(c, verb: "GET", resource: "leases")
        let puts0 = try await requestCount(c, verb: "PUT", resource: "leases")
        for _ in 1...5 { #expect(await agent.renewLeaseOnce()) }
        #expect(try await requestCount(c, verb: "GET", resource: "leases") == gets0, "a renewal read the Lease")
        #expect(try await requestCount(c, verb: "PUT", resource: "leases") == puts0 + 5)
        var l = try await k.get(Lease.self, "h9", namespace: "kube-node-lease")
        l.metadata.labels = ["touched": "yes"]
        _ = try await k.update(l)
        let gets1 = try await requestCount(c, verb: "GET", resource: "leases")
        #expect(await agent.renewLeaseOnce())
        #expect(try await requestCount(c, verb: "GET", resource: "leases") == gets1 + 1, "the agent reads the Lease once after the 409")
        #expect(await agent.renewLeaseOnce())
        #expect(try await requestCount(c, verb: "GET", resource: "leases") == gets1 + 1)
        let after = try await k.get(Lease.self, "h9", namespace: "kube-node-lease")
        #expect(after.metadata.labels?["touched"] == "yes")
        #expect(after.spec?.holderIdentity == "h9")
    }

    /// The agent's stats pass keeps CPU samples only of the pods it runs now: after pods are
    /// deleted, their samples are gone from the sampler (it used to keep every pod it ever ran).
    @Test func theStatsPassForgetsPodsThatHaveGone() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)   // signs the node's certificate
        defer { cm.cancel() }
        let k = try c.admin()
        let agentClient = try await joinedNodeClient(c, node: "s1")
        var config = AgentConfig(nodeName: "s1")
        config.proxy.mode = "none"
        let agent = NodeAgent(client: agentClient, config: config, runtime: FakeRuntime())
        let kp = try c.server.pki.ca.issue(commonName: "system:node:s1", organizations: ["system:nodes"], ipAddresses: ["127.0.0.1"], usage: .both)
        let server = try AgentServer(agent: agent, port: 0, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, caPEM: c.caPEM)
        let run = Task { try? await agent.run() }
        defer { run.cancel() }
        func sampledPods() -> Set<String> {
            server.sampler.last.withLock { Set($0.keys.map { String($0[..<($0.firstIndex(of: "/") ?? $0.endIndex)]) }) }
        }
        var uids: Set<String> = []
        for i in 0..<3 { uids.insert(try #require(try await k.create(pod("sampled-\(i)", node: "s1")).metadata.uid)) }
        _ = try await eventually(20, "3 pods sampled") { () -> Bool? in
            await server.sample()
            return sampledPods() == uids ? true : nil
        }
        for i in 0..<2 { try await k.delete(Pod.self, "sampled-\(i)", options: DeleteOptions(gracePeriodSeconds: 0)) }
        let kept = try #require(try await k.get(Pod.self, "sampled-2").metadata.uid)
        _ = try await eventually(20, "only the remaining pod sampled") { () -> Bool? in
            await server.sample()
            return sampledPods() == [kept] ? true : nil
        }
    }

    /// A pod's termination ends with the agent that started it (nothing of it runs on in the
    /// background), and the next agent on the node takes it over and finishes it.
    @Test func aPodsTerminationEndsWithItsAgentAndTheNextOneFinishesIt() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)   // signs the node's certificate
        defer { cm.cancel() }
        let k = try c.admin()
        let agentClient = try await joinedNodeClient(c, node: "h2")
        var config = AgentConfig(nodeName: "h2")
        config.address = "198.18.0.12"
        let runtime = FakeRuntime()   // the node's containers: they outlive an agent
        let first = NodeAgent(client: agentClient, config: config, runtime: runtime)
        let firstRun = Task { try? await first.run() }

        var p = pod("slow", node: "h2")
        p.metadata.annotations = [FakeRuntime.stopSecondsAnnotation: "4"]   // ignores SIGTERM for 4 s
        p.spec?.terminationGracePeriodSeconds = 30
        let created = try await k.create(p)
        let uid = try #require(created.metadata.uid)
        _ = try await eventually(15, "slow Running") { try? await k.get(Pod.self, "slow").phase == "Running" ? true : nil }
        try await k.delete(Pod.self, "slow")
        _ = try await eventually(10, "termination started") { first.terminating.withLock { $0[uid] != nil } ? true : nil }

        // The agent stops mid-way: when its run returns, its termination has ended too, and the
        // container is still there.
        firstRun.cancel()
        await firstRun.value
        #expect(first.terminating.withLock { $0.isEmpty })
        #expect(await !runtime.containers(podUID: uid).isEmpty)
        #expect(try await k.get(Pod.self, "slow").metadata.deletionTimestamp != nil)

        // The next agent finishes it: container stopped and removed, the pod object gone.
        let second = NodeAgent(client: agentClient, config: config, runtime: runtime)
        let secondRun = Task { try? await second.run() }
        defer { secondRun.cancel() }
        _ = try await eventually(20, "slow gone") { () -> Bool? in
            do { _ = try await k.get(Pod.self, "slow"); return nil } catch let s as Status where s.code == 404 { return true }
        }
        #expect(await runtime.containers(podUID: uid).isEmpty)
    }

    /// A terminating pod behind a Service keeps running while a node that has not applied its
    /// removal is still Ready, even when that node's Lease renewals come late (a loaded VM);
    /// once the control plane marks the node NotReady, the pod is stopped, before the drain timeout.
    @Test func aPodIsDrainedForASlowButReadyNodeAndLetGoWhenItIsNotReady() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)   // CSRs, EndpointSlices, node lifecycle (5 s grace)
        defer { cm.cancel() }
        let k = try c.admin()
        let agentClient = try await joinedNodeClient(c, node: "d1")
        var config = AgentConfig(nodeName: "d1")
        config.address = "198.18.0.13"
        config.proxy.mode = "nftables"
        config.drainTimeout = 30
        let nft: ProxyApplier.Runner = { _, args, _ in args.contains("list") ? (1, "", "No such file or directory") : (0, "", "") }
        let agent = NodeAgent(client: agentClient, config: config, runtime: FakeRuntime(), proxyRunner: nft)
        let run = Task { try? await agent.run() }
        defer { run.cancel() }

        // Another node whose proxy never applies anything new, and whose renewals arrive with a
        // renewTime 8 s old: the node lifecycle sees them (Ready), the drain sees them as late.
        _ = try await k.create(Node(name: "late"))
        var lease = Lease(name: "late", namespace: "kube-node-lease", spec: LeaseSpec())
        lease.spec?.holderIdentity = "late"
        lease.spec?.leaseDurationSeconds = 40
        lease.metadata.annotations = [NodeAgent.proxySyncedAnnotation: "1"]
        lease.spec?.renewTime = KubeTime.formatMicro(Date().addingTimeInterval(-8))
        _ = try await k.create(lease)
        let renewing = Mutex(true)
        let renewer = Task {
            while !Task.isCancelled && renewing.withLock({ $0 }) {
                _ = try? await modify(k, Lease.self, "late", namespace: "kube-node-lease") { $0.spec?.renewTime = KubeTime.formatMicro(Date().addingTimeInterval(-8)) }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        defer { renewer.cancel() }
        var late = try await k.get(Node.self, "late")
        late.status = late.status ?? NodeStatus()
        late.status?.conditions = [NodeCondition(type: "Ready", status: "True", reason: "KubeletReady")]
        _ = try await k.updateStatus(late)
        _ = try await eventually(10, "node late Ready") { try? await k.get(Node.self, "late").isReady == true ? true : nil }

        _ = try await k.request(.POST, Resources.services.path(namespace: "default"), body: Data(#"""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"drained"},"spec":{"selector":{"app":"drained"},"ports":[{"port":80,"targetPort":8080}]}}
            """#.utf8))
        _ = try await k.create(pod("drained", node: "d1", labels: ["app": "drained"]))
        _ = try await eventually(15, "drained Ready behind the Service") { () -> Bool? in
            let slices = try await k.list(EndpointSlice.self, labelSelector: "kubernetes.io/service-name=drained").items
            return slices.contains { $0.endpoints.contains { $0.conditions?.ready == true } } ? true : nil
        }
        try await k.delete(Pod.self, "drained", options: DeleteOptions(gracePeriodSeconds: 60))
        let deleted = Date()
        try await holds(for: 3, "the pod waits for the late but Ready node") {
            let pod = try? await k.get(Pod.self, "drained")
            let late = try? await k.get(Node.self, "late")
            return pod != nil && late?.isReady == true
        }
        // The node stops renewing: marked NotReady after the grace, and the pod goes.
        renewing.withLock { $0 = false }
        _ = try await eventually(15, "the pod stopped once late is NotReady") { () -> Bool? in
            do { _ = try await k.get(Pod.self, "drained"); return nil } catch let s as Status where s.code == 404 { return true }
        }
        #expect(try await k.get(Node.self, "late").isReady == false)
        #expect(Date().timeIntervalSince(deleted) < 20, "let go when the node went NotReady, not at the 30 s drain timeout")
    }

    @Test func aNodeRenewsItsCertificateWithItsCurrentIdentity() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)
        defer { cm.cancel() }
        let dir = c.dir + "/agent-renew"
        let first = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: "rn", dataDir: dir)
        #expect(first.renewAt > Date() && first.renewAt < Date().addingTimeInterval(366 * 86400))
        let renewed = try await Join.renew(server: c.url, current: first, nodeName: "rn", dataDir: dir)
        #expect(renewed.certPEM != first.certPEM && renewed.keyPEM != first.keyPEM)
        #expect(try describeCertificate(pem: renewed.certPEM).identity.user == "system:node:rn")
        // The new pair is what a restart loads, and it authenticates as the node.
        let stored = try await Join.credentials(server: c.url, token: nil, nodeName: "rn", dataDir: dir)
        #expect(stored.certPEM == renewed.certPEM)
        let k = try KubeClient(config: .init(server: c.url, caPEM: stored.caPEM, certPEM: stored.certPEM, keyPEM: stored.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        _ = try await k.create(Node(name: "rn"))
        #expect(try await k.get(Node.self, "rn").name == "rn")
        await k.shutdown()
    }
}
