// Measures the collector at scale on hollow nodes (all in this process): per-node scrape time,
// how long until every pod has figures, and the latency of metrics.k8s.io lists and of the
// history. Off by default; run with METRICS_BENCH_NODES=50 METRICS_BENCH_PODS=10.
import Testing
import Foundation
import API
import APIServer
import Agent
import Client
import Controllers

let benchNodes = Int(ProcessInfo.processInfo.environment["METRICS_BENCH_NODES"] ?? "") ?? 0
let benchPods = Int(ProcessInfo.processInfo.environment["METRICS_BENCH_PODS"] ?? "") ?? 10

@Suite(.serialized, .enabled(if: benchNodes > 0, "set METRICS_BENCH_NODES to run")) struct MetricsScaleBench {
    @Test func scrapeManyHollowNodes() async throws {
        let c = try await TestCluster.start(inMemory: true) { $0.metrics.interval = 1 }
        let admin = try c.admin()
        var cfg = ControllerManagerConfig()
        cfg.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cfg)
        let cmTask = Task { await cm.run() }
        var started: [HollowNode] = []
        for i in 0..<benchNodes { started.append(try await HollowNode.start(c, name: "bench-\(i)", statsInterval: 1)) }
        let nodes = started
        defer { Task { for n in nodes { await n.stop() }; cmTask.cancel(); await c.cleanup() } }
        // Pods bound directly (no scheduler): P per node, 100m each, in one workload per node.
        for i in 0..<benchNodes {
            for j in 0..<benchPods {
                var p = pod("b\(i)-\(j)", node: "bench-\(i)", labels: ["app": "bench-\(i)"])
                p.metadata.annotations = [FakeRuntime.cpuAnnotation: "100"]
                _ = try await admin.create(p)
            }
        }
        let total = benchNodes * benchPods
        _ = try await eventually(300, "\(total) running pods") { () -> Bool? in
            try await admin.list(Pod.self).items.filter { $0.phase == "Running" }.count == total ? true : nil
        }
        let running = Date()
        _ = try await eventually(120, "figures for all \(total) pods") { () -> Bool? in
            let r = try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/pods")
            return try KubeJSON.decode(ObjectList<PodMetrics>.self, from: r.body).items.count == total ? true : nil
        }
        let coverage = Date().timeIntervalSince(running)
        try await Task.sleep(for: .seconds(5))
        let page = String(decoding: try await admin.call(.GET, "/metrics").body, as: UTF8.self)
        let durations = page.split(separator: "\n").filter { $0.hasPrefix("metrics_scrape_duration_seconds{") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.sorted()
        var listTimes: [Double] = []
        for _ in 0..<10 {
            let t = Date()
            _ = try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/pods")
            listTimes.append(Date().timeIntervalSince(t))
        }
        let t = Date()
        let h = try await admin.call(.GET, WorkloadMetricsGroup.path(namespace: "default", kind: "Pod", name: "b0-0"), query: ["since": "3600"])
        let historyTime = Date().timeIntervalSince(t)
        listTimes.sort()
        func ms(_ v: Double) -> String { String(format: "%.1f ms", v * 1000) }
        print("""
            metrics bench: \(benchNodes) nodes × \(benchPods) pods = \(total) pods, interval 1 s
              per-node scrape: p50 \(ms(durations[durations.count / 2])), p90 \(ms(durations[durations.count * 9 / 10])), max \(ms(durations.last!))
              figures for every pod \(String(format: "%.1f", coverage)) s after all were Running
              GET metrics.k8s.io pods (all \(total)): p50 \(ms(listTimes[5])), max \(ms(listTimes.last!)); response \(try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/pods").body.count / 1024) KiB
              GET workloadmetrics (one pod, \(try KubeJSON.decode(WorkloadMetricsList.self, from: h.body).items.count) samples): \(ms(historyTime))
              apiserver process RSS \(residentBytes() >> 20) MiB (includes the \(benchNodes) in-process agents)
            """)
        #expect(durations.count == benchNodes)
    }
}
