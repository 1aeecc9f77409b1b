// Cluster IPs and NodePorts for Services. Each allocation is a record in the store, created
// before the Service and keyed by the address or port, so the store's create-if-absent makes
// it unique across concurrent requests and apiservers (the IPAddress design of KEP-1880).
// Records are released when their Service goes, and a repair pass reconciles both ways.
import Foundation
import Synchronization
import Logging
import API
import Store

public struct ServiceNetworkConfig: Sendable {
    public var serviceCIDR: CIDR
    public var nodePortRange: ClosedRange<Int>
    public init(serviceCIDR: CIDR = CIDR("198.18.128.0/20")!, nodePortRange: ClosedRange<Int> = 30000...32767) {
        self.serviceCIDR = serviceCIDR; self.nodePortRange = nodePortRange
    }
    /// The first usable address: the `kubernetes` Service's, as in Kubernetes.
    public var apiServiceIP: IPv4 { serviceCIDR.address(1) }
    /// The tenth: the cluster DNS address (kubeadm's convention), answered on every node.
    public var dnsServiceIP: IPv4 { serviceCIDR.address(10) }

    /// Parses "30000-32767".
    public static func parsePortRange(_ s: String) -> ClosedRange<Int>? {
        let p = s.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard p.count == 2, let lo = p[0], let hi = p[1], lo >= 1, hi <= 65535, lo <= hi else { return nil }
        return lo...hi
    }
}

/// What a Service holds in the allocator: record names ("ip-198.18.128.5", "nodeport-30080").
struct ServiceAllocations: Hashable, Sendable {
    var names: Set<String> = []
    static func of(_ svc: Service) -> ServiceAllocations {
        var a = ServiceAllocations()
        if let ip = svc.spec?.clusterIP, IPv4(ip) != nil { a.names.insert(ServiceAllocator.ipName(ip)) }
        for p in svc.spec?.ports ?? [] { if let n = p.nodePort, n > 0 { a.names.insert(ServiceAllocator.portName(n)) } }
        return a
    }
}

final class ServiceAllocator: Sendable {
    static let resource = "serviceallocations.orchestrator.io"
    static func ipName(_ ip: String) -> String { "ip-\(ip)" }
    static func portName(_ p: Int) -> String { "nodeport-\(p)" }
    static func key(_ name: String) -> ObjectKey { ObjectKey(resource: resource, namespace: "", name: name) }

    let store: any ObjectStore
    let config: ServiceNetworkConfig
    let logger: Logger
    let clock: @Sendable () -> Date
    /// Records younger than this are left alone by repair: their Service may be mid-create.
    let repairGrace: TimeInterval

