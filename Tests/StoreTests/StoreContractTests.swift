// The store contract, run against every backend: memory, SQLite, and a real etcd (one member,
// mutual TLS). Revisions are compared by order, not value: etcd's first write is revision 2.
import Testing
import Foundation
import Logging
@testable import Store
@testable import Etcd

enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, sqlite, etcd
    var testDescription: String { rawValue }
}

/// One backend's store, and a way to open it again (a restart, or a second apiserver).
final class StoreUnderTest: @unchecked Sendable {
    let backend: Backend
    let dir: String
    let etcd: EtcdProcess?
    var store: any ObjectStore
    var opened: [any ObjectStore] = []

    init(_ backend: Backend) async throws {
        self.backend = backend
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        switch backend {
        case .memory: etcd = nil; store = Store.inMemory()
        case .sqlite: etcd = nil; store = try Store(backend: SQLiteBackend(path: "\(dir)/db"))
        case .etcd:
            let e = try EtcdProcess()
            etcd = e
            store = try await e.open()
        }
        opened.append(store)
    }

    /// Another store over the same data: for SQLite after this one is dropped, for etcd alongside.
    func another() async throws -> any ObjectStore {
        switch backend {
        case .memory: throw StoreError.backend("memory has nothing to reopen")
        case .sqlite: return try Store(backend: SQLiteBackend(path: "\(dir)/db"))
        case .etcd:
            let s = try await etcd!.open()
            opened.append(s)
            return s
        }
    }

