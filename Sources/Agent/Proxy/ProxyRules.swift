// The per-node Service proxy's nftables ruleset (kube-proxy nftables-mode design), as pure code:
// services in, one atomic `nft -f` script out, plus the conntrack clean-up an update needs.
import Foundation
import API

public struct ProxyEndpoint: Hashable, Sendable {
    public var ip: String
    public var port: Int
    public var ready: Bool
    public var serving: Bool
    public var terminating: Bool

    public init(ip: String, port: Int, ready: Bool = true, serving: Bool = true, terminating: Bool = false) {
        self.ip = ip; self.port = port; self.ready = ready; self.serving = serving; self.terminating = terminating
    }
}

public struct ProxyServicePort: Hashable, Sendable {
    public var name: String
    /// TCP, UDP or SCTP (any case); other protocols get no rules.
    public var proto: String
    public var port: Int
    public var nodePort: Int?
    public var endpoints: [ProxyEndpoint]

    public init(name: String = "", proto: String = "TCP", port: Int, nodePort: Int? = nil, endpoints: [ProxyEndpoint] = []) {
        self.name = name; self.proto = proto; self.port = port; self.nodePort = nodePort; self.endpoints = endpoints
    }
}

public struct ProxyService: Hashable, Sendable {
    public var namespace: String
    public var name: String
    /// nil, "" or "None": headless, so no rules at all.
    public var clusterIP: String?
    public var externalIPs: [String]
    /// Seconds; non-nil (and positive) means sessionAffinity ClientIP.
    public var affinityTimeout: Int?
    public var ports: [ProxyServicePort]

    public init(namespace: String, name: String, clusterIP: String?, externalIPs: [String] = [],
                affinityTimeout: Int? = nil, ports: [ProxyServicePort]) {
        self.namespace = namespace; self.name = name; self.clusterIP = clusterIP
        self.externalIPs = externalIPs; self.affinityTimeout = affinityTimeout; self.ports = ports
    }
}

public struct ProxyConfig: Sendable {
    public var table: String = "orchestrator"
    /// Pod CIDR: traffic to a ClusterIP from outside it is masqueraded ("" = masquerade all).
    public var clusterCIDR: String
    /// Destinations never DNATed nor rejected (the node-local DNS address).
    public var exemptIPs: [String] = []

    public init(table: String = "orchestrator", clusterCIDR: String, exemptIPs: [String] = []) {
        self.table = table; self.clusterCIDR = clusterCIDR; self.exemptIPs = exemptIPs
    }
}

public struct ProxyTableState: Hashable, Sendable {
    public var chains: Set<String>
    public var sets: Set<String>
    public var maps: Set<String>
    public var counters: Set<String>

    public init(chains: Set<String> = [], sets: Set<String> = [], maps: Set<String> = [], counters: Set<String> = []) {
        self.chains = chains; self.sets = sets; self.maps = maps; self.counters = counters
    }
    public static let empty = ProxyTableState()
}

