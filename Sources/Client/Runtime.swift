// Controller runtime, client-go style: an informer (list, then watch from the list's revision,
// re-list on 410, reconnect with backoff) feeding a local indexed cache and event handlers,
// and a work queue (dedup, one worker per key, per-key exponential backoff, delayed adds).
import Foundation
import Synchronization
import Logging
import API

/// Time for control loops; tests inject a manual clock.
public protocol ControlClock: Sendable {
    func now() -> Date
    func sleep(for seconds: Double) async throws
}

public struct SystemControlClock: ControlClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for seconds: Double) async throws { try await Task.sleep(for: .milliseconds(Int(max(0, seconds) * 1000))) }
}

/// A clock tests advance by hand; sleepers wake when their deadline is reached.
public final class ManualClock: ControlClock {
    struct State { var now: Date; var nextID: UInt64 = 0; var sleepers: [(id: UInt64, at: Date, c: CheckedContinuation<Void, Error>)] = [] }
    private let state: Mutex<State>
    public init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { state = Mutex(State(now: start)) }
    public func now() -> Date { state.withLock { $0.now } }
    /// Sleeps until the clock is advanced past the deadline; cancellation ends the sleep with
    /// CancellationError, as Task.sleep does.
    public func sleep(for seconds: Double) async throws {
        let id = state.withLock { s -> UInt64 in s.nextID += 1; return s.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                enum Wake { case now, cancelled, later }
                let wake = state.withLock { s -> Wake in
                    if Task.isCancelled { return .cancelled }
                    if seconds <= 0 { return .now }
                    s.sleepers.append((id, s.now.addingTimeInterval(seconds), c)); return .later
                }
                switch wake {
                case .now: c.resume()
                case .cancelled: c.resume(throwing: CancellationError())
                case .later: break
                }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<Void, Error>? in
                guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: i).c
            }
            c?.resume(throwing: CancellationError())
        }
    }
    public func sleeperCount() -> Int { state.withLock { $0.sleepers.count } }
    /// When each sleeper wakes, in seconds from now: tells apart two sleeps of one task (a
    /// wait between tries, and a timeout racing a try).
    public func sleeperDelays() -> [Double] { state.withLock { s in s.sleepers.map { $0.at.timeIntervalSince(s.now) } } }
    public func advance(by seconds: Double) {
        let due = state.withLock { s -> [CheckedContinuation<Void, Error>] in
            s.now = s.now.addingTimeInterval(seconds)
            let d = s.sleepers.filter { $0.at <= s.now }.map(\.c)
            s.sleepers.removeAll { $0.at <= s.now }
            return d
        }
        for c in due { c.resume() }
    }
}

public enum InformerEvent<T: Sendable>: Sendable {
    case added(T)
    case updated(old: T, new: T)
    case deleted(T)
}

/// Keeps a local copy of one resource and tells handlers about changes.
public final class Informer<T: KubeObject>: Sendable {
    public typealias Handler = @Sendable (InformerEvent<T>) -> Void
    public typealias IndexFunc = @Sendable (T) -> [String]

    struct State {
        var items: [String: T] = [:]
        var handlers: [Handler] = []
        var indexFuncs: [String: IndexFunc] = [:]
        var indexes: [String: [String: Set<String>]] = [:]
        var synced = false
        var revision: String?
    }
    private let state = Mutex(State())
    let client: KubeClient
    let namespace: String?
    let labelSelector: String?
    let fieldSelector: String?
    let logger: Logger

    public init(client: KubeClient, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil, logger: Logger? = nil) {
        self.client = client; self.namespace = namespace; self.labelSelector = labelSelector; self.fieldSelector = fieldSelector
        self.logger = logger ?? Logger(label: "informer.\(T.resource.plural)")
        addIndex("namespace") { [$0.namespace] }
    }

    public static func key(_ o: T) -> String { o.namespace.isEmpty ? o.name : "\(o.namespace)/\(o.name)" }

    public func addHandler(_ h: @escaping Handler) { state.withLock { $0.handlers.append(h) } }

    public func addIndex(_ name: String, _ f: @escaping IndexFunc) {
        state.withLock { s in
            s.indexFuncs[name] = f
            var idx: [String: Set<String>] = [:]
            for (k, o) in s.items { for v in f(o) { idx[v, default: []].insert(k) } }
            s.indexes[name] = idx
        }
    }

    public var hasSynced: Bool { state.withLock { $0.synced } }
    /// The resourceVersion of the newest change this cache has applied (or of its last list).
    public var revision: Int64 { state.withLock { s in s.revision.flatMap { Int64($0) } ?? 0 } }
    public func get(_ key: String) -> T? { state.withLock { $0.items[key] } }
    public func get(namespace: String, name: String) -> T? { get(namespace.isEmpty ? name : "\(namespace)/\(name)") }
    public func list() -> [T] { state.withLock { Array($0.items.values) } }
    public func list(namespace: String) -> [T] { byIndex("namespace", namespace) }
    /// Objects matching a label selector, optionally within one namespace.
    public func list(namespace: String? = nil, selector: Selector) -> [T] {
        (namespace.map { list(namespace: $0) } ?? list()).filter { selector.matches($0.labels) }
    }
    public func byIndex(_ name: String, _ value: String) -> [T] {
        state.withLock { s in (s.indexes[name]?[value] ?? []).compactMap { s.items[$0] } }
    }

