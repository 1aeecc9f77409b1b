// The node agent: registers its Node (capacity from the host), renews its Lease, and drives
// every pod bound to it toward its spec through the container runtime, one worker per pod,
// level-triggered: start what should run, report status, finish graceful deletions.
import Foundation
import Synchronization
import Logging
import API
import Client
import AsyncHTTPClient
import NIOSSL

public struct AgentConfig: Sendable {
    public var nodeName: String
    public var labels: [String: String] = [:]
    public var leaseInterval: Double = 1
    public var statusInterval: Double = 10
    public var address: String?
    public var capacity: ResourceList?
    public var podCIDR: String?
    /// Taints the Node is registered with (later changes are the cluster's, not the agent's).
    public var taints: [Taint] = []
    /// Restart back-off: base doubling up to max (Kubernetes: 10 s and 300 s).
    public var backoffBase: Double = 10
    public var backoffMax: Double = 300
    /// How often each pod is looked at without a change from the apiserver (exits, probes).
    public var podResync: Double = 1
    public var workers: Int = 16
    /// Seconds between stats samples (the metrics collector scrapes about as often).
    public var statsInterval: Double = 1
    /// The port of the agent's HTTPS endpoint, reported in Node.status.daemonEndpoints.
    public var serverPort: Int?
    /// The Service proxy and DNS on this node.
    public var proxy = ServiceProxyConfig()
    /// How long a terminating pod waits, before its SIGTERM, for every node's proxy to stop
    /// sending it traffic (bounded by its grace period).
    public var drainTimeout: Double = 10
    /// Seconds an exec, attach or port-forward session may pass with no data either way before it
    /// is closed (the kubelet's --streaming-connection-idle-timeout, 4 h by default).
    public var streamingIdleTimeout: Double = 4 * 3600
    /// The node's own resolv.conf (for dnsPolicy Default and the host search path).
    /// Where local-path volumes of this node are made (announced on the Node for the provisioner).
    public var storageRoot: String?
    public var hostResolvConf: String = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
    public init(nodeName: String) { self.nodeName = nodeName }
}

public final class NodeAgent: Sendable {
    let client: KubeClient
    let config: AgentConfig
    let runtime: any ContainerRuntime
    let pods: Informer<Pod>
    /// ConfigMaps and Secrets, for pods' config volumes and environment.
    let configMaps: Informer<ConfigMap>
    let secrets: Informer<Secret>
    let queue: WorkQueue
    let clock: any ControlClock
    let logger: Logger
    let uids = Mutex<[String: String]>([:])   // pod key → uid of what runs here
    let memos = Mutex<[String: PodMemo]>([:])  // pod uid → probe results and back-offs
    /// Pods being stopped, by uid: their termination tasks, which end with the agent (the next
    /// agent on the node takes termination over from what the pod and the runtime show).
    let terminating = Mutex<[String: Task<Void, Never>]>([:])
    /// The node's Lease as this agent last wrote it (see renewLeaseOnce).
    let lastLease = Mutex<Lease?>(nil)
    let events: EventRecorder
    let prober: Prober
    public let proxy: ServiceProxy
    let publishSignals: AsyncStream<Void>
    /// Annotation on the node's Lease: the EndpointSlice revision its proxy has applied.
    public static let proxySyncedAnnotation = "proxy.orchestrator.io/synced-revision"

