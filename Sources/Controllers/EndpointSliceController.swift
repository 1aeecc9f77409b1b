// EndpointSlice (discovery.k8s.io/v1) and the legacy v1 Endpoints for every Service with a
// selector: one endpoint per pod IP with ready/serving/terminating as Kubernetes defines
// them, named target ports resolved per pod, slices of at most 100 endpoints per port set.
import Foundation
import Logging
import API
import Client

/// What one slice should hold: the resolved ports and the endpoints using them.
public struct DesiredSlice: Hashable, Sendable {
    public var ports: [EndpointSlicePort]?
    public var endpoints: [Endpoint]
}

public enum EndpointComputation {
    public static let maxEndpointsPerSlice = 100

    /// Whether a pod belongs in a Service's endpoints at all (Kubernetes' ShouldPodBeInEndpoints).
    static func eligible(_ p: Pod, includeTerminating: Bool) -> Bool {
        if p.isTerminal || (p.status?.podIP ?? "").isEmpty { return false }
        if !includeTerminating && p.metadata.deletionTimestamp != nil { return false }
        return true
    }

    /// The container port a Service port reaches on this pod; nil if a named port is missing.
    static func resolve(_ sp: ServicePort, _ pod: Pod) -> Int? {
        switch sp.targetPort ?? .int(sp.port) {
        case .int(let n): return n
        case .string(let name):
            for c in pod.spec?.containers ?? [] {
                for cp in c.ports ?? [] where cp.name == name && (cp.protocol ?? "TCP") == (sp.protocol ?? "TCP") { return cp.containerPort }
            }
            return nil
        }
    }

    public static func conditions(_ p: Pod, publishNotReady: Bool) -> EndpointConditions {
        let terminating = p.metadata.deletionTimestamp != nil
        let serving = p.isReady
        // A terminating pod is never "ready" unless the Service publishes not-ready addresses.
        let ready = publishNotReady || (serving && !terminating)
        return EndpointConditions(ready: ready, serving: serving, terminating: terminating)
    }

    /// The slices a Service should have, given the pods in its namespace and the nodes (for zones).
    public static func slices(for svc: Service, pods: [Pod], nodes: [String: Node]) -> [DesiredSlice] {
        guard let sel = svc.spec?.selector, !sel.isEmpty, svc.spec?.type != "ExternalName" else { return [] }
        let publish = svc.spec?.publishNotReadyAddresses ?? false
        var groups: [[EndpointSlicePort]: [Endpoint]] = [:]
        for p in pods where p.namespace == svc.namespace && sel.allSatisfy({ p.labels[$0.key] == $0.value }) && eligible(p, includeTerminating: true) {
            var ports: [EndpointSlicePort] = []
            for sp in svc.spec?.ports ?? [] {
                guard let n = resolve(sp, p) else { continue }
                ports.append(EndpointSlicePort(name: sp.name ?? "", protocol: sp.protocol ?? "TCP", port: n, appProtocol: sp.appProtocol))
            }
            var ep = Endpoint(addresses: [p.status!.podIP!], conditions: conditions(p, publishNotReady: publish))
            ep.targetRef = ObjectReference(kind: "Pod", namespace: p.namespace, name: p.name, uid: p.metadata.uid)
            ep.nodeName = p.spec?.nodeName
            if let node = p.spec?.nodeName, let zone = nodes[node]?.labels["topology.kubernetes.io/zone"] { ep.zone = zone }
            if let h = p.spec?.hostname, !h.isEmpty, p.spec?.subdomain == svc.name { ep.hostname = h }
            groups[ports, default: []].append(ep)
        }
        if groups.isEmpty { return [DesiredSlice(ports: nil, endpoints: [])] }   // the placeholder Kubernetes keeps
        var out: [DesiredSlice] = []
        for (ports, eps) in groups.sorted(by: { portsKey($0.key) < portsKey($1.key) }) {
            let sorted = eps.sorted { $0.addresses[0] < $1.addresses[0] }
            var i = 0
            while i < sorted.count {
                out.append(DesiredSlice(ports: ports, endpoints: Array(sorted[i..<min(i + maxEndpointsPerSlice, sorted.count)])))
                i += maxEndpointsPerSlice
            }
        }
        return out
    }

