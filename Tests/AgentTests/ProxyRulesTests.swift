// Tests for the Service proxy's nftables rendering and applier: golden text, adoption of an older
// table, conntrack clean-up, a fake runner, and (as root) the real nft inside a network namespace.
import Foundation
import Synchronization
import Testing
@testable import Agent

enum ProxyFixture {
    static let config = ProxyConfig(clusterCIDR: "10.244.0.0/16", exemptIPs: ["169.254.20.10"])
    static let services: [ProxyService] = [
        ProxyService(namespace: "default", name: "web", clusterIP: "10.96.0.20", ports: [
            ProxyServicePort(name: "http", proto: "TCP", port: 80, endpoints: [
                ProxyEndpoint(ip: "10.244.2.7", port: 8080),
                ProxyEndpoint(ip: "10.244.1.5", port: 8080),
                ProxyEndpoint(ip: "10.244.3.9", port: 8080, ready: false, serving: false),
            ]),
        ]),
        ProxyService(namespace: "default", name: "headless", clusterIP: "None", ports: [
            ProxyServicePort(proto: "TCP", port: 80, endpoints: [ProxyEndpoint(ip: "10.244.1.8", port: 80)]),
        ]),
        ProxyService(namespace: "default", name: "nodeport", clusterIP: "10.96.0.30", externalIPs: ["192.0.2.10"], ports: [
            ProxyServicePort(proto: "TCP", port: 80, nodePort: 30080, endpoints: [ProxyEndpoint(ip: "10.244.1.6", port: 80)]),
        ]),
        ProxyService(namespace: "default", name: "sticky", clusterIP: "10.96.0.40", affinityTimeout: 10800, ports: [
            ProxyServicePort(proto: "TCP", port: 443, endpoints: [
                ProxyEndpoint(ip: "10.244.1.7", port: 8443), ProxyEndpoint(ip: "10.244.2.8", port: 8443),
            ]),
        ]),
        ProxyService(namespace: "default", name: "empty", clusterIP: "10.96.0.50", ports: [
            ProxyServicePort(name: "dns", proto: "UDP", port: 53, nodePort: 30053, endpoints: [
                ProxyEndpoint(ip: "10.244.1.9", port: 53, ready: false, serving: false),
            ]),
        ]),
        ProxyService(namespace: "default", name: "draining", clusterIP: "10.96.0.60", ports: [
            ProxyServicePort(proto: "TCP", port: 8080, endpoints: [
                ProxyEndpoint(ip: "10.244.4.4", port: 8080, ready: false, serving: true, terminating: true),
                ProxyEndpoint(ip: "10.244.4.5", port: 8080, ready: false, serving: false, terminating: true),
            ]),
        ]),
    ]

    static func udp(_ name: String = "dns", eps: [String], nodePort: Int? = 30053) -> ProxyService {
        ProxyService(namespace: "kube-system", name: name, clusterIP: "10.96.0.10", ports: [
            ProxyServicePort(proto: "UDP", port: 53, nodePort: nodePort, endpoints: eps.map { ProxyEndpoint(ip: $0, port: 53) }),
        ])
    }

    static let web = "default/web/tcp/80"
    static let sticky = "default/sticky/tcp/443"
}

