// The node's Service proxy and DNS: watches Services and EndpointSlices, renders them into
// the node's nftables table (one atomic `nft -f` per sync) and into the DNS answers this node
// gives its pods, and remembers the EndpointSlice revision it last applied, which the agent
// publishes so that a terminating pod is stopped only once every proxy has let it go.
import Foundation
import Synchronization
import Logging
import API
import Client

public struct ServiceProxyConfig: Sendable {
    /// "nftables" programs the kernel; "none" only follows the watches (hollow nodes, tests).
    public var mode: String = "none"
    /// The pods' range; traffic to a ClusterIP from outside it is masqueraded.
    public var clusterCIDR: String = "198.19.0.0/16"
    public var table: String = "orchestrator"
    public var domain: String = "cluster.local"
    /// The address this node answers DNS on; nil: the kube-dns Service's cluster IP.
    public var dnsAddress: String?
    public var dnsPort: Int = 53
    /// Serve DNS at all (needs the address bound locally; the agent adds it on a dummy link).
    public var dnsEnabled: Bool = false
    /// Where names outside the cluster go ("ip" or "ip:port").
    public var upstreams: [String] = []
    /// Coalesces bursts of changes into one sync.
    public var minSyncInterval: Double = 0.05
    /// The dummy link that holds the DNS address on the node (as NodeLocal DNSCache does).
    public static let dnsInterface = "orch-dns"
    public init() {}
}

public final class ServiceProxy: Sendable {
    let services: Informer<Service>
    let slices: Informer<EndpointSlice>
    let config: ServiceProxyConfig
    let applier: ProxyApplier?
    let dnsServer: Mutex<DNSServer?> = Mutex(nil)
    let logger: Logger
    let wake = Mutex<(dirty: Bool, waiter: CheckedContinuation<Void, Never>?)>((true, nil))
    /// The next sync rewrites the whole table (the periodic repair).
    let fullNext = Mutex(false)
    let synced = Mutex<Int64>(0)
    let lastSync = Mutex<(rules: Int, seconds: Double, at: Date?)>((0, 0, nil))
    let onSynced: @Sendable (Int64) -> Void
    let clock: any ControlClock
    /// Whether nft runs for real (else the node's sysctls are left alone too).
    let realNFT: Bool

    public init(client: KubeClient, config: ServiceProxyConfig, clock: any ControlClock = SystemControlClock(),
                runner: ProxyApplier.Runner? = nil,
                onSynced: @escaping @Sendable (Int64) -> Void = { _ in }) {
        self.config = config; self.onSynced = onSynced; self.clock = clock; realNFT = runner == nil
        services = Informer(client: client)
        slices = Informer(client: client)
        logger = Logger(label: "proxy")
        if config.mode == "nftables" {
            let run = runner ?? { exe, args, stdin in
                let r = try await Command.run(exe, args, stdin: stdin, timeout: 30)
                return (r.status, r.stdout, r.stderr)
            }
            applier = ProxyApplier(config: ProxyConfig(table: config.table, clusterCIDR: config.clusterCIDR, exemptIPs: config.dnsAddress.map { [$0] } ?? []),
                                   runner: run)
        } else {
            applier = nil
        }
        services.addHandler { [weak self] _ in self?.markDirty() }
        slices.addHandler { [weak self] _ in self?.markDirty() }
    }

    /// The EndpointSlice revision the node's rules reflect.
    public var syncedRevision: Int64 { synced.withLock { $0 } }
    public var lastSyncStats: (rules: Int, seconds: Double) { lastSync.withLock { ($0.rules, $0.seconds) } }

    func markDirty() {
        let w = wake.withLock { s -> CheckedContinuation<Void, Never>? in s.dirty = true; let w = s.waiter; s.waiter = nil; return w }
        w?.resume()
    }