public enum ProxyRules {
    static let masqBit = "0x4000"
    static let baseChains: [(name: String, spec: String)] = [
        ("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
        // -100 rather than dstnat: the same number, but nft 1.0.6 names it only for prerouting.
        ("nat-output", "type nat hook output priority -100; policy accept;"),
        ("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
        // -110: before nat output (-100), so locally sent packets still carry the ClusterIP.
        ("filter-forward", "type filter hook forward priority -110; policy accept;"),
        ("filter-input", "type filter hook input priority -110; policy accept;"),
        ("filter-output", "type filter hook output priority -110; policy accept;"),
    ]
    static let fixedChains = ["services", "service-endpoints-check", "reject-chain", "mark-for-masquerade", "masquerading"]
    static let maps: [(name: String, type: String)] = [
        ("service-ips", "ipv4_addr . inet_proto . inet_service : verdict"),
        ("service-nodeports", "inet_proto . inet_service : verdict"),
        ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict"),
        ("no-endpoint-nodeports", "inet_proto . inet_service : verdict"),
    ]
    // nft's `fib daddr type local` also matches 127/8, where a NodePort must not answer.
    static let localDest = "fib daddr type local ip daddr != 127.0.0.0/8"

    /// Chains, sets and maps the ruleset wants, and the nft -f script that moves any current table
    /// state to exactly that, in ONE transaction.
    public static func render(_ services: [ProxyService], config: ProxyConfig, existing: ProxyTableState) -> String {
        let t = "ip \(config.table)"
        let plans = plan(services)
        let cidr = canonicalCIDR(config.clusterCIDR)
        let exempt = unique(config.exemptIPs.compactMap(canonicalIPv4))

        var chains = baseChains.map(\.name) + fixedChains
        var sets: [(name: String, timeout: Int)] = []
        var counters: [String] = []
        var rules: [String] = []
        func rule(_ chain: String, _ text: String) { rules.append("add rule \(t) \(chain) \(text)") }
        // A key claimed twice (two Services on one externalIP:port) would make nft refuse the whole
        // transaction, so the first in sort order wins.
        var elements: [String: [String]] = [:]
        var seenKeys: [String: Set<String>] = [:]
        func element(_ map: String, _ key: String, _ verdict: String) {
            guard seenKeys[map, default: []].insert(key).inserted else { return }
            elements[map, default: []].append("add element \(t) \(map) { \(key) : \(verdict) }")
        }

        rule("nat-prerouting", "jump services")
        rule("nat-output", "jump services")
        rule("nat-postrouting", "jump masquerading")
        for chain in ["filter-forward", "filter-input", "filter-output"] {
            for ip in exempt { rule(chain, "ip daddr \(ip) return") }
            rule(chain, "ct state new jump service-endpoints-check")
        }
        for ip in exempt { rule("services", "ip daddr \(ip) return") }
        rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
        rule("services", "\(localDest) meta l4proto . th dport vmap @service-nodeports")
        rule("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
        rule("service-endpoints-check", "\(localDest) meta l4proto . th dport vmap @no-endpoint-nodeports")
        rule("reject-chain", "meta l4proto tcp reject with tcp reset")
        rule("reject-chain", "reject with icmp type port-unreachable")
        rule("mark-for-masquerade", "meta mark set meta mark | \(masqBit)")
        rule("masquerading", "meta mark & \(masqBit) == 0 return")
        // Cleared so a packet re-entering the stack (bridge, hairpin) is not masqueraded twice.
        rule("masquerading", "meta mark set meta mark ^ \(masqBit)")
        rule("masquerading", "masquerade fully-random")

        for p in plans {
            let u = unit(p, t: t, cidr: cidr)
            chains += u.chains
            sets += u.sets
            counters += u.counters
            rules += u.rules
            for e in u.elements { element(e.map, e.key, e.verdict) }
        }

        let wantedChains = Set(chains), wantedSets = Set(sets.map(\.name)), wantedMaps = Set(maps.map(\.name))
        let staleChains = existing.chains.subtracting(wantedChains).sorted()
        let staleMaps = existing.maps.subtracting(wantedMaps).sorted()
        let staleSets = existing.sets.subtracting(wantedSets).sorted()
        counters = unique(counters)
        let staleCounters = existing.counters.subtracting(counters).sorted()

        var out = ["add table \(t)"]
        for (name, spec) in baseChains { out.append("add chain \(t) \(name) { \(spec) }") }
        for name in chains.dropFirst(baseChains.count) { out.append("add chain \(t) \(name)") }
        for (name, type) in maps { out.append("add map \(t) \(name) { type \(type); }") }
        // `add` keeps an existing set's members: affinity must outlive a sync.
        for (name, timeout) in sets {
            out.append("add set \(t) \(name) { type ipv4_addr; flags dynamic,timeout; timeout \(timeout)s; }")
        }
        // `add` keeps an existing counter's value: the rate readers take differences of it.
        for name in counters { out.append("add counter \(t) \(name)") }
        // Everything that may reference a stale object is emptied before the deletes.
        for (name, _) in maps { out.append("flush map \(t) \(name)") }
        for name in chains + staleChains { out.append("flush chain \(t) \(name)") }
        for name in staleMaps { out.append("flush map \(t) \(name)") }
        for name in staleChains { out.append("delete chain \(t) \(name)") }
        for name in staleMaps { out.append("delete map \(t) \(name)") }
        for name in staleSets { out.append("delete set \(t) \(name)") }
        for name in staleCounters { out.append("delete counter \(t) \(name)") }
        out += rules
        for (name, _) in maps { out += elements[name] ?? [] }
        return out.joined(separator: "\n") + "\n"
    }

    /// What one Service port puts in the table: its chains, affinity sets, rules and map elements.
    struct Unit: Equatable, Sendable {
        var chains: [String] = []
        var sets: [(name: String, timeout: Int)] = []
        /// The endpoints' connection counters (shared by every Service port an address serves).
        var counters: [String] = []
        var rules: [String] = []
        var elements: [(map: String, key: String, verdict: String)] = []
        static func == (a: Unit, b: Unit) -> Bool {
            a.chains == b.chains && a.rules == b.rules && a.sets.map { "\($0.name)/\($0.timeout)" } == b.sets.map { "\($0.name)/\($0.timeout)" }
                && a.elements.map { "\($0.map)|\($0.key)|\($0.verdict)" } == b.elements.map { "\($0.map)|\($0.key)|\($0.verdict)" }
        }
    }

    static func unit(_ p: PortPlan, t: String, cidr: String?) -> Unit {
        var u = Unit()
        func rule(_ chain: String, _ text: String) { u.rules.append("add rule \(t) \(chain) \(text)") }
        func element(_ map: String, _ key: String, _ verdict: String) { u.elements.append((map, key, verdict)) }
        let dests = [p.clusterIP] + p.externalIPs
        if p.endpoints.isEmpty {
            for ip in dests { element("no-endpoint-services", "\(ip) . \(p.proto) . \(p.port)", "goto reject-chain") }
            if let np = p.nodePort { element("no-endpoint-nodeports", "\(p.proto) . \(np)", "goto reject-chain") }
            return u
        }
        u.chains.append(p.serviceChain)
        if let ext = p.externalChain { u.chains.append(ext) }
        if let cidr {
            rule(p.serviceChain, "ip daddr \(p.clusterIP) ip saddr != \(cidr) jump mark-for-masquerade")
        } else {
            rule(p.serviceChain, "ip daddr \(p.clusterIP) jump mark-for-masquerade")
        }
        if p.affinityTimeout != nil {
            for ep in p.endpoints { rule(p.serviceChain, "ip saddr @\(ep.affinitySet) goto \(ep.chain)") }
        }
        let arms = p.endpoints.enumerated().map { "\($0.offset) : goto \($0.element.chain)" }.joined(separator: ", ")
        rule(p.serviceChain, "numgen random mod \(p.endpoints.count) vmap { \(arms) }")
        if let ext = p.externalChain {
            // External clients' replies must come back through this node, whichever endpoint serves.
            rule(ext, "jump mark-for-masquerade")
            rule(ext, "goto \(p.serviceChain)")
        }
        for ep in p.endpoints {
            u.chains.append(ep.chain)
            // Hairpin: a pod reaching itself through the Service would otherwise see its own
            // address as the source and answer directly, bypassing the reverse NAT.
            rule(ep.chain, "ip saddr \(ep.ip) jump mark-for-masquerade")
            if let timeout = p.affinityTimeout {
                u.sets.append((ep.affinitySet, timeout))
                rule(ep.chain, "update @\(ep.affinitySet) { ip saddr }")
            }
            // A nat chain sees only a connection's first packet: the counter counts connections.
            let counter = counterName(ep.ip)
            if !u.counters.contains(counter) { u.counters.append(counter) }
            rule(ep.chain, "meta l4proto \(p.proto) counter name \"\(counter)\" dnat to \(ep.ip):\(ep.port)")
        }
        element("service-ips", "\(p.clusterIP) . \(p.proto) . \(p.port)", "goto \(p.serviceChain)")
        if let ext = p.externalChain {
            for ip in p.externalIPs { element("service-ips", "\(ip) . \(p.proto) . \(p.port)", "goto \(ext)") }
            if let np = p.nodePort { element("service-nodeports", "\(p.proto) . \(np)", "goto \(ext)") }
        }
        return u
    }

    static func units(_ services: [ProxyService], config: ProxyConfig) -> (byID: [String: Unit], order: [String], keysUnique: Bool) {
        let t = "ip \(config.table)", cidr = canonicalCIDR(config.clusterCIDR)
        var byID: [String: Unit] = [:], order: [String] = []
        var keys = Set<String>(), unique = true
        for p in plan(services) {
            let id = p.serviceChain
            let u = unit(p, t: t, cidr: cidr)
            for e in u.elements where !keys.insert("\(e.map)|\(e.key)").inserted { unique = false }
            byID[id] = u; order.append(id)
        }
        return (byID, order, unique)
    }

    /// The script that moves a table rendered for `old` to `new`, touching only the Service
    /// ports that changed (a full render rewrites every chain, which costs seconds at thousands
    /// of Services). Nil when only a full render is safe: a map key claimed twice.
    public static func renderPartial(old: [ProxyService], new: [ProxyService], config: ProxyConfig) -> String? {
        renderPartial(old: units(old, config: config), new: units(new, config: config), config: config)
    }

    typealias Units = (byID: [String: Unit], order: [String], keysUnique: Bool)

    static func renderPartial(old a: Units, new b: Units, config: ProxyConfig) -> String? {
        let t = "ip \(config.table)"
        guard a.keysUnique, b.keysUnique else { return nil }
        var deletes: [String] = [], flushes: [String] = [], chainDeletes: [String] = [], setDeletes: [String] = []
        var adds: [String] = [], rules: [String] = [], elements: [String] = []
        let gone = Set(a.order).subtracting(b.order)
        var changed: [String] = []
        for id in b.order where a.byID[id] != b.byID[id] { changed.append(id) }
        for id in a.order where gone.contains(id) || changed.contains(id) {
            let u = a.byID[id]!
            for e in u.elements { deletes.append("delete element \(t) \(e.map) { \(e.key) }") }
            let keep = Set(b.byID[id]?.chains ?? [])
            for c in u.chains { flushes.append("flush chain \(t) \(c)"); if !keep.contains(c) { chainDeletes.append("delete chain \(t) \(c)") } }
            let keepSets = Set((b.byID[id]?.sets ?? []).map(\.name))
            for st in u.sets where !keepSets.contains(st.name) { setDeletes.append("delete set \(t) \(st.name)") }
        }
        for id in changed {
            let u = b.byID[id]!
            let had = Set(a.byID[id]?.chains ?? [])
            for c in u.chains where !had.contains(c) { adds.append("add chain \(t) \(c)") }
            for st in u.sets { adds.append("add set \(t) \(st.name) { type ipv4_addr; flags dynamic,timeout; timeout \(st.timeout)s; }") }
            for c in u.counters { adds.append("add counter \(t) \(c)") }
            rules += u.rules
            for e in u.elements { elements.append("add element \(t) \(e.map) { \(e.key) : \(e.verdict) }") }
        }
        // A counter no port uses any more: every rule naming it was in a flushed chain above.
        var counterDeletes: [String] = []
        if !changed.isEmpty || !gone.isEmpty {
            let before = Set(a.byID.values.flatMap(\.counters)), after = Set(b.byID.values.flatMap(\.counters))
            counterDeletes = before.subtracting(after).sorted().map { "delete counter \(t) \($0)" }
        }
        let out = deletes + flushes + chainDeletes + setDeletes + counterDeletes + adds + rules + elements
        return out.isEmpty ? "" : out.joined(separator: "\n") + "\n"
    }

    /// Names of the chains, sets and maps in `nft [-t] list table ip NAME` output.
    public static func parseState(_ nftListTableOutput: String) -> ProxyTableState {
        var state = ProxyTableState()
        var depth = 0
        for raw in nftListTableOutput.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = trim(Substring(raw))
            if depth == 1, line.hasSuffix("{") {
                let words = line.dropLast().split(separator: " ", maxSplits: 1)
                if words.count == 2 {
                    let name = String(trim(words[1])).replacingQuotes()
                    switch words[0] {
                    case "chain": state.chains.insert(name)
                    case "set": state.sets.insert(name)
                    case "map": state.maps.insert(name)
                    case "counter": state.counters.insert(name)
                    default: break
                    }
                }
            }
            // Element lists may span lines but their braces balance, so depth stays right.
            for c in line { if c == "{" { depth += 1 } else if c == "}" { depth -= 1 } }
        }
        return state
    }

    /// conntrack deletions needed after an update, as argument arrays for the `conntrack` binary.
    /// Only UDP needs them: an entry made before the change keeps its old NAT (or none) for as
    /// long as the client keeps sending, so it would never reach the new rules.
    public static func staleConntrack(old: [ProxyService], new: [ProxyService]) -> [[String]] {
        let before = udpUsage(old), after = udpUsage(new)
        var out: [[String]] = []
        for key in before.keys.sorted() {
            let o = before[key]!
            let still = after[key]?.ips ?? []
            for ip in o.ips.subtracting(still).sorted(by: ipLess) {
                for dest in o.dests { out.append(["-D", "-p", "udp", "--orig-dst", dest, "--orig-port-dst", String(o.port), "--dst-nat", ip]) }
                if let np = o.nodePort { out.append(["-D", "-p", "udp", "--orig-port-dst", String(np), "--dst-nat", ip]) }
            }
        }
        // Packets sent while a port had no endpoints left un-NATed entries that would swallow the
        // client's later packets.
        for key in after.keys.sorted() {
            let n = after[key]!
            guard !n.ips.isEmpty, before[key]?.ips.isEmpty ?? true else { continue }
            for dest in n.dests { out.append(["-D", "-p", "udp", "--orig-dst", dest, "--orig-port-dst", String(n.port)]) }
            if let np = n.nodePort { out.append(["-D", "-p", "udp", "--orig-port-dst", String(np)]) }
        }
        return unique(out)
    }

    // MARK: - Planning

    struct EndpointPlan { var ip: String; var port: Int; var chain: String; var affinitySet: String }
    struct PortPlan {
        var proto: String
        var port: Int
        var nodePort: Int?
        var clusterIP: String
        var externalIPs: [String]
        var affinityTimeout: Int?
        var serviceChain: String
        var externalChain: String?
        var endpoints: [EndpointPlan]
    }

    /// Service ports that get rules, sorted by namespace/name/port; anything nft would reject
    /// (IPv6, bad ports, unknown protocols) is dropped here rather than failing the whole table.
    static func plan(_ services: [ProxyService]) -> [PortPlan] {
        let sorted = services.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) }
        var out: [PortPlan] = []
        var seen = Set<String>()
        for svc in sorted {
            guard let cip = svc.clusterIP.flatMap(canonicalIPv4) else { continue }
            let extIPs = unique(svc.externalIPs.compactMap(canonicalIPv4).sorted(by: ipLess))
            let timeout = svc.affinityTimeout.flatMap { $0 > 0 ? $0 : nil }
            let ports = svc.ports.sorted { ($0.port, $0.proto.lowercased(), $0.name) < ($1.port, $1.proto.lowercased(), $1.name) }
            for sp in ports {
                let proto = sp.proto.lowercased()
                guard ["tcp", "udp", "sctp"].contains(proto), validPort(sp.port) else { continue }
                let id = "\(svc.namespace)/\(svc.name)/\(proto)/\(sp.port)"
                guard seen.insert(id).inserted else { continue }
                let nodePort = sp.nodePort.flatMap { validPort($0) ? $0 : nil }
                let eps = usableEndpoints(sp.endpoints).map { ep -> EndpointPlan in
                    let epID = "\(id)__\(ep.ip)/\(ep.port)"
                    return EndpointPlan(ip: ep.ip, port: ep.port,
                                        chain: objectName("endpoint", epID),
                                        affinitySet: objectName("affinity", epID, salt: "\(timeout ?? 0)"))
                }
                out.append(PortPlan(proto: proto, port: sp.port, nodePort: nodePort, clusterIP: cip,
                                    externalIPs: extIPs, affinityTimeout: timeout,
                                    serviceChain: objectName("service", id),
                                    externalChain: (nodePort != nil || !extIPs.isEmpty) ? objectName("external", id) : nil,
                                    endpoints: eps))
            }
        }
        return out
    }

