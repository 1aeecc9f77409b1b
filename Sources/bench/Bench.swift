// bench: measurements and load generators against a running apiserver.
//   bench writes  — durable create/update throughput and latency with N concurrent clients
//   bench load    — steady writes that log every acknowledged write (for the crash test)
//   bench verify  — checks that every acknowledged write survived
import ArgumentParser
import Foundation
import API
import Client
import Synchronization
import Scheduler

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks and load generators.",
                                                    subcommands: [Writes.self, Load.self, HALoad.self, Verify.self, ScheduleBench.self, PodStartup.self, ProxyBench.self, CodecBench.self, CreateRate.self, AuthBench.self, EtcdPuts.self, SQLiteCeiling.self, HPAReplayBench.self])
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
    var current: Int { value.load(ordering: .relaxed) }
}

final class LineLog: Sendable {
    let handle: Mutex<FileHandle>
    init(_ h: FileHandle) { handle = Mutex(h) }
    func write(_ s: String) { handle.withLock { $0.write(Data(s.utf8)) } }
    func close() { handle.withLock { try? $0.synchronize(); try? $0.close() } }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// Where a process's resident bytes are, from /proc/PID/smaps: its own binary (code and data),
/// shared libraries, anonymous memory (heap, malloc arenas, thread stacks) and the rest.
func smapsSummary(pid: Int32) -> String {
    // Read to the end: procfs files report size 0, and a read sized by it stops early.
    guard let fh = FileHandle(forReadingAtPath: "/proc/\(pid)/smaps"), let data = try? fh.readToEnd() else { return "smaps unreadable" }
    try? fh.close()
    let s = String(decoding: data, as: UTF8.self)
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
    var by: [String: Int] = [:]
    var current = "other"
    for line in s.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = f.first else { continue }
        if first.contains("-"), f.count >= 5, !first.hasSuffix(":") {
            let path = f.count >= 6 ? String(f[5]) : ""
            let perms = f[1]
            if path == exe { current = perms.contains("x") ? "binary code" : "binary data" }
            else if path.contains(".so") { current = "shared libraries" }
            else if path == "[heap]" { current = "heap (brk)" }
            else if path == "[stack]" { current = "main stack" }
            else if path.isEmpty { current = "anonymous (malloc arenas, mmap, thread stacks)" }
            else { current = "other" }
        } else if first == "Rss:", f.count >= 2, let kb = Int(f[1]) {
            by[current, default: 0] += kb
        }
    }
    return by.sorted { $0.value > $1.value }.map { String(format: "%@ %.1f MB", $0.key, Double($0.value) / 1024) }.joined(separator: "; ")
}

func rss(pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }
    return 0
}

