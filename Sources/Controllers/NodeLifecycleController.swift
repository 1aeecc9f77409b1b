// NodeLifecycle: a node whose Lease is not renewed within the grace period becomes
// Ready=Unknown with the unreachable taint; after the eviction delay (or the pod's
// tolerationSeconds) its pods are deleted so their owners replace them elsewhere. Evictions
// are rate limited and stop when most nodes look dead at once (our own partition).
//
// Sooner when two independent signals agree: a node whose Lease has missed a few of the
// renewals its agent announces, and whose host does not answer a TCP connect to its agent's
// port at all (no reset, no route, or nothing in time), is certainly gone. It is marked at once
// and its pods are evicted without the delay. A host that answers (the agent alive but slow,
// or restarting: a reset) gets the whole grace period as before, so neither load nor a
// restarting agent makes a node NotReady sooner.
import Foundation
import Synchronization
import Logging
import API
import Client

public struct NodeLifecycleConfig: Sendable {
    public var gracePeriod: Double = 5
    public var evictionDelay: Double = 5
    public var evictionsPerSecond: Double = 20
    /// Evictions stop when every node looks dead (the control plane is the one cut off), and in
    /// clusters larger than `largeClusterSize` when more than this share does.
    public var partitionThreshold: Double = 0.55
    public var largeClusterSize: Int = 10
    public var monitorPeriod: Double = 0.25
    /// The fast path above; off, only the grace period and the eviction delay count.
    public var fastDetection = true
    /// How many of its announced renewals a node must miss before its host is dialled...
    public var missedRenewals: Double = 3
    /// ...and at least this many seconds of silence.
    public var minimumSilence: Double = 0.5
    /// How long a dial of a silent node's agent may take before the host counts as not answering.
    public var dialTimeout: Double = 0.3
    public init() {}
}

/// Dials a node's agent: the second signal of the fast path. Tests inject their own.
public protocol NodeDialer: Sendable {
    func dial(host: String, port: Int, timeout: Double) async -> TCPDial.Outcome
}
public struct TCPNodeDialer: NodeDialer {
    public init() {}
    public func dial(host: String, port: Int, timeout: Double) async -> TCPDial.Outcome {
        await TCPDial.dial(host: host, port: port, timeout: timeout)
    }
}

public final class NodeLifecycleController: Sendable {
    static let unreachable = "node.kubernetes.io/unreachable"
    static let ourReason = "NodeStatusUnknown"
    let client: KubeClient
    let informers: SharedInformers
    let config: NodeLifecycleConfig
    let clock: any ControlClock
    let events: EventRecorder
    let dialer: any NodeDialer
    let logger = Logger(label: "node-lifecycle-controller")
    struct State {
        var unreachableSince: [String: Date] = [:]; var tokens: Double = 0; var lastRefill: Date?
        /// Per node, the last heartbeat seen and when this controller first saw it.
        var observed: [String: (heartbeat: String, at: Date)] = [:]
        /// Nodes found certainly gone (both signals), with why; forgotten at their next heartbeat.
        var gone: [String: String] = [:]
        /// Nodes silent past their fast window whose agent answered: logged once per silence.
        var answered: Set<String> = []
    }
    let state = Mutex(State())

    public init(client: KubeClient, informers: SharedInformers, config: NodeLifecycleConfig = NodeLifecycleConfig(), clock: any ControlClock = SystemControlClock(),
                dialer: any NodeDialer = TCPNodeDialer()) {
        self.client = client; self.informers = informers; self.config = config; self.clock = clock; self.dialer = dialer
        events = EventRecorder(client: client, component: "node-controller", clock: clock)
    }

    public func run() async {
        while !Task.isCancelled {
            await monitor()
            try? await clock.sleep(for: config.monitorPeriod)
        }
    }

    /// The last heartbeat: the Lease's renewTime and the Ready condition's heartbeat (a change
    /// of either is a sign of life, as Kubernetes' probe timestamps: an agent that starts again
    /// posts its status before it renews its Lease), else creation.
    func lastHeartbeat(_ n: Node) -> String {
        let lease = informers.leases.get(namespace: "kube-node-lease", name: n.name)?.spec?.renewTime
        let status = n.status?.condition("Ready")?.lastHeartbeatTime
        if lease == nil && status == nil { return "created " + (n.metadata.creationTimestamp ?? "") }
        return "lease \(lease ?? "-") status \(status ?? "-")"
    }

