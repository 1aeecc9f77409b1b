// `ctl cluster`: reads and checks cluster.yaml (the description hack/up, hack/down, hack/deploy
// and the test suites work from) and prints it in a form shell scripts read line by line. A
// bad file is refused with file:line and the field at fault, before anything is created.
import ArgumentParser
import Foundation
import API
import Client
import PKI

struct ClusterCmd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Check and print a cluster description (cluster.yaml).",
                                                    subcommands: [ClusterRender.self, ClusterCheck.self, ClusterEtcdCerts.self])
}

struct ClusterEtcdCerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "etcd-certs",
        abstract: "Make etcd's CA and its server, peer and apiserver client certificates in DIR (kept if there; new addresses get new server certificates).")
    @Option(name: .customLong("dir"), help: "Where the certificates go (hack/up: DATA_DIR/pki/etcd).") var dir: String
    @Option(name: .customLong("address"), help: "An address or name the etcd members are reached at (repeatable).") var addresses: [String] = []
    func run() async throws {
        do { try EtcdPKI.ensure(dir: dir, addresses: addresses) } catch { fail("\(dir): \(error)") }
    }
}

struct ClusterCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate cluster.yaml; prints the error with its line, or nothing.")
    @Option(name: [.short, .customLong("file")]) var file: String = "cluster.yaml"
    func run() async throws {
        do { _ = try ClusterSpec.load(file) } catch { fail("\(error)") }
    }
}

struct ClusterRender: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "render", abstract: "Print cluster.yaml as KEY=VALUE and NODE lines for scripts.",
        discussion: """
        Lines: CLUSTER_NAME, API_ADDRESS, API_PORT, BRIDGE, BRIDGE_CIDR, REGISTRY, NODE_GRACE, EVICTION_DELAY,
        LEASE_INTERVAL, HPA_SYNC, EVENT_TTL (seconds), LEADER_ELECTION (lease,renew,retry as 15s,10s,2s, or -), CP_SSH (user@host:port or -), REGISTRIES_FILE, STORE (sqlite or etcd), then one line per
        control-plane host (controlPlane.hosts): CP_HOST <name> <address> <ssh user@host:port|->, one per local VM
        (controlPlane.hosts[].vm, then nodes[].vm): VM <name> <memory MiB> <cpus> <address>, then one line per node:
        NODE <name> <address> <podCIDR> <labels k=v,...|-> <taints k=v:Effect,...|-> <ssh user@host:port|->
        """)
    @Option(name: [.short, .customLong("file")]) var file: String = "cluster.yaml"
    func run() async throws {
        let c: ClusterSpec
        do { c = try ClusterSpec.load(file) } catch { fail("\(error)") }
        print(c.render())
    }
}

/// cluster.yaml, after defaults.
struct ClusterSpec {
    /// A control-plane host of an HA control plane: an etcd member, an apiserver, a scheduler
    /// and a controller-manager (a network namespace locally, a machine with hack/deploy).
    struct Host { var name: String; var address: String; var ssh: String?
        /// A local qemu VM (hack/vm): memory in MiB and vCPUs.
        var vm: (memory: Int, cpus: Int)? = nil }
    struct Node { var name: String; var address: String; var podCIDR: String; var labels: [String: String]; var taints: [String]; var ssh: String?
        /// A local qemu VM (hack/vm): memory in MiB and vCPUs.
        var vm: (memory: Int, cpus: Int)? = nil }
    var name = "local"
    var apiAddress = "198.18.0.1"
    var apiPort = 6443
    var bridge = "orchbr0"
    var bridgeCIDR = "198.18.0.0/24"
    var clusterCIDR = "198.19.0.0/16"
    var serviceCIDR = "198.18.128.0/20"
    var clusterDomain = "cluster.local"
    var registry = "198.18.0.1:5000"
    /// A registries file (k3s format) for every agent, relative to the cluster file.
    var registriesFile: String?
    var nodeGrace = 3.0
    var evictionDelay = 1.0
    var leaseInterval = 1.0
    var hpaSync = 1.0
    /// How long the apiserver keeps an Event (controlPlane.eventTTL; --event-ttl), Kubernetes' 1 h.
    var eventTTL = 3600.0
    /// The scheduler's and controller-manager's leader election (controlPlane.leaderElection):
    /// lease duration, renew deadline and retry period in seconds; nil keeps their defaults.
    var leaderElection: (lease: Double, renew: Double, retry: Double)?
    var controlPlaneSSH: String?
    /// Where the apiserver keeps objects: "sqlite" (DATA_DIR/state.db) or "etcd" (a member beside it).
    var store = "sqlite"
    var nodes: [Node] = []
    var hosts: [Host] = []

