// The object store. `ObjectStore` is what the apiserver programs against: reads and watches
// served from a `WatchCache` (every current object, a bounded log of recent changes, watch
// fan-out), conditional writes decided by the backend that owns revisions. Two stores implement
// it: `Store` here, one process's group-committing writer over SQLite (memory in tests), and
// `EtcdStore` (module Etcd), where etcd decides revisions and the cache follows an etcd watch.
import Foundation
import Synchronization
import Logging

public struct ObjectKey: Hashable, Sendable, CustomStringConvertible {
    public var resource: String
    public var namespace: String
    public var name: String
    public init(resource: String, namespace: String, name: String) { self.resource = resource; self.namespace = namespace; self.name = name }
    public var description: String { namespace.isEmpty ? "\(resource)/\(name)" : "\(resource)/\(namespace)/\(name)" }
}

/// One object as committed: its JSON bytes carry `metadata.resourceVersion == revision`.
public struct StoredObject: Sendable {
    public var key: ObjectKey
    public var revision: Int64
    public var data: Data
    public var labels: [String: String]
    public var fields: [String: String]
    public init(key: ObjectKey, revision: Int64 = 0, data: Data, labels: [String: String], fields: [String: String]) {
        self.key = key; self.revision = revision; self.data = data; self.labels = labels; self.fields = fields
    }
}

public enum EventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK" }

public struct StoreEvent: Sendable {
    public var type: EventType
    public var object: StoredObject
    /// The object before this change (nil for ADDED): lets selector watches turn changes into ADDED/DELETED.
    public var previous: StoredObject?
    public var revision: Int64 { object.revision }
    public init(type: EventType, object: StoredObject, previous: StoredObject?) { self.type = type; self.object = object; self.previous = previous }
}

public enum WriteOp: Sendable {
    /// Fails with `.alreadyExists` if the key exists; with `unchanged`, also with `.conflict`
    /// naming that key if it is no longer at that revision (an object created in a namespace
    /// only while the namespace is as it was checked: never after it began to terminate).
    case create(StoredObject, unchanged: (key: ObjectKey, revision: Int64)? = nil)
    /// Fails with `.notFound` if absent, `.conflict` if `expectedRevision` is set and differs.
    case update(StoredObject, expectedRevision: Int64?)
    /// `finalData` is the object as the DELETED event shows it.
    case delete(ObjectKey, expectedRevision: Int64?, finalData: Data)

    public var key: ObjectKey {
        switch self { case .create(let o, _): return o.key; case .update(let o, _): return o.key; case .delete(let k, _, _): return k }
    }
}

public enum StoreError: Error, Equatable, Sendable {
    case alreadyExists(ObjectKey)
    case notFound(ObjectKey)
    case conflict(ObjectKey, current: Int64)
    /// The requested watch revision has been compacted away.
    case gone(requested: Int64, oldest: Int64)
    case backend(String)
    /// The store cannot be reached or has no quorum: the request may succeed later (503).
    case unavailable(String)
    /// The store is shutting down and takes no new watches.
    case closed
}

/// A committed change, handed to the backend to persist.
public struct Change: Sendable {
    public var event: StoreEvent
}

/// Durable storage under the store. `commit` must not return before the batch is durable.
public protocol StoreBackend: Sendable {
    func load(logLimit: Int) throws -> (objects: [StoredObject], log: [StoreEvent], revision: Int64)
    func commit(_ changes: [Change], revision: Int64) throws
    func compact(through revision: Int64) throws
    /// Replaces the stored bytes of existing objects and log entries in place (same revisions):
    /// re-sealing under a new key.
    func rewrite(objects: [StoredObject], log: [StoreEvent]) throws
}

extension StoreBackend {
    public func rewrite(objects: [StoredObject], log: [StoreEvent]) throws {}
}