    /// `proxyRunner` stands in for nft and conntrack (tests); nil runs them.
    public init(client: KubeClient, config: AgentConfig, runtime: any ContainerRuntime, clock: any ControlClock = SystemControlClock(),
                proxyRunner: ProxyApplier.Runner? = nil) {
        self.client = client; self.config = config; self.runtime = runtime; self.clock = clock
        var l = Logger(label: "agent")
        l[metadataKey: "node"] = "\(config.nodeName)"
        logger = l
        pods = Informer<Pod>(client: client, fieldSelector: "spec.nodeName=\(config.nodeName)")
        configMaps = Informer<ConfigMap>(client: client)
        secrets = Informer<Secret>(client: client)
        events = EventRecorder(client: client, component: "agent", clock: clock)
        prober = Prober(http: Prober.sharedHTTP, runtime: runtime)
        queue = WorkQueue(clock: clock)
        // A proxy sync is published at once rather than at the next renewal: terminating pods wait on it.
        let (signals, cont) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        publishSignals = signals
        proxy = ServiceProxy(client: client, config: config.proxy, clock: clock, runner: proxyRunner, onSynced: { _ in cont.yield() })
        pods.addHandler { [weak self] ev in
            switch ev {
            case .added(let p), .deleted(let p): self?.queue.add(Informer<Pod>.key(p))
            case .updated(let old, let p):
                // Our own status writes do not need a pass (the periodic one follows soon), so a
                // state such as ErrImagePull stays visible until the next attempt.
                if old.spec == p.spec, old.metadata.deletionTimestamp == p.metadata.deletionTimestamp,
                   old.metadata.annotations == p.metadata.annotations, old.metadata.uid == p.metadata.uid { return }
                self?.queue.add(Informer<Pod>.key(p))
            }
        }
        // A ConfigMap or Secret that appears or changes: the pods here that use it get a pass
        // (their volumes are rewritten; a pod waiting for it starts).
        configMaps.addHandler { [weak self] ev in
            switch ev { case .added(let o), .updated(_, let o), .deleted(let o): self?.requeuePods(using: "configmap", o.namespace, o.name) }
        }
        secrets.addHandler { [weak self] ev in
            switch ev { case .added(let o), .updated(_, let o), .deleted(let o): self?.requeuePods(using: "secret", o.namespace, o.name) }
        }
    }

    func requeuePods(using kind: String, _ namespace: String, _ name: String) {
        for p in pods.list(namespace: namespace) where ConfigProjection.references(p).contains("\(kind)/\(name)") { queue.add(Informer<Pod>.key(p)) }
    }

    // MARK: node

    static func hostCapacity() -> ResourceList {
        let cpus = Int64(ProcessInfo.processInfo.activeProcessorCount)
        let mem = Int64(ProcessInfo.processInfo.physicalMemory)
        return ["cpu": Quantity(milli: cpus * 1000), "memory": Quantity(milli: mem * 1000, format: .binarySI), "pods": Quantity(milli: 110_000)]
    }

