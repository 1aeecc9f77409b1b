// The generic object store: an in-memory index of committed objects, a group-committing
// writer that makes each batch durable through a backend before anyone sees it, a bounded
// revision log, and watch fan-out. The backend is SQLite in production, memory in tests.
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
    /// Fails with `.alreadyExists` if the key exists.
    case create(StoredObject)
    /// Fails with `.notFound` if absent, `.conflict` if `expectedRevision` is set and differs.
    case update(StoredObject, expectedRevision: Int64?)
    /// `finalData` is the object as the DELETED event shows it.
    case delete(ObjectKey, expectedRevision: Int64?, finalData: Data)

    var key: ObjectKey {
        switch self { case .create(let o): return o.key; case .update(let o, _): return o.key; case .delete(let k, _, _): return k }
    }
}

public enum StoreError: Error, Equatable, Sendable {
    case alreadyExists(ObjectKey)
    case notFound(ObjectKey)
    case conflict(ObjectKey, current: Int64)
    /// The requested watch revision has been compacted away.
    case gone(requested: Int64, oldest: Int64)
    case backend(String)
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
    public var watchBuffer: Int = 100_000
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
}

public final class Store: Sendable {
    /// The placeholder written as `metadata.resourceVersion` before commit; the writer replaces
    /// it with the assigned revision. Random per process so no user string can forge it.
    public static let revisionPlaceholder: String = "rvph" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    private static let placeholderBytes = Array(("\"" + revisionPlaceholder + "\"").utf8)

    struct Watcher {
        var resource: String
        var namespace: String?
        var filter: (@Sendable (StoreEvent) -> StoreEvent?)?
        var continuation: AsyncStream<StoreEvent>.Continuation
    }

    struct State {
        var objects: [String: [String: [String: StoredObject]]] = [:]   // resource → namespace → name
        var revision: Int64 = 0
        var log: [StoreEvent] = []          // ring buffer, oldest at logStart
        var logStart = 0
        var logBytes = 0
        var compactedThrough: Int64 = 0     // revisions <= this are not replayable
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcherID: UInt64 = 0
        var metrics = StoreMetrics()
        var closed = false
        func get(_ k: ObjectKey) -> StoredObject? { objects[k.resource]?[k.namespace]?[k.name] }
        var logCount: Int { log.count - logStart }
    }

    struct Pending: @unchecked Sendable {
        var ops: [(WriteOp, CheckedContinuation<StoredObject, Error>)] = []
        var flushing = false
    }

    private let state = Mutex(State())
    private let pending = Mutex(Pending())
    private let backend: any StoreBackend
    private let options: StoreOptions
    private let commitQueue = DispatchQueue(label: "store.commit")
    private let logger: Logger

    public init(backend: any StoreBackend, options: StoreOptions = StoreOptions(), logger: Logger = Logger(label: "store")) throws {
        self.backend = backend
        self.options = options
        self.logger = logger
        let loaded = try backend.load(logLimit: options.logCapacity)
        state.withLock { s in
            for o in loaded.objects { s.objects[o.key.resource, default: [:]][o.key.namespace, default: [:]][o.key.name] = o }
            s.revision = loaded.revision
            s.log = loaded.log
            s.logBytes = loaded.log.reduce(0) { $0 + $1.object.data.count }
            s.compactedThrough = (loaded.log.first?.revision ?? (loaded.revision + 1)) - 1
        }
    }

    /// An in-memory store for tests and hollow clusters.
    public static func inMemory(options: StoreOptions = StoreOptions()) -> Store {
        try! Store(backend: MemoryBackend(), options: options)
    }

    public var currentRevision: Int64 { state.withLock { $0.revision } }
    public var metrics: StoreMetrics { state.withLock { $0.metrics } }
    public var watcherCount: Int { state.withLock { $0.watchers.count } }

    public func get(_ key: ObjectKey) -> StoredObject? { state.withLock { $0.get(key) } }

    /// Objects of a resource (all namespaces when `namespace` is nil), sorted by namespace and name,
    /// with the revision they were read at.
    public func list(resource: String, namespace: String?) -> (items: [StoredObject], revision: Int64) {
        let (items, rev) = state.withLock { s -> ([StoredObject], Int64) in
            guard let byNS = s.objects[resource] else { return ([], s.revision) }
            if let namespace { return (Array((byNS[namespace] ?? [:]).values), s.revision) }
            return (byNS.values.flatMap { $0.values }, s.revision)
        }
        return (items.sorted { ($0.key.namespace, $0.key.name) < ($1.key.namespace, $1.key.name) }, rev)
    }

