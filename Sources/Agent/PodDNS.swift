// The resolv.conf a pod gets, as the kubelet writes it for each dnsPolicy: ClusterFirst (the
// node's cluster DNS address, the cluster search path, ndots:5), Default (the node's own
// resolvers), None (only dnsConfig), and dnsConfig merged on top.
import Foundation
import API

public struct ClusterDNSSettings: Sendable, Hashable {
    /// The address pods send queries to (the kube-dns Service's, answered on every node).
    public var address: String?
    public var domain: String
    public init(address: String?, domain: String = "cluster.local") { self.address = address; self.domain = domain }
}

public enum PodDNS {
    /// Limits the kubelet applies (glibc reads at most 3 nameservers).
    static let maxNameservers = 3, maxSearch = 32

    public static func resolvConf(_ pod: Pod, cluster: ClusterDNSSettings, hostResolvConf: String) -> String {
        let host = parse(hostResolvConf)
        var policy = pod.spec?.dnsPolicy ?? "ClusterFirst"
        // A host-network pod on ClusterFirst uses the node's resolvers, as in Kubernetes.
        if policy == "ClusterFirst" && pod.spec?.hostNetwork == true { policy = "Default" }
        if policy == "ClusterFirstWithHostNet" { policy = "ClusterFirst" }
        if policy == "ClusterFirst" && cluster.address == nil { policy = "Default" }
        var servers: [String] = [], search: [String] = [], options: [(String, String?)] = []
        switch policy {
        case "ClusterFirst":
            servers = [cluster.address!]
            let ns = pod.namespace.isEmpty ? "default" : pod.namespace
            search = ["\(ns).svc.\(cluster.domain)", "svc.\(cluster.domain)", cluster.domain] + host.search
            options = [("ndots", "5")]
        case "Default":
            servers = host.servers; search = host.search; options = host.options
        default: break   // None: everything comes from dnsConfig
        }
        let cfg = pod.spec?.dnsConfig
        for s in cfg?["nameservers"]?.arrayValue ?? [] { if let v = s.stringValue, !servers.contains(v) { servers.append(v) } }
        for s in cfg?["searches"]?.arrayValue ?? [] { if let v = s.stringValue, !search.contains(v) { search.append(v) } }
        for o in cfg?["options"]?.arrayValue ?? [] {
            guard let name = o["name"]?.stringValue else { continue }
            options.removeAll { $0.0 == name }
            options.append((name, o["value"]?.stringValue))
        }
        var out = ""
        if !search.isEmpty { out += "search " + search.prefix(maxSearch).joined(separator: " ") + "\n" }
        for s in servers.prefix(maxNameservers) { out += "nameserver \(s)\n" }
        if !options.isEmpty {
            let words: [String] = options.map { (name: String, value: String?) -> String in value.map { "\(name):\($0)" } ?? name }
            out += "options " + words.joined(separator: " ") + "\n"
        }
        return out
    }

    /// The nameservers a resolv.conf names.
    public static func nameservers(_ text: String) -> [String] { parse(text).servers }

    static func parse(_ text: String) -> (servers: [String], search: [String], options: [(String, String?)]) {
        var servers: [String] = [], search: [String] = [], options: [(String, String?)] = []
        for line in text.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let k = f.first, !k.hasPrefix("#"), !k.hasPrefix(";") else { continue }
            switch k {
            case "nameserver": if f.count > 1 { servers.append(f[1]) }
            case "search", "domain": search = Array(f.dropFirst())
            case "options":
                for o in f.dropFirst() {
                    let kv = o.split(separator: ":", maxSplits: 1).map(String.init)
                    options.removeAll { $0.0 == kv[0] }
                    options.append((kv[0], kv.count > 1 ? kv[1] : nil))
                }
            default: break
            }
        }
        return (servers, search, options)
    }
}