    struct Problem: Error, CustomStringConvertible { var description: String }

    static func load(_ path: String) throws -> ClusterSpec {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Problem(description: "\(path): cannot read the file") }
        let docs = try Manifests.parse(text, file: path)
        guard docs.count == 1, let doc = docs.first else { throw Problem(description: "\(path): expected exactly one YAML document, found \(docs.count)") }
        return try parse(doc)
    }

    static func parse(_ doc: ManifestDocument) throws -> ClusterSpec {
        func err(_ field: String, _ msg: String) -> Problem { Problem(description: "\(doc.location(of: field)): field \(field): \(msg)") }
        func object(_ v: JSONValue?, _ field: String, allowed: Set<String>) throws -> [String: JSONValue] {
            guard let v else { return [:] }
            guard case .object(let o) = v else { throw err(field, "must be a mapping") }
            for k in o.keys where !allowed.contains(k) {
                let path = field.isEmpty ? k : "\(field).\(k)"
                throw err(path, "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            return o
        }
        func string(_ v: JSONValue?, _ field: String) throws -> String? {
            guard let v, !v.isNull else { return nil }
            guard let s = v.stringValue, !s.isEmpty else { throw err(field, "must be a non-empty string") }
            return s
        }
        func seconds(_ v: JSONValue?, _ field: String) throws -> Double? {
            guard let v, !v.isNull else { return nil }
            let d: Double?
            switch v {
            case .int(let i): d = Double(i)
            case .double(let x): d = x
            case .string(let s): d = s.hasSuffix("ms") ? Double(s.dropLast(2)).map { $0 / 1000 } : Double(s.hasSuffix("s") ? String(s.dropLast()) : s)
            default: d = nil
            }
            guard let d, d > 0 else { throw err(field, "must be a positive duration in seconds (e.g. 3 or \"500ms\")") }
            return d
        }
        func sshSpec(_ v: JSONValue, _ f: String) throws -> String {
            let so = try object(v, f, allowed: ["host", "user", "port"])
            guard let host = try string(so["host"], "\(f).host") else { throw err("\(f).host", "is required") }
            guard !host.contains(" "), !host.contains("@") else { throw err("\(f).host", "must be a host name or address") }
            let port = so["port"]?.intValue ?? 22
            guard (1...65535).contains(port) else { throw err("\(f).port", "must be a port number") }
            let user = try string(so["user"], "\(f).user") ?? "root"
            return "\(user)@\(host):\(port)"
        }
        var c = ClusterSpec()
        let top = try object(doc.object, "", allowed: ["apiVersion", "kind", "metadata", "controlPlane", "network", "registry", "nodes"])
        if let kind = top["kind"]?.stringValue, kind != "Cluster" { throw err("kind", "must be Cluster") }
        if let md = try object(top["metadata"], "metadata", allowed: ["name"])["name"] { c.name = try string(md, "metadata.name") ?? c.name }
        let cp = try object(top["controlPlane"], "controlPlane", allowed: ["address", "port", "nodeGracePeriod", "evictionDelay", "leaseInterval", "hpaSyncPeriod", "eventTTL", "leaderElection", "ssh", "store", "hosts"])
        if let st = try string(cp["store"], "controlPlane.store") {
            guard ["sqlite", "etcd"].contains(st) else { throw err("controlPlane.store", "\"\(st)\" must be sqlite (the default) or etcd") }
            c.store = st
        }
        if let s = cp["ssh"], !s.isNull { c.controlPlaneSSH = try sshSpec(s, "controlPlane.ssh") }
        if let a = try string(cp["address"], "controlPlane.address") {
            guard isIPv4(a), inCIDR(a, "198.18.0.0/15") else { throw err("controlPlane.address", "\"\(a)\" must be an IPv4 address in 198.18.0.0/15") }
            c.apiAddress = a
        }
        if let p = cp["port"] { guard let i = p.intValue, (1...65535).contains(i) else { throw err("controlPlane.port", "must be a port number") }; c.apiPort = Int(i) }
        c.nodeGrace = try seconds(cp["nodeGracePeriod"], "controlPlane.nodeGracePeriod") ?? c.nodeGrace
        c.evictionDelay = try seconds(cp["evictionDelay"], "controlPlane.evictionDelay") ?? c.evictionDelay
        c.leaseInterval = try seconds(cp["leaseInterval"], "controlPlane.leaseInterval") ?? c.leaseInterval
        c.hpaSync = try seconds(cp["hpaSyncPeriod"], "controlPlane.hpaSyncPeriod") ?? c.hpaSync
        if let t = cp["eventTTL"], !t.isNull {
            // A Go duration as the flag takes it (1h, 10m, 90s), or a number of seconds.
            let d: Double? = t.stringValue.flatMap { parseGoDuration($0) } ?? t.intValue.map(Double.init)
            guard let d, d >= 1 else { throw err("controlPlane.eventTTL", "must be a duration of at least 1s, such as 1h, 10m or 90s") }
            c.eventTTL = d
        }
        if let le = cp["leaderElection"], !le.isNull {
            let f = "controlPlane.leaderElection"
            let o = try object(le, f, allowed: ["leaseDuration", "renewDeadline", "retryPeriod"])
            let d = LeaderElectionConfig(name: "", identity: "")   // the components' defaults
            let lease = try seconds(o["leaseDuration"], "\(f).leaseDuration") ?? d.leaseDuration
            let renew = try seconds(o["renewDeadline"], "\(f).renewDeadline") ?? d.renewDeadline
            let retry = try seconds(o["retryPeriod"], "\(f).retryPeriod") ?? d.renewInterval
            if let problem = LeaderElectionConfig.problem(lease: lease, renew: renew, retry: retry) { throw err(f, problem) }
            c.leaderElection = (lease, renew, retry)
        }
        if c.leaseInterval * 2 > c.nodeGrace { throw err("controlPlane.nodeGracePeriod", "must be at least twice leaseInterval (\(c.leaseInterval)s), or healthy nodes flap") }
        let net = try object(top["network"], "network", allowed: ["bridge", "nodeCIDR", "clusterCIDR", "serviceCIDR", "clusterDomain"])
        if let b = try string(net["bridge"], "network.bridge") {
            guard b.count <= 15, b.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { throw err("network.bridge", "must be an interface name (letters, digits, -, at most 15)") }
            c.bridge = b
        }
        if let n = try string(net["nodeCIDR"], "network.nodeCIDR") {
            guard isCIDR(n), inCIDR(String(n.split(separator: "/")[0]), "198.18.0.0/15") else { throw err("network.nodeCIDR", "\"\(n)\" must be a CIDR inside 198.18.0.0/15") }
            c.bridgeCIDR = n
        }
        if let n = try string(net["clusterCIDR"], "network.clusterCIDR") {
            guard isCIDR(n), let bits = Int(n.split(separator: "/")[1]), bits <= 23, inCIDR(String(n.split(separator: "/")[0]), "198.18.0.0/15") else {
                throw err("network.clusterCIDR", "\"\(n)\" must be a CIDR of /23 or larger inside 198.18.0.0/15 (nodes get a /24 each)")
            }
            c.clusterCIDR = n
        }
        if let n = try string(net["serviceCIDR"], "network.serviceCIDR") {
            guard let cidr = CIDR(n), (12...28).contains(cidr.prefix), inCIDR(cidr.base.description, "198.18.0.0/15") else {
                throw err("network.serviceCIDR", "\"\(n)\" must be a network of /12 to /28 inside 198.18.0.0/15, without host bits")
            }
            c.serviceCIDR = n
        }
        for (other, field) in [(c.bridgeCIDR, "network.nodeCIDR"), (c.clusterCIDR, "network.clusterCIDR")] {
            if let a = CIDR(c.serviceCIDR), let b = CIDR(other), a.contains(b.base) || b.contains(a.base) {
                throw err("network.serviceCIDR", "\(c.serviceCIDR) overlaps \(field) \(other)")
            }
        }
        if let d = try string(net["clusterDomain"], "network.clusterDomain") {
            guard d.count <= 253, d.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ l in
                !l.isEmpty && l.count <= 63 && l.allSatisfy { ($0.isLetter && $0.isLowercase) || $0.isNumber || $0 == "-" } && l.first != "-" && l.last != "-"
            }) else { throw err("network.clusterDomain", "\"\(d)\" must be a lower-case DNS name such as cluster.local") }
            c.clusterDomain = d
        }
        guard inCIDR(c.apiAddress, c.bridgeCIDR) else { throw err("controlPlane.address", "\(c.apiAddress) is not inside network.nodeCIDR \(c.bridgeCIDR)") }
        let reg = try object(top["registry"], "registry", allowed: ["address", "registries"])
        if let r = try string(reg["address"], "registry.address") { c.registry = r }
        if let f = try string(reg["registries"], "registry.registries") {
            guard !f.isEmpty, !f.contains(" ") else { throw err("registry.registries", "\"\(f)\" must be a file path without spaces") }
            c.registriesFile = f
        }
        guard case .array(let nodes)? = top["nodes"], !nodes.isEmpty else { throw err("nodes", "must list at least one node") }
        var names = Set<String>(), addrs = Set<String>([c.apiAddress]), cidrs = Set<String>()
        /// A control-plane host's or node's name and address: a DNS label unique among both, an
        /// address on the bridge used by nothing else.
        func nameAndAddress(_ o: [String: JSONValue], _ f: String) throws -> (String, String) {
            guard let name = try string(o["name"], "\(f).name") else { throw err("\(f).name", "is required") }
            guard name.count <= 40, name.first?.isLetter == true, name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else {
                throw err("\(f).name", "\"\(name)\" must be a DNS label (lowercase letters, digits, -) of at most 40 characters")
            }
            guard names.insert(name).inserted else { throw err("\(f).name", "\"\(name)\" is used twice (node and control-plane host names share one space)") }
            guard let addr = try string(o["address"], "\(f).address") else { throw err("\(f).address", "is required") }
            guard isIPv4(addr), inCIDR(addr, c.bridgeCIDR) else { throw err("\(f).address", "\"\(addr)\" must be an IPv4 address inside network.nodeCIDR \(c.bridgeCIDR)") }
            guard addrs.insert(addr).inserted else { throw err("\(f).address", "\(addr) is used twice (controlPlane.address is \(c.apiAddress))") }
            return (name, addr)
        }
        /// `vm: {memory, cpus}` of a node or control-plane host: a local qemu VM (hack/vm).
        func vmSpec(_ v: JSONValue?, _ f: String) throws -> (memory: Int, cpus: Int)? {
            guard let v, !v.isNull else { return nil }
            let vo = try object(v, "\(f).vm", allowed: ["memory", "cpus"])
            let mem = vo["memory"]?.intValue ?? 1024
            guard vo["memory"] == nil || vo["memory"]?.intValue != nil, (256...65536).contains(mem) else {
                throw err("\(f).vm.memory", "must be the VM's memory in MiB, 256 to 65536")
            }
            let cpus = vo["cpus"]?.intValue ?? 1
            guard vo["cpus"] == nil || vo["cpus"]?.intValue != nil, (1...16).contains(cpus) else { throw err("\(f).vm.cpus", "must be 1 to 16") }
            return (Int(mem), Int(cpus))
        }
        if let h = cp["hosts"], !h.isNull {
            guard case .array(let list) = h, !list.isEmpty else { throw err("controlPlane.hosts", "must be a non-empty list of {name, address, ssh}") }
            guard list.count % 2 == 1, list.count <= 7 else {
                throw err("controlPlane.hosts", "lists \(list.count) hosts: use 1, 3, 5 or 7 (etcd needs a majority; an even count survives no more failures than one host fewer)")
            }
            guard c.store == "etcd" else {
                throw err("controlPlane.store", "must be etcd with controlPlane.hosts (each host runs an etcd member; SQLite is one file on one host)")
            }
            for (i, item) in list.enumerated() {
                let f = "controlPlane.hosts[\(i)]"
                let o = try object(item, f, allowed: ["name", "address", "ssh", "vm"])
                let (name, addr) = try nameAndAddress(o, f)
                var ssh: String? = nil
                if let sv = o["ssh"], !sv.isNull { ssh = try sshSpec(sv, "\(f).ssh") }
                let vm = try vmSpec(o["vm"], f)
                if vm != nil, ssh == nil { ssh = "root@\(addr):22" }
                c.hosts.append(Host(name: name, address: addr, ssh: ssh, vm: vm))
            }
        }
        let base = c.clusterCIDR.split(separator: "/")[0].split(separator: ".").compactMap { Int($0) }
        for (i, n) in nodes.enumerated() {
            let f = "nodes[\(i)]"
            let o = try object(n, f, allowed: ["name", "address", "podCIDR", "labels", "taints", "ssh", "vm"])
            let (name, addr) = try nameAndAddress(o, f)
            var cidr = "\(base[0]).\(base[1] + (base[2] + i + 1) / 256).\((base[2] + i + 1) % 256).0/24"
            if let p = try string(o["podCIDR"], "\(f).podCIDR") {
                guard isCIDR(p), p.hasSuffix("/24"), inCIDR(String(p.split(separator: "/")[0]), c.clusterCIDR) else {
                    throw err("\(f).podCIDR", "\"\(p)\" must be a /24 inside network.clusterCIDR \(c.clusterCIDR)")
                }
                cidr = p
            }
            guard cidrs.insert(cidr).inserted else { throw err("\(f).podCIDR", "\(cidr) is used twice") }
            var labels: [String: String] = [:]
            for (k, v) in try object(o["labels"], "\(f).labels", allowed: Set((o["labels"]?.objectValue ?? [:]).keys)) {
                guard let s = v.stringValue, !k.contains(","), !k.contains("="), !s.contains(",") else { throw err("\(f).labels.\(k)", "must be a string without , or =") }
                labels[k] = s
            }
            var taints: [String] = []
            if let t = o["taints"], !t.isNull {
                guard case .array(let list) = t else { throw err("\(f).taints", "must be a list") }
                for (j, item) in list.enumerated() {
                    let tf = "\(f).taints[\(j)]"
                    let to = try object(item, tf, allowed: ["key", "value", "effect"])
                    guard let key = try string(to["key"], "\(tf).key") else { throw err("\(tf).key", "is required") }
                    let effect = try string(to["effect"], "\(tf).effect") ?? ""
                    guard ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(effect) else { throw err("\(tf).effect", "must be NoSchedule, PreferNoSchedule or NoExecute") }
                    taints.append("\(key)=\(try string(to["value"], "\(tf).value") ?? ""):\(effect)")
                }
            }
            var ssh: String? = nil
            if let s = o["ssh"], !s.isNull { ssh = try sshSpec(s, "\(f).ssh") }
            let vm = try vmSpec(o["vm"], f)
            // hack/deploy reaches a local VM over SSH at its address unless told otherwise.
            if vm != nil, ssh == nil { ssh = "root@\(addr):22" }
            c.nodes.append(Node(name: name, address: addr, podCIDR: cidr, labels: labels, taints: taints, ssh: ssh, vm: vm))
        }
        return c
    }

    func render() -> String {
        var lines = ["CLUSTER_NAME=\(name)", "API_ADDRESS=\(apiAddress)", "API_PORT=\(apiPort)", "BRIDGE=\(bridge)",
                     "BRIDGE_CIDR=\(bridgeCIDR)", "CLUSTER_CIDR=\(clusterCIDR)", "SERVICE_CIDR=\(serviceCIDR)", "CLUSTER_DOMAIN=\(clusterDomain)", "REGISTRY=\(registry)", "NODE_GRACE=\(fmt(nodeGrace))",
                     "EVICTION_DELAY=\(fmt(evictionDelay))", "LEASE_INTERVAL=\(fmt(leaseInterval))", "HPA_SYNC=\(fmt(hpaSync))", "EVENT_TTL=\(fmt(eventTTL))",
                     "LEADER_ELECTION=\(leaderElection.map { "\(fmt($0.lease))s,\(fmt($0.renew))s,\(fmt($0.retry))s" } ?? "-")",
                     "CP_SSH=\(controlPlaneSSH ?? "-")", "REGISTRIES_FILE=\(registriesFile ?? "-")", "STORE=\(store)"]
        for h in hosts { lines.append("CP_HOST \(h.name) \(h.address) \(h.ssh ?? "-")") }
        for h in hosts { if let v = h.vm { lines.append("VM \(h.name) \(v.memory) \(v.cpus) \(h.address)") } }
        for n in nodes { if let v = n.vm { lines.append("VM \(n.name) \(v.memory) \(v.cpus) \(n.address)") } }
        for n in nodes {
            let labels = n.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            lines.append("NODE \(n.name) \(n.address) \(n.podCIDR) \(labels.isEmpty ? "-" : labels) \(n.taints.isEmpty ? "-" : n.taints.joined(separator: ",")) \(n.ssh ?? "-")")
        }
        return lines.joined(separator: "\n")
    }

    func fmt(_ d: Double) -> String { d == d.rounded() ? String(Int(d)) : String(d) }
}

func isIPv4(_ s: String) -> Bool { var a = in_addr(); return inet_pton(AF_INET, s, &a) == 1 }
func isCIDR(_ s: String) -> Bool {
    let p = s.split(separator: "/")
    guard p.count == 2, isIPv4(String(p[0])), let b = Int(p[1]), (8...30).contains(b) else { return false }
    return true
}
func ipValue(_ s: String) -> UInt32? {
    var a = in_addr()
    guard inet_pton(AF_INET, s, &a) == 1 else { return nil }
    return UInt32(bigEndian: a.s_addr)
}
func inCIDR(_ ip: String, _ cidr: String) -> Bool {
    let p = cidr.split(separator: "/")
    guard p.count == 2, let net = ipValue(String(p[0])), let bits = Int(p[1]), let v = ipValue(ip) else { return false }
    let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - UInt32(bits))
    return v & mask == net & mask
}
