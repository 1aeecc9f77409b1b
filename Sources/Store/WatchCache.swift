// Every current object of every resource, a bounded log of recent changes, and watch fan-out:
// what all reads and watches are served from, whichever store decides the writes. `Store` applies
// its own commits to it; `EtcdStore` applies what its etcd watch reports. Lists are sorted by
// namespace and name; watches replay from the log, so a revision older than the log is gone (410).
import Foundation
import Synchronization
import Logging

/// A watch on a cache: its events, the revision it started at, and how to end it.
public struct StoreSubscription: Sendable {
    public let events: AsyncStream<StoreEvent>
    public let revision: Int64
    let cancelHandle: @Sendable () -> Void
    let bookmarkHandle: @Sendable () -> Void
    public func cancel() { cancelHandle() }
    /// Queues a BOOKMARK carrying the current revision, ordered after every event already sent.
    public func requestBookmark() { bookmarkHandle() }
}

public final class WatchCache: Sendable {
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
        var closed = false
        var waiters: [UInt64: (revision: Int64, cont: CheckedContinuation<Bool, Never>)] = [:]
        var nextWaiterID: UInt64 = 0
        func get(_ k: ObjectKey) -> StoredObject? { objects[k.resource]?[k.namespace]?[k.name] }
        var logCount: Int { log.count - logStart }
    }

    private let state = Mutex(State())
    /// Held while watchers are fed (apply, bookmarks): one fan-out at a time, in revision order.
    private let fanout = Mutex(())
    private let options: StoreOptions
    private let logger: Logger

    public init(options: StoreOptions = StoreOptions(), logger: Logger = Logger(label: "watchcache")) {
        self.options = options
        self.logger = logger
    }

    /// Fills the cache: the objects at `revision`, and the log of changes that led there (oldest
    /// first; may be empty, then nothing before `revision` can be replayed).
    public func load(objects: [StoredObject], log: [StoreEvent], revision: Int64) {
        state.withLock { s in
            s.objects = [:]
            for o in objects { s.objects[o.key.resource, default: [:]][o.key.namespace, default: [:]][o.key.name] = o }
            s.revision = revision
            s.log = log
            s.logStart = 0
            s.logBytes = log.reduce(0) { $0 + Self.size($1) }
            s.compactedThrough = (log.first?.revision ?? (revision + 1)) - 1
        }
    }

    public var revision: Int64 { state.withLock { $0.revision } }
    public var compactedThrough: Int64 { state.withLock { $0.compactedThrough } }
    public var watcherCount: Int { state.withLock { $0.watchers.count } }

    public func get(_ key: ObjectKey) -> StoredObject? { state.withLock { $0.get(key) } }

    public func list(resource: String, namespace: String?) -> (items: [StoredObject], revision: Int64) {
        let (items, rev) = state.withLock { s -> ([StoredObject], Int64) in
            guard let byNS = s.objects[resource] else { return ([], s.revision) }
            if let namespace { return (Array((byNS[namespace] ?? [:]).values), s.revision) }
            return (byNS.values.flatMap { $0.values }, s.revision)
        }
        return (items.sorted { ($0.key.namespace, $0.key.name) < ($1.key.namespace, $1.key.name) }, rev)
    }

    /// Objects of a resource as they were at `revision` (the snapshot a paginated list started
    /// at, named by its continue token): the current objects with every logged change after
    /// `revision` undone, sorted like `list`. A revision whose later changes are no longer all
    /// in the log is gone (410), as a compacted continue token is in Kubernetes.
    public func list(resource: String, namespace: String?, atRevision at: Int64) throws -> (items: [StoredObject], revision: Int64) {
        let items = try state.withLock { s -> [StoredObject]? in
            if at >= s.revision { return nil }
            guard at >= s.compactedThrough else { throw StoreError.gone(requested: at, oldest: s.compactedThrough + 1) }
            var byKey: [ObjectKey: StoredObject] = [:]
            if let byNS = s.objects[resource] {
                let objs = namespace.map { Array((byNS[$0] ?? [:]).values) } ?? byNS.values.flatMap { $0.values }
                for o in objs { byKey[o.key] = o }
            }
            var i = s.log.count - 1
            while i >= s.logStart, s.log[i].revision > at {
                let e = s.log[i]
                i -= 1
                guard e.object.key.resource == resource, namespace == nil || e.object.key.namespace == namespace else { continue }
                switch e.type {
                case .added: byKey[e.object.key] = nil
                case .modified:
                    guard let p = e.previous else { throw StoreError.gone(requested: at, oldest: e.revision) }
                    byKey[e.object.key] = p
                case .deleted: byKey[e.object.key] = e.previous ?? e.object
                case .bookmark: break
                }
            }
            return Array(byKey.values)
        }
        guard let items else { return list(resource: resource, namespace: namespace) }
        return (items.sorted { ($0.key.namespace, $0.key.name) < ($1.key.namespace, $1.key.name) }, at)
    }

    /// Every resource that has objects.
    public func resourceNames() -> [String] { state.withLock { $0.objects.filter { !$0.value.isEmpty }.map(\.key).sorted() } }

    /// How many objects the cache holds, of every resource.
    public func resourcesCount() -> Int {
        state.withLock { s in s.objects.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } } }
    }

    public func count(resource: String) -> Int {
        state.withLock { s in (s.objects[resource] ?? [:]).values.reduce(0) { $0 + $1.count } }
    }

    public func resources(inNamespace ns: String) -> [String] {
        state.withLock { s in s.objects.compactMap { (r, byNS) in (byNS[ns]?.isEmpty == false) ? r : nil } }
    }

    /// Applies committed events (ascending revisions) and moves the cache to `revision` (which may
    /// be past the last event: a progress report).
    ///
    /// The cache changes under its lock; the watchers' filters (label and field selectors) run
    /// and their streams are fed after it is released, so lists, gets and new watches do not
    /// wait on them. Fan-outs (and bookmarks) take turns on a lock of their own, so every watcher
    /// sees events in revision order; a watcher registered meanwhile replays these events from
    /// the log instead.
    public func apply(_ events: [StoreEvent], revision: Int64) {
        fanout.withLock { _ in
            let (targets, woken) = state.withLock { s -> ([(UInt64, Watcher)], [CheckedContinuation<Bool, Never>]) in
                for e in events { apply(e, to: &s) }
                s.revision = max(s.revision, revision, events.last?.revision ?? 0)
                var woken: [CheckedContinuation<Bool, Never>] = []
                for (id, w) in s.waiters where w.revision <= s.revision {
                    woken.append(w.cont)
                    s.waiters.removeValue(forKey: id)
                }
                let resources = Set(events.map(\.object.key.resource))
                return (s.watchers.filter { resources.contains($0.value.resource) }.map { ($0.key, $0.value) }, woken)
            }
            // A watcher whose buffer is full is closed, and sent nothing after the event it
            // missed: it watches again from the last revision it got.
            var dead: [UInt64: String] = [:]
            for e in events {
                let k = e.object.key
                for (id, w) in targets where dead[id] == nil && w.resource == k.resource && (w.namespace == nil || w.namespace == k.namespace) {
                    guard let out = w.filter.map({ $0(e) }) ?? e else { continue }
                    if case .dropped = w.continuation.yield(out) { dead[id] = k.resource }
                }
            }
            let closed = dead.isEmpty ? [] : state.withLock { s in dead.keys.compactMap { s.watchers.removeValue(forKey: $0)?.continuation } }
            for (_, resource) in dead { logger.warning("watcher too slow, closing", metadata: ["resource": "\(resource)", "buffer": "\(options.watchBuffer)"]) }
            for c in closed { c.finish() }
            for w in woken { w.resume(returning: true) }
        }
    }

    /// Waits until the cache has applied `revision`; false if that took longer than `timeout`.
    public func waitFor(revision: Int64, timeout: Duration) async -> Bool {
        let id = state.withLock { s -> UInt64? in
            if s.revision >= revision { return nil }
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
        guard let id else { return true }
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            state.withLock { $0.waiters.removeValue(forKey: id) }?.cont.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.revision >= revision { return true }
                s.waiters[id] = (revision, c)
                return false
            }
            if ready { c.resume(returning: true) }
        }
    }

    /// Applies one committed event to the objects and the log, under the lock.
    private func apply(_ e: StoreEvent, to s: inout State) {
        let k = e.object.key
        if e.type == .deleted {
            s.objects[k.resource]?[k.namespace]?.removeValue(forKey: k.name)
            if s.objects[k.resource]?[k.namespace]?.isEmpty == true { s.objects[k.resource]?.removeValue(forKey: k.namespace) }
        } else {
            s.objects[k.resource, default: [:]][k.namespace, default: [:]][k.name] = e.object
        }
        s.log.append(e)
        s.logBytes += Self.size(e)
        while s.logCount > options.logCapacity || (s.logBytes > options.logBytes && s.logCount > 1000) {
            s.logBytes -= Self.size(s.log[s.logStart])
            s.compactedThrough = s.log[s.logStart].revision
            s.logStart += 1
        }
        if s.logStart > 4096 && s.logStart * 2 > s.log.count { s.log.removeFirst(s.logStart); s.logStart = 0 }
    }

    /// What a logged event holds: the object and, for updates and deletes, the one before.
    static func size(_ e: StoreEvent) -> Int { e.object.data.count + (e.previous?.data.count ?? 0) }

    /// Starts a watch. With `fromRevision` nil, first delivers every current object as ADDED (the
    /// Kubernetes "watch without resourceVersion" semantics); otherwise every change after it.
    public func watch(resource: String, namespace: String?, fromRevision: Int64?,
                      filter: (@Sendable (StoreEvent) -> StoreEvent?)? = nil) throws -> StoreSubscription {
        let (stream, cont, id, rev) = try state.withLock { s -> (AsyncStream<StoreEvent>, AsyncStream<StoreEvent>.Continuation, UInt64, Int64) in
            if s.closed { throw StoreError.closed }
            if let from = fromRevision, from < s.compactedThrough {
                throw StoreError.gone(requested: from, oldest: s.compactedThrough + 1)
            }
            // The replay first, then a buffer that holds all of it plus watchBuffer: a replay is
            // never cut short, and what comes after may fall behind by watchBuffer at most.
            var replay: [StoreEvent] = []
            func add(_ e: StoreEvent) { if let out = filter.map({ $0(e) }) ?? e { replay.append(out) } }
            if let from = fromRevision {
                // Binary search for the first event after `from`.
                var lo = s.logStart, hi = s.log.count
                while lo < hi { let mid = (lo + hi) / 2; if s.log[mid].revision <= from { lo = mid + 1 } else { hi = mid } }
                for i in lo..<s.log.count {
                    let e = s.log[i]
                    if e.object.key.resource == resource && (namespace == nil || e.object.key.namespace == namespace) { add(e) }
                }
            } else if let byNS = s.objects[resource] {
                let objs = namespace.map { Array((byNS[$0] ?? [:]).values) } ?? byNS.values.flatMap { $0.values }
                for o in objs.sorted(by: { $0.revision < $1.revision }) { add(StoreEvent(type: .added, object: o, previous: nil)) }
            }
            let (stream, cont) = AsyncStream<StoreEvent>.makeStream(bufferingPolicy: .bufferingOldest(options.watchBuffer + replay.count))
            for e in replay { cont.yield(e) }
            let id = s.nextWatcherID
            s.nextWatcherID += 1
            s.watchers[id] = Watcher(resource: resource, namespace: namespace, filter: filter, continuation: cont)
            return (stream, cont, id, s.revision)
        }
        let cancel: @Sendable () -> Void = { [weak self] in
            let w = self?.state.withLock { s in s.watchers.removeValue(forKey: id) }
            w?.continuation.finish()
        }
        let bookmark: @Sendable () -> Void = { [weak self] in
            // After any fan-out under way: a bookmark never overtakes an event it covers.
            self?.fanout.withLock { _ in
                guard let (w, revision) = self?.state.withLock({ s in s.watchers[id].map { ($0, s.revision) } }) else { return }
                let key = ObjectKey(resource: resource, namespace: namespace ?? "", name: "")
                w.continuation.yield(StoreEvent(type: .bookmark, object: StoredObject(key: key, revision: revision, data: Data(), labels: [:], fields: [:]), previous: nil))
            }
        }
        // Not here and now: a stream is terminated from inside task cancellation, which holds the
        // task's status lock, while apply yields (which takes that lock) under the cache lock.
        // Taking the cache lock here as well deadlocks both; unregistering later does not.
        cont.onTermination = { _ in DispatchQueue.global().async { cancel() } }
        return StoreSubscription(events: stream, revision: rev, cancelHandle: cancel, bookmarkHandle: bookmark)
    }

    /// Ends every watch; with `refuseNew`, refuses new ones too (shutdown). Without it the
    /// watchers' clients start again (after the cache was reloaded from a new listing).
    public func closeWatches(refuseNew: Bool = true) {
        let all = state.withLock { s -> [Watcher] in
            if refuseNew { s.closed = true }
            let w = Array(s.watchers.values)
            s.watchers.removeAll()
            return w
        }
        for w in all { w.continuation.finish() }
    }
}
