import Testing
import Foundation
import API
import Client
import PKI

/// A client whose reader falls behind a watch: the watch ends with an error after the events it
/// delivered, in order and without a gap, and watching again from the last one read gets the rest.
@Suite(.serialized) struct WatchBoundsTests {
    @Test func aReaderThatFallsBehindGetsAnErrorNeverAGap() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        for i in 0..<40 { _ = try await admin.create(ConfigMap(name: String(format: "cm-%02d", i), namespace: "default", data: ["i": "\(i)"])) }
        var kc = try Kubeconfig.load(path: "\(c.dir)/admin.kubeconfig").resolve()
        kc.server = c.url
        let k = try KubeClient(config: kc, watchBuffer: 5)

        var seen: [String] = []
        var lastRV = ""
        var ended: Error?
        let stream = k.watch(ConfigMap.self)   // no resourceVersion: every ConfigMap as ADDED first
        var it = stream.makeAsyncIterator()
        // (kube-root-ca.crt, published into every namespace, comes first: it is the oldest)
        if let (_, cm) = try await it.next() { seen.append(cm.name); lastRV = cm.metadata.resourceVersion ?? "" }
        // The reader stops while the 39 others arrive: more than the buffer holds.
        _ = try await eventually(10, "the watch to overflow") { k.watchOverflows > 0 ? true : nil }
        do {
            while let (_, cm) = try await it.next() { seen.append(cm.name); lastRV = cm.metadata.resourceVersion ?? "" }
        } catch { ended = error }
        #expect("\(ended.map { "\($0)" } ?? "no error")".contains("fell 5 events behind"))
        let mine = seen.filter { $0.hasPrefix("cm-") }
        #expect(mine.count < 40)
        #expect(mine == (0..<mine.count).map { String(format: "cm-%02d", $0) })

        // From the last resourceVersion read, the rest arrives (read by a client that keeps up).
        var rest = admin.watch(ConfigMap.self, resourceVersion: lastRV).makeAsyncIterator()
        while seen.filter({ $0.hasPrefix("cm-") }).count < 40, let (type, cm) = try await rest.next() {
            #expect(type == "ADDED")
            seen.append(cm.name)
        }
        #expect(seen.filter { $0.hasPrefix("cm-") } == (0..<40).map { String(format: "cm-%02d", $0) })
    }
}
