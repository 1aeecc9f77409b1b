// The scheduler: watches pending pods and nodes, keeps a cache of what each node has been
// given (including pods it has assumed but not yet seen bound), picks a node through the
// filter and score plugins, and binds. Unschedulable pods get a reason and are retried.
import Foundation
import Synchronization
import Logging
import API
import Client

public final class SchedulerCache: Sendable {
    struct State {
        /// Sorted by name: the order decisions walk the nodes in, round-robin.
        var infos: [NodeInfo] = []
        var index: [String: Int] = [:]   // name → position in `infos`
        var placed: [String: (node: String, request: PodRequest)] = [:]   // pod key → where it is accounted
        var nextStart = 0

        mutating func reindex(from i: Int) {
            for j in i..<infos.count { index[infos[j].name] = j }
        }
        mutating func account(_ r: PodRequest, on node: String, sign: Int = 1) {
            if let i = index[node] { infos[i].add(r, sign: sign) }
        }
    }
    private let state = Mutex(State())
    public init() {}

    public func setNode(_ n: Node) {
        state.withLock { s in
            if let i = s.index[n.name] { s.infos[i].node = n; return }
            // Lists come sorted by name, so this is nearly always the end.
            var lo = 0, hi = s.infos.count
            while lo < hi { let mid = (lo + hi) / 2; if s.infos[mid].name < n.name { lo = mid + 1 } else { hi = mid } }
            s.infos.insert(NodeInfo(node: n), at: lo)
            s.reindex(from: lo)
        }
    }
    public func removeNode(_ name: String) {
        state.withLock { s in
            guard let i = s.index.removeValue(forKey: name) else { return }
            s.infos.remove(at: i)
            s.reindex(from: i)
        }
    }

    /// Accounts a pod on its node (bound or assumed); moves it if its node changed.
    public func place(podKey: String, node: String, request: PodRequest) {
        state.withLock { s in
            if let prev = s.placed[podKey] {
                if prev.node == node { return }
                s.account(prev.request, on: prev.node, sign: -1)
            }
            s.placed[podKey] = (node, request)
            s.account(request, on: node)
        }
    }
    public func forget(podKey: String) {
        state.withLock { s in
            if let prev = s.placed.removeValue(forKey: podKey) { s.account(prev.request, on: prev.node, sign: -1) }
        }
    }
    public var nodeCount: Int { state.withLock { $0.infos.count } }
    public func info(_ node: String) -> NodeInfo? { state.withLock { s in s.index[node].map { s.infos[$0] } } }

    public enum Decision: Sendable { case bind(String), unschedulable(String) }

    /// Runs filters and scores over (a sample of) the nodes and assumes the pod on the winner,
    /// all under one lock so that a decision sees every one before it. Nodes are visited in
    /// place, by position, not copied out.
    public func decide(_ pod: Pod, key: String, filters: [any FilterPlugin], scores: [any ScorePlugin]) -> Decision {
        let req = PodRequest(pod)
        return state.withLock { s in
            let total = s.infos.count
            if total == 0 { return .unschedulable("0/0 nodes are available: no nodes registered.") }
            // As kube-scheduler: stop after enough feasible nodes in large clusters.
            let pct = max(5, 50 - total / 125)
            let wanted = total <= 100 ? total : max(100, total * pct / 100)
            var feasible: [Int] = []
            feasible.reserveCapacity(wanted)
            var reasons: [String: Int] = [:]
            let start = s.nextStart % total
            var visited = 0
            while visited < total && feasible.count < wanted {
                let i = (start + visited) % total
                visited += 1
                var ok = true
                for f in filters {
                    if case .unfit(let why) = f.filter(pod, req, s.infos[i]) { reasons[why, default: 0] += 1; ok = false; break }
                }
                if ok { feasible.append(i) }
            }
            s.nextStart = start + visited
            guard !feasible.isEmpty else {
                let parts = reasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.value) \($0.key)" }
                return .unschedulable("0/\(total) nodes are available: \(parts.joined(separator: ", ")).")
            }
            var best = feasible[0]
            var bestScore = Int.min
            for i in feasible {
                var sc = 0
                for p in scores { sc += p.weight * p.score(pod, req, s.infos[i]) }
                if sc > bestScore || (sc == bestScore && s.infos[i].name < s.infos[best].name) { best = i; bestScore = sc }
            }
            if let prev = s.placed[key] { s.account(prev.request, on: prev.node, sign: -1) }
            let name = s.infos[best].name
            s.placed[key] = (name, req)
            s.infos[best].add(req)
            return .bind(name)
        }
    }
}

