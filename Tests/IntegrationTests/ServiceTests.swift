// Services against a real apiserver: cluster IP and NodePort allocation (requested, automatic,
// clashes, exhaustion, concurrency, release, repair after a restart), the kubernetes and kube-dns
// Services, and the EndpointSlice controller keeping slices and Endpoints in step with pods.
import Testing
import Foundation
import API
@testable import APIServer
import Store
import Client
import Controllers

@Suite(.serialized) struct ServiceTests {
    func service(_ name: String, type: String = "ClusterIP", clusterIP: String? = nil, nodePort: Int? = nil, selector: [String: String]? = ["app": "x"]) -> JSONValue {
        var port: [String: JSONValue] = ["port": 80, "targetPort": 8080]
        if let nodePort { port["nodePort"] = .int(Int64(nodePort)) }
        var spec: [String: JSONValue] = ["type": .string(type), "ports": .array([.object(port)])]
        if let clusterIP { spec["clusterIP"] = .string(clusterIP) }
        if let selector { spec["selector"] = .object(selector.mapValues { .string($0) }) }
        return .object(["apiVersion": "v1", "kind": "Service", "metadata": .object(["name": .string(name)]), "spec": .object(spec)])
    }

    func create(_ k: KubeClient, _ body: JSONValue) async throws -> RawResponse {
        try await k.request(.POST, Resources.services.path(namespace: "default"), body: try body.encoded())
    }

    @Test func clusterIPsAndNodePortsAreAllocatedOnceAndReleased() async throws {
        let c = try await TestCluster.start(inMemory: true) { $0.services = ServiceNetworkConfig(serviceCIDR: CIDR("198.18.200.0/28")!, nodePortRange: 30000...30003) }
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        // The built-in Services take .1 and .10.
        #expect(try await k.get(Service.self, "kubernetes").spec?.clusterIP == "198.18.200.1")
        #expect(try await k.get(Service.self, "kube-dns", namespace: "kube-system").spec?.clusterIP == "198.18.200.10")
        let eps = try await k.get(EndpointSlice.self, "kubernetes")
        #expect(eps.endpoints.first?.addresses == ["127.0.0.1"])

        // Automatic, requested, and a clash naming the field.
        let a = try KubeJSON.decode(Service.self, from: try await create(k, service("a")).body)
        let ipA = try #require(a.spec?.clusterIP)
        #expect(CIDR("198.18.200.0/28")!.contains(ipA) && ipA != "198.18.200.1" && ipA != "198.18.200.10")
        #expect(a.spec?.clusterIPs == [ipA])
        let free = (2...14).map { "198.18.200.\($0)" }.first { $0 != ipA && $0 != "198.18.200.10" }!
        let b = try await create(k, service("b", clusterIP: free))
        #expect(b.status == 201)
        let clash = try await create(k, service("c", clusterIP: free))
        #expect(clash.status == 422)
        #expect(String(decoding: clash.body, as: UTF8.self).contains("spec.clusterIPs"))
        #expect(String(decoding: clash.body, as: UTF8.self).contains("already allocated"))
        let outside = try await create(k, service("c", clusterIP: "198.18.201.5"))
        #expect(outside.status == 422 && String(decoding: outside.body, as: UTF8.self).contains("valid range"))

        // Headless and ExternalName get no address.
        let h = try KubeJSON.decode(Service.self, from: try await create(k, service("h", clusterIP: "None")).body)
        #expect(h.spec?.clusterIP == "None")

        // An update that leaves the address out keeps it; changing it is refused.
        var upd = try await k.get(Service.self, "a")
        upd.spec?.clusterIP = nil; upd.spec?.clusterIPs = nil
        #expect(try await k.update(upd).spec?.clusterIP == ipA)
        upd = try await k.get(Service.self, "a")
        upd.spec?.clusterIP = free; upd.spec?.clusterIPs = [free]
        await #expect { try await k.update(upd) } throws: { status($0)?.code == 422 }

        // NodePorts: requested, clash, automatic, and exhaustion is a 422 saying so.
        #expect(try await create(k, service("np1", type: "NodePort", nodePort: 30001)).status == 201)
        let npClash = try await create(k, service("np2", type: "NodePort", nodePort: 30001))
        #expect(npClash.status == 422 && String(decoding: npClash.body, as: UTF8.self).contains("spec.ports[0].nodePort"))
        let np3 = try KubeJSON.decode(Service.self, from: try await create(k, service("np3", type: "NodePort")).body)
        #expect((30000...30003).contains(np3.spec?.ports?.first?.nodePort ?? 0))

        // Fill the address range: 16 addresses, network and broadcast excluded, .1/.10 taken.
        var made = 0
        while true {
            let r = try await create(k, service("fill-\(made)"))
            if r.status != 201 {
                #expect(r.status == 422)
                #expect(String(decoding: r.body, as: UTF8.self).contains("is full"))
                break
            }
            made += 1
            if made > 20 { Issue.record("more services than addresses"); break }
        }
        // Every address handed out is distinct.
        let all = try await k.list(Service.self, allNamespaces: true).items.compactMap { $0.spec?.clusterIP }.filter { $0 != "None" }
        #expect(Set(all).count == all.count)
        #expect(all.count == 14)   // 16 - network - broadcast

        // Deleting releases: the address can be requested again.
        try await k.delete(Service.self, "b")
        try await eventually(5, "address released") { try await create(k, service("b2", clusterIP: free)).status == 201 ? true : nil }
        try await k.delete(Service.self, "np1")
        try await eventually(5, "node port released") { try await create(k, service("np4", type: "NodePort", nodePort: 30001)).status == 201 ? true : nil }
    }