    func nodeObject() -> Node {
        var n = Node(name: config.nodeName)
        var labels = ["kubernetes.io/hostname": config.nodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"]
        for (k, v) in config.labels { labels[k] = v }
        n.metadata.labels = labels
        if let root = config.storageRoot { n.metadata.annotations = [StorageNames.nodeStorageRoot: root] }
        var spec = NodeSpec()
        if let cidr = config.podCIDR { spec.podCIDR = cidr; spec.podCIDRs = [cidr] }
        if !config.taints.isEmpty { spec.taints = config.taints }
        if spec != NodeSpec() { n.spec = spec }
        n.status = nodeStatus()
        return n
    }

    func nodeStatus() -> NodeStatus {
        var st = NodeStatus()
        st.capacity = config.capacity ?? Self.hostCapacity()
        st.allocatable = st.capacity
        let now = KubeTime.format(clock.now())
        func cond(_ type: String, _ status: String, _ reason: String, _ message: String) -> NodeCondition {
            var c = NodeCondition(type: type, status: status, reason: reason, message: message)
            c.lastHeartbeatTime = now; c.lastTransitionTime = now
            return c
        }
        st.conditions = [cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "agent has sufficient memory available"),
                         cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "agent has no disk pressure"),
                         cond("PIDPressure", "False", "KubeletHasSufficientPID", "agent has sufficient PID available"),
                         cond("Ready", "True", "KubeletReady", "agent is posting ready status")]
        var addrs = [NodeAddress(type: "Hostname", address: config.nodeName)]
        if let a = config.address { addrs.insert(NodeAddress(type: "InternalIP", address: a), at: 0) }
        st.addresses = addrs
        if let p = config.serverPort { st.daemonEndpoints = NodeDaemonEndpoints(kubeletEndpoint: DaemonEndpoint(Port: p)) }
        var info = NodeSystemInfo()
        var u = utsname()
        uname(&u)
        info.kernelVersion = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        info.osImage = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("PRETTY_NAME=") }.map { String($0.dropFirst(12)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) } ?? "Linux"
        info.containerRuntimeVersion = runtime.version
        info.kubeletVersion = "v1.32.0-orchestrator"
        info.operatingSystem = "linux"
        info.architecture = "amd64"
        st.nodeInfo = info
        return st
    }

    /// A condition keeps its lastTransitionTime while its status stays the same.
    static func keepTransitions(_ fresh: [NodeCondition]?, from old: [NodeCondition]?) -> [NodeCondition]? {
        fresh?.map { c in
            var c = c
            if let o = old?.first(where: { $0.type == c.type }), o.status == c.status { c.lastTransitionTime = o.lastTransitionTime }
            return c
        }
    }

    /// Creates the Node, or refreshes its labels and status if it exists.
    public func register() async throws {
        let n = nodeObject()
        do { _ = try await client.create(n); logger.info("registered node") }
        catch let s as Status where s.code == 409 {
            var cur = try await client.get(Node.self, config.nodeName)
            var labels = cur.metadata.labels ?? [:]
            for (k, v) in n.metadata.labels ?? [:] { labels[k] = v }
            cur.metadata.labels = labels
            if let root = config.storageRoot { cur.metadata.annotations = (cur.metadata.annotations ?? [:]).merging([StorageNames.nodeStorageRoot: root]) { $1 } }
            if let cidr = config.podCIDR, cur.spec?.podCIDR == nil { var spec = cur.spec ?? NodeSpec(); spec.podCIDR = cidr; spec.podCIDRs = [cidr]; cur.spec = spec }
            cur = try await client.update(cur)
            var st = n.status
            st?.conditions = Self.keepTransitions(n.status?.conditions, from: cur.status?.conditions)
            cur.status = st
            _ = try await client.updateStatus(cur)
        }
    }

    /// Renews the node's Lease, giving up on an attempt after 2 s (a request stuck on a dead
    /// connection must not hold the renewals back until the node looks gone); the next renewal
    /// starts a second later.
    @discardableResult
    func renewLease() async -> Bool {
        await withTaskGroup(of: Bool.self) { g in
            g.addTask { await self.renewLeaseOnce() }
            g.addTask { try? await Task.sleep(for: .seconds(2)); return false }
            let ok = await g.next() ?? false
            g.cancelAll()
            if !ok { ComponentMetrics.shared.failedWrite("node-lease") }
            return ok
        }
    }

    @discardableResult
    func renewLeaseOnce() async -> Bool {
        let now = KubeTime.formatMicro(clock.now())
        var spec = LeaseSpec()
        spec.holderIdentity = config.nodeName
        spec.leaseDurationSeconds = 40
        spec.renewTime = now
        func renewed(_ lease: Lease) -> Lease {
            var l = lease
            l.spec = spec
            var ann = l.metadata.annotations ?? [:]
            ann[Lease.renewIntervalAnnotation] = "\(max(1, Int((config.leaseInterval * 1000).rounded())))"
            if config.proxy.mode != "none" { ann[Self.proxySyncedAnnotation] = "\(proxy.syncedRevision)" }
            l.metadata.annotations = ann
            return l
        }
        // The Lease as last written: updated straight away, one request per renewal (as the
        // kubelet's lease controller does); read again only when that fails (a 409 when
        // someone else changed it).
        if let last = lastLease.withLock({ $0 }) {
            do {
                let written = try await client.update(renewed(last))
                lastLease.withLock { $0 = written }
                return true
            } catch {
                lastLease.withLock { $0 = nil }
            }
        }
        do {
            let l = try await client.get(Lease.self, config.nodeName, namespace: "kube-node-lease")
            let written = try await client.update(renewed(l))
            lastLease.withLock { $0 = written }
            return true
        } catch let s as Status where s.code == 404 {
            var l = renewed(Lease(name: config.nodeName, namespace: "kube-node-lease", spec: spec))
            if let uid = (try? await client.get(Node.self, config.nodeName))?.metadata.uid {
                l.metadata.ownerReferences = [OwnerReference(apiVersion: "v1", kind: "Node", name: config.nodeName, uid: uid)]
            }
            guard let written = try? await client.create(l) else { return false }
            lastLease.withLock { $0 = written }
            return true
        } catch {
            logger.debug("lease renewal failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    public func run() async throws {
        try await register()
        // Stopping the agent stops the pods' terminations under way at once (none outlives its
        // agent); they are waited for below.
        await withTaskCancellationHandler {
            await runLoops()
        } onCancel: {
            for t in terminating.withLock({ Array($0.values) }) { t.cancel() }
        }
        let left = terminating.withLock { Array($0.values) }
        for t in left { t.cancel() }
        for t in left { await t.value }
    }

    func runLoops() async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                // A failed renewal is tried again soon (the store may just have come back, and
                // the node's grace period is running), a successful one after the interval.
                while !Task.isCancelled {
                    let ok = await self.renewLease()
                    try? await self.clock.sleep(for: ok ? self.config.leaseInterval : min(self.config.leaseInterval, 0.2))
                }
            }
            g.addTask {
                // A failed status write is said once (and again once it works), and tried again
                // at the next interval; the Lease, not this, keeps the node Ready.
                var failing = false
                while !Task.isCancelled {
                    try? await self.clock.sleep(for: self.config.statusInterval)
                    if Task.isCancelled { break }
                    do {
                        var n = try await self.client.get(Node.self, self.config.nodeName)
                        let fresh = self.nodeStatus()
                        var st = n.status ?? NodeStatus()
                        // A condition keeps its lastTransitionTime while its status stays the same.
                        st.conditions = Self.keepTransitions(fresh.conditions, from: st.conditions)
                        st.capacity = fresh.capacity; st.allocatable = fresh.allocatable
                        st.daemonEndpoints = fresh.daemonEndpoints
                        n.status = st
                        _ = try await self.client.updateStatus(n)
                        if failing { self.logger.info("node status written again"); failing = false }
                    } catch {
                        ComponentMetrics.shared.failedWrite("node-status")
                        if !failing { self.logger.warning("could not write the node's status; trying again", metadata: ["error": "\(error)"]); failing = true }
                    }
                }
            }
            g.addTask { await self.pods.run() }
            g.addTask { await self.configMaps.run() }
            g.addTask { await self.secrets.run() }
            g.addTask {
                while !Task.isCancelled { await self.cleanUpVolumes(); try? await self.clock.sleep(for: 5) }
            }
            g.addTask { await self.proxy.run() }
            g.addTask { for await _ in self.publishSignals { await self.renewLease() } }
            g.addTask {
                guard await self.pods.waitForSync(timeout: 3600) else { return }
                _ = await self.configMaps.waitForSync(timeout: 30)
                _ = await self.secrets.waitForSync(timeout: 30)
                // Pods' resolv.conf names the cluster DNS address, read from the Services.
                _ = await self.proxy.services.waitForSync(timeout: 10)
                await self.cleanupOrphans()
                await runWorkers(self.config.workers, queue: self.queue, logger: self.logger) { key in try await self.syncPod(key) }
            }
        }
    }

    /// Removes what the runtime holds for pods no longer bound here (after an agent restart);
    /// containers of pods still bound here are adopted as they are.
    func cleanupOrphans() async {
        let wanted = Set(pods.list().compactMap(\.metadata.uid))
        for uid in await runtime.pods() where !wanted.contains(uid) {
            logger.info("removing leftovers of a pod no longer bound here", metadata: ["uid": "\(uid)"])
            do { try await runtime.remove(podUID: uid) }
            catch { logger.warning("removing leftovers failed", metadata: ["uid": "\(uid)", "error": "\(error)"]) }
        }
    }
}