    /// Ready endpoints; failing those, serving ones that are terminating (so a rollout's last
    /// pods still drain traffic); deduplicated and sorted.
    static func usableEndpoints(_ endpoints: [ProxyEndpoint]) -> [ProxyEndpoint] {
        let valid = endpoints.compactMap { ep -> ProxyEndpoint? in
            guard let ip = canonicalIPv4(ep.ip), validPort(ep.port) else { return nil }
            var e = ep; e.ip = ip; return e
        }
        var chosen = valid.filter(\.ready)
        if chosen.isEmpty { chosen = valid.filter { $0.serving && $0.terminating } }
        var seen = Set<String>()
        return chosen
            .sorted { ipLess($0.ip, $1.ip) || ($0.ip == $1.ip && $0.port < $1.port) }
            .filter { seen.insert("\($0.ip):\($0.port)").inserted }
    }

    struct UDPUsage { var dests: [String]; var port: Int; var nodePort: Int?; var ips: Set<String> }

    static func udpUsage(_ services: [ProxyService]) -> [String: UDPUsage] {
        var out: [String: UDPUsage] = [:]
        for svc in services {
            guard let cip = svc.clusterIP.flatMap(canonicalIPv4) else { continue }
            let dests = [cip] + unique(svc.externalIPs.compactMap(canonicalIPv4).sorted(by: ipLess))
            for sp in svc.ports where sp.proto.lowercased() == "udp" && validPort(sp.port) {
                let key = "\(svc.namespace)/\(svc.name)/udp/\(sp.port)"
                out[key] = UDPUsage(dests: dests, port: sp.port,
                                    nodePort: sp.nodePort.flatMap { validPort($0) ? $0 : nil },
                                    ips: Set(usableEndpoints(sp.endpoints).map(\.ip)))
            }
        }
        return out
    }