@Suite struct ProxyRulesTests {
    @Test func goldenScript() {
        let expected = """
        add table ip orchestrator
        add chain ip orchestrator nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }
        add chain ip orchestrator nat-output { type nat hook output priority -100; policy accept; }
        add chain ip orchestrator nat-postrouting { type nat hook postrouting priority srcnat; policy accept; }
        add chain ip orchestrator filter-forward { type filter hook forward priority -110; policy accept; }
        add chain ip orchestrator filter-input { type filter hook input priority -110; policy accept; }
        add chain ip orchestrator filter-output { type filter hook output priority -110; policy accept; }
        add chain ip orchestrator services
        add chain ip orchestrator service-endpoints-check
        add chain ip orchestrator reject-chain
        add chain ip orchestrator mark-for-masquerade
        add chain ip orchestrator masquerading
        add chain ip orchestrator service-BRJBIOEJ-default/draining/tcp/8080
        add chain ip orchestrator endpoint-O2NQGIGC-default/draining/tcp/8080__10.244.4.4/8080
        add chain ip orchestrator service-HK5HGYFB-default/nodeport/tcp/80
        add chain ip orchestrator external-HK5HGYFB-default/nodeport/tcp/80
        add chain ip orchestrator endpoint-4R5E6QVB-default/nodeport/tcp/80__10.244.1.6/80
        add chain ip orchestrator service-TOVRJSZM-default/sticky/tcp/443
        add chain ip orchestrator endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443
        add chain ip orchestrator endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443
        add chain ip orchestrator service-XAX2RYRN-default/web/tcp/80
        add chain ip orchestrator endpoint-CNWZW4PS-default/web/tcp/80__10.244.1.5/8080
        add chain ip orchestrator endpoint-XLIBBMYI-default/web/tcp/80__10.244.2.7/8080
        add map ip orchestrator service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
        add map ip orchestrator service-nodeports { type inet_proto . inet_service : verdict; }
        add map ip orchestrator no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
        add map ip orchestrator no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
        add set ip orchestrator affinity-UHLOLKGK-default/sticky/tcp/443__10.244.1.7/8443 { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }
        add set ip orchestrator affinity-JUJVC75H-default/sticky/tcp/443__10.244.2.8/8443 { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }
        add counter ip orchestrator ep-10.244.4.4
        add counter ip orchestrator ep-10.244.1.6
        add counter ip orchestrator ep-10.244.1.7
        add counter ip orchestrator ep-10.244.2.8
        add counter ip orchestrator ep-10.244.1.5
        add counter ip orchestrator ep-10.244.2.7
        flush map ip orchestrator service-ips
        flush map ip orchestrator service-nodeports
        flush map ip orchestrator no-endpoint-services
        flush map ip orchestrator no-endpoint-nodeports
        flush chain ip orchestrator nat-prerouting
        flush chain ip orchestrator nat-output
        flush chain ip orchestrator nat-postrouting
        flush chain ip orchestrator filter-forward
        flush chain ip orchestrator filter-input
        flush chain ip orchestrator filter-output
        flush chain ip orchestrator services
        flush chain ip orchestrator service-endpoints-check
        flush chain ip orchestrator reject-chain
        flush chain ip orchestrator mark-for-masquerade
        flush chain ip orchestrator masquerading
        flush chain ip orchestrator service-BRJBIOEJ-default/draining/tcp/8080
        flush chain ip orchestrator endpoint-O2NQGIGC-default/draining/tcp/8080__10.244.4.4/8080
        flush chain ip orchestrator service-HK5HGYFB-default/nodeport/tcp/80
        flush chain ip orchestrator external-HK5HGYFB-default/nodeport/tcp/80
        flush chain ip orchestrator endpoint-4R5E6QVB-default/nodeport/tcp/80__10.244.1.6/80
        flush chain ip orchestrator service-TOVRJSZM-default/sticky/tcp/443
        flush chain ip orchestrator endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443
        flush chain ip orchestrator endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443
        flush chain ip orchestrator service-XAX2RYRN-default/web/tcp/80
        flush chain ip orchestrator endpoint-CNWZW4PS-default/web/tcp/80__10.244.1.5/8080
        flush chain ip orchestrator endpoint-XLIBBMYI-default/web/tcp/80__10.244.2.7/8080
        add rule ip orchestrator nat-prerouting jump services
        add rule ip orchestrator nat-output jump services
        add rule ip orchestrator nat-postrouting jump masquerading
        add rule ip orchestrator filter-forward ip daddr 169.254.20.10 return
        add rule ip orchestrator filter-forward ct state new jump service-endpoints-check
        add rule ip orchestrator filter-input ip daddr 169.254.20.10 return
        add rule ip orchestrator filter-input ct state new jump service-endpoints-check
        add rule ip orchestrator filter-output ip daddr 169.254.20.10 return
        add rule ip orchestrator filter-output ct state new jump service-endpoints-check
        add rule ip orchestrator services ip daddr 169.254.20.10 return
        add rule ip orchestrator services ip daddr . meta l4proto . th dport vmap @service-ips
        add rule ip orchestrator services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
        add rule ip orchestrator service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        add rule ip orchestrator service-endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
        add rule ip orchestrator reject-chain meta l4proto tcp reject with tcp reset
        add rule ip orchestrator reject-chain reject with icmp type port-unreachable
        add rule ip orchestrator mark-for-masquerade meta mark set meta mark | 0x4000
        add rule ip orchestrator masquerading meta mark & 0x4000 == 0 return
        add rule ip orchestrator masquerading meta mark set meta mark ^ 0x4000
        add rule ip orchestrator masquerading masquerade fully-random
        add rule ip orchestrator service-BRJBIOEJ-default/draining/tcp/8080 ip daddr 10.96.0.60 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip orchestrator service-BRJBIOEJ-default/draining/tcp/8080 numgen random mod 1 vmap { 0 : goto endpoint-O2NQGIGC-default/draining/tcp/8080__10.244.4.4/8080 }
        add rule ip orchestrator endpoint-O2NQGIGC-default/draining/tcp/8080__10.244.4.4/8080 ip saddr 10.244.4.4 jump mark-for-masquerade
        add rule ip orchestrator endpoint-O2NQGIGC-default/draining/tcp/8080__10.244.4.4/8080 meta l4proto tcp counter name "ep-10.244.4.4" dnat to 10.244.4.4:8080
        add rule ip orchestrator service-HK5HGYFB-default/nodeport/tcp/80 ip daddr 10.96.0.30 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip orchestrator service-HK5HGYFB-default/nodeport/tcp/80 numgen random mod 1 vmap { 0 : goto endpoint-4R5E6QVB-default/nodeport/tcp/80__10.244.1.6/80 }
        add rule ip orchestrator external-HK5HGYFB-default/nodeport/tcp/80 jump mark-for-masquerade
        add rule ip orchestrator external-HK5HGYFB-default/nodeport/tcp/80 goto service-HK5HGYFB-default/nodeport/tcp/80
        add rule ip orchestrator endpoint-4R5E6QVB-default/nodeport/tcp/80__10.244.1.6/80 ip saddr 10.244.1.6 jump mark-for-masquerade
        add rule ip orchestrator endpoint-4R5E6QVB-default/nodeport/tcp/80__10.244.1.6/80 meta l4proto tcp counter name "ep-10.244.1.6" dnat to 10.244.1.6:80
        add rule ip orchestrator service-TOVRJSZM-default/sticky/tcp/443 ip daddr 10.96.0.40 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip orchestrator service-TOVRJSZM-default/sticky/tcp/443 ip saddr @affinity-UHLOLKGK-default/sticky/tcp/443__10.244.1.7/8443 goto endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443
        add rule ip orchestrator service-TOVRJSZM-default/sticky/tcp/443 ip saddr @affinity-JUJVC75H-default/sticky/tcp/443__10.244.2.8/8443 goto endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443
        add rule ip orchestrator service-TOVRJSZM-default/sticky/tcp/443 numgen random mod 2 vmap { 0 : goto endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443, 1 : goto endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443 }
        add rule ip orchestrator endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443 ip saddr 10.244.1.7 jump mark-for-masquerade
        add rule ip orchestrator endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443 update @affinity-UHLOLKGK-default/sticky/tcp/443__10.244.1.7/8443 { ip saddr }
        add rule ip orchestrator endpoint-5DKOXAAN-default/sticky/tcp/443__10.244.1.7/8443 meta l4proto tcp counter name "ep-10.244.1.7" dnat to 10.244.1.7:8443
        add rule ip orchestrator endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443 ip saddr 10.244.2.8 jump mark-for-masquerade
        add rule ip orchestrator endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443 update @affinity-JUJVC75H-default/sticky/tcp/443__10.244.2.8/8443 { ip saddr }
        add rule ip orchestrator endpoint-QOKFVBE3-default/sticky/tcp/443__10.244.2.8/8443 meta l4proto tcp counter name "ep-10.244.2.8" dnat to 10.244.2.8:8443
        add rule ip orchestrator service-XAX2RYRN-default/web/tcp/80 ip daddr 10.96.0.20 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip orchestrator service-XAX2RYRN-default/web/tcp/80 numgen random mod 2 vmap { 0 : goto endpoint-CNWZW4PS-default/web/tcp/80__10.244.1.5/8080, 1 : goto endpoint-XLIBBMYI-default/web/tcp/80__10.244.2.7/8080 }
        add rule ip orchestrator endpoint-CNWZW4PS-default/web/tcp/80__10.244.1.5/8080 ip saddr 10.244.1.5 jump mark-for-masquerade
        add rule ip orchestrator endpoint-CNWZW4PS-default/web/tcp/80__10.244.1.5/8080 meta l4proto tcp counter name "ep-10.244.1.5" dnat to 10.244.1.5:8080
        add rule ip orchestrator endpoint-XLIBBMYI-default/web/tcp/80__10.244.2.7/8080 ip saddr 10.244.2.7 jump mark-for-masquerade
        add rule ip orchestrator endpoint-XLIBBMYI-default/web/tcp/80__10.244.2.7/8080 meta l4proto tcp counter name "ep-10.244.2.7" dnat to 10.244.2.7:8080
        add element ip orchestrator service-ips { 10.96.0.60 . tcp . 8080 : goto service-BRJBIOEJ-default/draining/tcp/8080 }
        add element ip orchestrator service-ips { 10.96.0.30 . tcp . 80 : goto service-HK5HGYFB-default/nodeport/tcp/80 }
        add element ip orchestrator service-ips { 192.0.2.10 . tcp . 80 : goto external-HK5HGYFB-default/nodeport/tcp/80 }
        add element ip orchestrator service-ips { 10.96.0.40 . tcp . 443 : goto service-TOVRJSZM-default/sticky/tcp/443 }
        add element ip orchestrator service-ips { 10.96.0.20 . tcp . 80 : goto service-XAX2RYRN-default/web/tcp/80 }
        add element ip orchestrator service-nodeports { tcp . 30080 : goto external-HK5HGYFB-default/nodeport/tcp/80 }
        add element ip orchestrator no-endpoint-services { 10.96.0.50 . udp . 53 : goto reject-chain }
        add element ip orchestrator no-endpoint-nodeports { udp . 30053 : goto reject-chain }
        """
        let script = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: .empty)
        #expect(script == expected + "\n")
    }

    @Test func deterministicRegardlessOfInputOrder() {
        let a = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: .empty)
        var shuffled = ProxyFixture.services.reversed().map { svc -> ProxyService in
            var s = svc
            s.ports = s.ports.map { var p = $0; p.endpoints.reverse(); return p }
            return s
        }
        shuffled.swapAt(0, 2)
        #expect(ProxyRules.render(shuffled, config: ProxyFixture.config, existing: .empty) == a)
        #expect(ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: .empty) == a)
    }

    @Test func endpointSelection() {
        let ready = ProxyEndpoint(ip: "10.0.0.1", port: 80)
        let draining = ProxyEndpoint(ip: "10.0.0.2", port: 80, ready: false, serving: true, terminating: true)
        let notServing = ProxyEndpoint(ip: "10.0.0.3", port: 80, ready: false, serving: false, terminating: true)
        let v6 = ProxyEndpoint(ip: "fd00::1", port: 80)
        #expect(ProxyRules.usableEndpoints([draining, ready, ready, v6]).map(\.ip) == ["10.0.0.1"])
        #expect(ProxyRules.usableEndpoints([notServing, draining]).map(\.ip) == ["10.0.0.2"])
        #expect(ProxyRules.usableEndpoints([notServing]).isEmpty)
    }

    @Test func namesAreValidAndStable() {
        let name = ProxyRules.objectName("service", "ns/some name:with+odd/tcp/80")
        #expect(name == ProxyRules.objectName("service", "ns/some name:with+odd/tcp/80"))
        #expect(name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "/_.-".contains($0)) })
        #expect(name != ProxyRules.objectName("service", "ns/some_name_with_odd/tcp/80"))
        #expect(ProxyRules.objectName("endpoint", String(repeating: "x", count: 400)).utf8.count < 256)
    }

    @Test func invalidInputIsSkippedNotRendered() {
        let bad = [
            ProxyService(namespace: "a", name: "v6", clusterIP: "fd00::10", ports: [ProxyServicePort(port: 80, endpoints: [ProxyEndpoint(ip: "fd00::1", port: 80)])]),
            ProxyService(namespace: "a", name: "icmp", clusterIP: "10.96.1.1", ports: [ProxyServicePort(proto: "ICMP", port: 80)]),
            ProxyService(namespace: "a", name: "port0", clusterIP: "10.96.1.2", ports: [ProxyServicePort(port: 0)]),
            ProxyService(namespace: "a", name: "empty-ip", clusterIP: "", ports: [ProxyServicePort(port: 80)]),
        ]
        let script = ProxyRules.render(bad, config: ProxyFixture.config, existing: .empty)
        #expect(!script.contains("add element"))
        #expect(!script.contains("fd00"))
    }

    @Test func conflictingKeysKeepTheFirst() {
        let a = ProxyService(namespace: "a", name: "one", clusterIP: "10.96.1.1", externalIPs: ["192.0.2.1"],
                             ports: [ProxyServicePort(port: 80, endpoints: [ProxyEndpoint(ip: "10.244.0.1", port: 80)])])
        var b = a
        b.name = "two"; b.clusterIP = "10.96.1.2"
        let script = ProxyRules.render([b, a], config: ProxyFixture.config, existing: .empty)
        let ext = script.split(separator: "\n").filter { $0.contains("{ 192.0.2.1 . tcp . 80 :") }
        #expect(ext.count == 1)
        #expect(ext.first?.contains("a/one/tcp/80") == true)
    }

    @Test func adoptionDeletesStaleObjectsAndKeepsAffinitySets() {
        let first = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: .empty)
        #expect(!first.contains("delete "))
        let staleChain = ProxyRules.objectName("service", "default/gone/tcp/80")
        let staleSet = ProxyRules.objectName("affinity", "default/gone/tcp/80__10.244.9.9/80", salt: "60")
        let wantedSet = ProxyRules.objectName("affinity", "\(ProxyFixture.sticky)__10.244.1.7/8443", salt: "10800")
        let existing = ProxyTableState(
            chains: ["nat-prerouting", "services", staleChain, "filter-prerouting"],
            sets: [wantedSet, staleSet], maps: ["service-ips", "old-map"])
        let script = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: existing)
        let lines = script.split(separator: "\n").map(String.init)
        func index(_ line: String) -> Int? { lines.firstIndex(of: line) }
        let t = "ip orchestrator"

        for stale in [staleChain, "filter-prerouting"] {
            let flush = index("flush chain \(t) \(stale)"), delete = index("delete chain \(t) \(stale)")
            #expect(flush != nil && delete != nil && flush! < delete!)
        }
        #expect(index("delete map \(t) old-map") != nil)
        #expect(index("delete set \(t) \(staleSet)") != nil)
        // Deletes come after every flush and before any rule or element.
        let lastFlush = lines.lastIndex { $0.hasPrefix("flush ") }!
        let firstDelete = lines.firstIndex { $0.hasPrefix("delete ") }!
        let firstAdd = lines.firstIndex { $0.hasPrefix("add rule ") || $0.hasPrefix("add element ") }!
        let lastDelete = lines.lastIndex { $0.hasPrefix("delete ") }!
        #expect(lastFlush < firstDelete && lastDelete < firstAdd)
        // Affinity sets are declared, never flushed or deleted, so clients keep their endpoint.
        #expect(lines.contains { $0.hasPrefix("add set \(t) \(wantedSet) {") })
        #expect(!script.contains("flush set"))
        #expect(!lines.contains { $0.hasPrefix("delete") && $0.contains(wantedSet) })
        #expect(!lines.contains { $0.hasPrefix("delete") && !$0.contains(staleChain) && !$0.contains(staleSet)
                && !$0.contains("filter-prerouting") && !$0.contains("old-map") })
        // Apart from the deletes, adopting is the same script as a fresh render.
        #expect(lines.filter { !$0.hasPrefix("delete ") && !$0.hasSuffix(staleChain) && !$0.hasSuffix("filter-prerouting")
                && !$0.hasSuffix("old-map") }.joined(separator: "\n") + "\n" == first)
    }

    @Test func affinityTimeoutChangeRenamesTheSet() {
        var changed = ProxyFixture.services
        changed[3].affinityTimeout = 60
        #expect(ProxyRules.render(changed, config: ProxyFixture.config, existing: .empty).contains("timeout 60s;"))
        func sets(_ s: [ProxyService]) -> [String] {
            ProxyRules.plan(s).filter { $0.serviceChain.contains("sticky") }.flatMap { $0.endpoints.map(\.affinitySet) }
        }
        #expect(sets(ProxyFixture.services).count == 2)
        #expect(Set(sets(ProxyFixture.services)).isDisjoint(with: sets(changed)))
    }

    @Test func parseStateReadsListOutput() {
        let listing = """
        table ip orchestrator {
        \tmap service-ips {
        \t\ttype ipv4_addr . inet_proto . inet_service : verdict
        \t\telements = { 10.96.0.20 . tcp . 80 : goto service-AAAA-default/web/tcp/80,
        \t\t\t     10.96.0.30 . tcp . 80 : goto service-BBBB-default/np/tcp/80 }
        \t}

        \tset affinity-CCCC-default/sticky/tcp/443__10.244.1.7/8443 {
        \t\ttype ipv4_addr
        \t\tsize 65535
        \t\tflags dynamic,timeout
        \t\ttimeout 3h
        \t}

        \tchain nat-prerouting {
        \t\ttype nat hook prerouting priority dstnat; policy accept;
        \t\tjump services
        \t}

        \tchain "service-AAAA-default/web/tcp/80" {
        \t\tnumgen random mod 1 vmap { 0 : goto endpoint-DDDD-default/web/tcp/80__10.244.1.5/8080 }
        \t}
        }
        """
        let state = ProxyRules.parseState(listing)
        #expect(state.maps == ["service-ips"])
        #expect(state.sets == ["affinity-CCCC-default/sticky/tcp/443__10.244.1.7/8443"])
        #expect(state.chains == ["nat-prerouting", "service-AAAA-default/web/tcp/80"])
        #expect(ProxyRules.parseState("") == .empty)
    }
}