    /// Waits until the first list has been loaded.
    public func waitForSync(timeout: Double = 30) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !hasSynced {
            if Date() > deadline || Task.isCancelled { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    private func index(_ s: inout State, key: String, old: T?, new: T?) {
        for (name, f) in s.indexFuncs {
            if let old { for v in f(old) { s.indexes[name]?[v]?.remove(key) } }
            if let new { for v in f(new) { s.indexes[name, default: [:]][v, default: []].insert(key) } }
        }
    }

    /// Applies a change to the cache and returns the handlers to call outside the lock.
    private func apply(_ type: String, _ o: T) -> ([Handler], InformerEvent<T>?) {
        let k = Self.key(o)
        return state.withLock { s in
            let old = s.items[k]
            let ev: InformerEvent<T>
            if type == "DELETED" {
                s.items.removeValue(forKey: k)
                index(&s, key: k, old: old, new: nil)
                ev = .deleted(old ?? o)
            } else {
                s.items[k] = o
                index(&s, key: k, old: old, new: o)
                ev = old.map { .updated(old: $0, new: o) } ?? .added(o)
            }
            s.revision = o.metadata.resourceVersion ?? s.revision
            return (s.handlers, ev)
        }
    }

    private func replace(_ items: [T], revision: String?) {
        let (handlers, events) = state.withLock { s -> ([Handler], [InformerEvent<T>]) in
            var evs: [InformerEvent<T>] = []
            var fresh: [String: T] = [:]
            for o in items { fresh[Self.key(o)] = o }
            for (k, old) in s.items where fresh[k] == nil { evs.append(.deleted(old)); index(&s, key: k, old: old, new: nil) }
            for (k, o) in fresh {
                let old = s.items[k]
                index(&s, key: k, old: old, new: o)
                if let old { if old.metadata.resourceVersion != o.metadata.resourceVersion { evs.append(.updated(old: old, new: o)) } }
                else { evs.append(.added(o)) }
            }
            s.items = fresh
            s.synced = true
            s.revision = revision
            return (s.handlers, evs)
        }
        for e in events { for h in handlers { h(e) } }
    }

    /// Runs until cancelled: list, watch, re-list on 410, back off on errors.
    public func run() async {
        var backoff = 0.1
        while !Task.isCancelled {
            do {
                let list = try await client.list(T.self, namespace: namespace, allNamespaces: namespace == nil, labelSelector: labelSelector, fieldSelector: fieldSelector)
                replace(list.items, revision: list.metadata.resourceVersion)
                backoff = 0.1
                var rv = list.metadata.resourceVersion
                var failures = 0
                while !Task.isCancelled {
                    var relist = false
                    do {
                        for try await (type, o) in client.watch(T.self, namespace: namespace, allNamespaces: namespace == nil, resourceVersion: rv,
                                                                labelSelector: labelSelector, fieldSelector: fieldSelector, bookmarks: true, timeoutSeconds: 300) {
                            if type == "BOOKMARK" { rv = o.metadata.resourceVersion ?? rv; continue }
                            rv = o.metadata.resourceVersion ?? rv
                            let (handlers, ev) = apply(type, o)
                            if let ev { for h in handlers { h(ev) } }
                        }
                        failures = 0
                    } catch let s as Status where s.code == 410 {
                        relist = true
                    } catch {
                        // A broken connection (an apiserver gone, the client moved to another):
                        // watch again from the last revision seen, so nothing is missed or seen
                        // twice; list again only after repeated failures.
                        if Task.isCancelled { return }
                        failures += 1
                        if failures > 5 { throw error }
                        logger.debug("watch broke, watching again from the last revision", metadata: ["error": "\(error)", "revision": "\(rv ?? "")"])
                        try? await Task.sleep(for: .milliseconds(min(1000, 50 << failures)))
                    }
                    if relist { break }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("list/watch failed, retrying", metadata: ["error": "\(error)", "backoff": "\(backoff)"])
                try? await Task.sleep(for: .milliseconds(Int(backoff * 1000)))
                backoff = min(backoff * 2, 5)
            }
        }
    }
}

/// A deduplicating work queue: a key is processed by one worker at a time; adds during
/// processing re-queue it afterwards; failures back off exponentially per key.
public final class WorkQueue: Sendable {
    struct State {
        var queue: [String] = []
        var dirty: Set<String> = []
        var processing: Set<String> = []
        var failures: [String: Int] = [:]
        var waiters: [CheckedContinuation<String?, Never>] = []
        var shutdown = false
    }
    private let state = Mutex(State())
    let clock: any ControlClock
    let baseDelay: Double
    let maxDelay: Double
    /// Global token bucket over all retries (client-go's 10 qps, burst 100), on top of per-key backoff.
    let retryQPS: Double
    let retryBurst: Double
    private let bucket = Mutex<(tokens: Double, last: Date?, nextFree: Date?)>((0, nil, nil))

    public init(clock: any ControlClock = SystemControlClock(), baseDelay: Double = 0.005, maxDelay: Double = 30, retryQPS: Double = 10, retryBurst: Double = 100) {
        self.clock = clock; self.baseDelay = baseDelay; self.maxDelay = maxDelay
        self.retryQPS = retryQPS; self.retryBurst = retryBurst
    }

    /// Seconds until the global bucket lets one more retry through (reserving it).
    func globalDelay() -> Double {
        let now = clock.now()
        return bucket.withLock { b in
            let last = b.last ?? now
            b.tokens = min(retryBurst, (b.last == nil ? retryBurst : b.tokens) + now.timeIntervalSince(last) * retryQPS)
            b.last = now
            b.tokens -= 1
            return b.tokens >= 0 ? 0 : -b.tokens / retryQPS
        }
    }

    public func add(_ key: String) {
        let waiter = state.withLock { s -> CheckedContinuation<String?, Never>? in
            if s.shutdown || s.dirty.contains(key) { return nil }
            s.dirty.insert(key)
            if s.processing.contains(key) { return nil }
            if !s.waiters.isEmpty {
                s.dirty.remove(key); s.processing.insert(key)
                return s.waiters.removeFirst()
            }
            s.queue.append(key)
            return nil
        }
        waiter?.resume(returning: key)
    }

    public func addAfter(_ key: String, _ seconds: Double) {
        if seconds <= 0 { add(key); return }
        let clock = self.clock
        Task { [weak self] in
            try? await clock.sleep(for: seconds)
            self?.add(key)
        }
    }

    /// Re-queues with this key's exponential backoff.
    public func addRateLimited(_ key: String) {
        let n = state.withLock { s -> Int in let n = s.failures[key, default: 0]; s.failures[key] = n + 1; return n }
        addAfter(key, max(min(maxDelay, baseDelay * pow(2, Double(n))), globalDelay()))
    }
    public func forget(_ key: String) { state.withLock { _ = $0.failures.removeValue(forKey: key) } }
    public var length: Int { state.withLock { $0.queue.count } }

    /// The next key to work on, or nil after shutdown.
    public func next() async -> String? {
        await withCheckedContinuation { c in
            let r = state.withLock { s -> (Bool, String?) in
                if let k = s.queue.first {
                    s.queue.removeFirst(); s.dirty.remove(k); s.processing.insert(k)
                    return (true, k)
                }
                if s.shutdown { return (true, nil) }
                s.waiters.append(c)
                return (false, nil)
            }
            if r.0 { c.resume(returning: r.1) }
        }
    }

    public func done(_ key: String) {
        let waiter = state.withLock { s -> CheckedContinuation<String?, Never>? in
            s.processing.remove(key)
            guard s.dirty.contains(key) else { return nil }
            if !s.waiters.isEmpty { s.dirty.remove(key); s.processing.insert(key); return s.waiters.removeFirst() }
            s.queue.append(key)
            return nil
        }
        waiter?.resume(returning: key)
    }

    public func shutdown() {
        let ws = state.withLock { s -> [CheckedContinuation<String?, Never>] in s.shutdown = true; let w = s.waiters; s.waiters = []; return w }
        for w in ws { w.resume(returning: nil) }
    }
}

public enum ReconcileResult: Sendable, Equatable { case done, requeue(after: Double) }

/// Runs `workers` loops taking keys from the queue into `reconcile`, with backoff on errors.
/// Cancelling the calling task shuts the queue down, so the workers finish their current key and return.
public func runWorkers(_ workers: Int, queue: WorkQueue, logger: Logger, reconcile: @escaping @Sendable (String) async throws -> ReconcileResult) async {
    await withTaskCancellationHandler {
        await workerLoops(workers, queue: queue, logger: logger, reconcile: reconcile)
    } onCancel: { queue.shutdown() }
}

func workerLoops(_ workers: Int, queue: WorkQueue, logger: Logger, reconcile: @escaping @Sendable (String) async throws -> ReconcileResult) async {
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<workers {
            group.addTask {
                while let key = await queue.next() {
                    do {
                        switch try await reconcile(key) {
                        case .done: queue.forget(key)
                        case .requeue(let after): queue.forget(key); queue.addAfter(key, after)
                        }
                    } catch {
                        logger.info("reconcile failed", metadata: ["key": "\(key)", "error": "\(error)"])
                        queue.addRateLimited(key)
                    }
                    queue.done(key)
                }
            }
        }
        await group.waitForAll()
    }
}