    static func portsKey(_ ps: [EndpointSlicePort]) -> String {
        ps.map { "\($0.name ?? "")/\($0.protocol ?? "")/\($0.port ?? 0)" }.joined(separator: ",")
    }

    /// The legacy Endpoints subsets: ready addresses and not-ready ones, grouped by port set;
    /// terminating pods are left out unless the Service publishes not-ready addresses.
    public static func subsets(for svc: Service, pods: [Pod]) -> [EndpointSubset] {
        guard let sel = svc.spec?.selector, !sel.isEmpty, svc.spec?.type != "ExternalName" else { return [] }
        let publish = svc.spec?.publishNotReadyAddresses ?? false
        var groups: [[EndpointPort]: (ready: [EndpointAddress], notReady: [EndpointAddress])] = [:]
        for p in pods where p.namespace == svc.namespace && sel.allSatisfy({ p.labels[$0.key] == $0.value }) && eligible(p, includeTerminating: publish) {
            var ports: [EndpointPort] = []
            for sp in svc.spec?.ports ?? [] {
                guard let n = resolve(sp, p) else { continue }
                ports.append(EndpointPort(name: sp.name, port: n, protocol: sp.protocol ?? "TCP", appProtocol: sp.appProtocol))
            }
            if ports.isEmpty && !(svc.spec?.ports ?? []).isEmpty { continue }
            var a = EndpointAddress(ip: p.status!.podIP!)
            a.nodeName = p.spec?.nodeName
            if let h = p.spec?.hostname, !h.isEmpty, p.spec?.subdomain == svc.name { a.hostname = h }
            a.targetRef = .object(["kind": "Pod", "namespace": .string(p.namespace), "name": .string(p.name), "uid": .string(p.metadata.uid ?? "")])
            if publish || p.isReady { groups[ports, default: ([], [])].ready.append(a) } else { groups[ports, default: ([], [])].notReady.append(a) }
        }
        return groups.sorted { $0.key.map { "\($0.port)" }.joined() < $1.key.map { "\($0.port)" }.joined() }.map { ports, g in
            EndpointSubset(addresses: g.ready.isEmpty ? nil : g.ready.sorted { $0.ip < $1.ip },
                           notReadyAddresses: g.notReady.isEmpty ? nil : g.notReady.sorted { $0.ip < $1.ip },
                           ports: ports.isEmpty ? nil : ports)
        }
    }

    /// A stable name for the i-th slice of a Service.
    public static func sliceName(_ svc: String, index: Int) -> String {
        let h = FNV1a.hash32("\(svc)/\(index)".utf8)
        return "\(svc.prefix(200))-\(String(h % 1_000_000, radix: 36))"
    }
}