    // MARK: - Names and addresses

    /// The named counter of connections DNATed to an endpoint address.
    public static let counterPrefix = "ep-"
    static func counterName(_ ip: String) -> String { counterPrefix + ip }

    /// Packets per endpoint address from `nft -j list counters table ip NAME`: for a counter in
    /// a nat chain, the connections sent there. Counters of other names are ignored.
    public static func parseCounters(_ json: String) throws -> [String: UInt64] {
        // A scan of each counter object for its name and packets rather than a whole JSON tree
        // (agents read this often; `bench proxy` times it). The objects are flat, so the next
        // "}" ends one.
        var bytes = Array(json.utf8)
        bytes.append(0)
        guard json.contains("\"nftables\"") else { throw ProxyApplyError("nft -j list counters: no \"nftables\" array") }
        let counterKey = Array("\"counter\"".utf8), nameKey = Array("\"name\"".utf8), packetsKey = Array("\"packets\"".utf8)
        let quote = UInt8(ascii: "\""), close = UInt8(ascii: "}")
        func find(_ key: [UInt8], from: Int, before end: Int) -> Int? {
            var k = from
            while k + key.count <= end {
                if bytes[k] == key[0] {
                    var m = 1
                    while m < key.count && bytes[k + m] == key[m] { m += 1 }
                    if m == key.count { return k + key.count }
                }
                k += 1
            }
            return nil
        }
        /// After a key: spaces, a colon, spaces.
        func value(at k: Int) -> Int? {
            var k = k
            while bytes[k] == UInt8(ascii: " ") { k += 1 }
            guard bytes[k] == UInt8(ascii: ":") else { return nil }
            k += 1
            while bytes[k] == UInt8(ascii: " ") { k += 1 }
            return k
        }
        var out: [String: UInt64] = [:]
        let n = bytes.count - 1
        var pos = 0
        while let c = find(counterKey, from: pos, before: n) {
            var end = c
            while end < n && bytes[end] != close { end += 1 }
            pos = end
            guard let nk = find(nameKey, from: c, before: end), let v = value(at: nk), bytes[v] == quote else { continue }
            var e = v + 1
            while e < end && bytes[e] != quote { e += 1 }
            let name = String(decoding: bytes[(v + 1)..<e], as: UTF8.self)
            guard name.hasPrefix(counterPrefix), let ip = IPv4(String(name.dropFirst(counterPrefix.count)))?.description,
                  let pk = find(packetsKey, from: c, before: end), var d = value(at: pk) else { continue }
            var packets: UInt64 = 0, digits = 0
            while d < end, bytes[d] >= UInt8(ascii: "0"), bytes[d] <= UInt8(ascii: "9"), digits < 19 {
                packets = packets * 10 + UInt64(bytes[d] - UInt8(ascii: "0")); d += 1; digits += 1
            }
            if digits > 0 { out[ip] = packets }
        }
        return out
    }