    init(store: any ObjectStore, config: ServiceNetworkConfig, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }, repairGrace: TimeInterval = 30) {
        self.store = store; self.config = config; self.logger = logger; self.clock = clock; self.repairGrace = repairGrace
    }

    struct Record: Codable { var namespace: String; var service: String; var uid: String; var created: Double }

    func record(_ name: String) -> Record? {
        store.get(Self.key(name)).flatMap { try? JSONDecoder().decode(Record.self, from: $0.data) }
    }

    /// Claims `name` for the Service; false if another Service holds it. Claiming what the
    /// same Service already holds succeeds.
    func claim(_ name: String, for svc: Service) async throws -> Bool {
        let rec = Record(namespace: svc.namespace, service: svc.name, uid: svc.metadata.uid ?? "", created: clock().timeIntervalSince1970)
        let data = try JSONEncoder().encode(rec)
        do {
            _ = try await store.write(.create(StoredObject(key: Self.key(name), data: data, labels: [:], fields: [:])))
            return true
        } catch StoreError.alreadyExists {
            return record(name)?.uid == rec.uid
        }
    }

    /// Releases `name` if `uid` holds it (nil: whoever does).
    func release(_ name: String, uid: String?) async {
        let key = Self.key(name)
        guard let cur = store.get(key) else { return }
        if let uid, let r = try? JSONDecoder().decode(Record.self, from: cur.data), r.uid != uid { return }
        _ = try? await store.write(.delete(key, expectedRevision: cur.revision, finalData: cur.data))
    }

    func release(_ names: some Sequence<String>, uid: String?) async { for n in names { await release(n, uid: uid) } }

    // MARK: allocation

    /// Fills in and claims the cluster IP and node ports `svc` needs, keeping what `old` had.
    /// Returns the records claimed now (to release if the write fails) and those `old` held
    /// that `svc` no longer uses (to release once the write succeeds).
    func assign(_ svc: inout Service, old: Service?) async throws -> (claimed: [String], unused: [String]) {
        var claimed: [String] = []
        do {
            try await assignIP(&svc, old: old, claimed: &claimed)
            try await assignNodePorts(&svc, old: old, claimed: &claimed)
        } catch {
            await release(claimed, uid: svc.metadata.uid)
            throw error
        }
        let unused = old.map { ServiceAllocations.of($0).names.subtracting(ServiceAllocations.of(svc).names) } ?? []
        return (claimed, unused.sorted())
    }

    private func assignIP(_ svc: inout Service, old: Service?, claimed: inout [String]) async throws {
        guard svc.wantsClusterIP else {
            if svc.spec?.type == "ExternalName" { svc.spec?.clusterIP = nil; svc.spec?.clusterIPs = nil }
            return
        }
        // An update that leaves the address out keeps the one assigned (as Kubernetes does).
        if (svc.spec?.clusterIP ?? "").isEmpty, let was = old?.spec?.clusterIP, IPv4(was) != nil {
            svc.spec?.clusterIP = was; svc.spec?.clusterIPs = [was]
        }
        if let requested = svc.spec?.clusterIP, !requested.isEmpty {
            guard let ip = IPv4(requested) else { return }   // validation names it
            if requested == old?.spec?.clusterIP { return }
            guard config.serviceCIDR.contains(ip), ip != config.serviceCIDR.base, ip != config.serviceCIDR.address(config.serviceCIDR.size - 1) else {
                throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.clusterIPs", "[\"\(requested)\"]: failed to allocate IP \(requested): the provided IP (\(requested)) is not in the valid range. The range of valid IPs is \(config.serviceCIDR)")])
            }
            guard try await claim(Self.ipName(requested), for: svc) else {
                throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.clusterIPs", "[\"\(requested)\"]: failed to allocate IP \(requested): provided IP is already allocated")])
            }
            claimed.append(Self.ipName(requested))
            return
        }
        let cidr = config.serviceCIDR
        let usable = cidr.size >= 4 ? cidr.size - 2 : 0
        // Random probes first (cheap while the range is sparse), then a scan for the last few.
        var rng = SystemRandomNumberGenerator()
        var tried = Set<UInt64>()
        for _ in 0..<min(64, Int(usable)) {
            let off = 1 + rng.next() % usable
            guard tried.insert(off).inserted else { continue }
            if try await tryIP(cidr.address(off), &svc, &claimed) { return }
        }
        if usable > 0 {
            for off in 1...usable where !tried.contains(off) {
                if store.get(Self.key(Self.ipName(cidr.address(off).description))) != nil { continue }
                if try await tryIP(cidr.address(off), &svc, &claimed) { return }
            }
        }
        throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.clusterIPs", "failed to allocate a service IP: the range \(cidr) is full (\(usable) addresses in use)")])
    }

    private func tryIP(_ ip: IPv4, _ svc: inout Service, _ claimed: inout [String]) async throws -> Bool {
        // .10 is the cluster DNS address: never hand it to an ordinary Service.
        if ip == config.dnsServiceIP && !(svc.namespace == "kube-system" && svc.name == "kube-dns") { return false }
        if ip == config.apiServiceIP && !(svc.namespace == "default" && svc.name == "kubernetes") { return false }
        guard try await claim(Self.ipName(ip.description), for: svc) else { return false }
        claimed.append(Self.ipName(ip.description))
        svc.spec?.clusterIP = ip.description
        svc.spec?.clusterIPs = [ip.description]
        return true
    }

    private func assignNodePorts(_ svc: inout Service, old: Service?, claimed: inout [String]) async throws {
        guard var ports = svc.spec?.ports else { return }
        guard svc.wantsNodePorts else {
            for i in ports.indices { ports[i].nodePort = nil }
            svc.spec?.ports = ports
            return
        }
        let range = config.nodePortRange
        let oldPorts = old?.spec?.ports ?? []
        // Ports the Service held before stay its own (one number may serve TCP and UDP alike).
        let held = Set(oldPorts.compactMap(\.nodePort))
        for i in ports.indices {
            if (ports[i].nodePort ?? 0) == 0,
               let prev = oldPorts.first(where: { $0.port == ports[i].port && $0.protocol == ports[i].protocol })?.nodePort {
                ports[i].nodePort = prev
            }
            if let n = ports[i].nodePort, n > 0 {
                if held.contains(n) || claimed.contains(Self.portName(n)) { continue }
                guard range.contains(n) else {
                    throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.ports[\(i)].nodePort", "\(n): provided port is not in the valid range. The range of valid ports is \(range.lowerBound)-\(range.upperBound)")])
                }
                guard try await claim(Self.portName(n), for: svc) else {
                    throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.ports[\(i)].nodePort", "\(n): provided port is already allocated")])
                }
                claimed.append(Self.portName(n))
                continue
            }
            var got: Int? = nil
            var rng = SystemRandomNumberGenerator()
            let span = UInt64(range.count)
            for _ in 0..<64 {
                let n = range.lowerBound + Int(rng.next() % span)
                if try await claim(Self.portName(n), for: svc) { got = n; break }
            }
            if got == nil {
                for n in range where store.get(Self.key(Self.portName(n))) == nil {
                    if try await claim(Self.portName(n), for: svc) { got = n; break }
                }
            }
            guard let n = got else {
                throw Status.invalid(Resources.services, svc.name, [.init(.invalid, "spec.ports[\(i)].nodePort", "failed to allocate a node port: the range \(range.lowerBound)-\(range.upperBound) is full")])
            }
            ports[i].nodePort = n
            claimed.append(Self.portName(n))
        }
        svc.spec?.ports = ports
    }

    // MARK: repair

    /// Releases records whose Service is gone or no longer uses them (older than the grace),
    /// and re-creates records missing for addresses Services hold. Returns (released, restored).
    @discardableResult
    func repair() async -> (released: Int, restored: Int) {
        let (services, _) = store.list(resource: Resources.services.groupResource, namespace: nil)
        var holders: [String: (ns: String, name: String, uid: String)] = [:]
        var svcs: [Service] = []
        for o in services {
            guard let s = try? KubeJSON.decode(Service.self, from: o.data) else { continue }
            svcs.append(s)
            for n in ServiceAllocations.of(s).names { holders[n] = (s.namespace, s.name, s.metadata.uid ?? "") }
        }
        var released = 0, restored = 0
        let now = clock().timeIntervalSince1970
        let (records, _) = store.list(resource: Self.resource, namespace: nil)
        var present = Set<String>()
        for o in records {
            let name = o.key.name
            present.insert(name)
            guard let r = try? JSONDecoder().decode(Record.self, from: o.data) else { continue }
            if let h = holders[name], h.uid == r.uid { continue }
            if now - r.created < repairGrace { continue }
            if let h = holders[name] {
                // Held by another Service than the record says: the Service is the truth.
                logger.warning("allocation record names another service; rewriting", metadata: ["allocation": "\(name)", "service": "\(h.ns)/\(h.name)"])
            }
            _ = try? await store.write(.delete(o.key, expectedRevision: o.revision, finalData: o.data))
            released += 1
        }
        for s in svcs {
            for n in ServiceAllocations.of(s).names where !present.contains(n) || record(n)?.uid != s.metadata.uid {
                if store.get(Self.key(n)) == nil, (try? await claim(n, for: s)) == true { restored += 1 }
            }
        }
        if released + restored > 0 { logger.info("repaired service allocations", metadata: ["released": "\(released)", "restored": "\(restored)"]) }
        return (released, restored)
    }

    /// The watch releaseOnDelete reads, opened before the server runs so no deletion slips by.
    func deletions() -> StoreSubscription? {
        try? store.watch(resource: Resources.services.groupResource, namespace: nil, fromRevision: store.currentRevision)
    }

    /// Releases what each deleted Service held, as the deletions are committed.
    func releaseOnDelete(_ sub: StoreSubscription) async {
        defer { sub.cancel() }
        for await e in sub.events where e.type == .deleted {
            guard let s = try? KubeJSON.decode(Service.self, from: e.object.data) else { continue }
            await release(ServiceAllocations.of(s).names, uid: s.metadata.uid)
        }
    }
}
