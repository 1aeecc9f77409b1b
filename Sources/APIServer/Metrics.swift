// Prometheus metrics for the apiserver: requests by verb/resource/code with latency histograms,
// store commit latency and batch size, open watches. Text exposition format 0.0.4.
import Foundation
import Synchronization
import Store
import Client

public final class APIMetrics: Sendable {
    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    struct Key: Hashable { var verb: String; var resource: String; var code: Int }
    struct Hist { var counts = [Int64](repeating: 0, count: APIMetrics.buckets.count); var sum = 0.0; var count: Int64 = 0 }
    struct HistKey: Hashable { var verb: String; var resource: String }
    struct State { var requests: [Key: Int64] = [:]; var latency: [HistKey: Hist] = [:]; var watches = 0 }
    private let state = Mutex(State())

    public init() {}

    func observe(verb: String, resource: String, code: Int, seconds: Double) {
        state.withLock { s in
            s.requests[Key(verb: verb, resource: resource, code: code), default: 0] += 1
            var h = s.latency[HistKey(verb: verb, resource: resource)] ?? Hist()
            for (i, b) in APIMetrics.buckets.enumerated() where seconds <= b { h.counts[i] += 1 }
            h.sum += seconds; h.count += 1
            s.latency[HistKey(verb: verb, resource: resource)] = h
        }
    }
    func watchOpened() { state.withLock { $0.watches += 1 } }
    func watchClosed() { state.withLock { $0.watches -= 1 } }

    public func render(store: any ObjectStore) -> String {
        let s = state.withLock { $0 }
        var out = "# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n"
        for (k, v) in s.requests.sorted(by: { ($0.key.resource, $0.key.verb, $0.key.code) < ($1.key.resource, $1.key.verb, $1.key.code) }) {
            out += "apiserver_request_total{verb=\"\(k.verb)\",resource=\"\(k.resource)\",code=\"\(k.code)\"} \(v)\n"
        }
        out += "# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n"
        for (k, h) in s.latency.sorted(by: { ($0.key.resource, $0.key.verb) < ($1.key.resource, $1.key.verb) }) {
            let l = "verb=\"\(k.verb)\",resource=\"\(k.resource)\""
            for (i, b) in APIMetrics.buckets.enumerated() { out += "apiserver_request_duration_seconds_bucket{\(l),le=\"\(b)\"} \(h.counts[i])\n" }
            out += "apiserver_request_duration_seconds_bucket{\(l),le=\"+Inf\"} \(h.count)\n"
            out += "apiserver_request_duration_seconds_sum{\(l)} \(h.sum)\napiserver_request_duration_seconds_count{\(l)} \(h.count)\n"
        }
        out += "# HELP apiserver_registered_watchers Number of currently open watches.\n# TYPE apiserver_registered_watchers gauge\napiserver_registered_watchers \(s.watches)\n"
        let m = store.metrics
        out += "# HELP store_commit_duration_seconds Time to make one group-committed batch durable.\n# TYPE store_commit_duration_seconds histogram\n"
        var cum: Int64 = 0
        for (i, b) in StoreMetrics.bounds.enumerated() { cum += m.commitLatencyBuckets[i]; out += "store_commit_duration_seconds_bucket{le=\"\(b)\"} \(cum)\n" }
        out += "store_commit_duration_seconds_bucket{le=\"+Inf\"} \(m.commits)\nstore_commit_duration_seconds_sum \(m.commitSeconds)\nstore_commit_duration_seconds_count \(m.commits)\n"
        out += "# HELP store_commit_batch_size Writes per committed batch.\n# TYPE store_commit_batch_size histogram\n"
        cum = 0
        for (i, b) in StoreMetrics.batchBounds.enumerated() { cum += m.batchBuckets[i]; out += "store_commit_batch_size_bucket{le=\"\(Int(b))\"} \(cum)\n" }
        out += "store_commit_batch_size_bucket{le=\"+Inf\"} \(m.commits)\nstore_commit_batch_size_sum \(m.committedOps)\nstore_commit_batch_size_count \(m.commits)\n"
        out += "# HELP store_revision Current cluster-wide revision.\n# TYPE store_revision gauge\nstore_revision \(store.currentRevision)\n"
        // The failures counted by the apiserver's own loops, and the process's memory and CPU.
        out += ComponentMetrics.shared.render()
        return out
    }
}