    /// `kind-HASH-readable`: the hash (over the unsanitised id) keeps names unique when the
    /// readable part is sanitised or shortened; nft allows at most 256 bytes.
    static func objectName(_ kind: String, _ id: String, salt: String = "") -> String {
        var readable = String(id.map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || "/_.-".contains(c)) ? c : "_"
        })
        if readable.utf8.count > 200 { readable = String(readable.prefix(200)) }
        return "\(kind)-\(shortHash(id + "|" + salt))-\(readable)"
    }

    /// 8 base32 characters of FNV-1a 64: stable across processes, unlike Swift's Hasher.
    static func shortHash(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h ^= UInt64(b); h = h &* 0x100_0000_01b3 }
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var out = ""
        for i in 0..<8 { out.append(alphabet[Int((h >> UInt64(59 - 5 * i)) & 31)]) }
        return out
    }

    // Addresses through the API module's IPv4 (which refuses leading zeros, as nft should never see them).
    static func canonicalIPv4(_ s: String) -> String? { IPv4(s)?.description }

    static func canonicalCIDR(_ s: String) -> String? {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let ip = IPv4(String(parts[0])), let bits = Int(parts[1]), (0...32).contains(bits) else { return nil }
        return "\(ip)/\(bits)"
    }

    static func ipLess(_ a: String, _ b: String) -> Bool {
        if let x = IPv4(a), let y = IPv4(b) { return x < y }
        return a < b
    }

    static func validPort(_ p: Int) -> Bool { (1...65535).contains(p) }

    static func unique<T: Hashable>(_ xs: [T]) -> [T] {
        var seen = Set<T>()
        return xs.filter { seen.insert($0).inserted }
    }

    static func trim(_ s: Substring) -> Substring {
        var s = s
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}

private extension String {
    func replacingQuotes() -> String { String(filter { $0 != "\"" }) }
}
