// ServiceAccounts: every active namespace has a `default` ServiceAccount; one that is deleted
// comes back (Kubernetes' serviceaccounts-controller).
import Foundation
import Logging
import API
import Client

public final class ServiceAccountsController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let logger = Logger(label: "serviceaccount-controller")
    public static let managed = ["default"]

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers
        queue = WorkQueue(clock: clock)
        informers.namespaces.addHandler { [weak self] ev in
            switch ev { case .added(let n), .updated(_, let n): self?.queue.add(n.name); case .deleted: break }
        }
        informers.serviceAccounts.addHandler { [weak self] ev in
            if case .deleted(let sa) = ev, Self.managed.contains(sa.name) { self?.queue.add(sa.namespace) }
        }
    }

    public func run(workers: Int = 1) async {
        await runWorkers(workers, queue: queue, logger: logger) { ns in try await self.reconcile(ns) }
    }

    func reconcile(_ ns: String) async throws -> ReconcileResult {
        guard let n = informers.namespaces.get(ns), n.metadata.deletionTimestamp == nil, n.status?.phase != "Terminating" else { return .done }
        for name in Self.managed where informers.serviceAccounts.get(namespace: ns, name: name) == nil {
            do { _ = try await client.create(ServiceAccount(name: name, namespace: ns)) }
            catch let s as Status where s.code == 409 {}
            catch let s as Status where s.code == 403 || s.code == 404 { return .done }   // namespace going away
        }
        return .done
    }
}
