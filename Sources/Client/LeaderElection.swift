// Leader election on a coordination.k8s.io/v1 Lease, so that two copies of a control-plane
// component can run and only one acts. Short defaults make take-over fast.
import Foundation
import Synchronization
import Logging
import API

public struct LeaderElectionConfig: Sendable {
    public var name: String
    public var namespace: String = "kube-system"
    public var identity: String
    public var leaseDuration: Double = 4
    /// How long the leader goes on after its last successful renewal before it stops leading;
    /// shorter than the lease, as client-go's RenewDeadline, so it has stopped before another
    /// identity may take the lease (at most three quarters of leaseDuration is used).
    public var renewDeadline: Double = 3
    public var renewInterval: Double = 1
    public var retryInterval: Double = 0.5
    public init(name: String, identity: String) { self.name = name; self.identity = identity }

    /// The timings from Kubernetes' flags (--leader-elect-lease-duration, -renew-deadline and
    /// -retry-period, Go durations), checked as client-go checks them: the lease longer than the
    /// renew deadline, the deadline longer than 1.2 retry periods. The retry period is also the
    /// interval between renewals. A flag not given (nil) keeps its default. Slow hosts (emulated
    /// CPUs) need longer ones than the defaults.
    public mutating func setTimings(leaseDuration ld: String?, renewDeadline rd: String?, retryPeriod rp: String?) throws {
        func parse(_ v: String?, _ flag: String, _ current: Double) throws -> Double {
            guard let v else { return current }
            guard let d = parseGoDuration(v), d > 0 else { throw LeaderElectionFlagError(message: "--\(flag): \"\(v)\" must be a duration above 0, such as 15s or 500ms") }
            return d
        }
        let lease = try parse(ld, "leader-elect-lease-duration", leaseDuration)
        let renew = try parse(rd, "leader-elect-renew-deadline", renewDeadline)
        let retry = try parse(rp, "leader-elect-retry-period", renewInterval)
        if let problem = Self.problem(lease: lease, renew: renew, retry: retry) { throw LeaderElectionFlagError(message: "leader election: \(problem)") }
        if rp != nil { retryInterval = retry }
        leaseDuration = lease; renewDeadline = renew; renewInterval = retry
    }
}

extension LeaderElectionConfig {
    /// What is wrong with a set of timings (client-go's checks), or nil: the lease must outlast
    /// the renew deadline, and the deadline 1.2 retry periods.
    public static func problem(lease: Double, renew: Double, retry: Double) -> String? {
        if lease <= renew { return "the lease duration (\(lease) s) must be longer than the renew deadline (\(renew) s)" }
        if renew <= retry * 1.2 { return "the renew deadline (\(renew) s) must be longer than 1.2 × the retry period (\(retry) s)" }
        return nil
    }
}

public struct LeaderElectionFlagError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public struct LostLeadership: Error, CustomStringConvertible {
    public var description: String { "lost the leader lease" }
}

public final class LeaderElector: Sendable {
    let client: KubeClient
    let config: LeaderElectionConfig
    let clock: any ControlClock
    let logger: Logger
    /// The Lease as this identity last wrote it while holding it: a renewal updates that copy
    /// straight away (its resourceVersion makes a racing writer's change a 409), one request
    /// instead of a read and a write, as client-go's leader election does. Any failure forgets
    /// it and the next try reads the Lease first.
    let held = Mutex<Lease?>(nil)

    public init(client: KubeClient, config: LeaderElectionConfig, clock: any ControlClock = SystemControlClock(), logger: Logger = Logger(label: "leader-election")) {
        self.client = client; self.config = config; self.clock = clock; self.logger = logger
    }

    /// Tries once to take or keep the lease. Returns true when this identity holds it.
    public func tryAcquireOrRenew() async -> Bool { await attempt(at: clock.now()) }

