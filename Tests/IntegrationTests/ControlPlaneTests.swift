import Testing
import Foundation
import Synchronization
import API
import APIServer
import Client
import Controllers
import Scheduler

/// Plays the node agents: registers Nodes, renews their Leases, and marks bound pods Running
/// and Ready (and finishes their graceful deletion) while the node is "alive".
final class FakeNodes: Sendable {
    let client: KubeClient
    let names: [String]
    let dead = Mutex<Set<String>>([])
    let pods: Informer<Pod>

    init(client: KubeClient, names: [String], cpu: String = "4", memory: String = "8Gi") async throws {
        self.client = client; self.names = names
        pods = Informer<Pod>(client: client)
        for n in names {
            var node = Node(name: n)
            var st = NodeStatus()
            st.capacity = ["cpu": try Quantity(parsing: cpu), "memory": try Quantity(parsing: memory), "pods": try Quantity(parsing: "110")]
            st.allocatable = st.capacity
            var ready = NodeCondition(type: "Ready", status: "True", reason: "KubeletReady")
            ready.lastHeartbeatTime = KubeTime.format(Date())
            st.conditions = [ready]
            node.status = st
            _ = try await client.create(node)
        }
    }

    func kill(_ n: String) { _ = dead.withLock { $0.insert(n) } }
    func revive(_ n: String) { _ = dead.withLock { $0.remove(n) } }

