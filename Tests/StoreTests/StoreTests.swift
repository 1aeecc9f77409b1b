import Testing
import Foundation
@testable import Store

func obj(_ name: String, _ labels: [String: String] = [:], ns: String = "default", resource: String = "pods", payload: String = "x") -> StoredObject {
    let json = #"{"metadata":{"name":"\#(name)","resourceVersion":"\#(Store.revisionPlaceholder)"},"p":"\#(payload)"}"#
    return StoredObject(key: ObjectKey(resource: resource, namespace: ns, name: name), data: Data(json.utf8), labels: labels, fields: [:])
}

func collect(_ sub: Store.Subscription, count: Int, within seconds: Double = 5) async -> [StoreEvent] {
    await withTaskGroup(of: [StoreEvent].self) { group in
        group.addTask {
            var out: [StoreEvent] = []
            for await e in sub.events { out.append(e); if out.count == count { break } }
            return out
        }
        group.addTask { try? await Task.sleep(for: .seconds(seconds)); sub.cancel(); return [] }
        let first = await group.next() ?? []
        group.cancelAll()
        return first
    }
}

/// A fresh temporary directory; the caller removes it.
func tempDir() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

// Conditional writes and watch order are in StoreContractTests (every backend); these are
// the local store's own: group commit, its log's compaction, bookmarks, replay after reopen.
@Suite struct StoreTests {
    @Test func concurrentWritesShareCommitsAndGetDistinctRevisions() async throws {
        let s = Store.inMemory()
        let revs = try await withThrowingTaskGroup(of: Int64.self) { g in
            for i in 0..<500 { g.addTask { try await s.write(.create(obj("p\(i)"))).revision } }
            var out: [Int64] = []
            for try await r in g { out.append(r) }
            return out
        }
        #expect(Set(revs).count == 500)
        #expect(revs.max() == 500)
        #expect(s.metrics.commits <= 500)
        #expect(s.list(resource: "pods", namespace: "default").items.count == 500)
    }

    @Test func compactedRevisionIsGone() async throws {
        var o = StoreOptions(); o.logCapacity = 10
        let s = Store.inMemory(options: o)
        for i in 0..<30 { _ = try await s.write(.create(obj("p\(i)"))) }
        #expect(throws: StoreError.self) { try s.watch(resource: "pods", namespace: nil, fromRevision: 5) }
        let sub = try s.watch(resource: "pods", namespace: nil, fromRevision: 25)
        #expect(await collect(sub, count: 5).map(\.revision) == [26, 27, 28, 29, 30])
    }

    @Test func bookmarksCarryTheCurrentRevision() async throws {
        let s = Store.inMemory()
        _ = try await s.write(.create(obj("a")))
        let sub = try s.watch(resource: "pods", namespace: nil, fromRevision: 1, filter: { $0.type == .bookmark ? $0 : nil })
        _ = try await s.write(.create(obj("b")))
        sub.requestBookmark()
        let e = await collect(sub, count: 1)
        #expect(e.first?.type == .bookmark && e.first?.revision == 2)
    }

    @Test func sqlitePersistsAcrossReopen() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let s = try Store(backend: SQLiteBackend(path: "\(dir)/db"))
            for i in 0..<20 { _ = try await s.write(.create(obj("p\(i)", ["i": "\(i)"]))) }
            _ = try await s.write(.delete(ObjectKey(resource: "pods", namespace: "default", name: "p3"), expectedRevision: nil, finalData: obj("p3").data))
        }
        let s = try Store(backend: SQLiteBackend(path: "\(dir)/db"))
        #expect(s.currentRevision == 21)
        #expect(s.list(resource: "pods", namespace: nil).items.count == 19)
        #expect(s.get(ObjectKey(resource: "pods", namespace: "default", name: "p7"))?.labels == ["i": "7"])
        // Watch replay survives the restart too.
        let sub = try s.watch(resource: "pods", namespace: nil, fromRevision: 18)
        #expect(await collect(sub, count: 3).map(\.revision) == [19, 20, 21])
        let next = try await s.write(.create(obj("new")))
        #expect(next.revision == 22)
    }

    /// A labels column that does not decode fails the open, naming the object (it was read as
    /// no labels, and the object silently left every label selection).
    @Test func corruptStoredLabelsFailLoudlyNamingTheObject() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let s = try Store(backend: SQLiteBackend(path: "\(dir)/db"))
            for i in 0..<3 { _ = try await s.write(.create(obj("p\(i)", ["app": "web"]))) }
        }
        try SQLiteBackend(path: "\(dir)/db").exec("UPDATE objects SET labels = '{\"app\": 7' WHERE name = 'p1'")
        #expect {
            _ = try Store(backend: SQLiteBackend(path: "\(dir)/db"))
        } throws: { error in
            "\(error)".contains("labels of object pods/default/p1")
        }
    }
}