    /// One try, stamped `now` (the renewTime written): the lease is ours until now + leaseDuration.
    func attempt(at now: Date) async -> Bool {
        let stamp = KubeTime.formatMicro(now)
        if var lease = held.withLock({ $0 }), lease.spec?.holderIdentity == config.identity {
            lease.spec?.renewTime = stamp
            lease.spec?.leaseDurationSeconds = Int(config.leaseDuration.rounded(.up))
            do {
                let written = try await client.update(lease)
                held.withLock { $0 = written }
                return true
            } catch {
                held.withLock { $0 = nil }   // someone else wrote it, or the write failed: read it again
            }
        }
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
            let written = try await client.update(lease)   // carries resourceVersion: a racing writer gets 409
            held.withLock { $0 = written }
            return true
        } catch let s as Status where s.code == 404 {
            var spec = LeaseSpec()
            spec.holderIdentity = config.identity
            spec.acquireTime = stamp; spec.renewTime = stamp
            spec.leaseDurationSeconds = Int(config.leaseDuration.rounded(.up)); spec.leaseTransitions = 0
            do {
                let written = try await client.create(Lease(name: config.name, namespace: config.namespace, spec: spec))
                held.withLock { $0 = written }
                return true
            } catch { return false }
        } catch {
            return false
        }
    }

    /// Waits for the lease, runs `lead` while holding it, and throws LostLeadership (cancelling
    /// `lead` and waiting for it to end) when no renewal has succeeded for renewDeadline since the
    /// time stamped by the last one that did, whether the renewals fail or hang. The caller then
    /// exits, as Kubernetes components do, or campaigns again with fresh state (`serveAndLead`).
    /// Others may take the lease only at that stamp + leaseDuration, later.
    public func run(_ lead: @escaping @Sendable () async throws -> Void) async throws {
        var acquired = clock.now()
        while !Task.isCancelled {
            acquired = clock.now()
            if await attempt(at: acquired) { break }
            try await clock.sleep(for: config.retryInterval)
        }
        try Task.checkCancellation()
        logger.info("became leader", metadata: ["lease": "\(config.namespace)/\(config.name)", "identity": "\(config.identity)"])
        let deadline = min(config.renewDeadline, config.leaseDuration * 0.75), acquiredAt = acquired
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await lead() }
            group.addTask {
                var lastOK = acquiredAt
                while !Task.isCancelled {
                    try await self.clock.sleep(for: max(0, min(self.config.renewInterval, lastOK.addingTimeInterval(deadline).timeIntervalSince(self.clock.now()))))
                    let at = self.clock.now()
                    let left = lastOK.addingTimeInterval(deadline).timeIntervalSince(at)
                    guard left > 0 else { throw LostLeadership() }
                    // A renewal that hangs is given up at the deadline, not when the request times out.
                    let renewed = try await withThrowingTaskGroup(of: Bool?.self) { g in
                        g.addTask { await self.attempt(at: at) }
                        g.addTask { try await self.clock.sleep(for: left); return nil }
                        defer { g.cancelAll() }
                        return try await g.next() ?? nil
                    }
                    switch renewed {
                    case true?: lastOK = at
                    case false?: continue
                    case nil: throw LostLeadership()
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}

/// Structured logs to stderr at the given level (trace … critical), for every executable.
public func bootstrapLogging(level: String) {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = Logger.Level(rawValue: level) ?? .info
        return h
    }
}

/// How every control-plane executable starts: log to stderr at `level`, then run `body` while
/// holding the named Lease in kube-system (or straight away without leader election).
/// `timings` are the leader-election flags (lease duration, renew deadline, retry period), as given.
/// `metricsAddress` is --metrics-bind-address (HOST:PORT, or 0 for none): GET /metrics and
/// /healthz are served there while the component runs, from before it leads; a port that cannot
/// be bound ends the component at once with a ListenError.
public func runComponent(client: KubeClient, leaseName: String, leaderElect: Bool, identity: String?, logLevel: String,
                         timings: (lease: String?, renew: String?, retry: String?) = (nil, nil, nil),
                         metricsAddress: String = "0",
                         _ body: @escaping @Sendable () async -> Void) async throws {
    bootstrapLogging(level: logLevel)
    try await serveAndLead(client: client, leaseName: leaseName, leaderElect: leaderElect, identity: identity,
                           timings: timings, metricsAddress: metricsAddress, body)
}

/// `runComponent` after logging is set up: the metrics endpoint, and `body` while leading.
public func serveAndLead(client: KubeClient, leaseName: String, leaderElect: Bool, identity: String?,
                         timings: (lease: String?, renew: String?, retry: String?) = (nil, nil, nil),
                         metricsAddress: String = "0", clock: any ControlClock = SystemControlClock(),
                         _ body: @escaping @Sendable () async -> Void) async throws {
    let endpoint: MetricsEndpoint?
    if let (host, port) = try MetricsEndpoint.parseAddress(metricsAddress) {
        let e = try await MetricsEndpoint(host: host, port: port)
        Logger(label: "metrics").info("serving /metrics and /healthz", metadata: ["address": "\(host.contains(":") ? "[\(host)]" : host):\(e.port)"])
        endpoint = e
    } else { endpoint = nil }
    let metrics = ComponentMetrics.shared
    let lead: @Sendable () async throws -> Void
    if leaderElect {
        let id = identity ?? "\(ProcessInfo.processInfo.hostName)_\(getpid())"
        var config = LeaderElectionConfig(name: leaseName, identity: id)
        try config.setTimings(leaseDuration: timings.lease, renewDeadline: timings.renew, retryPeriod: timings.retry)
        let elector = LeaderElector(client: client, config: config, clock: clock)
        metrics.set("leader_election_master_status", ["name": leaseName], to: 0)
        // A term that loses the lease has all its work cancelled and awaited by the elector;
        // then the component campaigns again, and `body` starts afresh if it wins. (Kubernetes'
        // components exit instead and rely on a supervisor to start them again; under hack/up
        // there is none, and a cluster would be left without its controllers.)
        lead = {
            while !Task.isCancelled {
                do {
                    try await elector.run {
                        metrics.set("leader_election_master_status", ["name": leaseName], to: 1)
                        await body()
                    }
                    metrics.set("leader_election_master_status", ["name": leaseName], to: 0)
                    return
                } catch is LostLeadership {
                    metrics.set("leader_election_master_status", ["name": leaseName], to: 0)
                    metrics.count("orchestrator_leader_lease_lost_total", ["name": leaseName])
                    Logger(label: "leader-election").warning("lost the leader lease: all work stopped; campaigning again",
                                                             metadata: ["lease": "kube-system/\(leaseName)"])
                }
            }
        }
    } else {
        lead = { await body() }
    }
    guard let endpoint else { try await lead(); return }
    try await withThrowingTaskGroup(of: Void.self) { g in
        g.addTask { try await endpoint.run() }
        g.addTask { try await lead() }
        // Whichever ends first (the component's work, normally) ends the other.
        defer { g.cancelAll() }
        try await g.next()
    }
}