    func run() async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await self.pods.run() }
            g.addTask {
                while !Task.isCancelled {
                    let dead = self.dead.withLock { $0 }
                    for n in self.names where !dead.contains(n) {
                        let now = KubeTime.formatMicro(Date())
                        var spec = LeaseSpec(); spec.holderIdentity = n; spec.renewTime = now; spec.leaseDurationSeconds = 40
                        if var l = try? await self.client.get(Lease.self, n, namespace: "kube-node-lease") {
                            l.spec = spec; _ = try? await self.client.update(l)
                        } else { _ = try? await self.client.create(Lease(name: n, namespace: "kube-node-lease", spec: spec)) }
                    }
                    for p in self.pods.list() {
                        guard let node = p.spec?.nodeName, !node.isEmpty, !dead.contains(node) else { continue }
                        if p.metadata.deletionTimestamp != nil {
                            try? await self.client.delete(Pod.self, p.name, namespace: p.namespace, options: DeleteOptions(gracePeriodSeconds: 0))
                        } else if !p.isReady {
                            var q = p
                            var st = q.status ?? PodStatus()
                            st.phase = "Running"
                            st.startTime = st.startTime ?? KubeTime.format(Date())
                            st.setCondition(PodCondition(type: "Ready", status: "True"), now: KubeTime.format(Date()))
                            var cs = ContainerStatus(name: q.spec?.containers.first?.name ?? "c", image: q.spec?.containers.first?.image ?? "")
                            cs.ready = true; cs.state = ContainerState(running: ContainerStateRunning(startedAt: KubeTime.format(Date())))
                            st.containerStatuses = [cs]
                            q.status = st
                            _ = try? await self.client.updateStatus(q)
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }
}

final class Lines: Sendable {
    let value = Mutex<[String]>([])
    func append(_ s: String) { value.withLock { $0.append(s) } }
    var all: [String] { value.withLock { $0 } }
}

func webDeployment(_ name: String, replicas: Int, image: String = "busybox:1", cpu: String = "100m", surge: String = "25%", unavailable: String = "25%") throws -> Deployment {
    var c = Container(name: "c", image: image)
    c.resources = ResourceRequirements(requests: ["cpu": try Quantity(parsing: cpu), "memory": try Quantity(parsing: "64Mi")])
    let t = PodTemplateSpec(metadata: ObjectMeta(labels: ["app": name]), spec: PodSpec(containers: [c]))
    return Deployment(metadata: ObjectMeta(name: name, namespace: "default"),
                      spec: DeploymentSpec(replicas: replicas, selector: LabelSelector(matchLabels: ["app": name]), template: t,
                                           strategy: DeploymentStrategy(type: "RollingUpdate", rollingUpdate: RollingUpdateDeployment(maxUnavailable: .string(unavailable), maxSurge: .string(surge)))))
}

@Suite(.serialized) struct ControlPlaneTests {
    struct Env: Sendable {
        let cluster: TestCluster
        let admin: KubeClient
        let nodes: FakeNodes
        let tasks: [Task<Void, Never>]
        func stop() async { for t in tasks { t.cancel() }; await cluster.cleanup() }
    }

    /// `grace`: how long a silent node Lease takes to make the node NotReady. The failure tests
    /// want it short; tests of rollout bounds want it long enough that a busy test process
    /// (other suites' servers still stopping) never makes a node look dead.
    func start(nodes names: [String] = ["n1", "n2", "n3"], cpu: String = "4", grace: Double = 1.5) async throws -> Env {
        let c = try await TestCluster.start(inMemory: true)
        let admin = try c.admin()
        let nodes = try await FakeNodes(client: admin, names: names, cpu: cpu)
        var config = ControllerManagerConfig()
        config.nodeLifecycle.gracePeriod = grace
        config.nodeLifecycle.evictionDelay = 1
        config.nodeLifecycle.monitorPeriod = 0.2
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: config)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let tasks = [Task { await nodes.run() }, Task { await cm.run() }, Task { await sched.run() }]
        return Env(cluster: c, admin: admin, nodes: nodes, tasks: tasks)
    }

    func readyPods(_ k: KubeClient, app: String) async throws -> [Pod] {
        try await k.list(Pod.self, labelSelector: "app=\(app)").items.filter { $0.isActive && $0.isReady }
    }

    @Test func deploymentSpreadsOverNodesAndRollsWithinBounds() async throws {
        let env = try await start(grace: 10)
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("web", replicas: 10))
        let pods = try await eventually(30, "10 ready pods") { () -> [Pod]? in
            let p = try await readyPods(k, app: "web"); return p.count == 10 ? p : nil
        }
        let perNode = Dictionary(grouping: pods, by: { $0.spec?.nodeName ?? "" }).mapValues(\.count)
        #expect(perNode.count == 3 && perNode.values.allSatisfy { $0 >= 3 }, "spread: \(perNode)")
        let d = try await eventually(10, "available") { () -> Deployment? in
            let d = try await k.get(Deployment.self, "web"); return d.status?.availableReplicas == 10 ? d : nil
        }
        #expect(d.status?.conditions?.first { $0.type == "Available" }?.status == "True")

        // Rolling update: watch pods the whole time; never more than 10 + 3 (25% surge, rounded up)
        // active, never fewer than 10 - 2 (25% unavailable, rounded down) ready.
        let listed = try await k.list(Pod.self, labelSelector: "app=web")
        let violations = Lines()
        let watcher = Task {
            var state: [String: Pod] = [:]
            for p in listed.items { state[p.name] = p }
            do {
                for try await (type, p) in k.watch(Pod.self, resourceVersion: listed.metadata.resourceVersion, labelSelector: "app=web") {
                    if type == "DELETED" { state.removeValue(forKey: p.name) } else { state[p.name] = p }
                    let active = state.values.filter(\.isActive)
                    let ready = active.filter(\.isReady).count
                    if active.count > 13 { violations.append("\(active.count) active pods") }
                    if ready < 8 { violations.append("only \(ready) ready") }
                }
            } catch {}
        }
        try await modify(k, Deployment.self, "web") { $0.spec?.template.spec?.containers[0].image = "busybox:2" }
        _ = try await eventually(40, "rollout complete") { () -> Bool? in
            let d = try await k.get(Deployment.self, "web")
            let s = d.status
            return s?.updatedReplicas == 10 && s?.availableReplicas == 10 && s?.replicas == 10 && (s?.observedGeneration ?? 0) >= (d.metadata.generation ?? 0) ? true : nil
        }
        watcher.cancel()
        #expect(violations.all.isEmpty, "\(violations.all.prefix(5))")
        let images = Set(try await readyPods(k, app: "web").compactMap { $0.spec?.containers.first?.image })
        #expect(images == ["busybox:2"])
        let rss = try await k.list(ReplicaSet.self).items
        #expect(rss.count == 2 && rss.contains { $0.spec?.replicas == 0 })

        // Deleting the Deployment takes its ReplicaSets and pods with it (garbage collection).
        try await k.delete(Deployment.self, "web")
        _ = try await eventually(20, "dependents collected") { () -> Bool? in
            let r = try await k.list(ReplicaSet.self).items.count
            let p = try await k.list(Pod.self, labelSelector: "app=web").items.filter(\.isActive).count
            return r == 0 && p == 0 ? true : nil
        }
    }

    @Test func deadNodesPodsAreReplacedElsewhere() async throws {
        let env = try await start()
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("svc", replicas: 6))
        let pods = try await eventually(30, "6 ready") { () -> [Pod]? in let p = try await readyPods(k, app: "svc"); return p.count == 6 ? p : nil }
        let victim = pods[0].spec!.nodeName!
        env.nodes.kill(victim)
        _ = try await eventually(10, "node Unknown and tainted") { () -> Node? in
            let n = try await k.get(Node.self, victim)
            let tainted = n.spec?.taints?.contains { $0.key == "node.kubernetes.io/unreachable" && $0.effect == "NoExecute" } == true
            return n.status?.condition("Ready")?.status == "Unknown" && tainted ? n : nil
        }
        _ = try await eventually(20, "replaced elsewhere") { () -> Bool? in
            let p = try await readyPods(k, app: "svc")
            return p.count == 6 && p.allSatisfy({ $0.spec?.nodeName != victim }) ? true : nil
        }
        // No false alarms for the nodes that kept renewing.
        for n in env.nodes.names where n != victim { #expect(try await k.get(Node.self, n).isReady) }
        // The node comes back: Ready again, taint gone.
        env.nodes.revive(victim)
        _ = try await eventually(10, "node Ready again") { () -> Bool? in
            let n = try await k.get(Node.self, victim)
            return n.isReady && !(n.spec?.taints ?? []).contains { $0.key == "node.kubernetes.io/unreachable" } ? true : nil
        }
    }

    @Test func unschedulablePodSaysWhy() async throws {
        let env = try await start(cpu: "1")
        defer { Task { await env.stop() } }
        let k = env.admin
        var big = Pod(metadata: ObjectMeta(name: "big", namespace: "default"), spec: PodSpec(containers: [Container(name: "c", image: "x")]))
        big.spec?.containers[0].resources = ResourceRequirements(requests: ["cpu": try Quantity(parsing: "8")])
        _ = try await k.create(big)
        let cond = try await eventually(10, "PodScheduled=False") { () -> PodCondition? in
            let c = try await k.get(Pod.self, "big").status?.condition("PodScheduled"); return c?.status == "False" ? c : nil
        }
        #expect(cond.reason == "Unschedulable")
        #expect(cond.message == "0/3 nodes are available: 3 Insufficient cpu.")
        let events = try await eventually(5, "FailedScheduling event") { () -> [Event]? in
            let e = try await k.list(Event.self, fieldSelector: "involvedObject.name=big,reason=FailedScheduling").items; return e.isEmpty ? nil : e
        }
        #expect(events[0].type == "Warning")
        // A node with room appears: the pod is retried and placed there.
        var roomy = Node(name: "big-node")
        var st = NodeStatus()
        st.capacity = ["cpu": try Quantity(parsing: "16"), "memory": try Quantity(parsing: "32Gi"), "pods": try Quantity(parsing: "110")]
        st.allocatable = st.capacity
        st.conditions = [NodeCondition(type: "Ready", status: "True")]
        roomy.status = st
        _ = try await k.create(roomy)
        _ = try await eventually(10, "bound to big-node") { () -> Bool? in try await k.get(Pod.self, "big").spec?.nodeName == "big-node" ? true : nil }
    }

    /// The leader stops at renewDeadline (3 s) after its last successful renewal, before the
    /// lease it wrote can be taken (leaseDuration, 4 s), and keeps leading while renewals succeed.
    /// A manual clock drives the elector; the apiserver is real.
    @Test func leaderStopsBeforeItsLeaseCanBeTaken() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let clock = ManualClock()
        let e = LeaderElector(client: try c.client(user: "system:kube-controller-manager", groups: []),
                              config: LeaderElectionConfig(name: "deadline-test", identity: "a"), clock: clock)
        let leading = Lines()
        let ended = Lines()
        let run = Task { () -> String in
            defer { ended.append("ended") }
            do { try await e.run { leading.append("lead"); try await Task.sleep(for: .seconds(600)) }; return "returned" }
            catch is LostLeadership { return "lost" } catch { return "\(error)" }
        }
        _ = try await eventually(10, "a leads") { leading.all == ["lead"] ? true : nil }
        let t0 = clock.now()
        func renewTime() async throws -> String? { try await k.get(Lease.self, "deadline-test", namespace: "kube-system").spec?.renewTime }
        // Renewals that succeed: still leading well past leaseDuration.
        for i in 1...6 {
            // Asleep until its next renewal (1 s), not racing a renewal still in flight (its timeout, 3 s).
            _ = try await eventually(10, "elector waits for its next renewal") { clock.sleeperDelays().contains { abs($0 - 1) < 0.001 } ? true : nil }
            clock.advance(by: 1)
            let want = KubeTime.formatMicro(t0.addingTimeInterval(Double(i)))
            _ = try await eventually(10, "renewal \(i) stored") { try await renewTime() == want ? true : nil }
        }
        let lastOK = clock.now()
        // The apiserver goes away: every renewal fails from now on.
        await c.stop()
        var gaveUpAfter: Double?
        for _ in 0..<20 {
            // Each step: the elector sleeps (between tries, or racing a try against its deadline), or it has ended.
            _ = try await eventually(10, "elector waits or ends") { clock.sleeperCount() > 0 || !ended.all.isEmpty ? true : nil }
            if !ended.all.isEmpty { gaveUpAfter = clock.now().timeIntervalSince(lastOK); break }
            clock.advance(by: 0.25)
        }
        #expect(await run.value == "lost")
        let after = try #require(gaveUpAfter)
        #expect(after <= 3.0, "stopped leading \(after) s after the last renewal; the lease could be taken at 4 s")
        #expect(after >= 2.0, "stopped leading only \(after) s after the last renewal")
    }

    /// The leader renews with one write of the Lease it last wrote, not a read and a write; when
    /// someone else has changed the Lease since, the write is refused (409) and the next try
    /// reads it again, and a lease taken over is not written back.
    @Test func leaderRenewsWithOneRequestAndReadsAgainAfterAConflict() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let clock = ManualClock()
        let e = LeaderElector(client: try c.client(user: "system:kube-controller-manager", groups: []),
                              config: LeaderElectionConfig(name: "one-request", identity: "a"), clock: clock)
        #expect(await e.tryAcquireOrRenew())
        let gets0 = try await requestCount(c, verb: "GET", resource: "leases")
        let puts0 = try await requestCount(c, verb: "PUT", resource: "leases")
        for _ in 1...5 { clock.advance(by: 1); #expect(await e.tryAcquireOrRenew()) }
        #expect(try await requestCount(c, verb: "GET", resource: "leases") == gets0, "a renewal read the Lease")
        #expect(try await requestCount(c, verb: "PUT", resource: "leases") == puts0 + 5)
        #expect(try await k.get(Lease.self, "one-request", namespace: "kube-system").spec?.renewTime == KubeTime.formatMicro(clock.now()))
        // Someone else changes the Lease (a label): the next renewal's write is refused, the one
        // after reads the Lease and renews it, keeping the label.
        var l = try await k.get(Lease.self, "one-request", namespace: "kube-system")
        l.metadata.labels = ["touched": "yes"]
        _ = try await k.update(l)
        clock.advance(by: 1)
        var renewed = await e.tryAcquireOrRenew()
        if !renewed { renewed = await e.tryAcquireOrRenew() }
        #expect(renewed)
        let after = try await k.get(Lease.self, "one-request", namespace: "kube-system")
        #expect(after.metadata.labels?["touched"] == "yes")
        #expect(after.spec?.renewTime == KubeTime.formatMicro(clock.now()) && after.spec?.holderIdentity == "a")
        // Another identity takes the expired lease: "a" finds out and does not write over it.
        clock.advance(by: 10)
        let b = LeaderElector(client: try c.client(user: "system:kube-controller-manager", groups: []),
                              config: LeaderElectionConfig(name: "one-request", identity: "b"), clock: clock)
        #expect(await b.tryAcquireOrRenew())
        #expect(await e.tryAcquireOrRenew() == false)
        #expect(await e.tryAcquireOrRenew() == false)
        #expect(try await k.get(Lease.self, "one-request", namespace: "kube-system").spec?.holderIdentity == "b")
    }

    /// --leader-elect-lease-duration, -renew-deadline and -retry-period: Go durations, checked as
    /// client-go checks them; flags not given keep the short defaults.
    @Test func leaderElectionFlagsSetTheTimingsAndBadOnesAreRefused() throws {
        var k8s = LeaderElectionConfig(name: "x", identity: "a")
        try k8s.setTimings(leaseDuration: "15s", renewDeadline: "10s", retryPeriod: "2s")
        #expect([k8s.leaseDuration, k8s.renewDeadline, k8s.renewInterval, k8s.retryInterval] == [15, 10, 2, 2])
        var dflt = LeaderElectionConfig(name: "x", identity: "a")
        try dflt.setTimings(leaseDuration: nil, renewDeadline: nil, retryPeriod: nil)
        #expect([dflt.leaseDuration, dflt.renewDeadline, dflt.renewInterval, dflt.retryInterval] == [4, 3, 1, 0.5])
        for (lease, renew, retry, says) in [("10s", "10s", nil, "must be longer than the renew deadline"),
                                            (nil, "3s", "2600ms", "must be longer than 1.2 × the retry period"),
                                            ("fifteen", nil, nil, "--leader-elect-lease-duration: \"fifteen\""),
                                            (nil, "0s", nil, "--leader-elect-renew-deadline: \"0s\"")] as [(String?, String?, String?, String)] {
            var c = LeaderElectionConfig(name: "x", identity: "a")
            let e = #expect(throws: LeaderElectionFlagError.self) { try c.setTimings(leaseDuration: lease, renewDeadline: renew, retryPeriod: retry) }
            #expect(e?.message.contains(says) == true, "\(e?.message ?? "no error")")
            #expect(c.leaseDuration == 4 && c.renewDeadline == 3, "a refused flag changed nothing")
        }
    }

    @Test func standbyControllerManagerTakesOver() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        func elector(_ id: String) throws -> LeaderElector {
            var cfg = LeaderElectionConfig(name: "kube-controller-manager", identity: id)
            cfg.leaseDuration = 1.5; cfg.renewInterval = 0.3; cfg.retryInterval = 0.2
            return LeaderElector(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cfg)
        }
        let leading = Lines()
        let ea = try elector("a"), eb = try elector("b")
        let a = Task { try? await ea.run { leading.append("a"); try await Task.sleep(for: .seconds(60)) } }
        _ = try await eventually(5, "a leads") { leading.all == ["a"] ? true : nil }
        let b = Task { try? await eb.run { leading.append("b"); try await Task.sleep(for: .seconds(60)) } }
        try await holds(for: 2, "standby must not act while the leader renews") { leading.all == ["a"] }
        a.cancel()   // the leader dies
        _ = try await eventually(10, "b takes over") { leading.all == ["a", "b"] ? true : nil }
        #expect(try await k.get(Lease.self, "kube-controller-manager", namespace: "kube-system").spec?.holderIdentity == "b")
        b.cancel()
    }
}