public struct StoreOptions: Sendable {
    public var logCapacity: Int = 50_000
    public var logBytes: Int = 16 << 20
    /// Events a watcher may fall behind by before it is closed (its client watches again from
    /// its last revision, or re-lists if that is gone). The first replay of a watch is not
    /// counted: it is held whole, however many objects there are.
    public var watchBuffer: Int = 10_000
    public init() {}
}

public struct StoreMetrics: Sendable {
    public var commits: Int64 = 0
    public var committedOps: Int64 = 0
    public var commitSeconds: Double = 0
    public var maxBatch: Int = 0
    public var commitLatencyBuckets: [Int64] = Array(repeating: 0, count: StoreMetrics.bounds.count)
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    public var batchBuckets: [Int64] = Array(repeating: 0, count: StoreMetrics.batchBounds.count)
    public static let batchBounds: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    public init() {}

    /// One commit of `ops` changes from a batch of `batch` requests, taking `seconds`.
    public mutating func record(ops: Int, batch: Int, seconds: Double) {
        commits += 1
        committedOps += Int64(ops)
        commitSeconds += seconds
        maxBatch = max(maxBatch, batch)
        if let i = Self.bounds.firstIndex(where: { seconds <= $0 }) { commitLatencyBuckets[i] += 1 }
        if let i = Self.batchBounds.firstIndex(where: { Double(batch) <= $0 }) { batchBuckets[i] += 1 }
    }
}

/// What the apiserver programs against. Reads are served from the store's watch cache: an
/// object or list as of `currentRevision`. `sync()` makes that a consistent read: it returns once
/// the cache holds every write committed anywhere before the call (Kubernetes' consistent reads
/// from cache). Writes are compare-and-swap on the revision the backend owns.
public protocol ObjectStore: AnyObject, Sendable {
    var currentRevision: Int64 { get }
    var metrics: StoreMetrics { get }
    var watcherCount: Int { get }
    /// What kind of backend decides writes ("sqlite", "memory", "etcd"), for logs and metrics.
    var backendName: String { get }
    func get(_ key: ObjectKey) -> StoredObject?
    /// Objects of a resource (all namespaces when `namespace` is nil), sorted by namespace and
    /// name, with the revision they were read at.
    func list(resource: String, namespace: String?) -> (items: [StoredObject], revision: Int64)
    /// The same list as it was at an earlier revision (a paginated list's snapshot); throws
    /// `.gone` when that revision can no longer be rebuilt.
    func list(resource: String, namespace: String?, atRevision: Int64) throws -> (items: [StoredObject], revision: Int64)
    func count(resource: String) -> Int
    /// Resources that have at least one object in the namespace.
    func resources(inNamespace ns: String) -> [String]
    /// Applies one write durably; returns the object as committed (for deletes, as last seen).
    /// The cache has applied it by the time this returns.
    func write(_ op: WriteOp) async throws -> StoredObject
    func watch(resource: String, namespace: String?, fromRevision: Int64?,
               filter: (@Sendable (StoreEvent) -> StoreEvent?)?) throws -> StoreSubscription
    /// nil when the store can serve writes now, else why not (for /readyz).
    func readiness() async -> String?
    /// Waits until the cache holds every write committed before the call.
    func sync() async throws
    /// Ends every watch and refuses new ones (shutdown).
    func closeWatches()
}

extension ObjectStore {
    public func readiness() async -> String? { nil }
    public func watch(resource: String, namespace: String?, fromRevision: Int64?) throws -> StoreSubscription {
        try watch(resource: resource, namespace: namespace, fromRevision: fromRevision, filter: nil)
    }
}

/// A store whose reads and watches are its watch cache's: both stores are.
public protocol CacheBackedStore: ObjectStore {
    var cache: WatchCache { get }
}

