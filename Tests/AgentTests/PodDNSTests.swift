// resolv.conf per dnsPolicy as the kubelet writes it, and the translation of Services and
// EndpointSlices into what the proxy and DNS program.
import Testing
import Foundation
import API
@testable import Agent

@Suite struct PodDNSTests {
    let host = "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n"
    let cluster = ClusterDNSSettings(address: "198.18.128.10", domain: "cluster.local")

    func pod(_ policy: String?, config: String? = nil, hostNetwork: Bool = false, ns: String = "shop") -> Pod {
        var p = Pod(metadata: ObjectMeta(name: "p", namespace: ns), spec: PodSpec(containers: [Container(name: "c", image: "i")]))
        p.spec?.dnsPolicy = policy
        p.spec?.hostNetwork = hostNetwork ? true : nil
        if let config { p.spec?.dnsConfig = try! JSONValue.parse(Data(config.utf8)) }
        return p
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String; var policy: String?; var config: String?; var hostNetwork: Bool; var want: String
        var testDescription: String { name }
    }
    static let cases: [Case] = [
        Case(name: "ClusterFirst (default)", policy: nil, config: nil, hostNetwork: false,
             want: "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 198.18.128.10\noptions ndots:5\n"),
        Case(name: "Default: the node's", policy: "Default", config: nil, hostNetwork: false,
             want: "search corp.example\nnameserver 192.0.2.53\noptions timeout:2\n"),
        Case(name: "ClusterFirst on the host network falls back", policy: "ClusterFirst", config: nil, hostNetwork: true,
             want: "search corp.example\nnameserver 192.0.2.53\noptions timeout:2\n"),
        Case(name: "ClusterFirstWithHostNet", policy: "ClusterFirstWithHostNet", config: nil, hostNetwork: true,
             want: "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 198.18.128.10\noptions ndots:5\n"),
        Case(name: "None with dnsConfig", policy: "None", config: #"{"nameservers":["198.18.0.53"],"searches":["a.example"],"options":[{"name":"ndots","value":"2"},{"name":"edns0"}]}"#,
             hostNetwork: false, want: "search a.example\nnameserver 198.18.0.53\noptions ndots:2 edns0\n"),
        Case(name: "ClusterFirst merged with dnsConfig", policy: "ClusterFirst", config: #"{"nameservers":["198.18.0.53"],"options":[{"name":"ndots","value":"1"}]}"#,
             hostNetwork: false, want: "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 198.18.128.10\nnameserver 198.18.0.53\noptions ndots:1\n"),
    ]

    @Test(arguments: cases) func resolvConf(_ c: Case) {
        #expect(PodDNS.resolvConf(pod(c.policy, config: c.config, hostNetwork: c.hostNetwork), cluster: cluster, hostResolvConf: host) == c.want)
    }

    @Test func noClusterAddressMeansTheNodesResolvers() {
        #expect(PodDNS.resolvConf(pod(nil), cluster: ClusterDNSSettings(address: nil), hostResolvConf: host).contains("nameserver 192.0.2.53"))
    }

    @Test func podValidationNamesDNSFields() {
        var p = pod("None")
        #expect(p.validate().contains { $0.field == "spec.dnsConfig.nameservers" })
        p.spec?.dnsPolicy = "Sometimes"
        #expect(p.validate().contains { $0.field == "spec.dnsPolicy" })
        p = pod("None", config: #"{"nameservers":["not-an-ip"]}"#)
        #expect(p.validate().contains { $0.field == "spec.dnsConfig.nameservers[0]" })
    }
}

@Suite struct ProxyTranslationTests {
    func service(_ json: String) -> Service { var s = try! KubeJSON.decode(Service.self, from: Data(json.utf8)); s.applyDefaults(); return s }
    func slice(_ svc: String, ports: [(String, Int)], eps: [(String, Bool?, Bool?, Bool?)]) -> EndpointSlice {
        var s = EndpointSlice(metadata: ObjectMeta(name: "\(svc)-x", namespace: "default", labels: [EndpointSlice.serviceNameLabel: svc]))
        s.ports = ports.map { EndpointSlicePort(name: $0.0, protocol: "TCP", port: $0.1) }
        s.endpoints = eps.map { Endpoint(addresses: [$0.0], conditions: EndpointConditions(ready: $0.1, serving: $0.2, terminating: $0.3)) }
        return s
    }

    @Test func servicesBecomeProxyEntriesWithTheirEndpoints() {
        let web = service(#"{"metadata":{"name":"web","namespace":"default"},"spec":{"type":"NodePort","clusterIP":"198.18.128.5","sessionAffinity":"ClientIP","ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":30080}]}}"#)
        let headless = service(#"{"metadata":{"name":"h","namespace":"default"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}"#)
        let dns = service(#"{"metadata":{"name":"kube-dns","namespace":"kube-system"},"spec":{"clusterIP":"198.18.128.10","ports":[{"name":"dns","port":53,"protocol":"UDP"}]}}"#)
        let ps = ServiceProxy.proxyServices(services: [web, headless, dns],
                                            slices: [slice("web", ports: [("http", 8080)], eps: [("198.19.1.2", true, true, false), ("198.19.2.2", false, true, true), ("198.19.1.2", true, nil, nil)])],
                                            exempt: ["198.18.128.10"])
        #expect(ps.count == 1)   // headless and the node-local DNS address are not proxied
        let p = ps[0]
        #expect(p.clusterIP == "198.18.128.5" && p.affinityTimeout == 10800)
        #expect(p.ports.count == 1 && p.ports[0].nodePort == 30080 && p.ports[0].port == 80)
        #expect(p.ports[0].endpoints == [ProxyEndpoint(ip: "198.19.1.2", port: 8080, ready: true, serving: true, terminating: false),
                                          ProxyEndpoint(ip: "198.19.2.2", port: 8080, ready: false, serving: true, terminating: true)])
    }

    @Test func headlessServicesCarryTheirEndpointsForDNS() {
        let headless = service(#"{"metadata":{"name":"h","namespace":"default"},"spec":{"clusterIP":"None","ports":[{"name":"http","port":80}]}}"#)
        let d = ServiceProxy.dnsServices(services: [headless], slices: [slice("h", ports: [("http", 80)], eps: [("198.19.1.3", false, false, false), ("198.19.1.2", true, true, false)])])
        #expect(d.count == 1)
        #expect(d[0].endpoints.map(\.ip) == ["198.19.1.2", "198.19.1.3"])
        #expect(d[0].endpoints.map(\.ready) == [true, false])
        #expect(d[0].ports == [DNSServicePort(name: "http", proto: "TCP", port: 80)])
    }
}