@Suite(.serialized) struct ControlPlaneMoreTests {
    @Test func recreateNeverRunsOldAndNewTogether() async throws {
        let env = try await ControlPlaneTests().start()
        defer { Task { await env.stop() } }
        let k = env.admin
        var d = try webDeployment("rec", replicas: 3)
        d.spec?.strategy = DeploymentStrategy(type: "Recreate")
        _ = try await k.create(d)
        _ = try await eventually(30, "3 ready") { try await ControlPlaneTests().readyPods(k, app: "rec").count == 3 ? true : nil }
        let listed = try await k.list(Pod.self, labelSelector: "app=rec")
        let mixed = Lines()
        let watcher = Task {
            var state: [String: Pod] = [:]
            for p in listed.items { state[p.name] = p }
            do {
                for try await (type, p) in k.watch(Pod.self, resourceVersion: listed.metadata.resourceVersion, labelSelector: "app=rec") {
                    if type == "DELETED" { state.removeValue(forKey: p.name) } else { state[p.name] = p }
                    let images = Set(state.values.filter { !$0.isTerminal }.compactMap { $0.spec?.containers.first?.image })
                    if images.count > 1 { mixed.append("\(images)") }
                }
            } catch {}
        }
        try await modify(k, Deployment.self, "rec") { $0.spec?.template.spec?.containers[0].image = "busybox:9" }
        _ = try await eventually(30, "recreated") { () -> Bool? in
            let p = try await ControlPlaneTests().readyPods(k, app: "rec")
            return p.count == 3 && p.allSatisfy { $0.spec?.containers.first?.image == "busybox:9" } ? true : nil
        }
        watcher.cancel()
        #expect(mixed.all.isEmpty, "old and new pods coexisted: \(mixed.all.prefix(3))")
    }

