// bench ha-load: write load spread over every apiserver of an HA control plane, run through a
// fault (hack/chaos --config cluster-ha.yaml). It reports the write-unavailability window (the
// longest time in which no write was acknowledged), whether every acknowledged write is stored
// afterwards, and whether a watch that fails over between apiservers missed or repeated any
// event.
import ArgumentParser
import Foundation
import API
import Client
import PKI
import Synchronization

struct HALoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ha-load",
        abstract: "Writes through a fault: unavailability window, lost acknowledged writes, missed or repeated watch events.",
        discussion: """
        Each writer has its own client, starting at a different apiserver of the kubeconfig's list, and creates
        ConfigMaps in NAMESPACE (made if missing, deleted at the end) until the stop file appears or the duration
        passes. A watcher follows the namespace from the start, resuming from its last revision on the next
        apiserver whenever one fails. Prints one line of key=value:
          acked failed window_ms window_from_ms window_to_ms lost watch_missed watch_repeated watch_expired
          longest_failure_ms last_error
        watch_expired counts 410s: the watcher then lists again, as informers do, and what the list holds
        counts as seen.
        (times in ms since the epoch). Exits 1 when an acknowledged write is lost or the watch missed or
        repeated an event.
        """)
    @Option var kubeconfig: String
    @Option var namespace = "ha-load"
    @Option(help: "Concurrent writers.") var clients = 4
    @Option(help: "Stop after this many seconds.") var duration: Double = 120
    @Option(help: "Stop when this file exists.") var stopFile: String?
    @Option(help: "How long the watcher may take to catch up after the writers stop (seconds).") var catchUp: Double = 20
    @Option(help: "Writes per second, all writers together (0: as fast as they are answered).") var rate: Double = 0

    struct State {
        var acks: [(name: String, ms: Int64)] = []
        var failed = 0
        var longestFailure: Int64 = 0
        var lastError = ""
        var seen: Set<String> = []
        var repeated = 0
        var expired = 0
        var lastRV: Int64 = 0
    }

    final class Shared: Sendable {
        let m = Mutex(State())
        func withLock<R: Sendable>(_ f: (inout State) -> R) -> R { m.withLock { f(&$0) } }
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func run() async throws {
        guard clients >= 1, clients <= 64 else { throw ValidationError("--clients must be 1 to 64") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be more than 0 and at most 3600 seconds") }
        guard rate >= 0, rate <= 100_000 else { throw ValidationError("--rate must be 0 (unlimited) to 100000 writes per second") }
        let kc = try Kubeconfig.load(path: kubeconfig)
        let resolved = try kc.resolve(baseDirectory: (kubeconfig as NSString).deletingLastPathComponent)
        let urls = resolved.server.split(separator: ",").map(String.init)
        func client(startingAt i: Int) throws -> KubeClient {
            var r = resolved
            r.server = (urls[(i % urls.count)...] + urls[..<(i % urls.count)]).joined(separator: ",")
            return try KubeClient(config: r)
        }
        let ns = namespace
        let admin = try client(startingAt: 0)
        if (try? await admin.get(Namespace.self, ns)) == nil { _ = try await admin.create(Namespace(name: ns)) }
        let start = try await admin.list(ConfigMap.self, namespace: ns)
        let state = Shared()
        state.withLock { $0.lastRV = Int64(start.metadata.resourceVersion ?? "0") ?? 0 }
        let startMs = Self.nowMs()
        let deadline = ContinuousClock.now + .seconds(duration)
        let stop = stopFile
        
        // The watcher: every ADDED once, revisions only growing, across apiserver failures.
        let watchClient = try client(startingAt: 1)
        let watcher = Task {
            var rv = start.metadata.resourceVersion
            while !Task.isCancelled {
                do {
                    for try await (type, cm) in watchClient.watch(ConfigMap.self, namespace: ns, resourceVersion: rv, bookmarks: true, timeoutSeconds: 60) {
                        let r = cm.metadata.resourceVersion
                        if type == "BOOKMARK" { rv = r ?? rv; continue }
                        let v = Int64(r ?? "0") ?? 0
                        state.withLock { s in
                            if v <= s.lastRV { s.repeated += 1 }
                            s.lastRV = max(s.lastRV, v)
                            if type == "ADDED", !s.seen.insert(cm.metadata.name ?? "").inserted { s.repeated += 1 }
                        }
                        rv = r ?? rv
                    }
                } catch let s as Status where s.code == 410 {
                    // The apiserver cannot replay from there (one that has just started keeps no
                    // older history): list again, as an informer does, and go on from the list.
                    // What the list holds counts as seen; relists are reported.
                    if let l = try? await watchClient.list(ConfigMap.self, namespace: ns) {
                        state.withLock { st in
                            st.expired += 1
                            for cm in l.items { st.seen.insert(cm.metadata.name ?? "") }
                            st.lastRV = max(st.lastRV, Int64(l.metadata.resourceVersion ?? "0") ?? 0)
                        }
                        rv = l.metadata.resourceVersion
                    }
                } catch {
                    if Task.isCancelled { return }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<clients {
                let c = try client(startingAt: w)
                let interval: Duration? = rate > 0 ? .seconds(Double(clients) / rate) : nil
                group.addTask {
                    var i = 0
                    var next = ContinuousClock.now
                    while ContinuousClock.now < deadline {
                        if let interval {
                            next += interval
                            if next > ContinuousClock.now { try? await Task.sleep(until: next) } else { next = ContinuousClock.now }
                        }
                        if let s = stop, FileManager.default.fileExists(atPath: s) { break }
                        i += 1
                        let name = "w\(w)-\(i)"
                        let t0 = Self.nowMs()
                        do {
                            _ = try await c.create(ConfigMap(name: name, namespace: ns, data: ["i": "\(i)"]))
                            let t1 = Self.nowMs()
                            state.withLock { $0.acks.append((name, t1)) }
                        } catch {
                            let t1 = Self.nowMs()
                            state.withLock { s in
                                s.failed += 1
                                s.longestFailure = max(s.longestFailure, t1 - t0)
                                s.lastError = "\(error)".replacingOccurrences(of: "\n", with: " ")
                            }
                            try? await Task.sleep(for: .milliseconds(50))
                        }
                    }
                    await c.shutdown()
                }
            }
            try await group.waitForAll()
        }
                let endMs = Self.nowMs()

        // Let the watcher catch up with every acknowledged write.
        let catchUpDeadline = ContinuousClock.now + .seconds(catchUp)
        while ContinuousClock.now < catchUpDeadline {
            if state.withLock({ s in s.acks.allSatisfy { s.seen.contains($0.name) } }) { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        watcher.cancel()

        // Every acknowledged write must be stored (read through any apiserver that answers).
        var stored: Set<String> = []
        var listed = false
        let listDeadline = ContinuousClock.now + .seconds(30)
        while !listed, ContinuousClock.now < listDeadline {
            if let l = try? await admin.list(ConfigMap.self, namespace: ns) {
                stored = Set(l.items.map(\.name)); listed = true
            } else {
                try? await Task.sleep(for: .seconds(1))
            }
        }
        let s = state.withLock { $0 }
        let lost = listed ? s.acks.filter { !stored.contains($0.name) }.count : -1
        let missed = s.acks.filter { !s.seen.contains($0.name) }.count
        var marks = [startMs] + s.acks.map(\.ms).sorted() + [endMs]
        marks.sort()
        var window: Int64 = 0, from = startMs, to = startMs
        for (a, b) in zip(marks, marks.dropFirst()) where b - a > window { window = b - a; from = a; to = b }
        print("acked=\(s.acks.count) failed=\(s.failed) window_ms=\(window) window_from_ms=\(from) window_to_ms=\(to) lost=\(lost) watch_missed=\(missed) watch_repeated=\(s.repeated) watch_expired=\(s.expired) longest_failure_ms=\(s.longestFailure) last_error=\(s.lastError.isEmpty ? "-" : s.lastError)")
        try? await admin.call(.DELETE, Resources.namespaces.path(namespace: nil, name: ns))
        await admin.shutdown()
        await watchClient.shutdown()
        if lost != 0 || missed != 0 || s.repeated != 0 { throw ExitCode(1) }
    }
}
