// The node-lifecycle controller's fast path: a node whose Lease missed three of its announced
// renewals and whose host does not answer a dial of its agent is gone at once, and its pods are
// evicted without the delay; a host that answers (refusing, or open) waits out the grace period.
// Driven by a manual clock and a scripted dialer, on a real apiserver (in-memory store).
import Testing
import Foundation
import Synchronization
import API
import Client
@testable import Controllers

final class ScriptedDialer: NodeDialer {
    let answers = Mutex<[String: TCPDial.Outcome]>([:])
    let dialled = Mutex<[String]>([])
    func set(_ host: String, _ o: TCPDial.Outcome) { answers.withLock { $0[host] = o } }
    func dial(host: String, port: Int, timeout: Double) async -> TCPDial.Outcome {
        dialled.withLock { $0.append("\(host):\(port)") }
        return answers.withLock { $0[host] } ?? .open
    }
}

@Suite(.serialized) struct NodeFastDetectionTests {
    struct Env {
        let cluster: TestCluster
        let admin: KubeClient
        let informers: SharedInformers
        let controller: NodeLifecycleController
        let clock: ManualClock
        let dialer: ScriptedDialer
        let task: Task<Void, Never>
        func stop() async { task.cancel(); await cluster.cleanup() }

        /// Renews the Leases of `nodes` (interval 250 ms announced) and waits until the
        /// controller's informer has them.
        func renew(_ nodes: [String]) async throws {
            for n in nodes {
                let stamp = KubeTime.formatMicro(clock.now())
                try await modify(admin, Lease.self, n, namespace: "kube-node-lease") { l in l.spec?.renewTime = stamp }
                _ = try await eventually(10, "\(n)'s renewal seen") { informers.leases.get(namespace: "kube-node-lease", name: n)?.spec?.renewTime == stamp ? true : nil }
            }
        }
        func ready(_ n: String) async throws -> NodeCondition? { try await admin.get(Node.self, n).status?.condition("Ready") }
        func evicted(_ pod: String) async throws -> Bool {
            do { return try await admin.get(Pod.self, pod).metadata.deletionTimestamp != nil } catch let s as Status where s.code == 404 { return true }
        }
    }

    func start(nodes names: [String] = ["n1", "n2", "n3"], grace: Double = 3, evictionDelay: Double = 5) async throws -> Env {
        let c = try await TestCluster.start(inMemory: true)
        let admin = try c.admin()
        for (i, name) in names.enumerated() {
            var node = Node(name: name)
            var st = NodeStatus()
            st.addresses = [NodeAddress(type: "InternalIP", address: "198.18.1.\(11 + i)")]
            st.daemonEndpoints = NodeDaemonEndpoints(kubeletEndpoint: DaemonEndpoint(Port: 10250))
            var ready = NodeCondition(type: "Ready", status: "True", reason: "KubeletReady")
            ready.lastHeartbeatTime = KubeTime.format(Date())
            st.conditions = [ready]
            node.status = st
            let created = try await admin.create(node)
            _ = try await admin.updateStatus({ var n = created; n.status = st; return n }())
            var spec = LeaseSpec(); spec.holderIdentity = name; spec.renewTime = KubeTime.formatMicro(Date()); spec.leaseDurationSeconds = 40
            var lease = Lease(name: name, namespace: "kube-node-lease", spec: spec)
            lease.metadata.annotations = [Lease.renewIntervalAnnotation: "250"]
            _ = try await admin.create(lease)
            _ = try await admin.create(pod("web-\(name)", node: name))
        }
        let cm = try c.client(user: "system:kube-controller-manager", groups: [])
        let informers = SharedInformers(client: cm)
        let task = Task { await informers.run() }
        await informers.waitForSync()
        _ = try await eventually(10, "informers hold the nodes, leases and pods") {
            informers.nodes.list().count == names.count && informers.pods.list().count == names.count
                && names.allSatisfy { informers.leases.get(namespace: "kube-node-lease", name: $0) != nil } ? true : nil
        }
        var config = NodeLifecycleConfig()
        config.gracePeriod = grace
        config.evictionDelay = evictionDelay
        let clock = ManualClock()
        let dialer = ScriptedDialer()
        let controller = NodeLifecycleController(client: cm, informers: informers, config: config, clock: clock, dialer: dialer)
        return Env(cluster: c, admin: admin, informers: informers, controller: controller, clock: clock, dialer: dialer, task: task)
    }

