// Leader election on a coordination.k8s.io/v1 Lease, so that two copies of a control-plane
// component can run and only one acts. Short defaults make take-over fast.
import Foundation
import Logging
import Synchronization
import API

public struct LeaderElectionConfig: Sendable {
    public var name: String
    public var namespace: String = "kube-system"
    public var identity: String
    public var leaseDuration: Double = 4
    public var renewInterval: Double = 1
    public var retryInterval: Double = 0.5
    public init(name: String, identity: String) { self.name = name; self.identity = identity }
}

public struct LostLeadership: Error, CustomStringConvertible {
    public var description: String { "lost the leader lease" }
}

public final class LeaderElector: Sendable {
    let client: KubeClient
    let config: LeaderElectionConfig
    let clock: any ControlClock
    let logger: Logger

    public init(client: KubeClient, config: LeaderElectionConfig, clock: any ControlClock = SystemControlClock(), logger: Logger = Logger(label: "leader-election")) {
        self.client = client; self.config = config; self.clock = clock; self.logger = logger
    }

    /// Tries once to take or keep the lease. Returns true when this identity holds it.
    public func tryAcquireOrRenew() async -> Bool {
        let now = clock.now()
        let stamp = KubeTime.formatMicro(now)
        do {
            var lease = try await client.get(Lease.self, config.name, namespace: config.namespace)
            var spec = lease.spec ?? LeaseSpec()
            let holder = spec.holderIdentity ?? ""
            let renewed = KubeTime.parse(spec.renewTime) ?? .distantPast
            let duration = Double(spec.leaseDurationSeconds ?? Int(config.leaseDuration))
            if holder != config.identity && !holder.isEmpty && renewed.addingTimeInterval(duration) > now { return false }
            if holder != config.identity {
                spec.acquireTime = stamp
                spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1
                spec.holderIdentity = config.identity
            }
            spec.renewTime = stamp
            spec.leaseDurationSeconds = Int(config.leaseDuration.rounded(.up))
            lease.spec = spec
            _ = try await client.update(lease)   // carries resourceVersion: a racing writer gets 409
            return true
        } catch let s as Status where s.code == 404 {
            var spec = LeaseSpec()
            spec.holderIdentity = config.identity
            spec.acquireTime = stamp; spec.renewTime = stamp
            spec.leaseDurationSeconds = Int(config.leaseDuration.rounded(.up)); spec.leaseTransitions = 0
            do { _ = try await client.create(Lease(name: config.name, namespace: config.namespace, spec: spec)); return true }
            catch { return false }
        } catch {
            return false
        }
    }

    /// Waits for the lease, runs `lead` while holding it, and throws LostLeadership if renewal
    /// fails for a whole lease duration (the caller should exit, as Kubernetes components do).
    public func run(_ lead: @escaping @Sendable () async throws -> Void) async throws {
        while !Task.isCancelled {
            if await tryAcquireOrRenew() { break }
            try await clock.sleep(for: config.retryInterval)
        }
        logger.info("became leader", metadata: ["lease": "\(config.namespace)/\(config.name)", "identity": "\(config.identity)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await lead() }
            group.addTask {
                var lastOK = self.clock.now()
                while !Task.isCancelled {
                    try await self.clock.sleep(for: self.config.renewInterval)
                    if await self.tryAcquireOrRenew() { lastOK = self.clock.now() }
                    else if self.clock.now().timeIntervalSince(lastOK) >= self.config.leaseDuration { throw LostLeadership() }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}

/// How every control-plane executable starts: log to stderr at `level`, then run `body` while
/// holding the named Lease in kube-system (or straight away without leader election).
public func runComponent(client: KubeClient, leaseName: String, leaderElect: Bool, identity: String?, logLevel: String,
                         _ body: @escaping @Sendable () async -> Void) async throws {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return h
    }
    guard leaderElect else { await body(); return }
    let id = identity ?? "\(ProcessInfo.processInfo.hostName)_\(getpid())"
    let elector = LeaderElector(client: client, config: LeaderElectionConfig(name: leaseName, identity: id))
    try await elector.run { await body() }
}

/// Records core/v1 Events about objects, as Kubernetes components do; repeats bump `count`.
/// Events go through a bounded buffer drained by a few workers, so a burst of them never
/// crowds out the component's real work on the shared connection pool; when the buffer is full
/// the newest are dropped (as client-go's broadcaster does).
public final class EventRecorder: Sendable {
    let client: KubeClient
    let component: String
    let clock: any ControlClock
    struct Pending: Sendable { var ref: ObjectReference; var namespace: String; var type: String; var reason: String; var message: String; var time: String }
    private let continuation: AsyncStream<Pending>.Continuation
    private let drainer: Task<Void, Never>

    public init(client: KubeClient, component: String, clock: any ControlClock = SystemControlClock(), buffer: Int = 1000, workers: Int = 4) {
        self.client = client; self.component = component; self.clock = clock
        let (stream, cont) = AsyncStream<Pending>.makeStream(bufferingPolicy: .bufferingOldest(buffer))
        continuation = cont
        drainer = Task {
            // One consumer; at most `workers` sends in flight.
            await withTaskGroup(of: Void.self) { g in
                var inFlight = 0
                for await e in stream {
                    if inFlight >= workers { await g.next(); inFlight -= 1 }
                    g.addTask { await EventRecorder.send(e, client: client, component: component) }
                    inFlight += 1
                }
            }
        }
    }

    deinit { continuation.finish(); drainer.cancel() }

    public func record<T: KubeObject>(_ obj: T, type: String = "Normal", reason: String, message: String) {
        let ref = ObjectReference(kind: T.resource.kind, namespace: obj.metadata.namespace, name: obj.name, uid: obj.metadata.uid, apiVersion: T.resource.apiVersion)
        record(ref, namespace: obj.metadata.namespace ?? "default", type: type, reason: reason, message: message)
    }

    public func record(_ ref: ObjectReference, namespace: String, type: String = "Normal", reason: String, message: String) {
        continuation.yield(Pending(ref: ref, namespace: namespace, type: type, reason: reason, message: message, time: KubeTime.format(clock.now())))
    }

    static func send(_ p: Pending, client: KubeClient, component: String) async {
        // Same object, reason and message: one Event whose count grows (name is a stable hash).
        var h: UInt64 = 0xcbf29ce484222325
        for b in "\(p.ref.uid ?? p.ref.name ?? "")|\(p.reason)|\(p.message)".utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        let name = "\(p.ref.name ?? "object").\(String(h, radix: 16))"
        var ev = Event(metadata: ObjectMeta(name: name, namespace: p.namespace), involvedObject: p.ref, reason: p.reason, message: p.message,
                       type: p.type, source: EventSource(component: component))
        ev.firstTimestamp = p.time; ev.lastTimestamp = p.time; ev.count = 1
        ev.reportingComponent = component
        do { _ = try await client.create(ev) } catch let s as Status where s.code == 409 {
            if var existing = try? await client.get(Event.self, name, namespace: p.namespace) {
                existing.count = (existing.count ?? 1) + 1
                existing.lastTimestamp = p.time
                _ = try? await client.update(existing)
            }
        } catch {}
    }
}

