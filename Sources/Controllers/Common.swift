// Shared pieces for controllers: expectations, pod helpers, and the informer set the
// controller-manager runs once for all controllers.
import Foundation
import Synchronization
import API
import Client

/// "After creating N pods, don't create again until N creations are observed" (client-go).
public final class Expectations: Sendable {
    struct Entry { var adds: Int; var deletes: Set<String>; var setAt: Date }
    private let state = Mutex<[String: Entry]>([:])
    let timeout: Double
    public init(timeout: Double = 30) { self.timeout = timeout }

    public func expect(_ key: String, adds: Int, deletes: Set<String> = [], now: Date) {
        state.withLock { $0[key] = Entry(adds: adds, deletes: deletes, setAt: now) }
    }
    public func observedAdd(_ key: String) { state.withLock { s in if s[key] != nil { s[key]!.adds -= 1 } } }
    public func observedDelete(_ key: String, pod: String) { state.withLock { s in _ = s[key]?.deletes.remove(pod) } }
    public func satisfied(_ key: String, now: Date) -> Bool {
        state.withLock { s in
            guard let e = s[key] else { return true }
            return (e.adds <= 0 && e.deletes.isEmpty) || now.timeIntervalSince(e.setAt) > timeout
        }
    }
    public func forget(_ key: String) { state.withLock { _ = $0.removeValue(forKey: key) } }
    /// Whether `key` may create or delete, and the pods to decide from, in that order: the
    /// expectations are read before the cache, so an add observed in between can only make the
    /// answer "wait", never a stale list without the new pod that still says "go" (that order
    /// once created an Indexed Job's index twice).
    public func snapshot<P>(_ key: String, now: Date, _ list: () -> [P]) -> (satisfied: Bool, pods: [P]) {
        let ok = satisfied(key, now: now)
        return (ok, list())
    }
}

public extension Pod {
    var isActive: Bool { metadata.deletionTimestamp == nil && !isTerminal }
    /// Ready for at least minReadySeconds.
    func isAvailable(minReadySeconds: Int, now: Date) -> Bool {
        guard let c = status?.condition("Ready"), c.status == "True" else { return false }
        if minReadySeconds == 0 { return true }
        guard let t = KubeTime.parse(c.lastTransitionTime) else { return false }
        return now.timeIntervalSince(t) >= Double(minReadySeconds)
    }
}

func ownerRef<T: KubeObject>(_ owner: T, controller: Bool = true) -> OwnerReference {
    OwnerReference(apiVersion: T.resource.apiVersion, kind: T.resource.kind, name: owner.name, uid: owner.metadata.uid ?? "", controller: controller, blockOwnerDeletion: true)
}

/// FNV-1a over the template's JSON, printed with Kubernetes' "safe" alphabet (no vowels).
public func podTemplateHash(_ t: PodTemplateSpec, collisionCount: Int = 0) -> String {
    let h = FNV1a.hash32(withUnsafeBytes(of: UInt32(collisionCount).littleEndian, Array.init),
                         seed: FNV1a.hash32((try? KubeJSON.encode(t)) ?? Data()))
    let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
    var v = h, out = ""
    repeat { out.append(alphabet[Int(v % UInt32(alphabet.count))]); v /= UInt32(alphabet.count) } while v > 0
    return out
}

/// The informers every controller shares (one list+watch per resource per process).
public final class SharedInformers: Sendable {
    public let pods: Informer<Pod>
    public let replicaSets: Informer<ReplicaSet>
    public let deployments: Informer<Deployment>
    public let nodes: Informer<Node>
    public let leases: Informer<Lease>
    public let csrs: Informer<CertificateSigningRequest>
    public let hpas: Informer<HorizontalPodAutoscaler>
    public let services: Informer<Service>
    public let endpointSlices: Informer<EndpointSlice>
    public let endpoints: Informer<Endpoints>
    public let pdbs: Informer<PodDisruptionBudget>
    public let jobs: Informer<Job>
    public let cronJobs: Informer<CronJob>
    public let daemonSets: Informer<DaemonSet>
    public let revisions: Informer<ControllerRevision>
    public let statefulSets: Informer<StatefulSet>
    public let claims: Informer<PersistentVolumeClaim>
    public let volumes: Informer<PersistentVolume>
    public let storageClasses: Informer<StorageClass>
    public let namespaces: Informer<Namespace>
    public let serviceAccounts: Informer<ServiceAccount>
    /// Only the kube-root-ca.crt ConfigMap of each namespace (published by the ServiceAccounts controller).
    public let rootCAConfigMaps: Informer<ConfigMap>

