// The namespace finalizer when the namespace's own delete fails: said, counted, tried again; the
// namespace stays (Terminating) until a delete works.
import Testing
import Foundation
import Synchronization
import API
import APIServer
import Client
import Store

/// A real store that refuses every delete of a Namespace while `refusing` is set.
final class NamespaceDeletesRefused: ObjectStore {
    let inner: any ObjectStore
    let refusing = Mutex(true)
    let refused = Mutex(0)
    init(_ inner: any ObjectStore) { self.inner = inner }

    var currentRevision: Int64 { inner.currentRevision }
    var metrics: StoreMetrics { inner.metrics }
    var watcherCount: Int { inner.watcherCount }
    var backendName: String { inner.backendName }
    func get(_ key: ObjectKey) -> StoredObject? { inner.get(key) }
    func list(resource: String, namespace: String?) -> (items: [StoredObject], revision: Int64) { inner.list(resource: resource, namespace: namespace) }
    func list(resource: String, namespace: String?, atRevision: Int64) throws -> (items: [StoredObject], revision: Int64) {
        try inner.list(resource: resource, namespace: namespace, atRevision: atRevision)
    }
    func count(resource: String) -> Int { inner.count(resource: resource) }
    func resources(inNamespace ns: String) -> [String] { inner.resources(inNamespace: ns) }
    func write(_ op: WriteOp) async throws -> StoredObject {
        if case .delete(let key, _, _) = op, key.resource == Resources.namespaces.groupResource, refusing.withLock({ $0 }) {
            refused.withLock { $0 += 1 }
            throw StoreError.backend("refused by the test")
        }
        return try await inner.write(op)
    }
    func watch(resource: String, namespace: String?, fromRevision: Int64?, filter: (@Sendable (StoreEvent) -> StoreEvent?)?) throws -> StoreSubscription {
        try inner.watch(resource: resource, namespace: namespace, fromRevision: fromRevision, filter: filter)
    }
    func readiness() async -> String? { await inner.readiness() }
    func sync() async throws { try await inner.sync() }
    func closeWatches() { inner.closeWatches() }
}

@Suite(.serialized) struct NamespaceFinalizerTests {
    @Test func aNamespaceWhoseDeleteFailsIsCountedKeptAndDeletedOnceItWorks() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apiserver-\(UUID())").path
        var config = APIServerConfig(dataDir: dir)
        config.securePort = 0
        config.bindAddress = "127.0.0.1"
        config.inMemory = true
        config.logLevel = .critical
        let store = NamespaceDeletesRefused(try Store(backend: MemoryBackend(), options: config.storeOptions))
        let server = try APIServer(config: config, store: store)
        let c = TestCluster(dir: dir, server: server, running: try await server.start())
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(Namespace(name: "doomed"))
        _ = try await k.create(ConfigMap(name: "inside", namespace: "doomed"))
        let before = ComponentMetrics.shared.value("orchestrator_failed_writes_total", ["writer": "namespace-finalizer"])
        try await k.delete(Namespace.self, "doomed")
        // Its contents go; its own delete is refused, pass after pass: counted each time, and the
        // namespace stays, Terminating (it used to be logged as deleted).
        _ = try await eventually(15, "two refused deletes counted") { () -> Bool? in
            ComponentMetrics.shared.value("orchestrator_failed_writes_total", ["writer": "namespace-finalizer"]) >= before + 2 ? true : nil
        }
        #expect(store.refused.withLock { $0 } >= 2)
        let ns = try await k.get(Namespace.self, "doomed")
        #expect(ns.status?.phase == "Terminating")
        #expect(try await k.list(ConfigMap.self, namespace: "doomed").items.isEmpty)
        // The store takes deletes again: the next pass deletes it.
        store.refusing.withLock { $0 = false }
        _ = try await eventually(15, "doomed gone") { () -> Bool? in
            do { _ = try await k.get(Namespace.self, "doomed"); return nil } catch let s as Status where s.code == 404 { return true }
        }
    }
}
