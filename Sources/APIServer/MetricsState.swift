// The latest usage per pod and per node, built from the agents' stats summaries. CPU is a
// rate computed here from the cumulative counter (usageCoreNanoSeconds) between two successive
// samples, as metrics-server does: the window is then exactly the time between the samples, and
// a pod is only listed once it has two (never a made-up zero for a pod that just started).
import Foundation
import API

/// The subset of the agent's GET /stats/summary the collector reads.
struct StatsSummary: Decodable, Sendable {
    struct CPU: Decodable, Sendable { var time: String?; var usageNanoCores: UInt64?; var usageCoreNanoSeconds: UInt64? }
    struct Memory: Decodable, Sendable { var time: String?; var workingSetBytes: UInt64? }
    struct NodeStats: Decodable, Sendable { var nodeName: String?; var cpu: CPU?; var memory: Memory? }
    struct PodRef: Decodable, Sendable { var name: String; var namespace: String; var uid: String }
    struct ContainerStats: Decodable, Sendable { var name: String; var cpu: CPU?; var memory: Memory? }
    struct PodStats: Decodable, Sendable { var podRef: PodRef; var containers: [ContainerStats]?; var cpu: CPU?; var memory: Memory? }
    /// Our extension: connections the node's Service rules sent to each pod, cumulative.
    struct PodConnections: Decodable, Sendable { var podRef: PodRef; var connections: UInt64 }
    struct ServiceConnections: Decodable, Sendable { var time: String?; var pods: [PodConnections]? }
    var node: NodeStats
    var pods: [PodStats]?
    var serviceConnections: ServiceConnections?
}

/// A pod's rate of connections through Services, summed over the nodes that sent them.
struct PodRequestRate: Sendable {
    var facts: PodFacts
    var perSecond: Double
    var timestamp: Date
    var window: Double
}

struct ContainerUsage: Sendable, Hashable {
    var name: String
    var cpuNanoCores: UInt64
    var memoryBytes: UInt64
}

struct PodUsage: Sendable {
    var facts: PodFacts
    var node: String
    var timestamp: Date
    var window: Double
    var containers: [ContainerUsage]
    var cpuNanoCores: UInt64 { containers.reduce(0) { $0 + $1.cpuNanoCores } }
    var memoryBytes: UInt64 { containers.reduce(0) { $0 + $1.memoryBytes } }
}

struct NodeUsage: Sendable {
    var name: String
    var labels: [String: String]
    var timestamp: Date
    var window: Double
    var cpuNanoCores: UInt64
    var memoryBytes: UInt64
}

struct MetricsState: Sendable {
    /// Keyed "namespace/name".
    var pods: [String: PodUsage] = [:]
    var nodes: [String: NodeUsage] = [:]
    /// Recent cumulative cpu samples per "uid/container", oldest first, spanning `rateSpan`.
    var counters: [String: [(time: Date, cpu: UInt64)]] = [:]
    /// CPU is the rate over the samples of the last `rateSpan` seconds (metrics-server's kubelet
    /// windows are 10-15 s). A 1 s rate of a bursty workload jumps across the HPA's tolerance
    /// band and makes it flap; 5 s keeps a load step visible within a second or two (the rate
    /// rises with each sample) while steady load reads steady.
    var rateSpan: Double = 5
    /// Time of the last node sample seen, per node (the node window).
    var nodeSampleTimes: [String: Date] = [:]
    /// Recent cumulative Service connection counts per "node|pod uid", oldest first.
    var connectionCounters: [String: [(time: Date, count: UInt64)]] = [:]
    /// The latest connection rate per pod uid, per node that sends it traffic.
    var connectionRates: [String: [String: (perSecond: Double, time: Date, window: Double)]] = [:]
    /// The pods those rates belong to, by uid.
    var connectionPods: [String: PodFacts] = [:]

    static func podKey(_ ns: String, _ name: String) -> String { "\(ns)/\(name)" }