    /// How long the node has been silent, by this controller's clock: since it first saw the
    /// node's current heartbeat (as Kubernetes' probe timestamps). A controller that has just
    /// taken over, or that comes back after the store was unavailable (no Lease could be
    /// renewed), gives every node a whole grace period; clocks of nodes do not matter.
    func silence(_ n: Node, now: Date) -> Double {
        let hb = lastHeartbeat(n)
        return state.withLock { s in
            if let o = s.observed[n.name], o.heartbeat == hb { return now.timeIntervalSince(o.at) }
            s.observed[n.name] = (hb, now)
            s.gone.removeValue(forKey: n.name)
            s.answered.remove(n.name)
            return 0
        }
    }

    /// How long a node may be silent before its host is dialled: `missedRenewals` of the
    /// interval its agent announces on its Lease (nil: it announces none, or the window would
    /// not end before the grace period does).
    func fastWindow(_ n: Node) -> Double? {
        guard config.fastDetection, let interval = informers.leases.get(namespace: "kube-node-lease", name: n.name)?.renewInterval else { return nil }
        let w = max(config.minimumSilence, config.missedRenewals * interval)
        return w < config.gracePeriod ? w : nil
    }

    /// Where a node's agent listens, from its status: an IPv4 InternalIP (else the first
    /// address) and the daemon endpoint's port.
    static func agentAddress(_ n: Node) -> (host: String, port: Int)? {
        guard let port = n.status?.daemonEndpoints?.kubeletEndpoint?.Port, port > 0 else { return nil }
        let addrs = n.status?.addresses ?? []
        guard let a = (addrs.first { $0.type == "InternalIP" } ?? addrs.first)?.address, Validation.isIPAddress(a), !a.contains(":") else { return nil }
        return (a, port)
    }

    /// Dials the agents of the nodes that are silent past their fast window (all at once: each
    /// dial takes up to the timeout), and remembers those whose host did not answer.
    func dialSilent(_ nodes: [Node], ages: [String: Double]) async {
        var targets: [(name: String, host: String, port: Int, age: Double)] = []
        for n in nodes {
            guard let age = ages[n.name], age <= config.gracePeriod, let w = fastWindow(n), age > w,
                  state.withLock({ $0.gone[n.name] == nil }), let a = Self.agentAddress(n) else { continue }
            targets.append((n.name, a.host, a.port, age))
        }
        guard !targets.isEmpty else { return }
        let timeout = config.dialTimeout
        await withTaskGroup(of: Void.self) { g in
            for t in targets {
                g.addTask {
                    let outcome = await self.dialer.dial(host: t.host, port: t.port, timeout: timeout)
                    guard case .silent(let why) = outcome else {
                        if self.state.withLock({ $0.answered.insert(t.name).inserted }) {
                            self.logger.info("node's Lease is late but its agent answers; waiting for the grace period", metadata: ["node": "\(t.name)", "silentFor": "\(String(format: "%.1f", t.age))s", "dial": "\(outcome.failure ?? "open")"])
                        }
                        return
                    }
                    let reason = "its Lease missed its renewals for \(String(format: "%.1f", t.age))s and its agent at \(t.host):\(t.port) does not answer (\(why))"
                    self.state.withLock { $0.gone[t.name] = reason }
                }
            }
        }
    }

