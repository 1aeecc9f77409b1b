// bench proxy: the node proxy's sync time for a large Service table on a hollow setup (no pods,
// the rules go into a scratch network namespace), beside iptables-restore of the same table in
// the kube-proxy iptables style, measured in the same run. Root only.
import ArgumentParser
import Foundation
import Agent

struct ProxyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "proxy", abstract: "Service proxy sync time with N Services x M endpoints (root).")
    @Option var services: Int = 1000
    @Option var endpoints: Int = 10
    @Option var rounds: Int = 5

    func table(seed: Int) -> [ProxyService] {
        (0..<services).map { i in
            let ip = "198.18.\(128 + i / 250).\(i % 250 + 1)"
            let eps = (0..<endpoints).map { j in
                let n = i * endpoints + j + seed
                return ProxyEndpoint(ip: "198.19.\(n / 250 % 250).\(n % 250 + 1)", port: 8080)
            }
            return ProxyService(namespace: "bench", name: "svc-\(i)", clusterIP: ip, ports: [ProxyServicePort(name: "http", proto: "TCP", port: 80, nodePort: nil, endpoints: eps)])
        }
    }

    /// The same table as kube-proxy's iptables mode writes it (nat table, one chain per Service
    /// and per endpoint, statistic-mode random), for iptables-restore.
    func iptablesScript(_ t: [ProxyService]) -> String {
        var chains = [":KUBE-SERVICES - [0:0]"], rules = ["-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES"]
        for (i, s) in t.enumerated() {
            let p = s.ports[0]
            chains.append(":KUBE-SVC-\(i) - [0:0]")
            rules.append("-A KUBE-SERVICES -d \(s.clusterIP!)/32 -p tcp -m tcp --dport \(p.port) -j KUBE-SVC-\(i)")
            for (j, e) in p.endpoints.enumerated() {
                chains.append(":KUBE-SEP-\(i)-\(j) - [0:0]")
                let left = p.endpoints.count - j
                let prob = left == 1 ? "" : String(format: " -m statistic --mode random --probability %.5f", 1.0 / Double(left))
                rules.append("-A KUBE-SVC-\(i)\(prob) -j KUBE-SEP-\(i)-\(j)")
                rules.append("-A KUBE-SEP-\(i)-\(j) -p tcp -m tcp -j DNAT --to-destination \(e.ip):\(e.port)")
            }
        }
        return "*nat\n" + chains.joined(separator: "\n") + "\n" + rules.joined(separator: "\n") + "\nCOMMIT\n"
    }

    func run() async throws {
        guard getuid() == 0 else { throw ValidationError("bench proxy needs root (a scratch network namespace and nft)") }
        let ns = "orch-bench-proxy-\(getpid())"
        _ = try Command.runSync("/usr/sbin/ip", ["netns", "add", ns])
        defer { _ = try? Command.runSync("/usr/sbin/ip", ["netns", "delete", ns]) }
        let runner: ProxyApplier.Runner = { exe, args, stdin in
            let r = try await Command.run("/usr/sbin/ip", ["netns", "exec", ns, exe] + args, stdin: stdin, timeout: 120)
            return (r.status, r.stdout, r.stderr)
        }
        let applier = ProxyApplier(config: ProxyConfig(clusterCIDR: "198.19.0.0/16"), runner: runner)
        let a = table(seed: 0), b = table(seed: 1)
        var render: [Double] = [], first: [Double] = [], same: [Double] = [], oneChanged: [Double] = [], ipt: [Double] = [], counters: [Double] = []
        var countersRead = 0
        var nftOnly: [Double] = [], parseOnly: [Double] = []
        var rulesCount = 0
        for r in 0..<rounds {
            let t0 = ContinuousClock.now
            let script = ProxyRules.render(a, config: ProxyConfig(clusterCIDR: "198.19.0.0/16"), existing: ProxyTableState())
            render.append(seconds(ContinuousClock.now - t0))
            if r == 0 { print("ruleset: \(script.split(separator: "\n").count) lines, \(script.utf8.count / 1024) KiB") }
            await applier.remove()
            let f = try await applier.sync(r % 2 == 0 ? a : b); first.append(f.seconds); rulesCount = f.rules
            let s = try await applier.sync(r % 2 == 0 ? a : b); same.append(s.seconds)
            // What an agent does every stats interval for requests_per_second.
            let k0 = ContinuousClock.now
            countersRead = try await applier.connectionCounts().count
            counters.append(seconds(ContinuousClock.now - k0))
            let n0 = ContinuousClock.now
            let raw = try await runner("/usr/sbin/nft", ["-j", "list", "counters", "table", "ip", "orchestrator"], nil)
            nftOnly.append(seconds(ContinuousClock.now - n0))
            let p0 = ContinuousClock.now
            _ = try ProxyRules.parseCounters(raw.stdout)
            parseOnly.append(seconds(ContinuousClock.now - p0))
            var changed = r % 2 == 0 ? a : b
            changed[services / 2].ports[0].endpoints[0].ready = false
            let c = try await applier.sync(changed); oneChanged.append(c.seconds)
            // The peer: kube-proxy's iptables mode, the whole table through iptables-restore.
            let text = iptablesScript(r % 2 == 0 ? a : b)
            _ = try? Command.runSync("/usr/sbin/ip", ["netns", "exec", ns, "iptables", "-t", "nat", "-F"])
            let i0 = ContinuousClock.now
            let res = try await Command.run("/usr/sbin/ip", ["netns", "exec", ns, "iptables-restore", "--noflush"], stdin: text, timeout: 300)
            ipt.append(seconds(ContinuousClock.now - i0))
            if res.status != 0 { print("iptables-restore failed: \(res.stderr.prefix(300))") }
        }
        await applier.remove()
        func med(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        print("\(services) services x \(endpoints) endpoints, \(rulesCount) rules and map elements, median of \(rounds) rounds:")
        print(String(format: "  render only:                         %7.1f ms", med(render) * 1000))
        print(String(format: "  full sync into an empty table:       %7.1f ms", med(first) * 1000))
        print(String(format: "  resync, nothing changed:             %7.1f ms", med(same) * 1000))
        print(String(format: "  resync, one endpoint not ready:      %7.1f ms", med(oneChanged) * 1000))
        print(String(format: "  read the connection counters (%d):   %7.1f ms (nft %.1f ms, parsing %.1f ms)", countersRead, med(counters) * 1000,
                     med(nftOnly) * 1000, med(parseOnly) * 1000))
        print(String(format: "  peer: iptables-restore, same table:  %7.1f ms  (ours/peer, full sync: %.2f)", med(ipt) * 1000, med(first) / med(ipt)))
    }
}