    public init(client: KubeClient) {
        pods = Informer(client: client)
        replicaSets = Informer(client: client)
        deployments = Informer(client: client)
        nodes = Informer(client: client)
        leases = Informer(client: client, namespace: "kube-node-lease")
        csrs = Informer(client: client)
        hpas = Informer(client: client)
        services = Informer(client: client)
        endpointSlices = Informer(client: client, labelSelector: "\(EndpointSlice.managedByLabel)=\(EndpointSlice.controllerName)")
        endpoints = Informer(client: client)
        pdbs = Informer(client: client)
        jobs = Informer(client: client)
        cronJobs = Informer(client: client)
        daemonSets = Informer(client: client)
        revisions = Informer(client: client)
        statefulSets = Informer(client: client)
        claims = Informer(client: client)
        volumes = Informer(client: client)
        storageClasses = Informer(client: client)
        namespaces = Informer(client: client)
        serviceAccounts = Informer(client: client)
        rootCAConfigMaps = Informer(client: client, fieldSelector: "metadata.name=kube-root-ca.crt")
        // Pods by the claims they use ("namespace/claim").
        pods.addIndex("claim") { p in (p.spec?.volumes ?? []).compactMap { v in v.persistentVolumeClaim?["claimName"]?.stringValue.map { "\(p.namespace)/\($0)" } } }
        jobs.addIndex("owner") { j in j.metadata.ownerReferences?.map(\.uid) ?? [] }
        pods.addIndex("owner") { p in p.metadata.ownerReferences?.map(\.uid) ?? [] }
        pods.addIndex("node") { p in [p.spec?.nodeName ?? ""] }
        replicaSets.addIndex("owner") { r in r.metadata.ownerReferences?.map(\.uid) ?? [] }
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await self.pods.run() }
            g.addTask { await self.replicaSets.run() }
            g.addTask { await self.deployments.run() }
            g.addTask { await self.nodes.run() }
            g.addTask { await self.leases.run() }
            g.addTask { await self.csrs.run() }
            g.addTask { await self.hpas.run() }
            g.addTask { await self.services.run() }
            g.addTask { await self.endpointSlices.run() }
            g.addTask { await self.endpoints.run() }
            g.addTask { await self.pdbs.run() }
            g.addTask { await self.jobs.run() }
            g.addTask { await self.cronJobs.run() }
            g.addTask { await self.daemonSets.run() }
            g.addTask { await self.revisions.run() }
            g.addTask { await self.statefulSets.run() }
            g.addTask { await self.claims.run() }
            g.addTask { await self.volumes.run() }
            g.addTask { await self.storageClasses.run() }
            g.addTask { await self.namespaces.run() }
            g.addTask { await self.serviceAccounts.run() }
            g.addTask { await self.rootCAConfigMaps.run() }
        }
    }

    public func waitForSync() async {
        _ = await pods.waitForSync(timeout: 3600); _ = await replicaSets.waitForSync(timeout: 3600)
        _ = await deployments.waitForSync(timeout: 3600); _ = await nodes.waitForSync(timeout: 3600)
        _ = await leases.waitForSync(timeout: 3600); _ = await csrs.waitForSync(timeout: 3600)
        _ = await hpas.waitForSync(timeout: 3600)
        _ = await services.waitForSync(timeout: 3600); _ = await endpointSlices.waitForSync(timeout: 3600)
        _ = await endpoints.waitForSync(timeout: 3600); _ = await pdbs.waitForSync(timeout: 3600)
        _ = await jobs.waitForSync(timeout: 3600); _ = await cronJobs.waitForSync(timeout: 3600)
        _ = await daemonSets.waitForSync(timeout: 3600); _ = await revisions.waitForSync(timeout: 3600)
        _ = await statefulSets.waitForSync(timeout: 3600); _ = await claims.waitForSync(timeout: 3600)
        _ = await volumes.waitForSync(timeout: 3600); _ = await storageClasses.waitForSync(timeout: 3600)
        _ = await namespaces.waitForSync(timeout: 3600); _ = await serviceAccounts.waitForSync(timeout: 3600)
        _ = await rootCAConfigMaps.waitForSync(timeout: 3600)
    }
}