/// Runs `clients` loops of `op` at once until `duration` seconds have passed; every call's
/// latency in seconds (unsorted) and the wall time taken.
func concurrentLatencies(clients: Int, duration: Double, _ op: @escaping @Sendable () async throws -> Void) async throws -> (latencies: [Double], seconds: Double) {
    try await concurrentLatenciesIndexed(clients: clients, duration: duration) { _ in try await op() }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func benchPod(_ name: String, ns: String) -> Pod {
    var c = Container(name: "app", image: "127.0.0.1:5000/demo/busybox:1.0")
    c.command = ["/bin/sh", "-c", "sleep 3600"]
    c.resources = ResourceRequirements(limits: ["cpu": Quantity(milli: 100), "memory": Quantity(milli: 32 << 30, format: .binarySI)],
                                       requests: ["cpu": Quantity(milli: 50), "memory": Quantity(milli: 16 << 30, format: .binarySI)])
    return Pod(metadata: ObjectMeta(name: name, namespace: ns, labels: ["app": "bench", "tier": "load"]), spec: PodSpec(containers: [c]))
}

struct Writes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Durable write throughput and latency over mTLS.")
    @Option var kubeconfig: String
    @Option(help: "Concurrent clients, comma separated.") var clients: String = "1,16,64"
    @Option(help: "Seconds per phase.") var duration: Double = 10
    @Option(help: "Pods that must exist before RSS is measured.") var pods: Int = 10_000
    @Option(help: "apiserver PID, to read its RSS.") var pid: Int32?
    @Option(help: "Namespace to use.") var namespace: String = "bench"

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        _ = try? await client.create(Namespace(name: namespace))
        // Fill to exactly --pods pods first and measure RSS there; the throughput phases follow.
        let fillNS = "\(namespace)-fill"
        _ = try? await client.create(Namespace(name: fillNS))
        let have = try await client.list(Pod.self, namespace: fillNS).items.count
        if have < pods {
            let need = pods - have
            let next = Counter()
            let t0 = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        while true {
                            let n = next.next()
                            if n >= need { return }
                            _ = try await client.create(benchPod("fill-\(n)", ns: fillNS))
                        }
                    }
                }
                try await group.waitForAll()
            }
            print(String(format: "filled %d pods in %.1f s (32 clients)", need, seconds(ContinuousClock.now - t0)))
        }
        let total = try await client.list(Pod.self, allNamespaces: true).items.count
        if let pid {
            print(String(format: "pods stored: %d, apiserver RSS: %.1f MB\n", total, Double(rss(pid: pid)) / 1e6))
        } else {
            print("pods stored: \(total)\n")
        }
        let counter = Counter()
        print("| clients | op | writes | seconds | writes/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for c in clients.split(separator: ",").compactMap({ Int($0) }) {
            let firstOfRound = counter.current
            for op in ["create", "update"] {
                let start = ContinuousClock.now
                let deadline = start + .seconds(duration)
                let lat = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for w in 0..<c {
                        group.addTask {
                            var l: [Double] = []
                            var i = 0
                            while ContinuousClock.now < deadline {
                                let t0 = ContinuousClock.now
                                if op == "create" {
                                    let n = counter.next()
                                    _ = try await client.create(benchPod("p-\(c)-\(n)", ns: namespace))
                                } else {
                                    // Update pods created in this round's create phase (merge patch of a label).
                                    let n = firstOfRound + (w + i * c) % max(1, counter.current - firstOfRound)
                                    let patch: JSONValue = .object(["metadata": .object(["labels": .object(["rev": .string("\(i)")])])])
                                    _ = try await client.patch(Pod.self, "p-\(c)-\(n)", namespace: namespace, mergePatch: patch)
                                }
                                l.append(seconds(ContinuousClock.now - t0))
                                i += 1
                            }
                            return l
                        }
                    }
                    var all: [Double] = []
                    for try await l in group { all += l }
                    return all.sorted()
                }
                let secs = seconds(ContinuousClock.now - start)
                print(String(format: "| %d | %@ | %d | %.1f | %.0f | %.2f | %.2f |", c, op, lat.count, secs, Double(lat.count) / secs,
                             percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000))
            }
        }
        await client.shutdown()
    }
}