@Suite struct ProxyCounterTests {
    @Test func countersAreReadFromNftJSONByEndpointAddress() throws {
        let json = #"""
        {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
          {"counter": {"family": "ip", "name": "ep-198.19.1.5", "table": "orchestrator", "handle": 1, "packets": 42, "bytes": 2520}},
          {"counter": {"family": "ip", "name": "ep-198.19.1.6", "table": "orchestrator", "handle": 4, "packets": 0, "bytes": 0}},
          {"counter": {"family": "ip", "name": "someone-else", "table": "orchestrator", "handle": 5, "packets": 7, "bytes": 0}},
          {"counter": {"family": "ip", "name": "ep-not-an-ip", "table": "orchestrator", "handle": 6, "packets": 7, "bytes": 0}}]}
        """#
        #expect(try ProxyRules.parseCounters(json) == ["198.19.1.5": 42, "198.19.1.6": 0])
        #expect(throws: (any Error).self) { try ProxyRules.parseCounters("{\"other\": []}") }
        #expect(throws: (any Error).self) { try ProxyRules.parseCounters("not json") }
    }

    @Test func anAddressServingTwoServicesHasOneCounterAndStaleOnesAreDeleted() {
        let two = [
            ProxyService(namespace: "a", name: "x", clusterIP: "10.96.0.1", ports: [ProxyServicePort(port: 80, endpoints: [ProxyEndpoint(ip: "10.244.1.1", port: 8080)])]),
            ProxyService(namespace: "a", name: "y", clusterIP: "10.96.0.2", ports: [ProxyServicePort(port: 81, endpoints: [ProxyEndpoint(ip: "10.244.1.1", port: 8081)])]),
        ]
        let script = ProxyRules.render(two, config: ProxyFixture.config, existing: ProxyTableState(counters: ["ep-10.244.1.1", "ep-10.244.9.9"]))
        let lines = script.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0 == "add counter ip orchestrator ep-10.244.1.1" }.count == 1)
        #expect(lines.filter { $0.contains("counter name \"ep-10.244.1.1\" dnat to 10.244.1.1:") }.count == 2)
        // The stale one goes after the chains that might use it are flushed; the live one is kept.
        let del = lines.firstIndex(of: "delete counter ip orchestrator ep-10.244.9.9")
        let lastFlush = lines.lastIndex { $0.hasPrefix("flush chain ") }
        #expect(del != nil && lastFlush != nil && del! > lastFlush!)
        #expect(!lines.contains("delete counter ip orchestrator ep-10.244.1.1"))
        #expect(ProxyRules.parseState("table ip orchestrator {\n\tcounter ep-10.244.1.1 {\n\t\tpackets 3 bytes 180\n\t}\n}\n").counters == ["ep-10.244.1.1"])
    }
}

@Suite struct ProxyConntrackTests {
    @Test func removedUDPEndpointIsCleared() {
        let old = [ProxyFixture.udp(eps: ["10.244.1.2", "10.244.1.3"])]
        let new = [ProxyFixture.udp(eps: ["10.244.1.2"])]
        #expect(ProxyRules.staleConntrack(old: old, new: new) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.3"],
            ["-D", "-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.1.3"],
        ])
    }

    @Test func udpPortGainingEndpointsIsFlushed() {
        let old = [ProxyFixture.udp(eps: [])]
        let new = [ProxyFixture.udp(eps: ["10.244.1.2"])]
        #expect(ProxyRules.staleConntrack(old: old, new: new) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"],
            ["-D", "-p", "udp", "--orig-port-dst", "30053"],
        ])
        // A brand-new UDP service: earlier packets to its address were not NATed either.
        #expect(ProxyRules.staleConntrack(old: [], new: [ProxyFixture.udp(eps: ["10.244.1.2"], nodePort: nil)]) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"],
        ])
    }

    @Test func removedServiceClearsAllItsEndpoints() {
        let old = [ProxyFixture.udp(eps: ["10.244.1.3", "10.244.1.2"], nodePort: nil)]
        #expect(ProxyRules.staleConntrack(old: old, new: []) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.2"],
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.3"],
        ])
    }

    @Test func nothingForTCPOrUnchangedOrStillServing() {
        var tcpOld = ProxyFixture.services, tcpNew = ProxyFixture.services
        tcpOld[0].ports[0].endpoints.removeAll()
        tcpNew[0].ports[0].endpoints = [ProxyEndpoint(ip: "10.244.9.9", port: 1)]
        #expect(ProxyRules.staleConntrack(old: tcpOld, new: tcpNew).isEmpty)
        let same = [ProxyFixture.udp(eps: ["10.244.1.2"])]
        #expect(ProxyRules.staleConntrack(old: same, new: same).isEmpty)
        // Ready -> terminating but serving: still the endpoint in use (the fallback), so keep it.
        var draining = same
        draining[0].ports[0].endpoints[0].ready = false
        draining[0].ports[0].endpoints[0].terminating = true
        #expect(ProxyRules.staleConntrack(old: same, new: draining).isEmpty)
        #expect(ProxyRules.staleConntrack(old: [], new: []).isEmpty)
    }
}

/// Records every command and answers from a script of canned results.
final class ProxyFakeRunner: Sendable {
    struct Call: Equatable { var exe: String; var args: [String]; var stdin: String? }
    private let calls = Mutex<[Call]>([])
    private let answer: @Sendable (Call) -> (status: Int32, stdout: String, stderr: String)

    init(_ answer: @escaping @Sendable (Call) -> (status: Int32, stdout: String, stderr: String)) { self.answer = answer }

    var recorded: [Call] { calls.withLock { $0 } }
    func reset() { calls.withLock { $0.removeAll() } }

    var runner: ProxyApplier.Runner {
        { exe, args, stdin in
            let call = Call(exe: exe, args: args, stdin: stdin)
            self.calls.withLock { $0.append(call) }
            return self.answer(call)
        }
    }
}

@Suite struct ProxyApplierTests {
    @Test func syncListsRendersAppliesAndClearsConntrack() async throws {
        let tableListing = Mutex<String?>(nil)
        let fake = ProxyFakeRunner { call in
            if call.args.starts(with: ["-t", "list", "table"]) {
                if let text = tableListing.withLock({ $0 }) { return (0, text, "") }
                return (1, "", "Error: No such file or directory\nlist table ip orchestrator\n              ^^^^^^^^^^^^\n")
            }
            if call.exe.hasSuffix("conntrack") { return (1, "", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n") }
            return (0, "", "")
        }
        let applier = ProxyApplier(config: ProxyFixture.config, runner: fake.runner)
        let services = ProxyFixture.services + [ProxyFixture.udp(eps: ["10.244.1.2", "10.244.1.3"])]

        let first = try await applier.sync(services)
        var calls = fake.recorded
        #expect(calls.count == 4)  // list, nft -f, flushes for the newly served UDP port and its nodePort
        #expect(calls[0] == .init(exe: "/usr/sbin/nft", args: ["-t", "list", "table", "ip", "orchestrator"], stdin: nil))
        #expect(calls[1].exe == "/usr/sbin/nft" && calls[1].args == ["-f", "-"])
        #expect(calls[1].stdin == ProxyRules.render(services, config: ProxyFixture.config, existing: .empty))
        let script = calls[1].stdin ?? ""
        #expect(first.rules == script.split(separator: "\n").filter { $0.hasPrefix("add rule") || $0.hasPrefix("add element") }.count)
        #expect(first.rules > 0 && first.seconds >= 0)
        #expect(calls.dropFirst(2).map(\.args) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"],
            ["-D", "-p", "udp", "--orig-port-dst", "30053"],
        ])
        #expect(applier.lastApplied == services)

        // Second sync: the table now exists (with a leftover chain), one UDP endpoint went away.
        let stale = ProxyRules.objectName("service", "default/gone/tcp/80")
        tableListing.withLock { $0 = "table ip orchestrator {\n\tchain services {\n\t}\n\tchain \(stale) {\n\t}\n}\n" }
        fake.reset()
        let next = ProxyFixture.services + [ProxyFixture.udp(eps: ["10.244.1.2"])]
        try await applier.sync(next, full: true)   // a full rewrite lists the table and adopts it
        calls = fake.recorded
        #expect(calls[1].stdin?.contains("delete chain ip orchestrator \(stale)\n") == true)
        #expect(calls.dropFirst(2).map(\.exe) == ["/usr/sbin/conntrack", "/usr/sbin/conntrack"])
        #expect(calls.dropFirst(2).map(\.args) == [
            ["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.3"],
            ["-D", "-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.1.3"],
        ])

        // A partial sync touches only what changed, without listing the table.
        fake.reset()
        try await applier.sync(ProxyFixture.services + [ProxyFixture.udp(eps: ["10.244.1.2", "10.244.1.4"])])
        calls = fake.recorded
        #expect(calls.first?.args == ["-f", "-"])
        #expect(calls.first?.stdin?.contains("10.244.1.4") == true)
        #expect(calls.first?.stdin?.contains("add table") == false)

        fake.reset()
        await applier.remove()
        #expect(fake.recorded.map(\.args) == [["delete", "table", "ip", "orchestrator"]])
        #expect(applier.lastApplied.isEmpty)
    }

    @Test func nftFailureNamesTheLineAndKeepsState() async throws {
        let fake = ProxyFakeRunner { call in
            if call.args == ["-f", "-"] {
                return (1, "", "/dev/stdin:3:1-44: Error: Could not process rule: Operation not supported\nadd chain ...\n^^^\n")
            }
            return (1, "", "Error: No such file or directory\n")
        }
        let applier = ProxyApplier(config: ProxyFixture.config, runner: fake.runner)
        let script = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: .empty)
        let line3 = script.split(separator: "\n")[2]
        do {
            try await applier.sync(ProxyFixture.services)
            Issue.record("sync should have thrown")
        } catch {
            let text = "\(error)"
            #expect(text.contains("Operation not supported"))
            #expect(text.contains("script line 3: \(line3)"))
        }
        #expect(applier.lastApplied.isEmpty)
        #expect(!fake.recorded.contains { $0.exe.hasSuffix("conntrack") })
    }

    @Test func listFailureOtherThanMissingTableIsAnError() async {
        let fake = ProxyFakeRunner { _ in (1, "", "Error: Operation not permitted\n") }
        let applier = ProxyApplier(config: ProxyFixture.config, runner: fake.runner)
        await #expect(throws: ProxyApplyError.self) { try await applier.sync([]) }
        #expect(fake.recorded.count == 1)
    }

    @Test func concurrentSyncsRunOneAtATime() async throws {
        let inFlight = Mutex((now: 0, max: 0))
        let applier = ProxyApplier(config: ProxyFixture.config) { _, args, _ in
            inFlight.withLock { $0.now += 1; $0.max = max($0.max, $0.now) }
            try await Task.sleep(for: .milliseconds(5))
            inFlight.withLock { $0.now -= 1 }
            return args.first == "-t" ? (1, "", "Error: No such file or directory\n") : (0, "", "")
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<4 {
                group.addTask { _ = try await applier.sync([ProxyFixture.udp(eps: ["10.244.1.\(i + 1)"])]) }
            }
            try await group.waitForAll()
        }
        #expect(inFlight.withLock { $0.max } == 1)
    }
}

/// The real nft, inside a throwaway network namespace (never the host's ruleset).
@Suite struct ProxyRealNftTests {
    @Test func appliesAndAdoptsInANetworkNamespace() async throws {
        let fm = FileManager.default
        guard getuid() == 0, fm.isExecutableFile(atPath: "/usr/sbin/nft"), fm.isExecutableFile(atPath: "/usr/sbin/ip") else {
            print("skipping real nft test: needs root, /usr/sbin/nft and /usr/sbin/ip")
            return
        }
        let ns = "proxytest-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let created = try Command.runSync("/usr/sbin/ip", ["netns", "add", ns])
        guard created.status == 0 else {
            print("skipping real nft test: ip netns add failed: \(created.stderr)")
            return
        }
        defer { _ = try? Command.runSync("/usr/sbin/ip", ["netns", "delete", ns]) }
        let runner: ProxyApplier.Runner = { exe, args, stdin in
            let r = try await Command.run("/usr/sbin/ip", ["netns", "exec", ns, exe] + args, stdin: stdin, timeout: 60)
            return (r.status, r.stdout, r.stderr)
        }
        func nft(_ args: String...) async throws -> (status: Int32, stdout: String, stderr: String) {
            try await runner("/usr/sbin/nft", args, nil)
        }
        func listing() async throws -> String { try await nft("list", "table", "ip", "orchestrator").stdout }

        // Leftovers of an earlier agent: adopted, then removed by the first sync.
        let old = try await runner("/usr/sbin/nft", ["-f", "-"], """
            add table ip orchestrator
            add chain ip orchestrator old-prerouting { type nat hook prerouting priority dstnat; policy accept; }
            add map ip orchestrator old-map { type ipv4_addr : verdict; }
            add chain ip orchestrator old-target
            add rule ip orchestrator old-prerouting ip daddr vmap @old-map
            add element ip orchestrator old-map { 10.1.1.1 : goto old-target }
            add set ip orchestrator old-set { type ipv4_addr; }

