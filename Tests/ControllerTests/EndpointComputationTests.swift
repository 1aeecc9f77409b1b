// The endpoint computation as a pure function: which pods, which conditions, named ports,
// hostnames, slicing, and the legacy Endpoints subsets.
import Testing
import Foundation
import API
@testable import Controllers

@Suite struct EndpointComputationTests {
    func svc(selector: [String: String] = ["app": "web"], ports: [ServicePort]? = nil, publish: Bool = false, name: String = "web") -> Service {
        var s = try! KubeJSON.decode(Service.self, from: Data(#"{"metadata":{"name":"\#(name)","namespace":"default"},"spec":{}}"#.utf8))
        s.spec?.selector = selector
        s.spec?.ports = ports ?? [try! KubeJSON.decode(ServicePort.self, from: Data(#"{"name":"http","port":80,"targetPort":"http","protocol":"TCP"}"#.utf8))]
        s.spec?.publishNotReadyAddresses = publish
        return s
    }

    func pod(_ name: String, ip: String?, ready: Bool = true, terminating: Bool = false, phase: String = "Running",
             labels: [String: String] = ["app": "web"], port: Int = 8080, hostname: String? = nil, subdomain: String? = nil, node: String = "n1") -> Pod {
        var c = Container(name: "c", image: "i")
        c.ports = [ContainerPort(containerPort: port, name: "http")]
        var p = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: labels), spec: PodSpec(containers: [c]))
        p.metadata.uid = "uid-\(name)"
        p.spec?.nodeName = node
        p.spec?.hostname = hostname; p.spec?.subdomain = subdomain
        if terminating { p.metadata.deletionTimestamp = "2026-01-01T00:00:00Z" }
        p.status = PodStatus()
        p.status?.phase = phase
        p.status?.podIP = ip
        p.status?.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False")]
        return p
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String; var ready: Bool; var terminating: Bool; var publish: Bool; var want: EndpointConditions
        var testDescription: String { name }
    }
    static let conditionCases: [Case] = [
        Case(name: "ready", ready: true, terminating: false, publish: false, want: .init(ready: true, serving: true, terminating: false)),
        Case(name: "not ready", ready: false, terminating: false, publish: false, want: .init(ready: false, serving: false, terminating: false)),
        Case(name: "terminating, still serving", ready: true, terminating: true, publish: false, want: .init(ready: false, serving: true, terminating: true)),
        Case(name: "terminating, not serving", ready: false, terminating: true, publish: false, want: .init(ready: false, serving: false, terminating: true)),
        Case(name: "publishNotReadyAddresses", ready: false, terminating: false, publish: true, want: .init(ready: true, serving: false, terminating: false)),
        Case(name: "publishNotReadyAddresses, terminating", ready: false, terminating: true, publish: true, want: .init(ready: true, serving: false, terminating: true)),
    ]

    @Test(arguments: conditionCases) func conditions(_ c: Case) {
        let s = EndpointComputation.slices(for: svc(publish: c.publish), pods: [pod("a", ip: "198.19.1.2", ready: c.ready, terminating: c.terminating)], nodes: [:])
        #expect(s.count == 1)
        #expect(s[0].endpoints.first?.conditions == c.want)
    }

    @Test func whichPodsCount() {
        let pods = [pod("ok", ip: "198.19.1.2"), pod("noip", ip: nil), pod("done", ip: "198.19.1.3", phase: "Succeeded"),
                    pod("other", ip: "198.19.1.4", labels: ["app": "other"]), pod("failed", ip: "198.19.1.5", phase: "Failed")]
        let s = EndpointComputation.slices(for: svc(), pods: pods, nodes: [:])
        #expect(s.flatMap(\.endpoints).map(\.addresses) == [["198.19.1.2"]])
        #expect(s[0].endpoints[0].targetRef?.name == "ok" && s[0].endpoints[0].nodeName == "n1")
    }

    @Test func noSelectorOrExternalNameHasNoSlices() {
        #expect(EndpointComputation.slices(for: svc(selector: [:]), pods: [pod("a", ip: "198.19.1.2")], nodes: [:]).isEmpty)
        var ext = svc(); ext.spec?.type = "ExternalName"
        #expect(EndpointComputation.slices(for: ext, pods: [pod("a", ip: "198.19.1.2")], nodes: [:]).isEmpty)
    }

    @Test func emptyServiceKeepsAPlaceholder() {
        let s = EndpointComputation.slices(for: svc(), pods: [], nodes: [:])
        #expect(s == [DesiredSlice(ports: nil, endpoints: [])])
    }

    @Test func namedTargetPortsResolvePerPodIntoSeparateSlices() {
        let s = EndpointComputation.slices(for: svc(), pods: [pod("a", ip: "198.19.1.2", port: 8080), pod("b", ip: "198.19.1.3", port: 9090)], nodes: [:])
        #expect(s.count == 2)
        #expect(Set(s.compactMap { $0.ports?.first?.port }) == [8080, 9090])
        #expect(s.allSatisfy { $0.endpoints.count == 1 })
    }

    @Test func hostnameOnlyWithMatchingSubdomainAndZoneFromNode() {
        var n = Node(name: "n1"); n.metadata.labels = ["topology.kubernetes.io/zone": "zone-a"]
        let s = EndpointComputation.slices(for: svc(), pods: [pod("a", ip: "198.19.1.2", hostname: "h0", subdomain: "web"),
                                                             pod("b", ip: "198.19.1.3", hostname: "h1", subdomain: "other")], nodes: ["n1": n])
        let eps = Dictionary(uniqueKeysWithValues: s[0].endpoints.map { ($0.addresses[0], $0) })
        #expect(eps["198.19.1.2"]?.hostname == "h0" && eps["198.19.1.3"]?.hostname == nil)
        #expect(eps["198.19.1.2"]?.zone == "zone-a")
    }

    @Test func atMostAHundredEndpointsPerSlice() {
        let pods = (0..<250).map { pod("p\($0)", ip: "198.19.\($0 / 200).\($0 % 200 + 1)") }
        let s = EndpointComputation.slices(for: svc(), pods: pods, nodes: [:])
        #expect(s.map(\.endpoints.count) == [100, 100, 50])
        #expect(Set(s.flatMap(\.endpoints).map(\.addresses[0])).count == 250)
    }

    @Test func legacySubsetsSplitReadyAndLeaveTerminatingOut() {
        let pods = [pod("a", ip: "198.19.1.2"), pod("b", ip: "198.19.1.3", ready: false), pod("c", ip: "198.19.1.4", terminating: true)]
        let sub = EndpointComputation.subsets(for: svc(), pods: pods)
        #expect(sub.count == 1)
        #expect(sub[0].addresses?.map(\.ip) == ["198.19.1.2"])
        #expect(sub[0].notReadyAddresses?.map(\.ip) == ["198.19.1.3"])
        #expect(sub[0].ports == [EndpointPort(name: "http", port: 8080, protocol: "TCP")])
        let pub = EndpointComputation.subsets(for: svc(publish: true), pods: pods)
        #expect(pub[0].addresses?.map(\.ip) == ["198.19.1.2", "198.19.1.3", "198.19.1.4"])
    }

    @Test func sliceNamesAreStableAndDistinct() {
        #expect(EndpointComputation.sliceName("web", index: 0) == EndpointComputation.sliceName("web", index: 0))
        #expect(EndpointComputation.sliceName("web", index: 0) != EndpointComputation.sliceName("web", index: 1))
        #expect(EndpointComputation.sliceName("web", index: 0).hasPrefix("web-"))
    }
}
