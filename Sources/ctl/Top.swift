// ctl top: current usage of pods and nodes from metrics.k8s.io, printed as kubectl top prints
// it (cpu in millicores, memory in Mi, nodes also as percent of allocatable), and a workload's
// recorded history from metrics.orchestrator.io, drawn as a terminal chart or printed as CSV.
import ArgumentParser
import Foundation
import API
import Client

struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Display resource (CPU/memory) usage of pods or nodes, or the usage history of a workload.",
        discussion: """
        ctl top pods [NAME] [-n NS | -A] [-l SELECTOR] [--containers]
        ctl top nodes [NAME]
        ctl top --history deployment/NAME [--since 1h] [--csv]   (also replicaset/NAME, pod/NAME)
        ctl top --history import deployment/NAME --csv FILE     (load past usage: "back data")

        An import's CSV has a header naming its columns, each with its unit: timestamp (RFC 3339
        or Unix seconds, increasing), pods, and cpu_utilization_percent and/or
        memory_utilization_percent; optionally window_seconds, cpu_total_millicores,
        cpu_average_millicores, memory_average_bytes. What `--history … --csv` prints imports
        back unchanged. A file with any bad line is refused whole, naming the line.
        """,
        subcommands: [TopPods.self, TopNodes.self])
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("history"), help: "Show the recorded usage of a workload: deployment/NAME, replicaset/NAME or pod/NAME.") var history: String?
    @Option(help: "How far back the history goes: seconds or a duration (90s, 15m, 1h, 7d).") var since: String = "1h"
    @Flag(help: "Print the history as CSV instead of a chart.") var csv = false
    @Option(help: "Average the history into buckets of this many seconds (CSV; the chart picks its own).") var step: Double?
    @Option(help: "Chart width in columns (default: the terminal's).") var width: Int?
    @Argument(help: "With --history import: the workload (deployment/NAME) and the CSV file.") var args: [String] = []

    func run() async throws {
        guard let history else { throw CleanExit.helpRequest(self) }
        if history == "import" {
            try await importHistory()
            return
        }
        guard args.isEmpty else { throw ValidationError("unexpected argument \"\(args[0])\": --history takes KIND/NAME (or: --history import KIND/NAME --csv FILE)") }
        let client = try global.client()
        do {
            let parts = history.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2, let kind = WorkloadMetricsGroup.canonicalKind(parts[0]) else {
                throw CtlError("--history wants KIND/NAME with KIND deployment, replicaset or pod (got \"\(history)\")")
            }
            guard let seconds = parseSeconds(since), seconds > 0 else {
                throw CtlError("--since: invalid duration \"\(since)\": want seconds (3600) or a duration (90s, 15m, 1h, 7d)")
            }
            let ns = global.namespace ?? client.namespace
            let path = WorkloadMetricsGroup.path(namespace: ns, kind: kind, name: parts[1])
            var q = ["since": compactNumber(seconds)]
            if csv {
                if let step { q["step"] = compactNumber(step) }
                q["format"] = "csv"
                let r = try await client.call(.GET, path, query: q, accept: "text/csv")
                FileHandle.standardOutput.write(r.body)
            } else {
                let columns = chartWidth()
                // About one bucket per column: the server averages, the chart draws.
                q["step"] = compactNumber(max(1, (seconds / Double(columns)).rounded(.up)))
                let r = try await client.call(.GET, path, query: q)
                let list = try KubeJSON.decode(WorkloadMetricsList.self, from: r.body)
                for line in HistoryReport.render(list, since: seconds, now: Date(), width: columns) { print(line) }
            }
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }

    /// `--history import KIND/NAME --csv FILE`: the file goes to the apiserver as text/csv,
    /// which checks it whole and keeps all of it or nothing.
    func importHistory() async throws {
        guard csv, args.count == 2 else {
            throw ValidationError("usage: ctl top --history import deployment/NAME --csv FILE")
        }
        let parts = args[0].split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, let kind = WorkloadMetricsGroup.canonicalKind(parts[0]) else {
            throw ValidationError("--history import wants KIND/NAME with KIND deployment, replicaset or pod (got \"\(args[0])\")")
        }
        let file = args[1]
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch { fail("\(file): cannot read: \(error.localizedDescription)") }
        let client = try global.client()
        do {
            let ns = global.namespace ?? client.namespace
            let path = WorkloadMetricsGroup.path(namespace: ns, kind: kind, name: parts[1])
            let r = try await client.call(.POST, path, body: data, contentType: "text/csv")
            let res = try KubeJSON.decode(WorkloadMetricsImportResult.self, from: r.body)
            var line = "\(args[0]): imported \(res.imported) samples"
            if let first = res.first, let last = res.last { line += " (\(first) to \(last))" }
            if res.olderThanRetention > 0 {
                line += "; \(res.olderThanRetention) older than the history keeps (\(compactNumber(res.retentionSeconds / 86400)) days) were left out"
            }
            print(line)
        } catch let s as Status where s.code == 400 {
            fail("\(file): \(s.message ?? "\(s)")")
        } catch { fail("\(file): \(describeError(error))") }
        await client.shutdown()
    }

    /// The terminal's columns less the y-axis labels, 20…160.
    func chartWidth() -> Int {
        if let width { return max(20, width) }
        var ws = winsize()
        let cols = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 ? Int(ws.ws_col)
            : Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 80
        return min(160, max(20, cols - 10))
    }
}