    @Test func aSilentNodeWhoseHostDoesNotAnswerIsGoneAtOnce() async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        env.dialer.set("198.18.1.11", .silent("i/o timeout"))
        await env.controller.monitor()                 // first sight of every heartbeat
        env.clock.advance(by: 0.5)
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()                 // n1 silent 0.5 s: under 3 renewals, not dialled
        #expect(env.dialer.dialled.withLock { $0 }.isEmpty)
        #expect(try await env.ready("n1")?.status == "True")
        env.clock.advance(by: 0.3)
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()                 // 0.8 s: dialled, no answer
        #expect(env.dialer.dialled.withLock { $0 } == ["198.18.1.11:10250"])
        let c = try #require(try await env.ready("n1"))
        #expect(c.status == "Unknown")
        #expect(c.message?.contains("its agent at 198.18.1.11:10250 does not answer (i/o timeout)") == true, "\(c.message ?? "")")
        // Evicted in the same pass, without the 5 s delay; the others untouched.
        #expect(try await env.evicted("web-n1"))
        for n in ["n2", "n3"] {
            #expect(try await !env.evicted("web-\(n)"))
            #expect(try await env.ready(n)?.status == "True")
        }
        // Its next renewal brings it back.
        try await env.renew(["n1", "n2", "n3"])
        await env.controller.monitor()
        #expect(try await env.ready("n1")?.status == "True")
    }

    /// An agent that starts again posts its status (a new heartbeat) before it renews its
    /// Lease: that is a sign of life, and the node found gone is not marked again.
    @Test func aNodeBackWithItsStatusBeforeItsLeaseIsNotMarkedAgain() async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        env.dialer.set("198.18.1.11", .silent("i/o timeout"))
        await env.controller.monitor()
        env.clock.advance(by: 0.8)
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()
        #expect(try await env.ready("n1")?.status == "Unknown")
        // The agent is back: it posts Ready with a fresh heartbeat; its Lease is still old.
        env.dialer.set("198.18.1.11", .open)
        env.clock.advance(by: 10)
        let beat = KubeTime.format(env.clock.now())
        var node = try await env.admin.get(Node.self, "n1")
        var ready = NodeCondition(type: "Ready", status: "True", reason: "KubeletReady", message: "agent is posting ready status")
        ready.lastHeartbeatTime = beat; ready.lastTransitionTime = beat
        node.status?.conditions = [ready]
        _ = try await env.admin.updateStatus(node)
        _ = try await eventually(10, "the posted status seen") { env.informers.nodes.get("n1")?.status?.condition("Ready")?.lastHeartbeatTime == beat ? true : nil }
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()
        #expect(try await env.ready("n1")?.status == "True")
        #expect(try await env.ready("n1")?.lastHeartbeatTime == beat)
    }

    /// A host that answers, refusing (the agent restarting) or accepting (the agent slow to
    /// renew under load), is not gone: the grace period and the eviction delay hold.
    @Test(arguments: [TCPDial.Outcome.refused, .open])
    func aSilentNodeWhoseHostAnswersWaitsForTheGracePeriod(_ answer: TCPDial.Outcome) async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        env.dialer.set("198.18.1.11", answer)
        await env.controller.monitor()
        for _ in 0..<11 {                              // 2.75 s of renewals by n2 and n3 only
            env.clock.advance(by: 0.25)
            try await env.renew(["n2", "n3"])
            await env.controller.monitor()
        }
        #expect(env.dialer.dialled.withLock { $0.count } >= 8)   // dialled on every pass past 0.75 s
        #expect(try await env.ready("n1")?.status == "True")
        env.clock.advance(by: 0.5)                     // 3.25 s: past the grace period
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()
        let c = try #require(try await env.ready("n1"))
        #expect(c.status == "Unknown" && c.message == "Kubelet stopped posting node status.")
        #expect(try await !env.evicted("web-n1"))       // the eviction delay runs
        env.clock.advance(by: 5)
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()
        #expect(try await env.evicted("web-n1"))
    }

    /// Every node silent and none answering is the control plane cut off, not three dead
    /// nodes: marked, never evicted.
    @Test func everyNodeGoneAtOnceIsAPartitionAndEvictsNothing() async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        for i in 11...13 { env.dialer.set("198.18.1.\(i)", .silent("connect: no route to host")) }
        await env.controller.monitor()
        env.clock.advance(by: 1)
        await env.controller.monitor()
        for n in ["n1", "n2", "n3"] { #expect(try await env.ready(n)?.status == "Unknown") }
        env.clock.advance(by: 10)
        await env.controller.monitor()
        for n in ["n1", "n2", "n3"] { #expect(try await !env.evicted("web-\(n)")) }
    }

    /// Agents that announce no renew interval (older agents, hollow nodes) get no fast path.
    @Test func noAnnouncedIntervalNoFastPath() async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        try await modify(env.admin, Lease.self, "n1", namespace: "kube-node-lease") { $0.metadata.annotations = nil }
        _ = try await eventually(10, "annotation gone") { env.informers.leases.get(namespace: "kube-node-lease", name: "n1")?.renewInterval == nil ? true : nil }
        env.dialer.set("198.18.1.11", .silent("i/o timeout"))
        await env.controller.monitor()
        env.clock.advance(by: 2)
        try await env.renew(["n2", "n3"])
        await env.controller.monitor()
        #expect(env.dialer.dialled.withLock { $0 }.isEmpty)
        #expect(try await env.ready("n1")?.status == "True")
    }
}