/// Writes ConfigMaps as fast as it can from several clients, appending "name revision" to --out
/// only after a 2xx, and keeps going through apiserver restarts.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Steady write load that records acknowledged writes.")
    @Option var kubeconfig: String
    @Option var out: String
    @Option var clients: Int = 8
    @Option(help: "Stop after this many seconds.") var duration: Double = 30
    @Option(help: "Stop when this file exists.") var stopFile: String?

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        FileManager.default.createFile(atPath: out, contents: nil)
        guard let fh = FileHandle(forWritingAtPath: out) else { throw ValidationError("cannot write \(out)") }
        let lock = LineLog(fh)
        let deadline = ContinuousClock.now + .seconds(duration)
        let stop = stopFile
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<clients {
                group.addTask {
                    var i = 0
                    while ContinuousClock.now < deadline {
                        if let s = stop, FileManager.default.fileExists(atPath: s) { return }
                        let name = "w\(w)-\(i)-\(UInt32.random(in: 0...UInt32.max))"
                        let cm = ConfigMap(name: name, namespace: "default", data: ["i": "\(i)"])
                        do {
                            let created = try await client.create(cm)
                            let line = "\(name) \(created.metadata.resourceVersion ?? "0")\n"
                            lock.write(line)
                            i += 1
                        } catch {
                            try? await Task.sleep(for: .milliseconds(50))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        lock.close()
        await client.shutdown()
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Checks that every acknowledged write is stored and revisions only grew.")
    @Option var kubeconfig: String
    @Option var acked: String
    @Option(help: "The revision observed before the last restart; the current one must not be lower.") var minRevision: Int64 = 0

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        let text = (try? String(contentsOfFile: acked, encoding: .utf8)) ?? ""
        var want: [String: Int64] = [:]
        var maxAcked: Int64 = 0
        for line in text.split(separator: "\n") {
            let p = line.split(separator: " ")
            guard p.count == 2, let rv = Int64(p[1]) else { continue }
            want[String(p[0])] = rv
            maxAcked = max(maxAcked, rv)
        }
        let list = try await client.list(ConfigMap.self, namespace: "default")
        let listRV = Int64(list.metadata.resourceVersion ?? "0") ?? 0
        var have: [String: Int64] = [:]
        for cm in list.items { have[cm.name] = Int64(cm.metadata.resourceVersion ?? "0") ?? 0 }
        var lost: [String] = []
        var changed: [String] = []
        for (name, rv) in want {
            guard let h = have[name] else { lost.append(name); continue }
            if h != rv { changed.append("\(name): acked at \(rv), stored at \(h)") }
        }
        print("acknowledged writes: \(want.count), stored: \(have.count), lost: \(lost.count), changed: \(changed.count), max acked revision: \(maxAcked), current revision: \(listRV)")
        await client.shutdown()
        if !lost.isEmpty { print("LOST: \(lost.prefix(20).joined(separator: ", "))") }
        if !changed.isEmpty { print("CHANGED: \(changed.prefix(20).joined(separator: "; "))") }
        if listRV < maxAcked || listRV < minRevision { print("REVISION WENT BACKWARDS: current \(listRV) < acked \(maxAcked) / before restart \(minRevision)") }
        if !lost.isEmpty || !changed.isEmpty || listRV < maxAcked || listRV < minRevision { throw ExitCode(1) }
    }
}

/// Scheduler throughput with hollow nodes (Node objects only): a backlog of pending pods is
/// bound by a fresh scheduler (pods/s including the bind writes), then pods created at a steady
/// pace measure creation-to-binding latency.
struct ScheduleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schedule", abstract: "Scheduler throughput and latency with hollow nodes.")
    @Option var kubeconfig: String
    @Option(help: "Kubeconfig for the scheduler's identity.") var schedulerKubeconfig: String
    @Option var nodes: Int = 1000
    @Option var pods: Int = 10_000
    @Option(help: "Pods for the latency phase.") var latencyPods: Int = 2000
    @Option var workers: Int = 1
    @Option(help: "The scheduler's --scheduled-events-qps (0: an Event for every pod).") var scheduledEventsQps: Double = 50

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        let ns = "sched-\(nodes)"
        _ = try? await client.create(Namespace(name: ns))
        let t0 = ContinuousClock.now
        try await parallel(count: nodes, width: 32) { i in
            var n = Node(name: "hollow-\(i)")
            n.metadata.labels = ["kubernetes.io/hostname": "hollow-\(i)", "zone": "z\(i % 3)"]
            var st = NodeStatus()
            st.capacity = ["cpu": Quantity(milli: 32_000), "memory": try Quantity(parsing: "128Gi"), "pods": Quantity(milli: 110_000)]
            st.allocatable = st.capacity
            st.conditions = [NodeCondition(type: "Ready", status: "True")]
            n.status = st
            do { _ = try await client.create(n) } catch let s as Status where s.code == 409 {}
        }
        print(String(format: "created %d hollow nodes in %.1f s", nodes, seconds(ContinuousClock.now - t0)))
        let t1 = ContinuousClock.now
        try await parallel(count: pods, width: 64) { i in _ = try await client.create(self.pod("backlog-\(i)", ns)) }
        print(String(format: "created %d pending pods in %.1f s", pods, seconds(ContinuousClock.now - t1)))

        // Phase 1: backlog. Bindings are counted from a watch, not by listing.
        let before = try await client.list(Pod.self, namespace: ns, labelSelector: "none=none")
        let boundCount = Counter()
        let counter = Task {
            do {
                for try await (type, p) in client.watch(Pod.self, namespace: ns, resourceVersion: before.metadata.resourceVersion) where type == "MODIFIED" {
                    if !(p.spec?.nodeName ?? "").isEmpty && p.name.hasPrefix("backlog-") && p.status?.condition("PodScheduled")?.status == "True" { _ = boundCount.next() }
                }
            } catch {}
        }
        let schedClient = try KubeClient(kubeconfig: schedulerKubeconfig)
        var config = SchedulerConfig()
        config.workers = workers
        config.scheduledEvents = EventRateLimit.qps(scheduledEventsQps)
        let scheduler = Scheduler(client: schedClient, config: config)
        let start = ContinuousClock.now
        let task = Task { await scheduler.run() }
        while boundCount.current < pods {
            try await Task.sleep(for: .milliseconds(20))
            if seconds(ContinuousClock.now - start) > 600 { print("gave up after 600 s with \(boundCount.current) bound"); break }
        }
        counter.cancel()
        let bound = boundCount.current
        let backlogSecs = seconds(ContinuousClock.now - start)
        print(String(format: "backlog: %d pods bound in %.2f s = %.0f pods/s (%d nodes, %d workers; includes the scheduler's initial list of nodes and pods)",
                     bound, backlogSecs, Double(bound) / backlogSecs, nodes, workers))

        // Phase 2: creation-to-binding latency at a steady pace.
        let created = Mutex<[String: ContinuousClock.Instant]>([:])
        let latencies = Mutex<[Double]>([])
        let list = try await client.list(Pod.self, namespace: ns)
        let watcher = Task {
            do {
                for try await (type, p) in client.watch(Pod.self, namespace: ns, resourceVersion: list.metadata.resourceVersion) where type == "MODIFIED" {
                    guard !(p.spec?.nodeName ?? "").isEmpty, p.name.hasPrefix("lat-") else { continue }
                    let now = ContinuousClock.now
                    if let c = created.withLock({ $0.removeValue(forKey: p.name) }) { latencies.withLock { $0.append(seconds(now - c)) } }
                }
            } catch {}
        }
        let t2 = ContinuousClock.now
        try await parallel(count: latencyPods, width: 16) { i in
            let name = "lat-\(i)"
            let before = ContinuousClock.now
            _ = try await client.create(self.pod(name, ns))
            created.withLock { $0[name] = before }
        }
        while latencies.withLock({ $0.count }) < latencyPods && seconds(ContinuousClock.now - t2) < 120 { try await Task.sleep(for: .milliseconds(100)) }
        watcher.cancel(); task.cancel()
        let l = latencies.withLock { $0 }.sorted()
        print(String(format: "steady: %d pods created over %.1f s; creation→binding p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                     l.count, seconds(ContinuousClock.now - t2), percentile(l, 0.5) * 1000, percentile(l, 0.99) * 1000, (l.last ?? 0) * 1000))
        await client.shutdown()
    }

    func pod(_ name: String, _ ns: String) -> Pod {
        var p = benchPod(name, ns: ns)
        p.metadata.labels = ["app": "sched-bench"]
        return p
    }
}

func parallel(count: Int, width: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let next = Counter()
    try await withThrowingTaskGroup(of: Void.self) { g in
        for _ in 0..<width {
            g.addTask {
                while true {
                    let i = next.next()
                    if i >= count { return }
                    try await body(i)
                }
            }
        }
        try await g.waitForAll()
    }
}


/// Pod startup latency on one real node: create → Running observed through a watch, pods created
/// one after another (no backlog), then the agent's RSS with some pods left running.
struct PodStartup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "podstartup", abstract: "Pod startup latency and agent memory on one node.")
    @Option var kubeconfig: String
    @Option var node: String
    @Option var image: String
    @Option var pods: Int = 100
    @Option(help: "Pods left running when the agent's RSS is read.") var keep: Int = 50
    @Option(help: "The agent's PID, for its RSS.") var agentPid: Int32?
    @Option(help: "Seconds to wait after the pods are gone before reading the RSS (at least the agent's --memory-trim-period, to see a trim).") var settle: Double = 3

    func pod(_ name: String) -> Pod {
        var c = Container(name: "app", image: image)
        c.command = ["/bin/sleep", "3600"]
        c.imagePullPolicy = "IfNotPresent"
        var p = Pod(metadata: ObjectMeta(name: name, namespace: "bench-startup", labels: ["app": "startup"]), spec: PodSpec(containers: [c]))
        p.spec?.nodeName = node
        p.spec?.terminationGracePeriodSeconds = 1
        return p
    }

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        _ = try? await client.create(Namespace(name: "bench-startup"))
        let created = Mutex<[String: ContinuousClock.Instant]>([:])
        let latencies = Mutex<[String: Double]>([:])
        let start = try await client.list(Pod.self, namespace: "bench-startup")
        let watcher = Task {
            for try await (_, p) in client.watch(Pod.self, namespace: "bench-startup", resourceVersion: start.metadata.resourceVersion) where p.status?.phase == "Running" {
                let now = ContinuousClock.now
                if let t = created.withLock({ $0[p.name] }) { latencies.withLock { if $0[p.name] == nil { $0[p.name] = seconds(now - t) } } }
            }
        }
        // Warm-up: the image is pulled and unpacked once, outside the measurement.
        created.withLock { $0["warmup"] = ContinuousClock.now }
        _ = try await client.create(pod("warmup"))
        let w0 = ContinuousClock.now
        while latencies.withLock({ $0["warmup"] }) == nil {
            try await Task.sleep(for: .milliseconds(20))
            if seconds(ContinuousClock.now - w0) > 180 { throw ClientError("the warm-up pod did not run within 180 s") }
        }
        print(String(format: "warm-up pod (includes the image pull): %.3f s", latencies.withLock { $0["warmup"]! }))
        for i in 0..<pods {
            let name = "p-\(i)"
            created.withLock { $0[name] = ContinuousClock.now }
            _ = try await client.create(pod(name))
            // One at a time, as the SLO measures: wait for this one before the next.
            let t0 = ContinuousClock.now
            while latencies.withLock({ $0[name] }) == nil {
                try await Task.sleep(for: .milliseconds(5))
                if seconds(ContinuousClock.now - t0) > 60 { print("\(name) not Running after 60 s"); break }
            }
        }
        let ls = latencies.withLock { m in m.filter { $0.key.hasPrefix("p-") }.map(\.value) }.sorted()
        print(String(format: "pod startup, %d pods: p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s", ls.count,
                     percentile(ls, 0.5), percentile(ls, 0.9), percentile(ls, 0.99), ls.last ?? 0))
        if let pid = agentPid {
            print(String(format: "agent RSS with %d running pods: %.1f MB", pods + 1, Double(rss(pid: pid)) / 1e6))
            for i in keep..<pods { try? await client.delete(Pod.self, "p-\(i)", namespace: "bench-startup") }
            try? await client.delete(Pod.self, "warmup", namespace: "bench-startup")
            while try await client.list(Pod.self, namespace: "bench-startup").items.count > keep { try await Task.sleep(for: .milliseconds(200)) }
            try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
            print(String(format: "agent RSS with %d running pods: %.1f MB", keep, Double(rss(pid: pid)) / 1e6))
            print("agent RSS by mapping with \(keep) running pods: \(smapsSummary(pid: pid))")
        }
        watcher.cancel()
        for p in try await client.list(Pod.self, namespace: "bench-startup").items { try? await client.delete(Pod.self, p.name, namespace: "bench-startup") }
        while try await client.list(Pod.self, namespace: "bench-startup").items.count > 0 { try await Task.sleep(for: .milliseconds(200)) }
        if let pid = agentPid {
            try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
            print(String(format: "agent RSS with no pods: %.1f MB", Double(rss(pid: pid)) / 1e6))
        }
        await client.shutdown()
    }
}
