// The metrics pipeline inside the apiserver (the metrics-server role, without a separate
// deployment): every interval it scrapes each node agent's /stats/summary over mutual TLS,
// keeps the latest PodMetrics/NodeMetrics in memory for metrics.k8s.io, and appends one sample
// per workload to the history. Scrapes run concurrently and independently: a node whose last
// scrape is still in flight is skipped, not waited for, so one slow or dead agent costs only its
// own figures (dropped once stale) and never delays the others or the history.
import Foundation
import Synchronization
import ServiceLifecycle
import Logging
import API
import Store

public struct MetricsConfig: Sendable {
    /// Seconds between scrapes and between raw history samples; 0 disables the collector, the
    /// metrics.k8s.io API and the history.
    public var interval: Double = 1
    /// Per-node limit for one scrape (connect, request and body).
    public var scrapeTimeout: Double = 2
    /// Figures older than this are dropped (an unreachable node's pods vanish from the API
    /// instead of showing old usage forever). Default: max(5 s, 3 intervals + the timeout).
    public var staleAfter: Double?
    /// CPU is the rate over this many seconds of samples (see MetricsState.rateSpan).
    public var rateSpan: Double = 5
    /// Seconds between history writes (rows are buffered in memory meanwhile).
    public var flushInterval: Double = 5
    /// Seconds between folding old raw rows into minutes.
    public var maintenanceInterval: Double = 60
    public var rawRetention: Double = 3600
    public var minuteRetention: Double = 7 * 86400
    public init() {}

    public var enabled: Bool { interval > 0 }
    var staleness: Double { staleAfter ?? max(5, 3 * interval + scrapeTimeout) }
}

/// Counters for the apiserver's /metrics page.
struct CollectorStats: Sendable {
    var scrapes: Int64 = 0
    var failures: Int64 = 0
    var lastScrapeSeconds: [String: Double] = [:]
    var lastError: [String: String] = [:]
    var historyRows: Int64 = 0
    var historyErrors: Int64 = 0
}

public final class MetricsCollector: Sendable {
    let store: any ObjectStore
    let proxy: NodeProxy
    let config: MetricsConfig
    public let history: MetricsHistoryDB
    let facts: PodFactsCache
    let logger: Logger
    let now: @Sendable () -> Date
    let state: Mutex<MetricsState>
    let inFlight = Mutex<Set<String>>([])
    let stats = Mutex(CollectorStats())
    /// Set while a history flush or fold runs (they never overlap; a busy writer skips a turn).
    let historyWriting = Mutex(false)
    /// Node endpoint and labels, decoded once per stored revision.
    let nodeCache = Mutex<[String: (revision: Int64, target: NodeTarget?)]>([:])

    struct NodeTarget: Sendable { var name: String; var endpoint: String; var labels: [String: String] }

    init(store: any ObjectStore, proxy: NodeProxy, history: MetricsHistoryDB, config: MetricsConfig, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store; self.proxy = proxy; self.history = history; self.config = config; self.logger = logger; self.now = now
        facts = PodFactsCache(store: store)
        var st = MetricsState()
        st.rateSpan = config.rateSpan
        state = Mutex(st)
    }

    // MARK: reading (metrics.k8s.io)

    func podUsages(namespace: String?) -> [PodUsage] {
        state.withLock { s in s.pods.values.filter { namespace == nil || $0.facts.namespace == namespace } }
            .sorted { ($0.facts.namespace, $0.facts.name) < ($1.facts.namespace, $1.facts.name) }
    }

    func podUsage(namespace: String, name: String) -> PodUsage? {
        state.withLock { $0.pods[MetricsState.podKey(namespace, name)] }
    }

    /// Pods' rates of connections through Services (the requests_per_second custom metric).
    func requestRates(namespace: String) -> [PodRequestRate] {
        state.withLock { $0.requestRates }.filter { $0.facts.namespace == namespace }.sorted { $0.facts.name < $1.facts.name }
    }

