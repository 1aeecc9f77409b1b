// The disruption controller: keeps each PodDisruptionBudget's status (expected, healthy and
// desired pods, disruptions allowed) in step with its pods, and forgets evicted pods once they
// are gone or after two minutes, as Kubernetes does.
import Foundation
import Logging
import API
import Client

public final class DisruptionController: Sendable {
    /// An evicted pod counts as disrupted this long at most.
    public static let disruptedTimeout: TimeInterval = 120
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let clock: any ControlClock
    let logger = Logger(label: "disruption-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        informers.pdbs.addHandler { [weak self] ev in
            switch ev { case .added(let b), .updated(_, let b), .deleted(let b): self?.queue.add(Informer<PodDisruptionBudget>.key(b)) }
        }
        informers.pods.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let p), .deleted(let p): self.enqueueBudgets(of: p)
            case .updated(let old, let p):
                if old.labels == p.labels, old.isReady == p.isReady, old.phase == p.phase,
                   old.metadata.deletionTimestamp == p.metadata.deletionTimestamp { return }
                self.enqueueBudgets(of: p)
                if old.labels != p.labels { self.enqueueBudgets(of: old) }
            }
        }
    }

    func enqueueBudgets(of p: Pod) {
        for b in informers.pdbs.list(namespace: p.namespace) where b.spec?.selector?.matches(p.labels) ?? false {
            queue.add(Informer<PodDisruptionBudget>.key(b))
        }
    }

    public func run(workers: Int = 2) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, let pdb = informers.pdbs.get(namespace: parts[0], name: parts[1]) else { return .done }
        let pods = informers.pods.list(namespace: pdb.namespace).filter { pdb.spec?.selector?.matches($0.labels) ?? false }
        let now = clock.now()
        let byName = Dictionary(pods.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var disrupted: [String: String] = [:]
        var nextExpiry: Double?
        for (name, at) in pdb.status?.disruptedPods ?? [:] {
            // Kept while the pod still runs and the eviction is recent.
            guard let p = byName[name], p.metadata.deletionTimestamp == nil, let t = KubeTime.parse(at) else { continue }
            let left = t.addingTimeInterval(Self.disruptedTimeout).timeIntervalSince(now)
            if left > 0 { disrupted[name] = at; nextExpiry = min(nextExpiry ?? left, left) }
        }
        var next = pdb
        next.status = Disruption.status(pdb, pods: pods, disrupted: disrupted, now: KubeTime.format(now))
        if next.status != pdb.status {
            do { _ = try await client.updateStatus(next) }
            catch let s as Status where s.code == 409 { return .requeue(after: 0.1) }
        }
        return nextExpiry.map { .requeue(after: $0 + 0.5) } ?? .done
    }
}
