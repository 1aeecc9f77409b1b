// The cluster DNS record table (Kubernetes DNS-based service discovery, schema 1.1.0) and the
// pure function answering a decoded query from it; the server decides what to do with `.forward`.

import Foundation

public struct DNSServicePort: Hashable, Sendable {
    public var name: String
    /// "TCP", "UDP" or "SCTP".
    public var proto: String
    public var port: Int
    public init(name: String, proto: String = "TCP", port: Int) {
        self.name = name; self.proto = proto; self.port = port
    }
}

public struct DNSEndpoint: Hashable, Sendable {
    public var ip: String
    public var hostname: String?
    public var ready: Bool
    public init(ip: String, hostname: String? = nil, ready: Bool = true) {
        self.ip = ip; self.hostname = hostname; self.ready = ready
    }
}

public struct DNSService: Hashable, Sendable {
    public var namespace: String
    public var name: String
    /// nil, "" or "None" mean headless.
    public var clusterIP: String?
    /// "ClusterIP", "NodePort", "LoadBalancer" or "ExternalName".
    public var type: String
    public var externalName: String?
    public var ports: [DNSServicePort]
    /// Only consulted for headless services (taken from EndpointSlices).
    public var endpoints: [DNSEndpoint]
    public var publishNotReadyAddresses: Bool

    public init(namespace: String, name: String, clusterIP: String?, type: String = "ClusterIP",
                externalName: String? = nil, ports: [DNSServicePort] = [], endpoints: [DNSEndpoint] = [],
                publishNotReadyAddresses: Bool = false) {
        self.namespace = namespace; self.name = name; self.clusterIP = clusterIP; self.type = type
        self.externalName = externalName; self.ports = ports; self.endpoints = endpoints
        self.publishNotReadyAddresses = publishNotReadyAddresses
    }

    public var isHeadless: Bool {
        guard let ip = clusterIP else { return true }
        return ip.isEmpty || ip == "None"
    }
}

public enum DNSAnswerResult: Hashable, Sendable {
    /// An authoritative answer from the table.
    case response(DNSMessage)
    /// Not ours: the caller should relay it to an upstream resolver.
    case forward
}

/// One SRV answer with the addresses of its target, which go into the additional section.
struct ClusterDNSSRV: Hashable, Sendable {
    var port: UInt16
    var target: DNSName
    var targetAddresses: [[UInt8]]
}

/// Everything owned by one name below the zone. A node with nothing in it is an empty
/// non-terminal: it exists (NODATA) because something exists beneath it.
struct ClusterDNSNode: Sendable {
    var addresses: [[UInt8]] = []
    var cname: DNSName?
    var srv: [ClusterDNSSRV] = []
}

public struct ClusterDNSTable: Sendable {
    public static let schemaVersion = "1.1.0"

    public let domain: String
    public let ttl: UInt32
    public let serviceCount: Int
    let zone: DNSName
    let soa: DNSSOAData
    /// Keyed by the lowercase name relative to the zone, e.g. "web.default.svc".
    let nodes: [String: ClusterDNSNode]
    let reverse: [[UInt8]: [DNSName]]

    public init(domain: String = "cluster.local", services: [DNSService], ttl: UInt32 = 5) {
        let zone = (DNSName(domain) ?? DNSName("cluster.local")!).lowercased()
        self.zone = zone
        self.domain = zone.key
        self.ttl = ttl
        self.serviceCount = services.count
        // Secondaries (we have none) only need the serial to grow between table generations;
        // wall-clock seconds give that without extra state.
        let now = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
        self.soa = DNSSOAData(mname: ClusterDNSTable.join(["ns", "dns"], zone),
                              rname: ClusterDNSTable.join(["hostmaster"], zone),
                              serial: now, refresh: 7200, retry: 1800, expire: 86400, minimum: ttl)
        var b = Builder(zone: zone)
        for svc in services { b.add(svc) }
        self.nodes = b.nodes
        self.reverse = b.reverse
    }