    func nodeUsages() -> [NodeUsage] { state.withLock { Array($0.nodes.values) }.sorted { $0.name < $1.name } }

    func nodeUsage(_ name: String) -> NodeUsage? { state.withLock { $0.nodes[name] } }

    // MARK: loop

    /// Scrape rounds until cancelled or shut down; then the history buffer is flushed. Scrapes
    /// and history writes run as child tasks: neither a slow node nor a long fold of old rows
    /// (after a long downtime, say) delays the next round.
    func run() async {
        var lastFlush = now(), lastMaintenance = Date.distantPast
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let tick = ContinuousClock.now
                let t = now()
                let nodes = store.list(resource: Resources.nodes.groupResource, namespace: nil).items
                pruneState(liveNodes: Set(nodes.map(\.key.name)), now: t)
                for target in nodeTargets(nodes) where inFlight.withLock({ $0.insert(target.name).inserted }) {
                    group.addTask {
                        await self.scrape(target)
                        _ = self.inFlight.withLock { $0.remove(target.name) }
                    }
                }
                recordHistory(at: t)
                let flush = t.timeIntervalSince(lastFlush) >= config.flushInterval
                let maintain = t.timeIntervalSince(lastMaintenance) >= config.maintenanceInterval
                if flush || maintain, historyWriting.withLock({ busy in defer { busy = true }; return !busy }) {
                    if flush { lastFlush = t }
                    if maintain { lastMaintenance = t }
                    group.addTask {
                        if flush { await self.flushHistory() }
                        if maintain {
                            do { try await self.history.maintain(now: t) }
                            catch { self.logger.warning("metrics history maintenance failed", metadata: ["error": "\(error)"]) }
                            self.facts.sweep()
                        }
                        self.historyWriting.withLock { $0 = false }
                    }
                }
                try? await Task.sleep(until: tick + .milliseconds(Int64(config.interval * 1000)), clock: .continuous)
            }
            group.cancelAll()
        }
        await flushHistory()
    }

    func flushHistory() async {
        do {
            let n = try await history.flush()
            stats.withLock { $0.historyRows += Int64(n) }
        } catch {
            stats.withLock { $0.historyErrors += 1 }
            logger.warning("writing the metrics history failed; rows stay buffered", metadata: ["error": "\(error)"])
        }
    }

    /// The stored nodes with an agent endpoint in their status.
    func nodeTargets(_ items: [StoredObject]) -> [NodeTarget] {
        items.compactMap { o -> NodeTarget? in
            if let hit = nodeCache.withLock({ $0[o.key.name] }), hit.revision == o.revision { return hit.target }
            let node = try? KubeJSON.decode(Node.self, from: o.data)
            let target = node.flatMap { n in (try? NodeProxy.endpoint(n)).map { NodeTarget(name: n.name, endpoint: $0, labels: n.labels) } }
            nodeCache.withLock { $0[o.key.name] = (o.revision, target) }
            return target
        }
    }

    func pruneState(liveNodes: Set<String>, now t: Date) {
        nodeCache.withLock { c in c = c.filter { liveNodes.contains($0.key) } }
        // Facts are looked up before taking the state lock (decoding may be needed).
        let current = state.withLock { $0.pods.values.map(\.facts) + Array($0.connectionPods.values) }
        var valid: [String: PodFacts] = [:]
        for u in current {
            if let f = facts.facts(namespace: u.namespace, name: u.name, uid: u.uid) {
                valid[MetricsState.podKey(u.namespace, u.name)] = f
            }
        }
        state.withLock { s in
            s.prune(liveNodes: liveNodes, stillThere: { valid[MetricsState.podKey($0.facts.namespace, $0.facts.name)] },
                    staleBefore: t.addingTimeInterval(-config.staleness))
        }
    }

    /// One node: fetch, decode, resolve the pods it names, fold into the state.
    func scrape(_ target: NodeTarget) async {
        let started = ContinuousClock.now
        do {
            let body = try await proxy.statsSummary(endpoint: target.endpoint, timeout: config.scrapeTimeout)
            let summary: StatsSummary
            do { summary = try JSONDecoder().decode(StatsSummary.self, from: body) }
            catch { throw MetricsHistoryError("node \(target.name) returned a stats summary that does not decode: \(error)") }
            var podFacts: [String: PodFacts] = [:]
            for ref in (summary.pods ?? []).map(\.podRef) + (summary.serviceConnections?.pods ?? []).map(\.podRef) {
                if let f = facts.facts(namespace: ref.namespace, name: ref.name, uid: ref.uid) {
                    podFacts[MetricsState.podKey(f.namespace, f.name)] = f
                }
            }
            let t = now()
            state.withLock { $0.apply(summary, node: target.name, labels: target.labels, facts: podFacts, fallbackWindow: config.interval, now: t) }
            let d = ContinuousClock.now - started
            let recovered = stats.withLock { s -> Bool in
                s.scrapes += 1
                s.lastScrapeSeconds[target.name] = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                return s.lastError.removeValue(forKey: target.name) != nil
            }
            if recovered { logger.info("scraping node stats works again", metadata: ["node": "\(target.name)"]) }
        } catch {
            let first = stats.withLock { s -> Bool in
                s.scrapes += 1; s.failures += 1
                let isNew = s.lastError[target.name] == nil
                s.lastError[target.name] = "\(error)"
                return isNew
            }
            // Logged when a node starts failing, not every second while it keeps failing.
            if first { logger.warning("scraping node stats failed", metadata: ["node": "\(target.name)", "endpoint": "\(target.endpoint)", "error": "\(error)"]) }
        }
    }

    /// Appends one sample per workload from the latest pod figures.
    func recordHistory(at t: Date) {
        let samples = state.withLock { $0.podSamples }
        guard !samples.isEmpty else { return }
        let rows = WorkloadAggregation.aggregate(samples, at: t, window: config.interval)
        history.append(rows.map { ($0.key, $0.value) })
    }

    /// Prometheus text for the apiserver's /metrics page.
    func render() -> String {
        let s = stats.withLock { $0 }
        let (pods, nodes) = state.withLock { ($0.pods.count, $0.nodes.count) }
        func metric(_ name: String, _ type: String, _ help: String, _ lines: [String]) -> String {
            "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" + lines.map { "\($0)\n" }.joined()
        }
        return metric("metrics_scrapes_total", "counter", "Scrapes of node agents' stats summaries.", ["metrics_scrapes_total \(s.scrapes)"])
            + metric("metrics_scrape_failures_total", "counter", "Scrapes that failed or timed out.", ["metrics_scrape_failures_total \(s.failures)"])
            + metric("metrics_scrape_duration_seconds", "gauge", "Duration of the last successful scrape, per node.",
                     s.lastScrapeSeconds.sorted(by: { $0.key < $1.key }).map { "metrics_scrape_duration_seconds{node=\"\($0.key)\"} \($0.value)" })
            + metric("metrics_pods", "gauge", "Pods with current usage figures.", ["metrics_pods \(pods)"])
            + metric("metrics_nodes", "gauge", "Nodes with current usage figures.", ["metrics_nodes \(nodes)"])
            + metric("metrics_history_rows_written_total", "counter", "Workload history rows written to metrics.db.", ["metrics_history_rows_written_total \(s.historyRows)"])
            + metric("metrics_history_write_errors_total", "counter", "Failed writes of the workload history.", ["metrics_history_write_errors_total \(s.historyErrors)"])
    }
}

/// Runs the collector as a service of the apiserver's group.
struct MetricsCollectorService: ServiceLifecycle.Service {
    let collector: MetricsCollector
    func run() async throws {
        await withGracefulShutdownHandler { await collector.run() } onGracefulShutdown: {}
    }
}