    public func monitor() async {
        let now = clock.now()
        let nodes = informers.nodes.list()
        var dead: [Node] = []
        let names = Set(nodes.map(\.name))
        state.withLock { s in s.observed = s.observed.filter { names.contains($0.key) }; s.gone = s.gone.filter { names.contains($0.key) } }
        var ages: [String: Double] = [:]
        for n in nodes { ages[n.name] = silence(n, now: now) }
        await dialSilent(nodes, ages: ages)
        for n in nodes {
            let age = ages[n.name] ?? 0
            let gone = state.withLock { $0.gone[n.name] }
            if age > config.gracePeriod || gone != nil {
                dead.append(n)
                state.withLock { s in if s.unreachableSince[n.name] == nil { s.unreachableSince[n.name] = now } }
                if n.status?.condition("Ready")?.status != "Unknown" || !(n.spec?.taints ?? []).contains(where: { $0.key == Self.unreachable }) {
                    await markUnknown(n, age: age, certain: gone)
                }
            } else {
                let was = state.withLock { $0.unreachableSince.removeValue(forKey: n.name) }
                if was != nil || n.status?.condition("Ready")?.reason == Self.ourReason || (n.spec?.taints ?? []).contains(where: { $0.key == Self.unreachable }) {
                    await markReachable(n)
                }
            }
        }
        // A partition of the control plane looks like most nodes dying at once: do not evict then.
        let allDead = !nodes.isEmpty && dead.count == nodes.count
        let mostDead = nodes.count > config.largeClusterSize && Double(dead.count) / Double(nodes.count) > config.partitionThreshold
        if allDead || mostDead {
            if !dead.isEmpty { logger.warning("most nodes unreachable; not evicting (suspected partition)", metadata: ["unreachable": "\(dead.count)", "nodes": "\(nodes.count)"]) }
            return
        }
        for n in dead { await evictPods(n, now: now) }
    }

    /// `certain`: why the node is known gone before its grace period ended (the fast path).
    func markUnknown(_ n: Node, age: Double, certain: String? = nil) async {
        let now = KubeTime.format(clock.now())
        var node = n
        var st = node.status ?? NodeStatus()
        var conds = st.conditions ?? []
        var ready = NodeCondition(type: "Ready", status: "Unknown", reason: Self.ourReason,
                                  message: certain.map { "Kubelet stopped posting node status: \($0)." } ?? "Kubelet stopped posting node status.")
        ready.lastHeartbeatTime = conds.first { $0.type == "Ready" }?.lastHeartbeatTime
        ready.lastTransitionTime = now
        if let i = conds.firstIndex(where: { $0.type == "Ready" }) {
            if conds[i].status == "Unknown" { ready.lastTransitionTime = conds[i].lastTransitionTime }
            conds[i] = ready
        } else { conds.append(ready) }
        st.conditions = conds
        node.status = st
        do {
            let updated = try await client.updateStatus(node)
            var withTaint = updated
            var spec = withTaint.spec ?? NodeSpec()
            // As Kubernetes: NoSchedule keeps new pods off (DaemonSet pods too), NoExecute evicts.
            let missing = ["NoSchedule", "NoExecute"].filter { e in !(spec.taints ?? []).contains { $0.key == Self.unreachable && $0.effect == e } }
            if !missing.isEmpty {
                spec.taints = (spec.taints ?? []) + missing.map { Taint(key: Self.unreachable, effect: $0, timeAdded: $0 == "NoExecute" ? now : nil) }
                withTaint.spec = spec
                _ = try await client.update(withTaint)
            }
            await markPodsNotReady(on: n.name, now: now)
            if n.status?.condition("Ready")?.status != "Unknown" {
                logger.info("node unreachable", metadata: ["node": "\(n.name)", "silentFor": "\(String(format: "%.1f", age))s", "certain": "\(certain ?? "no: grace period over")"])
                events.record(n, reason: "NodeNotReady", message: "Node \(n.name) status is now: NodeNotReady")
            }
        } catch { logger.debug("marking node unknown failed", metadata: ["node": "\(n.name)", "error": "\(error)"]) }
    }

    /// Pods on an unreachable node stop being Ready at once (Kubernetes' MarkPodsNotReady), so
    /// their endpoints leave every Service at detection time, not at eviction.
    func markPodsNotReady(on node: String, now: String) async {
        for p in informers.pods.byIndex("node", node) where p.isReady {
            var pod = p
            var st = pod.status ?? PodStatus()
            st.setCondition(PodCondition(type: "Ready", status: "False", reason: "NodeNotReady", message: "node \(node) is unreachable"), now: now)
            pod.status = st
            do { _ = try await client.updateStatus(pod) }
            catch { logger.debug("marking pod not ready failed", metadata: ["pod": "\(p.namespace)/\(p.name)", "error": "\(error)"]) }
        }
    }