    @Test func concurrentCreatesNeverShareAnAddress() async throws {
        let c = try await TestCluster.start(inMemory: true) { $0.services = ServiceNetworkConfig(serviceCIDR: CIDR("198.18.200.0/26")!) }
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let bodies = try (0..<80).map { try service("s\($0)").encoded() }
        let path = Resources.services.path(namespace: "default")
        let codes = try await withThrowingTaskGroup(of: Int.self) { g in
            for b in bodies { g.addTask { try await k.request(.POST, path, body: b).status } }
            return try await g.reduce(into: [Int]()) { $0.append($1) }
        }
        // 64 addresses: minus network, broadcast, .1 and .10 = 60 for these 80 requests.
        #expect(codes.filter { $0 == 201 }.count == 60)
        #expect(codes.filter { $0 != 201 }.allSatisfy { $0 == 422 })
        let ips = try await k.list(Service.self).items.compactMap { $0.spec?.clusterIP }
        #expect(Set(ips).count == ips.count)
    }

    @Test func allocationsSurviveARestartAndRepairReleasesLeftovers() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("svc-\(UUID())").path
        let first = try await TestCluster.start(dir: dir)
        let k = try first.admin()
        let s = try KubeJSON.decode(Service.self, from: try await create(k, service("keep", type: "NodePort")).body)
        await first.stop()
        let c = try await TestCluster.start(dir: dir)
        defer { Task { await c.cleanup() } }
        let k2 = try c.admin()
        let again = try await create(k2, service("other", clusterIP: s.spec!.clusterIP!))
        #expect(again.status == 422)   // still held by "keep"
        let np = try await create(k2, service("other2", type: "NodePort", nodePort: s.spec!.ports![0].nodePort!))
        #expect(np.status == 422)
    }

    @Test func endpointSlicesFollowPodsReadinessAndDeletion() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []))
        let task = Task { await cm.run() }
        defer { task.cancel() }
        var body = service("web", selector: ["app": "web"])
        body["spec"]?["ports"] = .array([.object(["name": "http", "port": 80, "targetPort": "web"])])
        #expect(try await create(k, body).status == 201)
        for (i, ready) in [(1, true), (2, false)] {
            var p = pod("web-\(i)", node: "n1", labels: ["app": "web"])
            p.spec?.containers[0].ports = [ContainerPort(containerPort: 8080, name: "web")]
            var made = try await k.create(p)
            made.status = PodStatus(phase: "Running")
            made.status?.podIP = "198.19.1.\(i)"
            made.status?.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False")]
            _ = try await k.updateStatus(made)
        }
        func slice() async throws -> EndpointSlice? {
            try await k.list(EndpointSlice.self, labelSelector: "kubernetes.io/service-name=web").items.first
        }
        let s = try await eventually(10, "slice with two endpoints") { try await slice().flatMap { $0.endpoints.count == 2 ? $0 : nil } }
        let byIP = Dictionary(uniqueKeysWithValues: s.endpoints.map { ($0.addresses[0], $0) })
        #expect(byIP["198.19.1.1"]?.conditions == EndpointConditions(ready: true, serving: true, terminating: false))
        #expect(byIP["198.19.1.2"]?.conditions == EndpointConditions(ready: false, serving: false, terminating: false))
        // The named target port resolved through the pods' container port.
        #expect(s.ports == [EndpointSlicePort(name: "http", protocol: "TCP", port: 8080)])
        #expect(s.labels[EndpointSlice.managedByLabel] == EndpointSlice.controllerName)
        #expect(s.metadata.ownerReferences?.first?.kind == "Service")
        let ep = try await eventually(10, "legacy endpoints") { () -> Endpoints? in
            let e = try? await k.get(Endpoints.self, "web")
            return (e?.subsets ?? []).isEmpty ? nil : e
        }
        #expect(ep.subsets!.flatMap { $0.addresses ?? [] }.map(\.ip) == ["198.19.1.1"])
        #expect(ep.subsets!.flatMap { $0.notReadyAddresses ?? [] }.map(\.ip) == ["198.19.1.2"])

        // Readiness flips within a second; deletion marks the endpoint terminating.
        var p2 = try await k.get(Pod.self, "web-2")
        p2.status?.conditions = [PodCondition(type: "Ready", status: "True")]
        _ = try await k.updateStatus(p2)
        _ = try await eventually(5, "web-2 ready in its slice") { () -> Bool? in
            let eps = try await k.list(EndpointSlice.self, labelSelector: "kubernetes.io/service-name=web").items.flatMap(\.endpoints)
            return eps.first { $0.addresses == ["198.19.1.2"] }?.conditions?.ready == true ? true : nil
        }
        try await k.delete(Pod.self, "web-1")   // bound to a node: graceful, stays until the node finishes
        _ = try await eventually(5, "web-1 terminating") { () -> Bool? in
            let eps = try await k.list(EndpointSlice.self, labelSelector: "kubernetes.io/service-name=web").items.flatMap(\.endpoints)
            let c = eps.first { $0.addresses == ["198.19.1.1"] }?.conditions
            return c == EndpointConditions(ready: false, serving: true, terminating: true) ? true : nil
        }
        // The Service going takes its slices along.
        try await k.delete(Service.self, "web")
        _ = try await eventually(5, "slices gone") { try await slice() == nil ? true : nil }
    }

    @Test func repairReleasesWhatACrashLeftAndRestoresWhatServicesHold() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let alloc = try #require(c.server.registry.allocator)
        // A claim whose Service never got written (the apiserver died in between), long ago...
        let old = #"{"namespace":"default","service":"ghost","uid":"dead","created":1000}"#
        _ = try await c.server.store.write(.create(StoredObject(key: ServiceAllocator.key("ip-198.18.128.77"), data: Data(old.utf8), labels: [:], fields: [:])))
        // ...and one made a moment ago, whose Service may still be on its way: left alone.
        let fresh = #"{"namespace":"default","service":"soon","uid":"new","created":\#(Date().timeIntervalSince1970)}"#
        _ = try await c.server.store.write(.create(StoredObject(key: ServiceAllocator.key("ip-198.18.128.78"), data: Data(fresh.utf8), labels: [:], fields: [:])))
        // A Service whose record went missing.
        let s = try KubeJSON.decode(Service.self, from: try await create(k, service("held")).body)
        let ip = try #require(s.spec?.clusterIP)
        let key = ServiceAllocator.key(ServiceAllocator.ipName(ip))
        let cur = try #require(c.server.store.get(key))
        _ = try await c.server.store.write(.delete(key, expectedRevision: cur.revision, finalData: cur.data))

        let r = await alloc.repair()
        #expect(r.released == 1 && r.restored == 1)
        #expect(c.server.store.get(ServiceAllocator.key("ip-198.18.128.77")) == nil)
        #expect(c.server.store.get(ServiceAllocator.key("ip-198.18.128.78")) != nil)
        #expect(try await create(k, service("thief", clusterIP: ip)).status == 422)
        #expect(try await create(k, service("reuse", clusterIP: "198.18.128.77")).status == 201)
    }
}