    @Test func allNodesSilentAtOnceIsTreatedAsPartitionNotFailure() async throws {
        let env = try await ControlPlaneTests().start()
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("part", replicas: 3))
        _ = try await eventually(30, "3 ready") { try await ControlPlaneTests().readyPods(k, app: "part").count == 3 ? true : nil }
        for n in env.nodes.names { env.nodes.kill(n) }
        _ = try await eventually(10, "all Unknown") { () -> Bool? in
            for n in env.nodes.names where try await k.get(Node.self, n).status?.condition("Ready")?.status != "Unknown" { return nil }
            return true
        }
        // Watched for well past the 1 s eviction delay: no pod may be marked for deletion.
        try await holds(for: 2.5, "no evictions during a suspected partition") {
            let pods = try await k.list(Pod.self, labelSelector: "app=part").items
            return pods.count == 3 && pods.allSatisfy { $0.metadata.deletionTimestamp == nil }
        }
        for n in env.nodes.names { env.nodes.revive(n) }
        _ = try await eventually(10, "Ready again") { () -> Bool? in
            for n in env.nodes.names where try await !k.get(Node.self, n).isReady { return nil }
            return true
        }
    }

    /// After an outage in which no Lease could be renewed (the store without quorum), the
    /// controller-manager that takes over counts each node's silence from when it first saw
    /// the node's heartbeat: nodes that renew within the grace period are never marked
    /// unreachable, and their pods stay Ready.
    @Test func aControllerManagerTakingOverGivesEveryNodeAWholeGracePeriod() async throws {
        let env = try await ControlPlaneTests().start(grace: 2)
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("takeover", replicas: 3))
        _ = try await eventually(30, "3 ready") { try await ControlPlaneTests().readyPods(k, app: "takeover").count == 3 ? true : nil }
        env.tasks[1].cancel()   // the controller-manager goes, and no node renews for a while
        for n in env.nodes.names { env.nodes.kill(n) }
        try await Task.sleep(for: .seconds(5))   // its Lease (4 s) has run out; the nodes' are 5 s old
        var config = ControllerManagerConfig()
        config.nodeLifecycle.gracePeriod = 2
        config.nodeLifecycle.evictionDelay = 1
        config.nodeLifecycle.monitorPeriod = 0.2
        let cm = ControllerManager(client: try env.cluster.client(user: "system:kube-controller-manager", groups: []), config: config)
        let next = Task { await cm.run() }
        defer { next.cancel() }
        try await Task.sleep(for: .milliseconds(1000))
        for n in env.nodes.names { env.nodes.revive(n) }
        try await holds(for: 3, "no node marked unreachable, no pod made NotReady") {
            for n in env.nodes.names where try await k.get(Node.self, n).status?.condition("Ready")?.status != "True" { return false }
            return try await ControlPlaneTests().readyPods(k, app: "takeover").count == 3
        }
    }

    @Test func twoOfThreeDeadEvictsToTheSurvivor() async throws {
        let env = try await ControlPlaneTests().start()
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("two", replicas: 3))
        _ = try await eventually(30, "3 ready") { try await ControlPlaneTests().readyPods(k, app: "two").count == 3 ? true : nil }
        env.nodes.kill("n1"); env.nodes.kill("n2")
        _ = try await eventually(20, "all on n3") { () -> Bool? in
            let p = try await ControlPlaneTests().readyPods(k, app: "two")
            return p.count == 3 && p.allSatisfy { $0.spec?.nodeName == "n3" } ? true : nil
        }
    }
}