/// "3600", "90s", "15m", "1h", "7d" → seconds.
func parseSeconds(_ s: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    if let v = Double(s) { return v }
    guard let u = s.last.flatMap({ units[$0] }), let v = Double(s.dropLast()) else { return nil }
    return v * u
}

/// kubectl's cells: cpu as whole millicores (rounded up), memory as whole Mi (rounded down).
enum TopFormat {
    static func cpu(_ q: String?) -> String {
        guard let q, let n = try? UsageQuantity.milliValue(q) else { return "<unknown>" }
        return "\(n)m"
    }
    static func memory(_ q: String?) -> String {
        guard let q, let b = try? UsageQuantity.value(q) else { return "<unknown>" }
        return "\(b / (1024 * 1024))Mi"
    }
    static func percent(_ used: Int64, of total: Int64) -> String {
        guard total > 0 else { return "<unknown>" }
        return "\(Int64(Double(used) / Double(total) * 100))%"
    }
}

struct TopPods: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pods", abstract: "Display resource (CPU/memory) usage of pods.", aliases: ["pod", "po"])
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "List across all namespaces.") var allNamespaces = false
    @Option(name: [.short, .customLong("selector")], help: "Label selector, e.g. app=web.") var selector: String?
    @Option(name: .customLong("field-selector"), help: "Field selector (metadata.name, metadata.namespace).") var fieldSelector: String?
    @Flag(help: "Print usage per container.") var containers = false
    @Option(name: .customLong("sort-by"), help: "Sort by cpu or memory.") var sortBy: String?
    @Flag(name: .customLong("no-headers"), help: "Omit the header line.") var noHeaders = false
    @Argument(help: "A pod name (default: all pods the selectors pick).") var name: String?

    func run() async throws {
        if let s = sortBy, !["cpu", "memory"].contains(s) { fail("--sort-by accepts only cpu or memory") }
        let client = try global.client()
        do {
            let ns = global.namespace ?? client.namespace
            let base = "/apis/\(MetricsGroup.apiVersion)" + (allNamespaces ? "" : "/namespaces/\(ns)") + "/pods"
            var items: [PodMetrics]
            if let name {
                let r = try await client.call(.GET, "\(base)/\(name)")
                items = [try KubeJSON.decode(PodMetrics.self, from: r.body)]
            } else {
                var q: [String: String] = [:]
                if let s = selector { q["labelSelector"] = s }
                if let f = fieldSelector { q["fieldSelector"] = f }
                let r = try await client.call(.GET, base, query: q)
                items = try KubeJSON.decode(ObjectList<PodMetrics>.self, from: r.body).items
            }
            if items.isEmpty {
                // As kubectl: pods without figures yet are "not available", no pods "not found".
                let pods = try await client.list(Pod.self, namespace: ns, allNamespaces: allNamespaces, labelSelector: selector, fieldSelector: fieldSelector)
                if !pods.items.isEmpty { fail("metrics not available yet") }
                FileHandle.standardError.write(Data((allNamespaces ? "No resources found\n" : "No resources found in \(ns) namespace.\n").utf8))
                await client.shutdown()
                return
            }
            func total(_ m: PodMetrics, _ r: String) -> Int64 {
                m.containers.reduce(0) { $0 + ((try? r == "cpu" ? UsageQuantity.nanoValue($1.usage[r] ?? "0") : UsageQuantity.value($1.usage[r] ?? "0")) ?? 0) }
            }
            if let s = sortBy { items.sort { total($0, s) > total($1, s) } }
            var headers = containers ? ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"] : ["NAME", "CPU(cores)", "MEMORY(bytes)"]
            if allNamespaces { headers.insert("NAMESPACE", at: 0) }
            var rows: [[String]] = []
            for m in items {
                let prefix = allNamespaces ? [m.metadata.namespace ?? ""] : []
                if containers {
                    for c in m.containers { rows.append(prefix + [m.metadata.name ?? "", c.name, TopFormat.cpu(c.usage["cpu"]), TopFormat.memory(c.usage["memory"])]) }
                } else {
                    let cpu = UsageQuantity.cpu(nanoCores: UInt64(max(0, total(m, "cpu"))))
                    let mem = UsageQuantity.memory(bytes: UInt64(max(0, total(m, "memory"))))
                    rows.append(prefix + [m.metadata.name ?? "", TopFormat.cpu(cpu), TopFormat.memory(mem)])
                }
            }
            printTable(noHeaders ? [] : headers, rows)
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}

struct TopNodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "Display resource (CPU/memory) usage of nodes.", aliases: ["node", "no"])
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("selector")], help: "Label selector.") var selector: String?
    @Option(name: .customLong("sort-by"), help: "Sort by cpu or memory.") var sortBy: String?
    @Flag(name: .customLong("no-headers"), help: "Omit the header line.") var noHeaders = false
    @Argument(help: "A node name (default: all nodes).") var name: String?

    func run() async throws {
        if let s = sortBy, !["cpu", "memory"].contains(s) { fail("--sort-by accepts only cpu or memory") }
        let client = try global.client()
        do {
            let base = "/apis/\(MetricsGroup.apiVersion)/nodes"
            var metrics: [NodeMetrics]
            let nodes: [Node]
            if let name {
                let r = try await client.call(.GET, "\(base)/\(name)")
                metrics = [try KubeJSON.decode(NodeMetrics.self, from: r.body)]
                nodes = [try await client.get(Node.self, name)]
            } else {
                let r = try await client.call(.GET, base, query: selector.map { ["labelSelector": $0] } ?? [:])
                metrics = try KubeJSON.decode(ObjectList<NodeMetrics>.self, from: r.body).items
                nodes = try await client.list(Node.self, labelSelector: selector).items
            }
            if nodes.isEmpty { FileHandle.standardError.write(Data("No resources found\n".utf8)); await client.shutdown(); return }
            func value(_ m: NodeMetrics?, _ r: String) -> Int64? {
                guard let q = m?.usage[r] else { return nil }
                return try? (r == "cpu" ? UsageQuantity.milliValue(q) : UsageQuantity.value(q))
            }
            let byName = Dictionary(metrics.map { ($0.metadata.name ?? "", $0) }, uniquingKeysWith: { a, _ in a })
            var ordered = nodes.map { ($0, byName[$0.name]) }
            if let s = sortBy { ordered.sort { (value($0.1, s) ?? -1) > (value($1.1, s) ?? -1) } }
            var rows: [[String]] = []
            for (node, m) in ordered {
                guard let m else { rows.append([node.name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"]); continue }
                let alloc = node.status?.allocatable ?? node.status?.capacity ?? [:]
                let cpu = value(m, "cpu") ?? 0, mem = value(m, "memory") ?? 0
                rows.append([node.name, TopFormat.cpu(m.usage["cpu"]), TopFormat.percent(cpu, of: alloc["cpu"]?.milli ?? 0),
                             TopFormat.memory(m.usage["memory"]), TopFormat.percent(mem, of: alloc["memory"]?.value ?? 0)])
            }
            printTable(noHeaders ? [] : ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], rows)
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}