    /// Takes in one node's summary. `facts` holds the stored pods the summary names (by
    /// "namespace/name", uid-checked by the caller); pods it lacks are not (or no longer) in the
    /// cluster and are skipped. `fallbackWindow` is the node window before two samples exist.
    mutating func apply(_ s: StatsSummary, node: String, labels: [String: String], facts: [String: PodFacts], fallbackWindow: Double, now: Date) {
        // Node: the agent reports a rate already (whole-machine /proc/stat deltas).
        let nodeTime = KubeTime.parse(s.node.cpu?.time ?? s.node.memory?.time) ?? now
        if let cpu = s.node.cpu?.usageNanoCores, nodeSampleTimes[node].map({ nodeTime > $0 }) ?? true {
            let window = nodeSampleTimes[node].map { nodeTime.timeIntervalSince($0) } ?? fallbackWindow
            nodes[node] = NodeUsage(name: node, labels: labels, timestamp: nodeTime, window: window, cpuNanoCores: cpu,
                                    memoryBytes: s.node.memory?.workingSetBytes ?? 0)
            nodeSampleTimes[node] = nodeTime
        }

        var seen = Set<String>()
        for p in s.pods ?? [] {
            let key = Self.podKey(p.podRef.namespace, p.podRef.name)
            guard let f = facts[key], f.uid == p.podRef.uid else { continue }
            seen.insert(key)
            var usage: [ContainerUsage] = []
            var latest = Date.distantPast, window = 0.0
            var complete = true
            for c in p.containers ?? [] {
                let ckey = "\(p.podRef.uid)/\(c.name)"
                guard let cum = c.cpu?.usageCoreNanoSeconds, let t = KubeTime.parse(c.cpu?.time) else { complete = false; continue }
                let mem = c.memory?.workingSetBytes ?? 0
                if var hist = counters[ckey], let prev = hist.last, t > prev.time, cum >= prev.cpu {
                    hist.append((t, cum))
                    // Keep the newest sample at or before the span's start, so the span is covered.
                    while hist.count > 2, hist[1].time <= t.addingTimeInterval(-rateSpan) { hist.removeFirst() }
                    let first = hist[0]
                    let dt = t.timeIntervalSince(first.time)
                    usage.append(ContainerUsage(name: c.name, cpuNanoCores: UInt64((Double(cum - first.cpu) / dt).rounded()), memoryBytes: mem))
                    counters[ckey] = hist
                    latest = max(latest, t); window = max(window, dt)
                } else if let prev = counters[ckey]?.last, t == prev.time, let before = pods[key],
                          let old = before.containers.first(where: { $0.name == c.name }) {
                    // The agent has not sampled again since the last scrape: same figures.
                    usage.append(ContainerUsage(name: c.name, cpuNanoCores: old.cpuNanoCores, memoryBytes: mem))
                    latest = max(latest, before.timestamp); window = max(window, before.window)
                } else {
                    // First sample, or the counter went back (container restarted): start over.
                    counters[ckey] = [(t, cum)]
                    complete = false
                }
            }
            if complete && !usage.isEmpty {
                pods[key] = PodUsage(facts: f, node: node, timestamp: latest, window: window, containers: usage)
            }
        }
        // Pods this node no longer reports have stopped (or moved): no stale figures for them.
        for (key, u) in pods where u.node == node && !seen.contains(key) { pods.removeValue(forKey: key) }
        if let sc = s.serviceConnections { applyConnections(sc, node: node, facts: facts, now: now) }
    }

    /// One node's connection counters: a rate per pod over `rateSpan`, as for CPU. A counter
    /// that went back (the node's table was made again) starts over.
    mutating func applyConnections(_ sc: StatsSummary.ServiceConnections, node: String, facts: [String: PodFacts], now: Date) {
        let t = KubeTime.parse(sc.time) ?? now
        var seen = Set<String>()
        for c in sc.pods ?? [] {
            guard let f = facts[Self.podKey(c.podRef.namespace, c.podRef.name)], f.uid == c.podRef.uid else { continue }
            let uid = f.uid, key = "\(node)|\(uid)"
            seen.insert(uid)
            connectionPods[uid] = f
            if var hist = connectionCounters[key], let prev = hist.last, t > prev.time, c.connections >= prev.count {
                hist.append((t, c.connections))
                while hist.count > 2, hist[1].time <= t.addingTimeInterval(-rateSpan) { hist.removeFirst() }
                let first = hist[0], dt = t.timeIntervalSince(first.time)
                connectionRates[uid, default: [:]][node] = (Double(c.connections - first.count) / dt, t, dt)
                connectionCounters[key] = hist
            } else if let prev = connectionCounters[key]?.last, t == prev.time {
                continue
            } else {
                connectionCounters[key] = [(t, c.connections)]
            }
        }
        for (uid, var byNode) in connectionRates where byNode[node] != nil && !seen.contains(uid) {
            byNode.removeValue(forKey: node)
            connectionRates[uid] = byNode.isEmpty ? nil : byNode
            connectionCounters.removeValue(forKey: "\(node)|\(uid)")
        }
    }