public struct SchedulerConfig: Sendable {
    public var name = "default-scheduler"
    /// Workers deciding. One decides pod after pod, as kube-scheduler's scheduling cycle: the
    /// decision holds the node cache's lock from filter to assume, and nothing in a worker
    /// waits on the network (bindings, Unschedulable conditions and claims are written apart).
    /// In a backlog of 10,000 pods on 1,000 hollow nodes one worker bound 1,547 pods/s and 16
    /// bound 1,318, contending for the lock (docs/benchmarks.md).
    public var workers = 1
    /// Scheduled Events (one per pod bound) above this rate are combined, one per namespace
    /// per second (EventRecorder's limits); nil writes every one. A backlog of thousands of pods
    /// otherwise costs as many Event writes as bindings.
    public var scheduledEvents: EventRateLimit? = EventRateLimit(perSecond: 50, burst: 100)
    public init() {}
}

public final class Scheduler: Sendable {
    let client: KubeClient
    let config: SchedulerConfig
    public let cache = SchedulerCache()
    let pods: Informer<Pod>
    let nodes: Informer<Node>
    let claims: Informer<PersistentVolumeClaim>
    let volumes: Informer<PersistentVolume>
    let storageClasses: Informer<StorageClass>
    let queue: WorkQueue
    let events: EventRecorder
    let clock: any ControlClock
    let logger: Logger
    let filters: [any FilterPlugin]
    let scores: [any ScorePlugin]
    let unschedulable = Mutex<Set<String>>([])
    /// Pods handed to the binder and not yet seen bound by the informer (nor failed): not
    /// scheduled again meanwhile.
    let binding = Mutex<Set<String>>([])
    let binder: Binder

    public init(client: KubeClient, config: SchedulerConfig = SchedulerConfig(), clock: any ControlClock = SystemControlClock(),
                filters: [any FilterPlugin] = Plugins.filters, scores: [any ScorePlugin] = Plugins.scores) {
        self.client = client; self.config = config; self.clock = clock
        self.filters = filters; self.scores = scores
        logger = Logger(label: "scheduler")
        pods = Informer<Pod>(client: client)
        nodes = Informer<Node>(client: client)
        claims = Informer<PersistentVolumeClaim>(client: client)
        volumes = Informer<PersistentVolume>(client: client)
        storageClasses = Informer<StorageClass>(client: client)
        queue = WorkQueue(clock: clock, baseDelay: 0.05, maxDelay: 10)
        events = EventRecorder(client: client, component: "default-scheduler", clock: clock,
                               limits: config.scheduledEvents.map { ["Scheduled": $0] } ?? [:])
        binder = Binder(client: client)
        wire()
    }

    func isPending(_ p: Pod) -> Bool {
        (p.spec?.nodeName ?? "").isEmpty && p.metadata.deletionTimestamp == nil && !p.isTerminal
            && (p.spec?.schedulerName ?? "default-scheduler") == config.name
    }