    func waitDirty() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = wake.withLock { s -> Bool in
                if s.dirty { s.dirty = false; return true }
                s.waiter = c
                return false
            }
            if now { c.resume() }
        }
    }

    /// The cluster DNS address: configured, or the kube-dns Service's.
    public var dnsAddress: String? {
        config.dnsAddress ?? services.get(namespace: "kube-system", name: "kube-dns")?.spec?.clusterIP.flatMap { IPv4($0) != nil ? $0 : nil }
    }

    public func run() async {
        if config.mode == "nftables" && realNFT {
            // Replies between pods on one bridge are switched, not routed: without this they would
            // skip conntrack and reach the client un-NATed.
            // The sysctl exists once br_netfilter is loaded, which a fresh host (a new VM) has not done.
            let sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
            if !FileManager.default.fileExists(atPath: sysctl) {
                for modprobe in ["/usr/sbin/modprobe", "/sbin/modprobe"] where FileManager.default.isExecutableFile(atPath: modprobe) {
                    do {
                        let r = try Command.runSync(modprobe, ["br_netfilter"], timeout: 10)
                        if r.status != 0 { logger.error("cannot load br_netfilter", metadata: ["modprobe": "\(r.status)"]) }
                    } catch {
                        logger.error("cannot load br_netfilter", metadata: ["error": "\(error)"])
                    }
                    break
                }
            }
            do { try "1\n".write(toFile: sysctl, atomically: false, encoding: .utf8) } catch {
                logger.error("cannot set \(sysctl) (load the br_netfilter module): a pod reaching a Service whose endpoint is another pod on the same node will get no answer", metadata: ["error": "\(error)"])
            }
        }
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await self.services.run() }
            g.addTask { await self.slices.run() }
            g.addTask {
                guard await self.services.waitForSync(timeout: 3600), await self.slices.waitForSync(timeout: 3600) else { return }
                if self.config.dnsEnabled { await self.startDNS() }
                // A resync every 30 s repairs rules someone else changed by hand.
                let ticker = Task {
                    while !Task.isCancelled { try? await self.clock.sleep(for: 30); self.fullNext.withLock { $0 = true }; self.markDirty() }
                }
                defer { ticker.cancel() }
                while !Task.isCancelled {
                    await self.waitDirty()
                    if Task.isCancelled { break }
                    await self.syncOnce()
                    try? await self.clock.sleep(for: self.config.minSyncInterval)
                }
            }
            await g.next()
            g.cancelAll()
        }
        if let s = dnsServer.withLock({ $0 }) { await s.stop() }
    }

    func syncOnce() async {
        // Captured first: everything up to it is in what follows.
        let rev = slices.revision
        let svcs = services.list(), sls = slices.list()
        if let applier {
            do {
                let ps = Self.proxyServices(services: svcs, slices: sls, exempt: dnsAddress.map { [$0] } ?? [])
                let full = fullNext.withLock { f in defer { f = false }; return f }
                let r = try await applier.sync(ps, full: full)
                lastSync.withLock { $0 = (r.rules, r.seconds, clock.now()) }
            } catch {
                logger.error("proxy sync failed; retrying", metadata: ["error": "\(error)"])
                Task { try? await self.clock.sleep(for: 1); self.markDirty() }
                return
            }
        }
        dnsServer.withLock { $0 }?.update(ClusterDNSTable(domain: config.domain, services: Self.dnsServices(services: svcs, slices: sls)))
        let advanced = synced.withLock { s -> Bool in if rev > s { s = rev; return true }; return false }
        if advanced { onSynced(rev) }
    }

    func startDNS() async {
        guard let addr = dnsAddress else {
            logger.warning("no cluster DNS address (no kube-dns Service and no --cluster-dns); pods get the node's resolvers")
            return
        }
        if config.mode == "nftables" {
            // The address is the same on every node and local to each: pods' queries never leave it.
            // A dummy link where the kernel has them, else loopback.
            var link = ServiceProxyConfig.dnsInterface
            let made = try? await Command.run("/usr/sbin/ip", ["link", "add", link, "type", "dummy"])
            if made?.status != 0, !FileManager.default.fileExists(atPath: "/sys/class/net/\(link)") { link = "lo" }
            _ = try? await Command.run("/usr/sbin/ip", ["addr", "replace", "\(addr)/32", "dev", link])
            _ = try? await Command.run("/usr/sbin/ip", ["link", "set", link, "up"])
            Self.localDNSAddress.withLock { $0 = (addr, link) }
        }
        let server = DNSServer(host: addr, port: config.dnsPort, upstreams: config.upstreams)
        server.update(ClusterDNSTable(domain: config.domain, services: Self.dnsServices(services: services.list(), slices: slices.list())))
        do {
            try await server.start()
            dnsServer.withLock { $0 = server }
            logger.info("answering DNS", metadata: ["address": "\(addr):\(config.dnsPort)", "domain": "\(config.domain)"])
        } catch {
            logger.error("cannot serve DNS", metadata: ["address": "\(addr)", "error": "\(error)"])
        }
    }

    public func removeRules() async { await applier?.remove() }

    /// One pod's connections through this node's Service rules (its address's counter).
    public struct PodConnections: Sendable, Hashable {
        public var namespace: String
        public var name: String
        public var uid: String
        public var ip: String
        public var connections: UInt64
    }

    /// The connections this node's rules have sent to each pod behind a Service, the pods named
    /// by the EndpointSlices' targetRefs. Nil without nftables (nothing is counted).
    public func podConnections() async throws -> [PodConnections]? {
        guard let applier else { return nil }
        let counts = try await applier.connectionCounts()
        guard !counts.isEmpty else { return [] }
        var out: [String: PodConnections] = [:]
        for sl in slices.list() where sl.addressType == "IPv4" {
            for e in sl.endpoints {
                guard let ip = e.addresses.first, let n = counts[ip], let ref = e.targetRef, (ref.kind ?? "Pod") == "Pod",
                      let name = ref.name, let uid = ref.uid else { continue }
                out[ip] = PodConnections(namespace: ref.namespace ?? sl.namespace, name: name, uid: uid, ip: ip, connections: n)
            }
        }
        return out.values.sorted { $0.ip < $1.ip }
    }

    /// The DNS address this process added to the node, and where (removed on a clean stop).
    public static let localDNSAddress = Mutex<(address: String, link: String)?>(nil)

    /// What a clean stop removes: the node's table and the DNS address.
    public static func cleanUpNode(table: String) {
        _ = try? Command.runSync("/usr/sbin/nft", ["delete", "table", "ip", table])
        if let (addr, link) = localDNSAddress.withLock({ $0 }) {
            if link == "lo" { _ = try? Command.runSync("/usr/sbin/ip", ["addr", "del", "\(addr)/32", "dev", "lo"]) }
            else { _ = try? Command.runSync("/usr/sbin/ip", ["link", "delete", link]) }
        }
    }

    // MARK: pure translation

    /// Services with their endpoints as the proxy programs them.
    public static func proxyServices(services: [Service], slices: [EndpointSlice], exempt: [String] = []) -> [ProxyService] {
        let bySvc = Dictionary(grouping: slices.filter { $0.addressType == "IPv4" }) { "\($0.namespace)/\($0.serviceName ?? "")" }
        var out: [ProxyService] = []
        for s in services {
            guard let ip = s.spec?.clusterIP, IPv4(ip) != nil, !exempt.contains(ip), s.spec?.type != "ExternalName" else { continue }
            let mine = bySvc["\(s.namespace)/\(s.name)"] ?? []
            var ports: [ProxyServicePort] = []
            for p in s.spec?.ports ?? [] {
                let proto = p.protocol ?? "TCP"
                var eps: [ProxyEndpoint] = []
                var seen = Set<String>()
                for sl in mine {
                    guard let sp = (sl.ports ?? []).first(where: { ($0.name ?? "") == (p.name ?? "") && ($0.protocol ?? "TCP") == proto }), let port = sp.port else { continue }
                    for e in sl.endpoints {
                        guard let addr = e.addresses.first, seen.insert("\(addr):\(port)").inserted else { continue }
                        let c = e.conditions
                        eps.append(ProxyEndpoint(ip: addr, port: port, ready: c?.ready ?? true, serving: c?.serving ?? (c?.ready ?? true),
                                                 terminating: c?.terminating ?? false))
                    }
                }
                ports.append(ProxyServicePort(name: p.name ?? "", proto: proto, port: p.port, nodePort: p.nodePort, endpoints: eps.sorted { ($0.ip, $0.port) < ($1.ip, $1.port) }))
            }
            out.append(ProxyService(namespace: s.namespace, name: s.name, clusterIP: ip, externalIPs: s.spec?.externalIPs ?? [],
                                    affinityTimeout: s.affinityTimeout, ports: ports))
        }
        return out.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) }
    }

    /// Services as DNS sees them: headless ones carry their endpoints.
    public static func dnsServices(services: [Service], slices: [EndpointSlice]) -> [DNSService] {
        let bySvc = Dictionary(grouping: slices) { "\($0.namespace)/\($0.serviceName ?? "")" }
        return services.map { s in
            var eps: [DNSEndpoint] = []
            if s.isHeadless {
                var seen = Set<String>()
                for sl in bySvc["\(s.namespace)/\(s.name)"] ?? [] {
                    for e in sl.endpoints {
                        guard let a = e.addresses.first, seen.insert(a).inserted else { continue }
                        eps.append(DNSEndpoint(ip: a, hostname: e.hostname, ready: e.conditions?.ready ?? true))
                    }
                }
            }
            return DNSService(namespace: s.namespace, name: s.name, clusterIP: s.spec?.clusterIP, type: s.spec?.type ?? "ClusterIP",
                              externalName: s.spec?.externalName,
                              ports: (s.spec?.ports ?? []).map { DNSServicePort(name: $0.name ?? "", proto: $0.protocol ?? "TCP", port: $0.port) },
                              endpoints: eps.sorted { $0.ip < $1.ip }, publishNotReadyAddresses: s.spec?.publishNotReadyAddresses ?? false)
        }
    }
}