    /// Pods with a connection rate from at least one node: the sum over nodes.
    var requestRates: [PodRequestRate] {
        connectionRates.compactMap { uid, byNode -> PodRequestRate? in
            guard let f = connectionPods[uid], !byNode.isEmpty else { return nil }
            return PodRequestRate(facts: f, perSecond: byNode.values.reduce(0) { $0 + $1.perSecond },
                                  timestamp: byNode.values.map(\.time).max()!, window: byNode.values.map(\.window).max()!)
        }
    }

    /// Drops what no longer exists or has gone stale: nodes not in `liveNodes`, pods `stillThere`
    /// rejects (deleted, or re-created with another uid), figures older than `staleBefore`, and
    /// counters of pods gone for good.
    mutating func prune(liveNodes: Set<String>, stillThere: (PodUsage) -> PodFacts?, staleBefore: Date) {
        nodes = nodes.filter { liveNodes.contains($0.key) && $0.value.timestamp >= staleBefore }
        nodeSampleTimes = nodeSampleTimes.filter { liveNodes.contains($0.key) }
        var kept: [String: PodUsage] = [:]
        for (k, u) in pods where liveNodes.contains(u.node) && u.timestamp >= staleBefore {
            guard let f = stillThere(u) else { continue }
            var u = u
            u.facts = f      // labels and requests may have changed since the sample
            kept[k] = u
        }
        pods = kept
        counters = counters.filter { ($0.value.last?.time ?? .distantPast) >= staleBefore }
        var rates: [String: [String: (perSecond: Double, time: Date, window: Double)]] = [:]
        var podsByUID: [String: PodFacts] = [:]
        for (uid, byNode) in connectionRates {
            guard let old = connectionPods[uid], let f = stillThere(PodUsage(facts: old, node: "", timestamp: .distantPast, window: 0, containers: [])) else { continue }
            let fresh = byNode.filter { liveNodes.contains($0.key) && $0.value.time >= staleBefore }
            if fresh.isEmpty { continue }
            rates[uid] = fresh
            podsByUID[uid] = f
        }
        connectionRates = rates
        connectionPods = podsByUID
        connectionCounters = connectionCounters.filter { ($0.value.last?.time ?? .distantPast) >= staleBefore }
    }

    /// Latest figures per pod, ready for workload aggregation.
    var podSamples: [WorkloadAggregation.PodSample] {
        let rates = Dictionary(requestRates.map { ($0.facts.uid, $0.perSecond) }, uniquingKeysWith: { a, _ in a })
        return pods.values.map { WorkloadAggregation.PodSample(facts: $0.facts, cpuNanoCores: $0.cpuNanoCores, memoryBytes: $0.memoryBytes,
                                                               requestsPerSecond: rates[$0.facts.uid]) }
    }
}

extension PodUsage {
    func object(now: Date) -> PodMetrics {
        var meta = ObjectMeta(name: facts.name, namespace: facts.namespace, labels: facts.labels.isEmpty ? nil : facts.labels)
        meta.creationTimestamp = KubeTime.format(now)
        return PodMetrics(metadata: meta, timestamp: KubeTime.format(timestamp), window: goDuration(seconds: (window * 1000).rounded() / 1000),
                          containers: containers.map { ContainerMetrics(name: $0.name, usage: ["cpu": UsageQuantity.cpu(nanoCores: $0.cpuNanoCores),
                                                                                                 "memory": UsageQuantity.memory(bytes: $0.memoryBytes)]) })
    }
}

extension NodeUsage {
    func object(now: Date) -> NodeMetrics {
        var meta = ObjectMeta(name: name, labels: labels.isEmpty ? nil : labels)
        meta.creationTimestamp = KubeTime.format(now)
        return NodeMetrics(metadata: meta, timestamp: KubeTime.format(timestamp), window: goDuration(seconds: (window * 1000).rounded() / 1000),
                           usage: ["cpu": UsageQuantity.cpu(nanoCores: cpuNanoCores), "memory": UsageQuantity.memory(bytes: memoryBytes)])
    }
}