    func wire() {
        nodes.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let n), .updated(_, let n): self.cache.setNode(n)
            case .deleted(let n): self.cache.removeNode(n.name)
            }
            self.retryUnschedulable()
        }
        // A claim, volume or class appearing or changing may make a waiting pod placeable.
        claims.addHandler { [weak self] _ in self?.retryUnschedulable() }
        volumes.addHandler { [weak self] _ in self?.retryUnschedulable() }
        storageClasses.addHandler { [weak self] _ in self?.retryUnschedulable() }
        pods.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let p), .updated(_, let p):
                let key = Informer<Pod>.key(p)
                if !(p.spec?.nodeName ?? "").isEmpty || p.metadata.deletionTimestamp != nil { self.binding.withLock { _ = $0.remove(key) } }
                if let node = p.spec?.nodeName, !node.isEmpty, !p.isTerminal { self.cache.place(podKey: key, node: node, request: PodRequest(p)) }
                else if p.isTerminal { self.cache.forget(podKey: key); self.retryUnschedulable() }
                if self.isPending(p) { self.queue.add(key) }
            case .deleted(let p):
                self.binding.withLock { _ = $0.remove(Informer<Pod>.key(p)) }
                self.cache.forget(podKey: Informer<Pod>.key(p))
                self.retryUnschedulable()
            }
        }
    }

    /// Something freed up or appeared: give every unschedulable pod another go.
    func retryUnschedulable() {
        let keys = unschedulable.withLock { s -> Set<String> in let k = s; s.removeAll(); return k }
        for k in keys { queue.add(k) }
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.nodes.run() }
            group.addTask { await self.pods.run() }
            group.addTask { await self.claims.run() }
            group.addTask { await self.volumes.run() }
            group.addTask { await self.storageClasses.run() }
            group.addTask {
                _ = await self.nodes.waitForSync(timeout: 3600)
                _ = await self.pods.waitForSync(timeout: 3600)
                _ = await self.claims.waitForSync(timeout: 3600)
                _ = await self.volumes.waitForSync(timeout: 3600)
                _ = await self.storageClasses.waitForSync(timeout: 3600)
                await runWorkers(self.config.workers, queue: self.queue, logger: self.logger) { key in try await self.scheduleOne(key) }
            }
            await group.waitForAll()
        }
    }

    func scheduleOne(_ key: String) async throws -> ReconcileResult {
        guard let pod = pods.get(key), isPending(pod), !binding.withLock({ $0.contains(key) }) else { return .done }
        let needs: VolumeRequirements
        switch VolumeRequirements.of(pod, claim: { self.claims.get(namespace: pod.namespace, name: $0) }, volume: { self.volumes.get($0) },
                                     volumes: { self.volumes.list() }, storageClass: { self.storageClasses.get($0) }) {
        case .success(let r): needs = r
        case .failure(let why): return try await unschedulable(pod, key: key, message: "0/\(cache.nodeCount) nodes are available: \(why.message).")
        }
        switch cache.decide(pod, key: key, filters: needs.isEmpty ? filters : filters + [VolumeBinding(needs)], scores: scores) {
        case .bind(let node) where needs.delayed.isEmpty:
            // Bound apart from the decision: the worker goes on to the next pod.
            binding.withLock { _ = $0.insert(key) }
            binder.submit(namespace: pod.namespace, name: pod.name, node: node) { [self] result in
                bound(pod, key: key, node: node, result)
            }
            return .done
        case .bind(let node):
            // Delayed binding: the claims learn their node before the pod is bound there. Done
            // apart from the decisions too, so that the next pod's does not wait for it.
            binding.withLock { _ = $0.insert(key) }
            Task { [self] in
                do {
                    for d in needs.delayed where d.claim.metadata.annotations?[StorageNames.selectedNode] != node {
                        _ = try await client.patch(PersistentVolumeClaim.self, d.claim.name, namespace: d.claim.namespace,
                                                   mergePatch: .object(["metadata": .object(["annotations": .object([StorageNames.selectedNode: .string(node)])])]))
                    }
                    try await client.bind(pod: pod.name, namespace: pod.namespace, node: node)
                    bound(pod, key: key, node: node, .success(()))
                } catch {
                    bound(pod, key: key, node: node, .failure(error))
                }
            }
            return .done
        case .unschedulable(let message):
            return try await unschedulable(pod, key: key, message: message + needs.placementNote)
        }
    }

    /// How a binding handed off by a decision ended: an Event when bound; otherwise the pod leaves
    /// the cache, and is scheduled again unless it was bound elsewhere or is gone.
    func bound(_ pod: Pod, key: String, node: String, _ result: Result<Void, Error>) {
        switch result {
        case .success:
            events.record(pod, reason: "Scheduled", message: "Successfully assigned \(pod.namespace)/\(pod.name) to \(node)")
        case .failure(let error):
            binding.withLock { _ = $0.remove(key) }
            cache.forget(podKey: key)
            if let s = error as? Status, s.code == 409 || s.code == 404 { return }   // the informer will tell
            logger.warning("binding failed; scheduling the pod again", metadata: ["pod": "\(key)", "node": "\(node)", "error": "\(error)"])
            queue.addRateLimited(key)
        }
    }

    /// The pod waits in the unschedulable set (tried again in 5 s, or at once when a node
    /// changes); its PodScheduled condition says why, written apart from the decisions.
    func unschedulable(_ pod: Pod, key: String, message: String) async throws -> ReconcileResult {
        unschedulable.withLock { _ = $0.insert(key) }
        if pod.status?.condition("PodScheduled")?.message != message {
            var p = pod
            var st = p.status ?? PodStatus(phase: "Pending")
            st.setCondition(PodCondition(type: "PodScheduled", status: "False", reason: "Unschedulable", message: message), now: KubeTime.format(clock.now()))
            p.status = st
            Task { [self, p] in
                do { _ = try await client.updateStatus(p) }
                catch let s as Status where s.code == 404 || s.code == 409 {
                    queue.add(key)   // gone, or changed meanwhile: look again
                    return
                } catch {
                    // Said, and tried again soon; the pod stays in the unschedulable set meanwhile.
                    ComponentMetrics.shared.failedWrite("pod-scheduled-condition")
                    logger.warning("could not write the pod's Unschedulable condition; retrying", metadata: ["pod": "\(key)", "error": "\(error)"])
                    queue.addAfter(key, 1)
                    return
                }
                events.record(p, type: "Warning", reason: "FailedScheduling", message: message)
            }
        }
        return .requeue(after: 5)
    }
}