    public func count(resource: String) -> Int {
        state.withLock { s in (s.objects[resource] ?? [:]).values.reduce(0) { $0 + $1.count } }
    }

    /// Namespaces that hold at least one object of any resource.
    public func resources(inNamespace ns: String) -> [String] {
        state.withLock { s in s.objects.compactMap { (r, byNS) in (byNS[ns]?.isEmpty == false) ? r : nil } }
    }

    // MARK: writes

    /// Applies one write durably; returns the object as committed (for deletes, as last seen).
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
        var rev = state.withLock { $0.revision }
        var changes: [Change] = []
        var results: [Result<StoredObject, Error>] = []
        results.reserveCapacity(batch.count)
        // Snapshot reads for the keys in this batch happen under the lock once per key.
        func current(_ k: ObjectKey) -> StoredObject? {
            if let o = overlay[k] { return o }
            return state.withLock { $0.get(k) }
        }
        for (op, _) in batch {
            let k = op.key
            let cur = current(k)
            switch op {
            case .create(var o):
                if cur != nil { results.append(.failure(StoreError.alreadyExists(k))); continue }
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
        var compactThrough: Int64? = nil
        let closed = state.withLock { s -> [AsyncStream<StoreEvent>.Continuation] in
            var closed: [AsyncStream<StoreEvent>.Continuation] = []
            for ch in changes { closed += apply(ch.event, to: &s) }
            s.revision = max(s.revision, rev)
            s.metrics.commits += 1
            s.metrics.committedOps += Int64(changes.count)
            s.metrics.commitSeconds += elapsed
            s.metrics.maxBatch = max(s.metrics.maxBatch, batch.count)
            if let i = StoreMetrics.bounds.firstIndex(where: { elapsed <= $0 }) { s.metrics.commitLatencyBuckets[i] += 1 }
            if let i = StoreMetrics.batchBounds.firstIndex(where: { Double(batch.count) <= $0 }) { s.metrics.batchBuckets[i] += 1 }
            if s.metrics.commits % 256 == 0 { compactThrough = s.compactedThrough }
            return closed
        }
        for c in closed { c.finish() }
        for (i, (_, c)) in batch.enumerated() { c.resume(with: results[i]) }
        if let through = compactThrough, through > 0 {
            do { try backend.compact(through: through) } catch { logger.warning("log compaction failed: \(error)") }
        }
    }

    /// Applies a committed event under the lock; returns watchers that overflowed, to be
    /// finished after the lock is released (finishing runs onTermination, which locks).
    private func apply(_ e: StoreEvent, to s: inout State) -> [AsyncStream<StoreEvent>.Continuation] {
        let k = e.object.key
        if e.type == .deleted {
            s.objects[k.resource]?[k.namespace]?.removeValue(forKey: k.name)
            if s.objects[k.resource]?[k.namespace]?.isEmpty == true { s.objects[k.resource]?.removeValue(forKey: k.namespace) }
        } else {
            s.objects[k.resource, default: [:]][k.namespace, default: [:]][k.name] = e.object
        }
        s.log.append(e)
        s.logBytes += e.object.data.count
        while s.logCount > options.logCapacity || (s.logBytes > options.logBytes && s.logCount > 1000) {
            s.logBytes -= s.log[s.logStart].object.data.count
            s.compactedThrough = s.log[s.logStart].revision
            s.logStart += 1
        }
        if s.logStart > 4096 && s.logStart * 2 > s.log.count { s.log.removeFirst(s.logStart); s.logStart = 0 }
        var dead: [UInt64] = []
        for (id, w) in s.watchers where w.resource == k.resource && (w.namespace == nil || w.namespace == k.namespace) {
            let out = w.filter.map { $0(e) } ?? e
            guard let out else { continue }
            if case .dropped = w.continuation.yield(out) { dead.append(id) }
        }
        var closed: [AsyncStream<StoreEvent>.Continuation] = []
        for id in dead {
            logger.warning("watcher too slow, closing", metadata: ["resource": "\(k.resource)"])
            if let w = s.watchers.removeValue(forKey: id) { closed.append(w.continuation) }
        }
        return closed
    }

    /// Replaces the quoted placeholder with the decimal revision.
    public static func stamp(_ data: Data, _ rev: Int64) -> Data {
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
                        out.append(contentsOf: Array("\"\(rev)\"".utf8))
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[(i + needle.count)...]))
                        return out
                    }
                }
                i += 1
            }
            return data
        }
    }

    // MARK: watch

    public struct Subscription: Sendable {
        public let events: AsyncStream<StoreEvent>
        public let revision: Int64
        let cancelHandle: @Sendable () -> Void
        let bookmarkHandle: @Sendable () -> Void
        public func cancel() { cancelHandle() }
        /// Queues a BOOKMARK carrying the current revision, ordered after every event already sent.
        public func requestBookmark() { bookmarkHandle() }
    }

    /// Starts a watch. With `fromRevision` nil, first delivers every current object as ADDED (the
    /// Kubernetes "watch without resourceVersion" semantics); otherwise every change after it.
    public func watch(resource: String, namespace: String?, fromRevision: Int64?,
                      filter: (@Sendable (StoreEvent) -> StoreEvent?)? = nil) throws -> Subscription {
        let (stream, cont) = AsyncStream<StoreEvent>.makeStream(bufferingPolicy: .bufferingOldest(options.watchBuffer))
        let (id, rev) = try state.withLock { s -> (UInt64, Int64) in
            if s.closed { throw StoreError.closed }
            if let from = fromRevision, from < s.compactedThrough {
                throw StoreError.gone(requested: from, oldest: s.compactedThrough + 1)
            }
            func send(_ e: StoreEvent) {
                if let out = filter.map({ $0(e) }) ?? e { cont.yield(out) }
            }
            if let from = fromRevision {
                // Binary search for the first event after `from`.
                var lo = s.logStart, hi = s.log.count
                while lo < hi { let mid = (lo + hi) / 2; if s.log[mid].revision <= from { lo = mid + 1 } else { hi = mid } }
                for i in lo..<s.log.count {
                    let e = s.log[i]
                    if e.object.key.resource == resource && (namespace == nil || e.object.key.namespace == namespace) { send(e) }
                }
            } else if let byNS = s.objects[resource] {
                let objs = namespace.map { Array((byNS[$0] ?? [:]).values) } ?? byNS.values.flatMap { $0.values }
                for o in objs.sorted(by: { $0.revision < $1.revision }) { send(StoreEvent(type: .added, object: o, previous: nil)) }
            }
            let id = s.nextWatcherID
            s.nextWatcherID += 1
            s.watchers[id] = Watcher(resource: resource, namespace: namespace, filter: filter, continuation: cont)
            return (id, s.revision)
        }
        let cancel: @Sendable () -> Void = { [weak self] in
            let w = self?.state.withLock { s in s.watchers.removeValue(forKey: id) }
            w?.continuation.finish()
        }
        let bookmark: @Sendable () -> Void = { [weak self] in
            self?.state.withLock { s in
                guard let w = s.watchers[id] else { return }
                let key = ObjectKey(resource: resource, namespace: namespace ?? "", name: "")
                w.continuation.yield(StoreEvent(type: .bookmark, object: StoredObject(key: key, revision: s.revision, data: Data(), labels: [:], fields: [:]), previous: nil))
            }
        }
        // Not here and now: a stream is terminated from inside task cancellation, which holds the
        // task's status lock, while the flush loop yields (which takes that lock) under the store
        // lock. Taking the store lock here as well deadlocks both; unregistering later does not.
        cont.onTermination = { _ in DispatchQueue.global().async { cancel() } }
        return Subscription(events: stream, revision: rev, cancelHandle: cancel, bookmarkHandle: bookmark)
    }

    /// Ends every watch and refuses new ones (shutdown).
    public func closeWatches() {
        let all = state.withLock { s -> [Watcher] in
            s.closed = true
            let w = Array(s.watchers.values)
            s.watchers.removeAll()
            return w
        }
        for w in all { w.continuation.finish() }
    }
}

/// The in-memory twin: nothing is durable; for tests and hollow clusters.
public final class MemoryBackend: StoreBackend {
    public init() {}
    public func load(logLimit: Int) throws -> (objects: [StoredObject], log: [StoreEvent], revision: Int64) { ([], [], 0) }
    public func commit(_ changes: [Change], revision: Int64) throws {}
    public func compact(through revision: Int64) throws {}
}