@Suite(.serialized) struct DeploymentRolloutTests {
    @Test func pausedHoldsTheRolloutAndRollbackReusesTheOldReplicaSet() async throws {
        let env = try await ControlPlaneTests().start()
        defer { Task { await env.stop() } }
        let k = env.admin
        _ = try await k.create(try webDeployment("pr", replicas: 2))
        _ = try await eventually(30, "2 ready") { try await ControlPlaneTests().readyPods(k, app: "pr").count == 2 ? true : nil }
        let firstRS = try await k.list(ReplicaSet.self).items
        #expect(firstRS.count == 1 && firstRS[0].metadata.annotations?["deployment.kubernetes.io/revision"] == "1")

        // Paused: a template change does not roll out.
        try await modify(k, Deployment.self, "pr") { d in
            d.spec?.paused = true
            d.spec?.template.spec?.containers[0].image = "busybox:2"
        }
        _ = try await eventually(10, "paused observed") { () -> Bool? in
            let d = try await k.get(Deployment.self, "pr")
            return d.status?.conditions?.first { $0.type == "Progressing" }?.reason == "DeploymentPaused" ? true : nil
        }
        #expect(try await k.list(ReplicaSet.self).items.count == 1)

        // Resumed: it rolls out to a second ReplicaSet, revision 2.
        try await modify(k, Deployment.self, "pr") { $0.spec?.paused = false }
        _ = try await eventually(30, "rolled to busybox:2") { () -> Bool? in
            let p = try await ControlPlaneTests().readyPods(k, app: "pr")
            return p.count == 2 && p.allSatisfy { $0.spec?.containers.first?.image == "busybox:2" } ? true : nil
        }
        // Rollback (what `ctl rollout undo` does): the old template again reuses revision 1's ReplicaSet.
        var old = firstRS[0].spec!.template!
        old.metadata?.labels?.removeValue(forKey: "pod-template-hash")
        try await modify(k, Deployment.self, "pr") { [old] in $0.spec?.template = old }
        _ = try await eventually(30, "rolled back") { () -> Bool? in
            let p = try await ControlPlaneTests().readyPods(k, app: "pr")
            return p.count == 2 && p.allSatisfy { $0.spec?.containers.first?.image == "busybox:1" } ? true : nil
        }
        let rss = try await k.list(ReplicaSet.self).items
        #expect(rss.count == 2)
        #expect(rss.first { $0.name == firstRS[0].name }?.spec?.replicas == 2)
    }
}