extension CacheBackedStore {
    public var currentRevision: Int64 { cache.revision }
    public var watcherCount: Int { cache.watcherCount }
    public func get(_ key: ObjectKey) -> StoredObject? { cache.get(key) }
    public func list(resource: String, namespace: String?) -> (items: [StoredObject], revision: Int64) {
        cache.list(resource: resource, namespace: namespace)
    }
    public func list(resource: String, namespace: String?, atRevision: Int64) throws -> (items: [StoredObject], revision: Int64) {
        try cache.list(resource: resource, namespace: namespace, atRevision: atRevision)
    }
    public func count(resource: String) -> Int { cache.count(resource: resource) }
    public func resources(inNamespace ns: String) -> [String] { cache.resources(inNamespace: ns) }
    public func watch(resource: String, namespace: String?, fromRevision: Int64?,
                      filter: (@Sendable (StoreEvent) -> StoreEvent?)?) throws -> StoreSubscription {
        try cache.watch(resource: resource, namespace: namespace, fromRevision: fromRevision, filter: filter)
    }
    public func closeWatches() { cache.closeWatches() }
}

/// One process's store: a group-committing writer that assigns revisions, makes each batch
/// durable through its backend (SQLite, or memory in tests) before anyone sees it, then applies
/// it to the watch cache. Only one process may write a backend's database.
public final class Store: CacheBackedStore {
    public typealias Subscription = StoreSubscription
    /// The placeholder written as `metadata.resourceVersion` before commit; the writer replaces
    /// it with the assigned revision. Random per process so no user string can forge it.
    public static let revisionPlaceholder: String = "rvph" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    private static let placeholderBytes = Array(("\"" + revisionPlaceholder + "\"").utf8)

    struct Pending: @unchecked Sendable {
        var ops: [(WriteOp, CheckedContinuation<StoredObject, Error>)] = []
        var flushing = false
    }

    public let cache: WatchCache
    private let pending = Mutex(Pending())
    private let metricsState = Mutex(StoreMetrics())
    private let backend: any StoreBackend
    private let commitQueue = DispatchQueue(label: "store.commit")
    private let logger: Logger
    public let backendName: String

    public init(backend: any StoreBackend, options: StoreOptions = StoreOptions(), logger: Logger = Logger(label: "store")) throws {
        self.backend = backend
        self.logger = logger
        self.backendName = backend is MemoryBackend ? "memory" : "sqlite"
        cache = WatchCache(options: options, logger: logger)
        let loaded = try backend.load(logLimit: options.logCapacity)
        cache.load(objects: loaded.objects, log: loaded.log, revision: loaded.revision)
    }

    /// An in-memory store for tests and hollow clusters.
    public static func inMemory(options: StoreOptions = StoreOptions()) -> Store {
        try! Store(backend: MemoryBackend(), options: options)
    }

    public var metrics: StoreMetrics { metricsState.withLock { $0 } }
    /// This process is the only writer, and a write returns after the cache applied it.
    public func sync() async throws {}

    // MARK: writes

    public func write(_ op: WriteOp) async throws -> StoredObject {
        try await withCheckedThrowingContinuation { cont in
            let start = pending.withLock { p -> Bool in
                p.ops.append((op, cont))
                if p.flushing { return false }
                p.flushing = true
                return true
            }
            if start { commitQueue.async { self.flushLoop() } }
        }
    }

    private func flushLoop() {
        while true {
            let batch = pending.withLock { p -> [(WriteOp, CheckedContinuation<StoredObject, Error>)] in
                let b = p.ops
                p.ops = []
                if b.isEmpty { p.flushing = false }
                return b
            }
            if batch.isEmpty { return }
            process(batch)
        }
    }

