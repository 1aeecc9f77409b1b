// The node agent: registers its Node (capacity from the host), renews its Lease, and drives
// every pod bound to it toward its spec through the container runtime, one worker per pod,
// level-triggered: start what should run, report status, finish graceful deletions.
import Foundation
import Synchronization
import Logging
import API
import Client

public struct AgentConfig: Sendable {
    public var nodeName: String
    public var labels: [String: String] = [:]
    public var leaseInterval: Double = 1
    public var statusInterval: Double = 10
    public var address: String?
    public var capacity: ResourceList?
    public init(nodeName: String) { self.nodeName = nodeName }
}

public final class NodeAgent: Sendable {
    let client: KubeClient
    let config: AgentConfig
    let runtime: any ContainerRuntime
    let pods: Informer<Pod>
    let queue: WorkQueue
    let clock: any ControlClock
    let logger: Logger
    let uids = Mutex<[String: String]>([:])   // pod key → uid of what runs here

    public init(client: KubeClient, config: AgentConfig, runtime: any ContainerRuntime, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.config = config; self.runtime = runtime; self.clock = clock
        var l = Logger(label: "agent")
        l[metadataKey: "node"] = "\(config.nodeName)"
        logger = l
        pods = Informer<Pod>(client: client, fieldSelector: "spec.nodeName=\(config.nodeName)")
        queue = WorkQueue(clock: clock)
        pods.addHandler { [weak self] ev in
            switch ev {
            case .added(let p), .updated(_, let p), .deleted(let p): self?.queue.add(Informer<Pod>.key(p))
            }
        }
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

    /// Creates the Node, or refreshes its labels and status if it exists.
    public func register() async throws {
        let n = nodeObject()
        do { _ = try await client.create(n); logger.info("registered node") }
        catch let s as Status where s.code == 409 {
            var cur = try await client.get(Node.self, config.nodeName)
            var labels = cur.metadata.labels ?? [:]
            for (k, v) in n.metadata.labels ?? [:] { labels[k] = v }
            cur.metadata.labels = labels
            cur = try await client.update(cur)
            cur.status = n.status
            _ = try await client.updateStatus(cur)
        }
    }

    func renewLease() async {
        let now = KubeTime.formatMicro(clock.now())
        var spec = LeaseSpec()
        spec.holderIdentity = config.nodeName
        spec.leaseDurationSeconds = 40
        spec.renewTime = now
        do {
            var l = try await client.get(Lease.self, config.nodeName, namespace: "kube-node-lease")
            l.spec = spec
            _ = try await client.update(l)
        } catch let s as Status where s.code == 404 {
            var l = Lease(name: config.nodeName, namespace: "kube-node-lease", spec: spec)
            if let uid = (try? await client.get(Node.self, config.nodeName))?.metadata.uid {
                l.metadata.ownerReferences = [OwnerReference(apiVersion: "v1", kind: "Node", name: config.nodeName, uid: uid)]
            }
            _ = try? await client.create(l)
        } catch {
            logger.debug("lease renewal failed", metadata: ["error": "\(error)"])
        }
    }

    public func run() async throws {
        try await register()
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                while !Task.isCancelled { await self.renewLease(); try? await self.clock.sleep(for: self.config.leaseInterval) }
            }
            g.addTask {
                while !Task.isCancelled {
                    try? await self.clock.sleep(for: self.config.statusInterval)
                    if var n = try? await self.client.get(Node.self, self.config.nodeName) {
                        let fresh = self.nodeStatus()
                        var st = n.status ?? NodeStatus()
                        st.conditions = fresh.conditions; st.capacity = fresh.capacity; st.allocatable = fresh.allocatable
                        n.status = st
                        _ = try? await self.client.updateStatus(n)
                    }
                }
            }
            g.addTask { await self.pods.run() }
            g.addTask {
                _ = await self.pods.waitForSync(timeout: 3600)
                await self.cleanupOrphans()
                await runWorkers(8, queue: self.queue, logger: self.logger) { key in try await self.syncPod(key) }
            }
        }
    }

    /// Removes what the runtime holds for pods no longer bound here (after an agent restart).
    func cleanupOrphans() async {
        let wanted = Set(pods.list().compactMap(\.metadata.uid))
        for uid in await runtime.pods() where !wanted.contains(uid) {
            logger.info("removing leftovers of a pod no longer bound here", metadata: ["uid": "\(uid)"])
            try? await runtime.remove(podUID: uid)
        }
    }

    // MARK: pods

    func syncPod(_ key: String) async throws -> ReconcileResult {
        guard let pod = pods.get(key) else {
            if let uid = uids.withLock({ $0.removeValue(forKey: key) }) { try await runtime.remove(podUID: uid) }
            return .done
        }
        let uid = pod.metadata.uid ?? key
        if let prev = uids.withLock({ $0[key] }), prev != uid { try await runtime.remove(podUID: prev) }
        if pod.metadata.deletionTimestamp != nil { return try await terminate(pod, uid: uid, key: key) }
        if pod.isTerminal { return .done }
        uids.withLock { $0[key] = uid }
        let sandbox = try await runtime.ensureSandbox(pod)
        var running = await runtime.containers(podUID: uid)
        for c in pod.spec?.containers ?? [] where !running.contains(where: { $0.name == c.name }) {
            running.append(try await runtime.start(pod, container: c))
        }
        try await reportStatus(pod, sandbox: sandbox, containers: running)
        return .done
    }

    func terminate(_ pod: Pod, uid: String, key: String) async throws -> ReconcileResult {
        let grace = Double(pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30)
        for c in await runtime.containers(podUID: uid) { try await runtime.stop(podUID: uid, container: c.name, grace: grace) }
        try await runtime.remove(podUID: uid)
        uids.withLock { _ = $0.removeValue(forKey: key) }
        // The node finishes the graceful delete (uid precondition: never a newer pod of the same name).
        var opts = DeleteOptions(gracePeriodSeconds: 0)
        opts.preconditions = Preconditions(uid: uid, resourceVersion: nil)
        do { try await client.delete(Pod.self, pod.name, namespace: pod.namespace, options: opts) }
        catch let s as Status where s.code == 404 || s.code == 409 {}
        return .done
    }

    func reportStatus(_ pod: Pod, sandbox: SandboxInfo, containers: [ContainerInfo]) async throws {
        var st = pod.status ?? PodStatus()
        let now = KubeTime.format(clock.now())
        var statuses: [ContainerStatus] = []
        var allRunning = true
        for c in pod.spec?.containers ?? [] {
            var cs = ContainerStatus(name: c.name, image: c.image ?? "")
            cs.restartCount = st.containerStatuses?.first { $0.name == c.name }?.restartCount ?? 0
            if let info = containers.first(where: { $0.name == c.name }) {
                cs.containerID = info.id
                cs.imageID = info.image
                switch info.state {
                case .running(let started):
                    cs.state = ContainerState(running: ContainerStateRunning(startedAt: KubeTime.format(started)))
                    cs.ready = c.readinessProbe == nil || runtime.name == "fake"
                    cs.started = true
                case .exited(let code, let started, let finished):
                    cs.state = ContainerState(terminated: ContainerStateTerminated(exitCode: code, reason: code == 0 ? "Completed" : "Error",
                                                                                  startedAt: KubeTime.format(started), finishedAt: KubeTime.format(finished)))
                    allRunning = false
                }
            } else {
                cs.state = ContainerState(waiting: ContainerStateWaiting(reason: "ContainerCreating"))
                allRunning = false
            }
            statuses.append(cs)
        }
        st.phase = allRunning ? "Running" : "Pending"
        st.podIP = sandbox.ip
        st.podIPs = sandbox.ip.map { [PodIP(ip: $0)] }
        st.hostIP = config.address
        st.startTime = st.startTime ?? now
        st.containerStatuses = statuses
        let ready = allRunning && statuses.allSatisfy(\.ready)
        st.setCondition(PodCondition(type: "Initialized", status: "True"), now: now)
        st.setCondition(PodCondition(type: "ContainersReady", status: ready ? "True" : "False"), now: now)
        st.setCondition(PodCondition(type: "Ready", status: ready ? "True" : "False"), now: now)
        st.setCondition(PodCondition(type: "PodScheduled", status: "True"), now: now)
        guard st != pod.status else { return }
        var next = pod
        next.status = st
        _ = try await client.updateStatus(next)
    }
}