/// The controller (if any) of `kind` that owns `p`, as a "namespace/name" queue key.
func ownerKey(_ p: Pod, kind: String) -> String? {
    guard let ref = p.metadata.controllerRef, ref.kind == kind else { return nil }
    return "\(p.namespace)/\(ref.name)"
}

extension Expectations {
    /// Pod events for a controller of `kind` pods: its owner is queued, and the creations and
    /// deletions its expectations wait for are counted. `orphan` sees pods without a controller.
    func trackPods(_ pods: Informer<Pod>, kind: String, queue: WorkQueue, orphan: (@Sendable (Pod) -> Void)? = nil) {
        pods.addHandler { [self] ev in
            switch ev {
            case .added(let p):
                if let k = ownerKey(p, kind: kind) { observedAdd(k); queue.add(k) } else { orphan?(p) }
            case .updated(let old, let p):
                if let k = ownerKey(p, kind: kind) {
                    if p.metadata.deletionTimestamp != nil, old.metadata.deletionTimestamp == nil { observedDelete(k, pod: p.name) }
                    queue.add(k)
                } else { orphan?(p) }
                if let k = ownerKey(old, kind: kind), k != ownerKey(p, kind: kind) { queue.add(k) }
            case .deleted(let p):
                if let k = ownerKey(p, kind: kind) { observedDelete(k, pod: p.name); queue.add(k) }
            }
        }
    }
}

/// Deletes and creates pods for `owner` (queue key `key`) under its expectations, with an event
/// per pod; returns how many creations the apiserver refused.
func writePods<T: KubeObject>(_ client: KubeClient, _ events: EventRecorder, _ expectations: Expectations, owner: T, key: String,
                              delete: [String], evict: [String] = [], create: [Pod], now: Date) async -> (refused: Int, blocked: Int) {
    guard !delete.isEmpty || !evict.isEmpty || !create.isEmpty else { return (0, 0) }
    expectations.expect(key, adds: create.count, deletes: Set(delete + evict), now: now)
    for n in delete {
        do {
            try await client.delete(Pod.self, n, namespace: owner.namespace)
            events.record(owner, reason: "SuccessfulDelete", message: "Deleted pod: \(n)")
        } catch { expectations.observedDelete(key, pod: n) }
    }
    let blocked = await evictPods(client, events, owner: owner, evict) { expectations.observedDelete(key, pod: $0) }
    var refused = 0
    for pod in create {
        do {
            let p = try await client.create(pod)
            events.record(owner, reason: "SuccessfulCreate", message: "Created pod: \(p.name)")
        } catch {
            expectations.observedAdd(key)
            refused += 1
            events.record(owner, type: "Warning", reason: "FailedCreate", message: "Error creating: \(error)")
        }
    }
    return (refused, blocked)
}

/// Rolling-update removals go through the eviction subresource, so PodDisruptionBudgets hold
/// them back (429) as they hold back `kubectl drain`. Returns how many were held back.
func evictPods<T: KubeObject>(_ client: KubeClient, _ events: EventRecorder, owner: T, _ names: [String], failed: (String) -> Void = { _ in }) async -> Int {
    var blocked = 0
    for n in names {
        do {
            try await client.evict(pod: n, namespace: owner.namespace)
            events.record(owner, reason: "SuccessfulDelete", message: "Evicted pod for the update: \(n)")
        } catch let s as Status where s.code == 429 {
            failed(n); blocked += 1
            events.record(owner, type: "Warning", reason: "UpdateBlocked", message: "pod \(n) is not replaced yet: \(s.message ?? "a PodDisruptionBudget allows no disruption now")")
        } catch let s as Status where s.code == 404 {
            failed(n)
        } catch {
            failed(n); blocked += 1
        }
    }
    return blocked
}

/// Writes `status` into `obj` if it differs; false when the object changed meanwhile (409), so
/// the caller looks again.
func writeStatus<T: KubeObject, S: Equatable>(_ client: KubeClient, _ obj: T, _ path: WritableKeyPath<T, S?>, _ status: S) async throws -> Bool {
    guard obj[keyPath: path] != status else { return true }
    var next = obj
    next[keyPath: path] = status
    do { _ = try await client.updateStatus(next) } catch let s as Status where s.code == 409 { return false }
    return true
}