    private func process(_ batch: [(WriteOp, CheckedContinuation<StoredObject, Error>)]) {
        let started = DispatchTime.now().uptimeNanoseconds
        var overlay: [ObjectKey: StoredObject?] = [:]
        var rev = cache.revision
        var changes: [Change] = []
        var results: [Result<StoredObject, Error>] = []
        results.reserveCapacity(batch.count)
        func current(_ k: ObjectKey) -> StoredObject? {
            if let o = overlay[k] { return o }
            return cache.get(k)
        }
        for (op, _) in batch {
            let k = op.key
            let cur = current(k)
            switch op {
            case .create(var o, let unchanged):
                if cur != nil { results.append(.failure(StoreError.alreadyExists(k))); continue }
                if let (gk, grev) = unchanged, case let now = current(gk)?.revision, now != grev {
                    results.append(.failure(StoreError.conflict(gk, current: now ?? 0))); continue
                }
                rev += 1
                o.revision = rev; o.data = Store.stamp(o.data, rev)
                overlay[k] = .some(o)
                changes.append(Change(event: StoreEvent(type: .added, object: o, previous: nil)))
                results.append(.success(o))
            case .update(var o, let expected):
                guard let cur else { results.append(.failure(StoreError.notFound(k))); continue }
                if let expected, expected != cur.revision { results.append(.failure(StoreError.conflict(k, current: cur.revision))); continue }
                rev += 1
                o.revision = rev; o.data = Store.stamp(o.data, rev)
                overlay[k] = .some(o)
                changes.append(Change(event: StoreEvent(type: .modified, object: o, previous: cur)))
                results.append(.success(o))
            case .delete(_, let expected, let finalData):
                guard let cur else { results.append(.failure(StoreError.notFound(k))); continue }
                if let expected, expected != cur.revision { results.append(.failure(StoreError.conflict(k, current: cur.revision))); continue }
                rev += 1
                var gone = cur
                gone.revision = rev; gone.data = Store.stamp(finalData, rev)
                overlay[k] = .some(nil)
                changes.append(Change(event: StoreEvent(type: .deleted, object: gone, previous: cur)))
                results.append(.success(gone))
            }
        }
        if !changes.isEmpty {
            do {
                try backend.commit(changes, revision: rev)
            } catch {
                logger.error("commit failed", metadata: ["error": "\(error)", "ops": "\(changes.count)"])
                for (_, c) in batch { c.resume(throwing: StoreError.backend("\(error)")) }
                return
            }
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        cache.apply(changes.map(\.event), revision: rev)
        let commits = metricsState.withLock { m -> Int64 in
            m.record(ops: changes.count, batch: batch.count, seconds: elapsed)
            return m.commits
        }
        for (i, (_, c)) in batch.enumerated() { c.resume(with: results[i]) }
        if commits % 256 == 0 {
            let through = cache.compactedThrough
            if through > 0 {
                do { try backend.compact(through: through) } catch { logger.warning("log compaction failed: \(error)") }
            }
        }
    }

    /// Replaces the quoted placeholder with the decimal revision.
    public static func stamp(_ data: Data, _ rev: Int64) -> Data {
        replacePlaceholder(data, with: Array("\"\(rev)\"".utf8))
    }

    /// Replaces the quoted placeholder with `replacement` (bytes of a JSON value).
    public static func replacePlaceholder(_ data: Data, with replacement: [UInt8]) -> Data {
        let needle = placeholderBytes
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Data in
            let bytes = raw.bindMemory(to: UInt8.self)
            guard bytes.count >= needle.count else { return data }
            var i = 0
            let last = bytes.count - needle.count
            while i <= last {
                if bytes[i] == needle[0] && bytes[i + 1] == needle[1] {
                    var match = true
                    for j in 2..<needle.count where bytes[i + j] != needle[j] { match = false; break }
                    if match {
                        var out = Data(capacity: bytes.count)
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[0..<i]))
                        out.append(contentsOf: replacement)
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[(i + needle.count)...]))
                        return out
                    }
                }
                i += 1
            }
            return data
        }
    }
}

/// The in-memory twin: nothing is durable; for tests and hollow clusters.
public final class MemoryBackend: StoreBackend {
    public init() {}
    public func load(logLimit: Int) throws -> (objects: [StoredObject], log: [StoreEvent], revision: Int64) { ([], [], 0) }
    public func commit(_ changes: [Change], revision: Int64) throws {}
    public func compact(through revision: Int64) throws {}
}