    static func join(_ prefix: [String], _ zone: DNSName) -> DNSName {
        DNSName(labels: prefix.map { Array($0.utf8) } + zone.labels)
    }

    private struct Builder {
        let zone: DNSName
        var nodes: [String: ClusterDNSNode] = [:]
        var reverse: [[UInt8]: [DNSName]] = [:]
        /// (name key, address) pairs already added, so big headless services stay linear.
        var seenAddresses = Set<[UInt8]>()

        init(zone: DNSName) { self.zone = zone }

        func fqdn(_ relative: String) -> DNSName? {
            guard let rel = DNSName(relative) else { return nil }
            let n = DNSName(labels: rel.labels + zone.labels)
            return n.wireLength <= DNSName.maxWireLength ? n : nil
        }

        /// Creates the node and every ancestor up to the zone so those answer NODATA.
        mutating func touch(_ key: String) {
            if nodes[key] == nil { nodes[key] = ClusterDNSNode() }
            var rest = Substring(key)
            while let dot = rest.firstIndex(of: ".") {
                rest = rest[rest.index(after: dot)...]
                let k = String(rest)
                if nodes[k] != nil { break }
                nodes[k] = ClusterDNSNode()
            }
        }

        mutating func addAddress(_ key: String, _ addr: [UInt8]) {
            touch(key)
            if seenAddresses.insert(Array(key.utf8) + [0] + addr).inserted { nodes[key]!.addresses.append(addr) }
        }

        mutating func addPTR(_ addr: [UInt8], _ target: DNSName) {
            var list = reverse[addr, default: []]
            if !list.contains(target) { list.append(target) }
            reverse[addr] = list
        }

        mutating func add(_ svc: DNSService) {
            let ns = svc.namespace.lowercased(), name = svc.name.lowercased()
            guard isLabel(ns), isLabel(name) else { return }
            let base = "\(name).\(ns).svc"
            guard let baseName = fqdn(base) else { return }
            touch("\(ns).svc")

            if svc.type == "ExternalName" {
                guard let ext = svc.externalName, let target = DNSName(ext), !target.labels.isEmpty else { return }
                touch(base)
                nodes[base]!.cname = target
                return
            }

            if !svc.isHeadless {
                guard let ip = svc.clusterIP, let addr = dnsParseIP(ip) else { return }
                addAddress(base, addr)
                addPTR(addr, baseName)
                for port in svc.ports {
                    guard let p = UInt16(exactly: port.port) else { continue }
                    let srv = ClusterDNSSRV(port: p, target: baseName, targetAddresses: [addr])
                    // SRV at the bare service name (all ports) is a CoreDNS convenience.
                    nodes[base]!.srv.append(srv)
                    if let key = srvKey(port, base) {
                        touch(key)
                        nodes[key]!.srv.append(srv)
                    }
                }
                return
            }

            // Headless: the name resolves to the endpoints themselves. With nothing ready the
            // name does not exist at all (the spec asks for NXDOMAIN).
            let published = svc.endpoints.filter { $0.ready || svc.publishNotReadyAddresses }
            for ep in published {
                guard let addr = dnsParseIP(ep.ip) else { continue }
                let host = ep.hostname.map { $0.lowercased() }.flatMap { isLabel($0) ? $0 : nil }
                    ?? dashed(addr)
                let hostKey = "\(host).\(base)"
                guard let hostName = fqdn(hostKey) else { continue }
                addAddress(base, addr)
                addAddress(hostKey, addr)
                addPTR(addr, hostName)
                for port in svc.ports {
                    guard let p = UInt16(exactly: port.port) else { continue }
                    let srv = ClusterDNSSRV(port: p, target: hostName, targetAddresses: [addr])
                    nodes[base]!.srv.append(srv)
                    if let key = srvKey(port, base) {
                        touch(key)
                        nodes[key]!.srv.append(srv)
                    }
                }
            }
        }