    func markReachable(_ n: Node) async {
        do {
            var node = n
            if var spec = node.spec, (spec.taints ?? []).contains(where: { $0.key == Self.unreachable }) {
                spec.taints = spec.taints?.filter { $0.key != Self.unreachable }
                if spec.taints?.isEmpty == true { spec.taints = nil }
                node.spec = spec
                node = try await client.update(node)
            }
            if node.status?.condition("Ready")?.reason == Self.ourReason {
                var st = node.status!
                let now = KubeTime.format(clock.now())
                var c = NodeCondition(type: "Ready", status: "True", reason: "NodeLeaseRenewed", message: "node lease is being renewed")
                c.lastHeartbeatTime = now; c.lastTransitionTime = now
                st.conditions = (st.conditions ?? []).map { $0.type == "Ready" ? c : $0 }
                node.status = st
                _ = try await client.updateStatus(node)
                events.record(n, reason: "NodeReady", message: "Node \(n.name) status is now: NodeReady")
            }
        } catch { logger.debug("marking node reachable failed", metadata: ["node": "\(n.name)", "error": "\(error)"]) }
    }

    /// Token bucket for evictions.
    func takeToken(now: Date) -> Bool {
        state.withLock { s in
            let last = s.lastRefill ?? now
            s.tokens = min(config.evictionsPerSecond, s.tokens + now.timeIntervalSince(last) * config.evictionsPerSecond + (s.lastRefill == nil ? config.evictionsPerSecond : 0))
            s.lastRefill = now
            if s.tokens >= 1 { s.tokens -= 1; return true }
            return false
        }
    }

    func evictPods(_ n: Node, now: Date) async {
        guard let since = state.withLock({ $0.unreachableSince[n.name] }) else { return }
        let silent = now.timeIntervalSince(since)
        // A node certainly gone has its pods evicted at once; else after the eviction delay.
        let evictionDelay = state.withLock { $0.gone[n.name] } != nil ? 0 : config.evictionDelay
        for p in informers.pods.byIndex("node", n.name) where p.isActive || (p.metadata.deletionTimestamp != nil && !p.isTerminal) {
            // A StatefulSet pod that a local volume pins to this node can only come back here, so
            // its object goes at once and its replacement waits, Pending, for the node: no second
            // copy can run elsewhere, and the agent removes the old one before starting the new.
            if pinnedHere(p, node: n.name) {
                guard silent >= evictionDelay else { continue }
                do {
                    try await client.delete(Pod.self, p.name, namespace: p.namespace, options: DeleteOptions(gracePeriodSeconds: 0))
                    events.record(p, reason: "TaintManagerEviction", message: "Deleting Pod \(p.namespace)/\(p.name): its node is unreachable and its volume is on that node; the replacement waits for the node")
                } catch {}
                continue
            }
            guard p.isActive else { continue }
            // A pod tolerating the unreachable taint for N seconds stays that long; forever without N.
            var delay = evictionDelay
            if let t = (p.spec?.tolerations ?? []).first(where: { $0.tolerates(Taint(key: Self.unreachable, effect: "NoExecute")) }) {
                guard let secs = t.tolerationSeconds else { continue }
                delay = Double(secs)
            }
            guard silent >= delay else { continue }
            guard takeToken(now: now) else { return }
            do {
                try await client.delete(Pod.self, p.name, namespace: p.namespace)
                events.record(p, reason: "TaintManagerEviction", message: "Marking for deletion Pod \(p.namespace)/\(p.name)")
            } catch {}
        }
    }

    /// Whether `p` belongs to a StatefulSet and has a claim bound to a volume pinned to `node`.
    func pinnedHere(_ p: Pod, node: String) -> Bool {
        guard p.metadata.controllerRef?.kind == "StatefulSet" else { return false }
        for v in p.spec?.volumes ?? [] {
            guard let c = v.claimName, let claim = informers.claims.get(namespace: p.namespace, name: c),
                  let vn = claim.spec?.volumeName, let pv = informers.volumes.get(vn) else { continue }
            if pv.pinnedNode == node { return true }
        }
        return false
    }
}