            """)
        #expect(old.status == 0, "\(old.stderr)")

        let applier = ProxyApplier(config: ProxyFixture.config, runner: runner)
        let first = try await applier.sync(ProxyFixture.services)
        #expect(first.rules > 40)
        var text = try await listing()
        for fragment in ["map service-ips", "map service-nodeports", "map no-endpoint-services", "map no-endpoint-nodeports",
                         "10.96.0.20 . tcp . 80 : goto service-", "192.0.2.10 . tcp . 80 : goto external-",
                         "tcp . 30080 : goto external-", "10.96.0.50 . udp . 53 : goto reject-chain",
                         "udp . 30053 : goto reject-chain", "dnat to 10.244.2.7:8080", "dnat to 10.244.4.4:8080",
                         "flags dynamic,timeout", "masquerade fully-random"] {
            #expect(text.contains(fragment), "missing \(fragment)")
        }
        for gone in ["old-prerouting", "old-map", "old-target", "old-set", "10.244.4.5", "headless"] {
            #expect(!text.contains(gone), "\(gone) should not be there")
        }

        // A client pinned to a sticky endpoint must stay pinned across syncs.
        let sticky = ProxyRules.plan(ProxyFixture.services).first { $0.serviceChain.contains("sticky") }!
        let pinned = try await nft("add", "element", "ip", "orchestrator", sticky.endpoints[0].affinitySet, "{", "10.1.2.3", "}")
        #expect(pinned.status == 0, "\(pinned.stderr)")

        var changed = ProxyFixture.services
        changed[0].ports[0].endpoints.removeFirst()             // web loses 10.244.2.7
        changed.remove(at: 2)                                    // nodeport Service deleted
        changed[3].ports[0].endpoints[0].ready = true            // empty gains an endpoint
        try await applier.sync(changed)
        text = try await listing()
        #expect(!text.contains("10.244.2.7"))
        #expect(!text.contains("default/nodeport") && !text.contains("30080") && !text.contains("192.0.2.10"))
        #expect(text.contains("10.96.0.50 . udp . 53 : goto service-"))
        #expect(text.contains("udp . 30053 : goto external-"))
        #expect(text.contains("10.1.2.3"), "affinity entry lost across a sync")

        // A restarted agent (no memory of the last sync) adopts the table as it is.
        let restarted = ProxyApplier(config: ProxyFixture.config, runner: runner)
        try await restarted.sync(ProxyFixture.services)
        text = try await listing()
        #expect(text.contains("tcp . 30080 : goto external-") && text.contains("10.244.2.7"))
        #expect(text.contains("10.1.2.3"))
        // The listing parses back to exactly what the render wants.
        let state = ProxyRules.parseState(text)
        let again = ProxyRules.render(ProxyFixture.services, config: ProxyFixture.config, existing: state)
        #expect(!again.contains("delete "))
        #expect(state.sets.count == 2 && state.maps.count == 4)

        await restarted.remove()
        let after = try await nft("list", "table", "ip", "orchestrator")
        #expect(after.status != 0)
    }
}

extension ProxyRealNftTests {
    /// Connections to a ClusterIP are counted on the endpoint they were sent to, and the count
    /// survives a full rewrite of the table.
    @Test func connectionsThroughAServiceAreCountedPerEndpoint() async throws {
        let fm = FileManager.default
        guard getuid() == 0, fm.isExecutableFile(atPath: "/usr/sbin/nft"), fm.isExecutableFile(atPath: "/usr/sbin/ip"),
              fm.isExecutableFile(atPath: "/usr/bin/python3") else {
            print("skipping: needs root, nft, ip and python3"); return
        }
        let ns = "proxycount-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        guard try Command.runSync("/usr/sbin/ip", ["netns", "add", ns]).status == 0 else { throw ProxyApplyError("ip netns add failed") }
        defer { _ = try? Command.runSync("/usr/sbin/ip", ["netns", "delete", ns]) }
        let runner: ProxyApplier.Runner = { exe, args, stdin in
            let r = try await Command.run("/usr/sbin/ip", ["netns", "exec", ns, exe] + args, stdin: stdin, timeout: 60)
            return (r.status, r.stdout, r.stderr)
        }
        func inNS(_ exe: String, _ args: [String], _ stdin: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
            try await runner(exe, args, stdin)
        }
        // The endpoints are local addresses: a connection to a port nobody listens on is
        // refused, but its first packet went through the DNAT (and the counter) all the same.
        // The cluster IP is local too, only so that the packet has a route to leave by.
        for args in [["link", "set", "lo", "up"], ["addr", "add", "198.19.9.9/32", "dev", "lo"], ["addr", "add", "198.19.9.10/32", "dev", "lo"],
                     ["addr", "add", "198.18.200.1/32", "dev", "lo"]] {
            let r = try await inNS("/usr/sbin/ip", args)
            #expect(r.status == 0, "ip \(args): \(r.stderr)")
        }
        let applier = ProxyApplier(config: ProxyConfig(clusterCIDR: "198.19.0.0/16"), runner: runner)
        let one = [ProxyService(namespace: "ns", name: "web", clusterIP: "198.18.200.1", ports: [
            ProxyServicePort(port: 80, endpoints: [ProxyEndpoint(ip: "198.19.9.9", port: 8080)])])]
        try await applier.sync(one)
        #expect(try await applier.connectionCounts() == ["198.19.9.9": 0])
        func connect(_ n: Int) async throws {
            let r = try await inNS("/usr/bin/python3", ["-c", "import socket\nfor _ in range(\(n)):\n s = socket.socket(); s.settimeout(2); s.connect_ex(('198.18.200.1', 80)); s.close()"])
            #expect(r.status == 0, "\(r.stderr)")
        }
        try await connect(5)
        #expect(try await applier.connectionCounts() == ["198.19.9.9": 5])
        // A second endpoint: new connections split between them, the first keeps its count.
        var two = one
        two[0].ports[0].endpoints.append(ProxyEndpoint(ip: "198.19.9.10", port: 8080))
        try await applier.sync(two, full: true)
        try await connect(20)
        let counts = try await applier.connectionCounts()
        #expect(counts.keys.sorted() == ["198.19.9.10", "198.19.9.9"])
        #expect(counts.values.reduce(0, +) == 25 && counts["198.19.9.9"]! >= 5)
        // The endpoint leaves: its counter goes with it.
        try await applier.sync(one)
        #expect(try await applier.connectionCounts().keys.sorted() == ["198.19.9.9"])
    }
}

/// Partial updates must leave the kernel exactly where a full rewrite would.
@Suite struct ProxyPartialSyncTests {
    static func table(_ variant: Int) -> [ProxyService] {
        (0..<12).compactMap { i -> ProxyService? in
            if variant == 1 && i == 3 { return nil }                 // a Service removed
            var eps = (0..<3).map { ProxyEndpoint(ip: "198.19.\(i).\($0 + 2)", port: 8080) }
            if variant == 1 && i == 5 { eps[1].ready = false }       // an endpoint leaves
            if variant == 1 && i == 6 { eps = [] }                   // no endpoints: reject
            if variant == 1 && i == 7 { eps.append(ProxyEndpoint(ip: "198.19.7.9", port: 8080)) }
            return ProxyService(namespace: "ns", name: "s\(i)", clusterIP: "198.18.128.\(i + 1)", affinityTimeout: i == 8 ? 60 : nil,
                                ports: [ProxyServicePort(name: "http", proto: i == 9 ? "UDP" : "TCP", port: 80, nodePort: i == 2 ? 30002 : nil, endpoints: eps)])
        } + (variant == 1 ? [ProxyService(namespace: "ns", name: "new", clusterIP: "198.18.128.99", ports: [ProxyServicePort(name: "", proto: "TCP", port: 81, endpoints: [ProxyEndpoint(ip: "198.19.50.2", port: 81)])])] : [])
    }

    @Test func onlyChangedServicePortsAreTouched() throws {
        let cfg = ProxyConfig(clusterCIDR: "198.19.0.0/16")
        let script = try #require(ProxyRules.renderPartial(old: Self.table(0), new: Self.table(1), config: cfg))
        #expect(!script.contains("s0/") && !script.contains("s11/"))           // untouched
        #expect(script.contains("delete element ip orchestrator service-ips { 198.18.128.4 . tcp . 80 }"))
        #expect(script.contains("add element ip orchestrator no-endpoint-services { 198.18.128.7 . tcp . 80 : goto reject-chain }"))
        #expect(ProxyRules.renderPartial(old: Self.table(1), new: Self.table(1), config: cfg) == "")
        // Counters: those of addresses no port uses any more go, new ones come, the rest stay.
        for ip in ["198.19.3.2", "198.19.3.4", "198.19.5.3", "198.19.6.2"] { #expect(script.contains("delete counter ip orchestrator ep-\(ip)\n"), "\(ip)") }
        #expect(script.contains("add counter ip orchestrator ep-198.19.50.2\n") && script.contains("add counter ip orchestrator ep-198.19.7.9\n"))
        #expect(!script.contains("delete counter ip orchestrator ep-198.19.0.") && !script.contains("delete counter ip orchestrator ep-198.19.5.2\n"))
    }

    @Test func partialUpdateEqualsAFullRewriteInTheKernel() async throws {
        let fm = FileManager.default
        guard getuid() == 0, fm.isExecutableFile(atPath: "/usr/sbin/nft"), fm.isExecutableFile(atPath: "/usr/sbin/ip") else {
            print("skipping: needs root and nft"); return
        }
        func listing(_ services: [ProxyService], partialFrom: [ProxyService]?) async throws -> String {
            let ns = "proxypart-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
            guard try Command.runSync("/usr/sbin/ip", ["netns", "add", ns]).status == 0 else { throw ProxyApplyError("netns") }
            defer { _ = try? Command.runSync("/usr/sbin/ip", ["netns", "delete", ns]) }
            let runner: ProxyApplier.Runner = { exe, args, stdin in
                let r = try await Command.run("/usr/sbin/ip", ["netns", "exec", ns, exe] + args, stdin: stdin, timeout: 60)
                return (r.status, r.stdout, r.stderr)
            }
            let applier = ProxyApplier(config: ProxyConfig(clusterCIDR: "198.19.0.0/16"), runner: runner)
            if let first = partialFrom { try await applier.sync(first) }
            try await applier.sync(services)
            return try await runner("/usr/sbin/nft", ["-s", "list", "table", "ip", "orchestrator"], nil).stdout
        }
        // Element lists come in either order: compare the statements and elements as sets.
        func normalized(_ s: String) -> [String] {
            s.replacingOccurrences(of: "elements = {", with: "\n").replacingOccurrences(of: "}", with: "\n").replacingOccurrences(of: ",", with: "\n")
                .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.sorted()
        }
        let viaPartial = try await listing(Self.table(1), partialFrom: Self.table(0))
        let direct = try await listing(Self.table(1), partialFrom: nil)
        #expect(!direct.isEmpty)
        #expect(normalized(viaPartial) == normalized(direct))
    }
}
