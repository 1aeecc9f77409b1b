// ServiceAccounts: every active namespace has a `default` ServiceAccount, and a kube-root-ca.crt
// ConfigMap with the cluster CA (what pods' projected token volumes carry as ca.crt). Either
// one deleted or changed comes back (Kubernetes' serviceaccounts-controller and
// root-ca-cert-publisher).
import Foundation
import Logging
import API
import Client

public final class ServiceAccountsController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let rootCA: String?
    let logger = Logger(label: "serviceaccount-controller")
    public static let managed = ["default"]
    public static let rootCAName = "kube-root-ca.crt"

    /// rootCA: the cluster CA to publish (nil: the one the client trusts).
    public init(client: KubeClient, informers: SharedInformers, rootCA: String? = nil, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers
        self.rootCA = rootCA ?? client.caPEM
        queue = WorkQueue(clock: clock)
        informers.namespaces.addHandler { [weak self] ev in
            switch ev { case .added(let n), .updated(_, let n): self?.queue.add(n.name); case .deleted: break }
        }
        informers.serviceAccounts.addHandler { [weak self] ev in
            if case .deleted(let sa) = ev, Self.managed.contains(sa.name) { self?.queue.add(sa.namespace) }
        }
        informers.rootCAConfigMaps.addHandler { [weak self] ev in
            switch ev { case .added(let c), .updated(_, let c), .deleted(let c): self?.queue.add(c.namespace) }
        }
    }

    public func run(workers: Int = 1) async {
        await runWorkers(workers, queue: queue, logger: logger) { ns in try await self.reconcile(ns) }
    }

    func reconcile(_ ns: String) async throws -> ReconcileResult {
        guard let n = informers.namespaces.get(ns), n.metadata.deletionTimestamp == nil, n.status?.phase != "Terminating" else { return .done }
        do {
            for name in Self.managed where informers.serviceAccounts.get(namespace: ns, name: name) == nil {
                do { _ = try await client.create(ServiceAccount(name: name, namespace: ns)) }
                catch let s as Status where s.code == 409 {}
            }
            if let ca = rootCA, !ca.isEmpty {
                let want = ["ca.crt": ca]
                if let cur = informers.rootCAConfigMaps.get(namespace: ns, name: Self.rootCAName) {
                    if cur.data != want {
                        var next = cur
                        next.data = want
                        next.binaryData = nil
                        _ = try await client.update(next)
                    }
                } else {
                    var cm = ConfigMap(name: Self.rootCAName, namespace: ns)
                    cm.data = want
                    cm.metadata.annotations = ["kubernetes.io/description": "The cluster CA: pods verify the apiserver at kubernetes.default.svc with it."]
                    do { _ = try await client.create(cm) } catch let s as Status where s.code == 409 {}
                }
            }
        } catch let s as Status where s.code == 403 || s.code == 404 { return .done }   // namespace going away
        return .done
    }
}