    deinit {
        for s in opened { (s as? EtcdStore)?.shutdown() }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

func rv(_ o: StoredObject) -> String? {
    (try? JSONSerialization.jsonObject(with: o.data) as? [String: Any]).flatMap { ($0["metadata"] as? [String: Any])?["resourceVersion"] as? String }
}

@Suite(.serialized) struct StoreContractTests {
    @Test(arguments: Backend.allCases) func createUpdateDeleteAreConditional(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s = t.store
        let a = try await s.write(.create(obj("a", ["app": "x"])))
        #expect(rv(a) == String(a.revision))
        #expect(s.get(a.key)?.revision == a.revision)
        #expect(s.get(a.key).flatMap(rv) == String(a.revision))
        await #expect(throws: StoreError.alreadyExists(a.key)) { try await s.write(.create(obj("a"))) }
        let a2 = try await s.write(.update(obj("a", payload: "y"), expectedRevision: a.revision))
        #expect(a2.revision > a.revision)
        await #expect(throws: StoreError.conflict(a.key, current: a2.revision)) { try await s.write(.update(obj("a"), expectedRevision: a.revision)) }
        await #expect(throws: StoreError.conflict(a.key, current: a2.revision)) {
            try await s.write(.delete(a.key, expectedRevision: a.revision, finalData: obj("a").data))
        }
        let gone = try await s.write(.delete(a.key, expectedRevision: a2.revision, finalData: obj("a", payload: "y").data))
        #expect(gone.revision > a2.revision)
        #expect(s.get(a.key) == nil)
        #expect(s.currentRevision == gone.revision)
        await #expect(throws: StoreError.notFound(a.key)) { try await s.write(.delete(a.key, expectedRevision: nil, finalData: Data())) }
        await #expect(throws: StoreError.notFound(a.key)) { try await s.write(.update(obj("a"), expectedRevision: nil)) }
    }

    /// A create may require another key to be unchanged (its namespace as it was checked): if
    /// that key was written or deleted since, nothing is created and the error names that key.
    @Test(arguments: Backend.allCases) func aCreateCanRequireAnotherKeyUnchanged(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s = t.store
        let ns = try await s.write(.create(obj("team", ns: "", resource: "namespaces")))
        let a = try await s.write(.create(obj("a", ns: "team"), unchanged: (ns.key, ns.revision)))
        #expect(s.get(a.key) != nil)
        let ns2 = try await s.write(.update(obj("team", ns: "", resource: "namespaces", payload: "terminating"), expectedRevision: ns.revision))
        await #expect(throws: StoreError.conflict(ns.key, current: ns2.revision)) {
            try await s.write(.create(obj("b", ns: "team"), unchanged: (ns.key, ns.revision)))
        }
        #expect(s.get(ObjectKey(resource: "pods", namespace: "team", name: "b")) == nil)
        // An existing object is still "already exists", whatever the other key.
        await #expect(throws: StoreError.alreadyExists(a.key)) { try await s.write(.create(obj("a", ns: "team"), unchanged: (ns.key, ns.revision))) }
        _ = try await s.write(.delete(ns.key, expectedRevision: nil, finalData: obj("team").data))
        await #expect(throws: StoreError.conflict(ns.key, current: 0)) {
            try await s.write(.create(obj("c", ns: "team"), unchanged: (ns.key, ns2.revision)))
        }
    }

    @Test(arguments: Backend.allCases) func concurrentCreatesGetDistinctRevisionsAndListSorted(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s: any ObjectStore
        if let etcd = t.etcd {
            // 200 writes at once on a busy 2-core machine can take etcd more than the harness's
            // 2 s per request; this test is about revisions and order, not latency.
            var c = etcd.config
            c.requestTimeout = .seconds(20)
            var l = Logger(label: "etcd-test")
            l.logLevel = .critical
            let patient = try await EtcdStore.open(config: c, logger: l, patience: .seconds(20))
            t.opened.append(patient)
            s = patient
        } else {
            s = t.store
        }
        let revs = try await withThrowingTaskGroup(of: Int64.self) { g in
            for i in 0..<200 { g.addTask { try await s.write(.create(obj("p\(i)", ns: i % 2 == 0 ? "a" : "b"))).revision } }
            var out: [Int64] = []
            for try await r in g { out.append(r) }
            return out
        }
        #expect(Set(revs).count == 200)
        let (items, listRev) = s.list(resource: "pods", namespace: nil)
        #expect(items.count == 200)
        #expect(listRev == revs.max())
        #expect(items.map { "\($0.key.namespace)/\($0.key.name)" } == items.map { "\($0.key.namespace)/\($0.key.name)" }.sorted())
        #expect(s.list(resource: "pods", namespace: "a").items.count == 100)
        #expect(s.count(resource: "pods") == 200)
        #expect(Set(s.resources(inNamespace: "b")) == ["pods"])
    }

    @Test(arguments: Backend.allCases) func watchFromARevisionSeesEachLaterChangeOnceInOrder(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s = t.store
        var revs: [Int64] = []
        for i in 0..<5 { revs.append(try await s.write(.create(obj("p\(i)"))).revision) }
        let sub = try s.watch(resource: "pods", namespace: nil, fromRevision: revs[1])
        var later: [Int64] = []
        for i in 5..<8 { later.append(try await s.write(.create(obj("p\(i)"))).revision) }
        _ = try await s.write(.create(obj("n1", ns: "", resource: "nodes")))
        let upd = try await s.write(.update(obj("p0", payload: "z"), expectedRevision: revs[0]))
        let del = try await s.write(.delete(ObjectKey(resource: "pods", namespace: "default", name: "p1"), expectedRevision: nil, finalData: obj("p1").data))
        let events = await collect(sub, count: 8)
        #expect(events.map(\.revision) == Array(revs[2...]) + later + [upd.revision, del.revision])
        #expect(events.map(\.type) == Array(repeating: .added, count: 6) + [.modified, .deleted])
        #expect(events[6].previous?.revision == revs[0])
        #expect(events.allSatisfy { $0.object.key.resource == "pods" })
        #expect(events.allSatisfy { rv($0.object) == String($0.revision) })
    }

    @Test(arguments: Backend.allCases) func watchWithoutRevisionStartsWithCurrentState(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s = t.store
        _ = try await s.write(.create(obj("a")))
        _ = try await s.write(.create(obj("b", ns: "other")))
        let sub = try s.watch(resource: "pods", namespace: "default", fromRevision: nil)
        _ = try await s.write(.update(obj("a", payload: "z"), expectedRevision: nil))
        let events = await collect(sub, count: 2)
        #expect(events.map(\.type) == [.added, .modified])
        #expect(events.map(\.object.key.name) == ["a", "a"])
    }

    @Test(arguments: Backend.allCases) func aListAtAnEarlierRevisionIsThatSnapshot(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        let s = t.store
        let a = try await s.write(.create(obj("a")))
        let bb = try await s.write(.create(obj("b")))
        _ = try await s.write(.create(obj("c")))
        _ = try await s.write(.create(obj("x", ns: "other")))
        let snap = s.currentRevision
        _ = try await s.write(.create(obj("d")))
        _ = try await s.write(.update(obj("b", payload: "new"), expectedRevision: bb.revision))
        _ = try await s.write(.delete(ObjectKey(resource: "pods", namespace: "default", name: "c"), expectedRevision: nil, finalData: obj("c").data))
        _ = try await s.write(.delete(a.key, expectedRevision: a.revision, finalData: obj("a").data))
        _ = try await s.write(.create(obj("y", ns: "other")))
        let (items, rev) = try s.list(resource: "pods", namespace: "default", atRevision: snap)
        #expect(rev == snap)
        #expect(items.map(\.key.name) == ["a", "b", "c"])
        #expect(items.first { $0.key.name == "b" }?.revision == bb.revision)
        #expect(try s.list(resource: "pods", namespace: nil, atRevision: snap).items.map(\.key.name) == ["a", "b", "c", "x"])
        let now = try s.list(resource: "pods", namespace: "default", atRevision: s.currentRevision)
        #expect(now.items.map(\.key.name) == ["b", "d"])
        #expect(now.revision == s.currentRevision)
    }

    @Test func aSnapshotOlderThanTheLogIsGone() async throws {
        var o = StoreOptions()
        o.logCapacity = 3
        let cache = WatchCache(options: o)
        var objs: [StoredObject] = []
        for i in 1...6 {
            var x = obj("p\(i)")
            x.revision = Int64(i)
            objs.append(x)
            cache.apply([StoreEvent(type: .added, object: x, previous: nil)], revision: Int64(i))
        }
        // The log keeps revisions 4...6: a snapshot at 3 can be rebuilt, one at 2 cannot.
        #expect(try cache.list(resource: "pods", namespace: nil, atRevision: 3).items.map(\.key.name) == ["p1", "p2", "p3"])
        #expect(throws: StoreError.gone(requested: 2, oldest: 4)) { try cache.list(resource: "pods", namespace: nil, atRevision: 2) }
    }

    /// A watch without a revision replays every object as ADDED, however many more there are
    /// than the watch buffer, and then goes on with the changes after it.
    @Test func aReplayLargerThanTheWatchBufferArrivesWhole() async throws {
        var o = StoreOptions()
        o.watchBuffer = 10
        let cache = WatchCache(options: o)
        for i in 1...50 {
            var x = obj(String(format: "p%02d", i))
            x.revision = Int64(i)
            cache.apply([StoreEvent(type: .added, object: x, previous: nil)], revision: Int64(i))
        }
        let sub = try cache.watch(resource: "pods", namespace: nil, fromRevision: nil)
        var after = obj("late")
        after.revision = 51
        cache.apply([StoreEvent(type: .added, object: after, previous: nil)], revision: 51)
        var seen: [String] = []
        for await e in sub.events {
            seen.append(e.object.key.name)
            if seen.count == 51 { break }
        }
        sub.cancel()
        #expect(seen == (1...50).map { String(format: "p%02d", $0) } + ["late"])
    }

    /// A watcher that falls more than the buffer behind is closed: its stream ends after what it
    /// was sent, never a gap followed by later events (its client watches again from there).
    @Test func aWatcherThatFallsBehindIsClosedNotSkipped() async throws {
        var o = StoreOptions()
        o.watchBuffer = 10
        let cache = WatchCache(options: o)
        let sub = try cache.watch(resource: "pods", namespace: nil, fromRevision: 0)
        for i in 1...30 {
            var x = obj("p\(i)")
            x.revision = Int64(i)
            cache.apply([StoreEvent(type: .added, object: x, previous: nil)], revision: Int64(i))
        }
        var revisions: [Int64] = []
        for await e in sub.events { revisions.append(e.revision) }   // ends: the watcher was closed
        #expect(revisions == Array(1...10))
        #expect(cache.watcherCount == 0)
    }

    /// A watcher's filter runs outside the cache's lock: while one is slow, gets, lists and new
    /// watches are answered.
    @Test func aSlowWatchFilterDoesNotHoldTheCache() async throws {
        let cache = WatchCache()
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let sub = try cache.watch(resource: "pods", namespace: nil, fromRevision: 0) { e in
            entered.signal()
            _ = release.wait(timeout: .now() + 10)
            return e
        }
        let x = { var o = obj("p1"); o.revision = 1; return o }()
        let applied = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            cache.apply([StoreEvent(type: .added, object: x, previous: nil)], revision: 1)
            applied.signal()
        }
        #expect(entered.wait(timeout: .now() + 10) == .success)
        // The filter is still inside; the cache answers anyway.
        #expect(cache.get(x.key)?.revision == 1)
        #expect(cache.list(resource: "pods", namespace: nil).items.count == 1)
        let other = try cache.watch(resource: "pods", namespace: nil, fromRevision: 0)
        #expect(applied.wait(timeout: .now()) == .timedOut)
        release.signal()
        #expect(applied.wait(timeout: .now() + 10) == .success)
        var it = other.events.makeAsyncIterator()
        #expect(await it.next()?.revision == 1)   // replayed from the log
        var first = sub.events.makeAsyncIterator()
        #expect(await first.next()?.revision == 1)
        sub.cancel(); other.cancel()
    }

    /// The history's byte budget counts the previous objects kept for updates and deletes.
    @Test func theHistoryBudgetCountsPreviousObjects() {
        var o = StoreOptions()
        o.logBytes = 2_000_000   // 1500 updates of 1000 bytes: 1.5 MB of objects, 3 MB with their previous ones
        o.logCapacity = 100_000
        let cache = WatchCache(options: o)
        var x = obj("big")
        x.data = Data(repeating: 0x20, count: 1000)
        var rev: Int64 = 0
        for _ in 0..<1500 {
            rev += 1
            var next = x
            next.revision = rev
            cache.apply([StoreEvent(type: .modified, object: next, previous: x)], revision: rev)
            x = next
        }
        // Trimmed to the budget: 1000 entries of 2000 bytes.
        #expect(cache.compactedThrough == 500)
    }

    @Test(arguments: [Backend.sqlite, .etcd]) func aNewStoreSeesEverythingKept(_ b: Backend) async throws {
        let t = try await StoreUnderTest(b)
        var last: Int64 = 0
        do {
            let s = t.store
            for i in 0..<20 { last = try await s.write(.create(obj("p\(i)", ["i": "\(i)"]))).revision }
            last = try await s.write(.delete(ObjectKey(resource: "pods", namespace: "default", name: "p3"), expectedRevision: nil, finalData: obj("p3").data)).revision
            _ = try await s.write(.create(obj("n", ns: "", resource: "nodes")))
        }
        if b == .sqlite { t.store = Store.inMemory() }   // the only writer goes away first
        let s = try await t.another()
        #expect(s.currentRevision > last)
        #expect(s.list(resource: "pods", namespace: nil).items.count == 19)
        let p7 = s.get(ObjectKey(resource: "pods", namespace: "default", name: "p7"))
        #expect(p7?.labels == ["i": "7"])
        #expect(p7.flatMap(rv) == p7.map { String($0.revision) })
        #expect(s.get(ObjectKey(resource: "nodes", namespace: "", name: "n")) != nil)
        let next = try await s.write(.create(obj("new")))
        #expect(next.revision > s.get(ObjectKey(resource: "nodes", namespace: "", name: "n"))!.revision)
    }

    // MARK: etcd only

    @Test func twoStoresOnOneEtcdAgreeOnEveryWrite() async throws {
        let t = try await StoreUnderTest(.etcd)
        let a = t.store
        let b = try await t.another()
        let sub = try b.watch(resource: "pods", namespace: nil, fromRevision: b.currentRevision)
        let x = try await a.write(.create(obj("x")))
        try await b.sync()
        #expect(b.get(x.key)?.revision == x.revision)
        // A write based on what one store read fails once the other has changed the object.
        let y = try await b.write(.update(obj("x", payload: "b"), expectedRevision: x.revision))
        await #expect(throws: StoreError.conflict(x.key, current: y.revision)) {
            try await a.write(.update(obj("x", payload: "a"), expectedRevision: x.revision))
        }
        // The same name created through both at once: exactly one wins.
        let results = await withTaskGroup(of: Bool.self) { g in
            for s in [a, b] { g.addTask { (try? await s.write(.create(obj("race")))) != nil } }
            var out: [Bool] = []
            for await r in g { out.append(r) }
            return out
        }
        #expect(results.filter { $0 }.count == 1)
        let events = await collect(sub, count: 3)
        #expect(events.map(\.type) == [.added, .modified, .added])
        #expect(events.map(\.object.key.name) == ["x", "x", "race"])
    }

    @Test func writesFailFastWhileEtcdIsDownAndWorkWhenItIsBack() async throws {
        let t = try await StoreUnderTest(.etcd)
        let s = t.store
        _ = try await s.write(.create(obj("before")))
        #expect(await s.readiness() == nil)
        t.etcd!.kill()
        // Not ready (what /readyz reports), within about a second, saying why.
        let probed = ContinuousClock.now
        let why = await s.readiness()
        #expect(why?.contains("etcd") == true, "\(why ?? "ready")")
        #expect(ContinuousClock.now - probed < .seconds(2))
        let started = ContinuousClock.now
        do {
            _ = try await s.write(.create(obj("during")))
            Issue.record("a write succeeded with etcd down")
        } catch let e as StoreError {
            guard case .unavailable = e else { Issue.record("expected unavailable, got \(e)"); return }
        }
        #expect(ContinuousClock.now - started < .seconds(4))
        // Reads are still answered from the cache.
        #expect(s.get(ObjectKey(resource: "pods", namespace: "default", name: "before")) != nil)
        try t.etcd!.start()
        let deadline = ContinuousClock.now + .seconds(30)
        var written: StoredObject?
        while written == nil, ContinuousClock.now < deadline {
            written = try? await s.write(.create(obj("after")))
            if written == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(written != nil)
        #expect(await s.readiness() == nil)
        try await s.sync()
        #expect(s.get(ObjectKey(resource: "pods", namespace: "default", name: "after")) != nil)
    }

    @Test func anUnreachableEtcdIsReportedNotWaitedOnForever() async throws {
        var c = EtcdConfig(endpoints: ["http://127.0.0.1:\(EtcdProcess.freePort())"])
        c.requestTimeout = .milliseconds(500)
        let started = ContinuousClock.now
        await #expect(throws: StoreError.self) { _ = try await EtcdStore.open(config: c, patience: .seconds(2)) }
        #expect(ContinuousClock.now - started < .seconds(10))
        await #expect(throws: StoreError.self) { _ = try await EtcdStore.open(config: EtcdConfig(endpoints: ["etcd:2379"]), patience: .zero) }
    }

    @Test func keysFollowKubeApiserversLayout() throws {
        let s = try EtcdStoreLayout()
        #expect(s.key(ObjectKey(resource: "pods", namespace: "default", name: "web-1")) == "/registry/core/pods/default/web-1")
        #expect(s.key(ObjectKey(resource: "deployments.apps", namespace: "ns", name: "d")) == "/registry/apps/deployments/ns/d")
        #expect(s.key(ObjectKey(resource: "nodes", namespace: "", name: "n1")) == "/registry/core/nodes/n1")
        #expect(s.key(ObjectKey(resource: "clusterroles.rbac.authorization.k8s.io", namespace: "", name: "view"))
                == "/registry/rbac.authorization.k8s.io/clusterroles/view")
    }

    @Test func theRevisionGoesIntoTheTopLevelMetadataOnly() {
        let raw = #"{"apiVersion":"v1","data":{"resourceVersion":""},"metadata":{"annotations":{"resourceVersion":""},"name":"a","resourceVersion":""},"spec":{"template":{"metadata":{"resourceVersion":""}}}}"#
        let out = String(decoding: ResourceVersion.set(Data(raw.utf8), "42"), as: UTF8.self)
        #expect(out == raw.replacingOccurrences(of: #""name":"a","resourceVersion":"""#, with: #""name":"a","resourceVersion":"42""#))
        let escaped = #"{"metadata":{"name":"a\"b","resourceVersion":""}}"#
        #expect(String(decoding: ResourceVersion.set(Data(escaped.utf8), "7"), as: UTF8.self) == #"{"metadata":{"name":"a\"b","resourceVersion":"7"}}"#)
        #expect(ResourceVersion.set(Data("[1]".utf8), "7") == Data("[1]".utf8))
    }
}

/// The key mapping alone, without a connection.
struct EtcdStoreLayout {
    let store: EtcdStore
    init() throws { store = try EtcdStore.layoutOnly() }
    func key(_ k: ObjectKey) -> String {
        let d = store.etcdKey(k)
        #expect(store.objectKey(d) == k)
        return String(decoding: d, as: UTF8.self)
    }
}
