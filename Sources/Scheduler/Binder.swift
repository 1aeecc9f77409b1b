// The scheduler's binding cycle, apart from its decisions (as kube-scheduler binds in its own
// goroutine): workers hand a decided pod to the binder and go on to the next pod. The binder
// sends what has gathered in one batch bindings request (BindingList) while at most
// `maxInFlight` requests are out, so under a backlog each request carries many pods and the
// apiserver commits them together. A server without the extension gets one pods/binding call
// per pod instead, several at once.
import API
import Client
import Logging
import Synchronization

final class Binder: Sendable {
    struct Item: Sendable {
        var namespace: String
        var name: String
        var node: String
        var done: @Sendable (Result<Void, Error>) -> Void
    }
    struct State {
        var pending: [Item] = []
        var inFlight = 0
        /// nil until the first request says whether the server offers batch bindings.
        var batched: Bool?
    }
    let client: KubeClient
    let maxBatch: Int
    let maxInFlight: Int
    let state = Mutex(State())

    init(client: KubeClient, maxBatch: Int = 500, maxInFlight: Int = 4) {
        self.client = client; self.maxBatch = maxBatch; self.maxInFlight = maxInFlight
    }

    /// Queues a binding; `done` is called once it is bound or has failed.
    func submit(namespace: String, name: String, node: String, done: @escaping @Sendable (Result<Void, Error>) -> Void) {
        let start = state.withLock { s -> Bool in
            s.pending.append(Item(namespace: namespace, name: name, node: node, done: done))
            guard s.inFlight < maxInFlight else { return false }
            s.inFlight += 1
            return true
        }
        if start { Task { await self.drain() } }
    }

    /// Sends batches until nothing is pending, then gives its slot back.
    func drain() async {
        while true {
            let (batch, batched) = state.withLock { s -> ([Item], Bool?) in
                let n = min(s.pending.count, s.batched == false ? 16 : maxBatch)
                let b = Array(s.pending.prefix(n))
                s.pending.removeFirst(n)
                if b.isEmpty { s.inFlight -= 1 }
                return (b, s.batched)
            }
            if batch.isEmpty { return }
            if batched == false { await bindEach(batch); continue }
            do {
                let bindings = batch.map { Binding(podName: $0.name, namespace: $0.namespace, nodeName: $0.node) }
                guard let results = try await client.bindMany(bindings) else {
                    state.withLock { $0.batched = false }
                    await bindEach(batch)
                    continue
                }
                state.withLock { $0.batched = true }
                for (item, r) in zip(batch, results) {
                    if let f = r.failure { item.done(.failure(f)) } else { item.done(.success(())) }
                }
            } catch {
                for item in batch { item.done(.failure(error)) }
            }
        }
    }

    func bindEach(_ items: [Item]) async {
        let client = self.client
        await withTaskGroup(of: Void.self) { group in
            for item in items {
                group.addTask {
                    do {
                        try await client.bind(pod: item.name, namespace: item.namespace, node: item.node)
                        item.done(.success(()))
                    } catch { item.done(.failure(error)) }
                }
            }
        }
    }
}