        /// Unnamed ports get no SRV name of their own.
        func srvKey(_ port: DNSServicePort, _ base: String) -> String? {
            let pname = port.name.lowercased(), proto = port.proto.lowercased()
            guard !pname.isEmpty, isLabel(pname), isLabel(proto) else { return nil }
            let key = "_\(pname)._\(proto).\(base)"
            return fqdn(key) == nil ? nil : key
        }

        /// The stand-in hostname for an endpoint without one: its address with separators as dashes.
        func dashed(_ addr: [UInt8]) -> String {
            let text = dnsFormatIP(addr) ?? ""
            return String(text.map { $0 == "." || $0 == ":" ? "-" : $0 })
        }
    }

    // MARK: - Answering

    public func answer(_ query: DNSMessage) -> DNSAnswerResult {
        if query.isResponse || query.questions.count != 1 {
            return .response(reply(query, .formErr))
        }
        if query.opcode != 0 { return .response(reply(query, .notImp)) }
        if let e = query.edns, e.version != 0 { return .response(reply(query, .badVers)) }

        let q = query.questions[0]
        let lower = q.name.lowercased()
        if let rel = relative(lower, to: zone) {
            guard q.qclass == dnsClassIN || q.qclass == dnsClassANY else { return .response(reply(query, .refused)) }
            return .response(answerInZone(query, q, rel))
        }
        guard q.qclass == dnsClassIN || q.qclass == dnsClassANY else { return .forward }
        if let addr = reverseAddress(lower), let targets = reverse[addr] {
            var resp = reply(query, .noError, authoritative: true)
            if q.type == .ptr || q.type == .any {
                resp.answers = targets.map { DNSRecord(name: q.name, type: .ptr, ttl: ttl, data: .ptr($0)) }
            } else {
                let apex = DNSName(labels: Array(lower.labels.suffix(2)))
                resp.authorities = [DNSRecord(name: apex, type: .soa, ttl: ttl, data: .soa(soa))]
            }
            return .response(resp)
        }
        return .forward
    }

    private func reply(_ query: DNSMessage, _ rcode: DNSResponseCode, authoritative: Bool = false) -> DNSMessage {
        var r = DNSMessage.reply(to: query, rcode: rcode, authoritative: authoritative)
        if rcode == .formErr && query.questions.count > 1 { r.questions = [] }
        return r
    }

    private func relative(_ name: DNSName, to zone: DNSName) -> ArraySlice<[UInt8]>? {
        let n = name.labels.count, z = zone.labels.count
        guard n >= z, Array(name.labels[(n - z)...]) == zone.labels else { return nil }
        return name.labels[..<(n - z)]
    }