public final class EndpointSliceController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let clock: any ControlClock
    let logger = Logger(label: "endpointslice-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        informers.services.addHandler { [weak self] ev in
            switch ev { case .added(let s), .updated(_, let s), .deleted(let s): self?.queue.add(Informer<Service>.key(s)) }
        }
        informers.pods.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let p), .deleted(let p): self.enqueueServices(of: p)
            case .updated(let old, let p):
                // Only what endpoints show: labels, IP, readiness, deletion, phase, hostname.
                if old.labels == p.labels, old.status?.podIP == p.status?.podIP, old.isReady == p.isReady,
                   old.metadata.deletionTimestamp == p.metadata.deletionTimestamp, old.phase == p.phase,
                   old.spec?.nodeName == p.spec?.nodeName, old.spec?.hostname == p.spec?.hostname { return }
                self.enqueueServices(of: p)
                if old.labels != p.labels { self.enqueueServices(of: old) }
            }
        }
        informers.endpointSlices.addHandler { [weak self] ev in
            switch ev {
            case .added(let s), .updated(_, let s), .deleted(let s):
                if let svc = s.serviceName { self?.queue.add("\(s.namespace)/\(svc)") }
            }
        }
    }

    func enqueueServices(of p: Pod) {
        for s in informers.services.list(namespace: p.namespace) {
            guard let sel = s.spec?.selector, !sel.isEmpty, sel.allSatisfy({ p.labels[$0.key] == $0.value }) else { continue }
            queue.add(Informer<Service>.key(s))
        }
    }

    public func run(workers: Int = 4) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return .done }
        let (ns, name) = (parts[0], parts[1])
        let existing = informers.endpointSlices.list(namespace: ns).filter {
            $0.serviceName == name && $0.labels[EndpointSlice.managedByLabel] == EndpointSlice.controllerName
        }
        guard let svc = informers.services.get(namespace: ns, name: name), let sel = svc.spec?.selector, !sel.isEmpty else {
            // Gone, or its endpoints are the user's to manage: remove what we made.
            for s in existing { try await deleteIgnoringMissing(EndpointSlice.self, s.name, ns) }
            if informers.services.get(namespace: ns, name: name) == nil,
               let ep = informers.endpoints.get(namespace: ns, name: name), ep.labels["endpointslice.kubernetes.io/skip-mirror"] == nil {
                try await deleteIgnoringMissing(Endpoints.self, name, ns)
            }
            return .done
        }
        let pods = informers.pods.list(namespace: ns)
        var nodes: [String: Node] = [:]
        for n in informers.nodes.list() { nodes[n.name] = n }
        let desired = EndpointComputation.slices(for: svc, pods: pods, nodes: nodes)
        var labels = svc.labels
        labels[EndpointSlice.serviceNameLabel] = name
        labels[EndpointSlice.managedByLabel] = EndpointSlice.controllerName
        let owner = OwnerReference(apiVersion: "v1", kind: "Service", name: name, uid: svc.metadata.uid ?? "", controller: true, blockOwnerDeletion: true)
        var wanted = Set<String>()
        for (i, d) in desired.enumerated() {
            let sliceName = EndpointComputation.sliceName(name, index: i)
            wanted.insert(sliceName)
            if var cur = existing.first(where: { $0.name == sliceName }) {
                if cur.endpoints == d.endpoints && cur.ports == d.ports && cur.labels == labels { continue }
                cur.endpoints = d.endpoints; cur.ports = d.ports; cur.metadata.labels = labels
                cur.metadata.ownerReferences = [owner]
                _ = try await client.update(cur)
            } else {
                var s = EndpointSlice(metadata: ObjectMeta(name: sliceName, namespace: ns, labels: labels), endpoints: d.endpoints, ports: d.ports)
                s.metadata.ownerReferences = [owner]
                do { _ = try await client.create(s) }
                catch let st as Status where st.code == 409 { return .requeue(after: 0.05) }   // our cache is behind
            }
        }
        for s in existing where !wanted.contains(s.name) { try await deleteIgnoringMissing(EndpointSlice.self, s.name, ns) }
        try await syncEndpoints(svc, pods: pods)
        return .done
    }

    func syncEndpoints(_ svc: Service, pods: [Pod]) async throws {
        let subsets = EndpointComputation.subsets(for: svc, pods: pods)
        if var cur = informers.endpoints.get(namespace: svc.namespace, name: svc.name) {
            if (cur.subsets ?? []) == subsets && cur.labels == svc.labels { return }
            cur.subsets = subsets.isEmpty ? nil : subsets
            cur.metadata.labels = svc.labels.isEmpty ? nil : svc.labels
            _ = try await client.update(cur)
        } else {
            var ep = Endpoints(metadata: ObjectMeta(name: svc.name, namespace: svc.namespace, labels: svc.labels.isEmpty ? nil : svc.labels))
            ep.subsets = subsets.isEmpty ? nil : subsets
            do { _ = try await client.create(ep) } catch let st as Status where st.code == 409 {}
        }
    }

    func deleteIgnoringMissing<T: KubeObject>(_ t: T.Type, _ name: String, _ ns: String) async throws {
        do { try await client.delete(t, name, namespace: ns) } catch let s as Status where s.code == 404 {}
    }
}