    private func answerInZone(_ query: DNSMessage, _ q: DNSQuestion, _ rel: ArraySlice<[UInt8]>) -> DNSMessage {
        var resp = reply(query, .noError, authoritative: true)
        let soaRecord = DNSRecord(name: zone, type: .soa, ttl: ttl, data: .soa(soa))
        func nodata() -> DNSMessage { resp.authorities = [soaRecord]; return resp }
        func nxdomain() -> DNSMessage { resp.rcode = .nxDomain; resp.authorities = [soaRecord]; return resp }
        func respond(_ records: [DNSRecord], additional: [DNSRecord] = []) -> DNSMessage {
            if records.isEmpty { return nodata() }
            resp.answers = records
            resp.additionals = additional
            return resp
        }
        func want(_ t: DNSRecordType) -> Bool { q.type == t || q.type == .any }

        if q.type == .axfr || q.type == .ixfr { resp.rcode = .refused; return resp }

        if rel.isEmpty {
            var out: [DNSRecord] = []
            if want(.soa) { out.append(DNSRecord(name: q.name, type: .soa, ttl: ttl, data: .soa(soa))) }
            if want(.ns) { out.append(DNSRecord(name: q.name, type: .ns, ttl: ttl, data: .ns(soa.mname))) }
            return respond(out)
        }
        // A label with an embedded dot could alias a different name once joined into a key.
        if rel.contains(where: { $0.isEmpty || $0.contains(UInt8(ascii: ".")) }) { return nxdomain() }
        let labels = rel.map { String(decoding: $0, as: UTF8.self) }

        if labels == ["dns-version"] {
            return respond(want(.txt) ? [DNSRecord(name: q.name, type: .txt, ttl: ttl,
                                                   data: .txt([Array(Self.schemaVersion.utf8)]))] : [])
        }
        if labels.last == "pod" {
            // <a-b-c-d>.<ns>.pod.<zone>: the deprecated, still required, insecure pod records.
            if labels.count < 3 { return nodata() }
            guard labels.count == 3, let addr = podAddress(labels[0]) else { return nxdomain() }
            let type: DNSRecordType = addr.count == 4 ? .a : .aaaa
            return respond(want(type) ? [DNSRecord(name: q.name, type: type, ttl: ttl, data: addressData(addr))] : [])
        }

        guard let node = nodes[labels.joined(separator: ".")] else { return nxdomain() }
        if let target = node.cname {
            // A CNAME owns its name for every type; the client chases the target itself.
            return respond([DNSRecord(name: q.name, type: .cname, ttl: ttl, data: .cname(target))])
        }
        var out: [DNSRecord] = []
        var extra: [DNSRecord] = []
        for addr in node.addresses where want(addr.count == 4 ? .a : .aaaa) {
            out.append(DNSRecord(name: q.name, type: addr.count == 4 ? .a : .aaaa, ttl: ttl, data: addressData(addr)))
        }
        if want(.srv) {
            var seen = Set<DNSName>()
            for s in node.srv {
                out.append(DNSRecord(name: q.name, type: .srv, ttl: ttl,
                                     data: .srv(priority: 0, weight: 100, port: s.port, target: s.target)))
                if seen.insert(s.target).inserted {
                    for addr in s.targetAddresses {
                        extra.append(DNSRecord(name: s.target, type: addr.count == 4 ? .a : .aaaa,
                                               ttl: ttl, data: addressData(addr)))
                    }
                }
            }
        }
        return respond(out, additional: extra)
    }

    private func addressData(_ addr: [UInt8]) -> DNSRData {
        addr.count == 4 ? .a(addr) : .aaaa(addr)
    }

    private func podAddress(_ label: String) -> [UInt8]? {
        if label.filter({ $0 == "-" }).count == 3 {
            return dnsParseIP(String(label.map { $0 == "-" ? "." : $0 }))
        }
        return dnsParseIP(String(label.map { $0 == "-" ? ":" : $0 }))
    }

    /// Decodes `d.c.b.a.in-addr.arpa` / 32-nibble `ip6.arpa` names; anything partial is nil.
    private func reverseAddress(_ name: DNSName) -> [UInt8]? {
        let l = name.labels
        if l.count == 6, l[4] == Array("in-addr".utf8), l[5] == Array("arpa".utf8) {
            return dnsParseIP(l[0..<4].reversed().map { String(decoding: $0, as: UTF8.self) }.joined(separator: "."))
        }
        if l.count == 34, l[32] == Array("ip6".utf8), l[33] == Array("arpa".utf8) {
            var nibbles: [UInt8] = []
            for label in l[0..<32].reversed() {
                guard label.count == 1, let v = UInt8(String(decoding: label, as: UTF8.self), radix: 16) else { return nil }
                nibbles.append(v)
            }
            return (0..<16).map { nibbles[2 * $0] << 4 | nibbles[2 * $0 + 1] }
        }
        return nil
    }
}

/// RFC 1123 label: lowercase letters, digits and inner hyphens, at most 63 bytes.
private func isLabel(_ s: String) -> Bool {
    let b = Array(s.utf8)
    guard !b.isEmpty, b.count <= DNSName.maxLabelLength, b.first != UInt8(ascii: "-"), b.last != UInt8(ascii: "-") else {
        return false
    }
    return b.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
}
