// The per-workload usage history the apiserver keeps beyond metrics.k8s.io (which only knows
// "now"): metrics.orchestrator.io/v1 workloadmetrics, one sample per collector interval for the
// last hour and one per minute for a week. Shared by the server, ctl and the HPA's history.
import Foundation

public enum WorkloadMetricsGroup {
    public static let name = "metrics.orchestrator.io"
    public static let version = "v1"
    public static var apiVersion: String { "\(name)/\(version)" }
    public static let resource = ResourceInfo(group: name, version: version, kind: "WorkloadMetrics", plural: "workloadmetrics")

    /// /apis/metrics.orchestrator.io/v1/namespaces/NS/workloadmetrics/KIND/NAME
    public static func path(namespace: String, kind: String, name: String) -> String {
        "/apis/\(apiVersion)/namespaces/\(namespace)/workloadmetrics/\(kind)/\(name)"
    }

    /// Workloads are recorded under their controlling kind: a pod's ReplicaSet, or that
    /// ReplicaSet's Deployment; a pod without a controller under its own name.
    public static let kinds = ["Deployment", "ReplicaSet", "Pod"]

    /// "deployment", "deployments", "deploy", "Deployment" → "Deployment"; other owner kinds
    /// (StatefulSet, Job…) pass through with their first letter upper-cased.
    public static func canonicalKind(_ s: String) -> String? {
        guard !s.isEmpty else { return nil }
        if let r = Resources.lookup(s), kinds.contains(r.kind) { return r.kind }
        if s.first!.isUppercase { return s }
        return nil
    }
}

/// One point of a workload's history. Raw points cover one collector interval; older points
/// are per-minute means (windowSeconds 60, pods possibly fractional).
public struct WorkloadMetricsSample: Codable, Hashable, Sendable {
    public var time: Date
    public var windowSeconds: Double
    public var pods: Double
    public var cpuTotalMillicores: Double
    public var cpuAverageMillicores: Double
    public var memoryAverageBytes: Double
    /// Total cpu use over total cpu requests, percent; nil unless every pod requests cpu.
    public var cpuUtilization: Double?
    /// The same for memory.
    public var memoryUtilization: Double?
    /// Requests per second to the whole workload through Services (the sum of its pods'
    /// requests_per_second); nil when none of its pods had a figure.
    public var requestsPerSecond: Double?

    public init(time: Date, windowSeconds: Double, pods: Double, cpuTotalMillicores: Double, cpuAverageMillicores: Double,
                memoryAverageBytes: Double, cpuUtilization: Double?, memoryUtilization: Double?, requestsPerSecond: Double? = nil) {
        self.time = time; self.windowSeconds = windowSeconds; self.pods = pods; self.cpuTotalMillicores = cpuTotalMillicores
        self.cpuAverageMillicores = cpuAverageMillicores; self.memoryAverageBytes = memoryAverageBytes
        self.cpuUtilization = cpuUtilization; self.memoryUtilization = memoryUtilization; self.requestsPerSecond = requestsPerSecond
    }

    enum CodingKeys: String, CodingKey {
        case time = "timestamp", windowSeconds, pods, cpuTotalMillicores, cpuAverageMillicores, memoryAverageBytes, cpuUtilization, memoryUtilization, requestsPerSecond
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let ts = try c.decode(String.self, forKey: .time)
        guard let t = KubeTime.parse(ts) else { throw DecodingError.dataCorruptedError(forKey: .time, in: c, debugDescription: "timestamp \"\(ts)\" is not RFC 3339") }
        time = t
        windowSeconds = try c.decode(Double.self, forKey: .windowSeconds)
        pods = try c.decode(Double.self, forKey: .pods)
        cpuTotalMillicores = try c.decode(Double.self, forKey: .cpuTotalMillicores)
        cpuAverageMillicores = try c.decode(Double.self, forKey: .cpuAverageMillicores)
        memoryAverageBytes = try c.decode(Double.self, forKey: .memoryAverageBytes)
        cpuUtilization = try c.decodeIfPresent(Double.self, forKey: .cpuUtilization)
        memoryUtilization = try c.decodeIfPresent(Double.self, forKey: .memoryUtilization)
        requestsPerSecond = try c.decodeIfPresent(Double.self, forKey: .requestsPerSecond)
    }
    /// Figures are written with at most three decimals (a thousandth of a millicore, of a byte,
    /// of a percentage point): more is float noise, and it keeps the JSON as short as the CSV.
    public func encode(to encoder: Encoder) throws {
        func r(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(KubeTime.formatMicro(time), forKey: .time)
        try c.encode(r(windowSeconds), forKey: .windowSeconds)
        try c.encode(r(pods), forKey: .pods)
        try c.encode(r(cpuTotalMillicores), forKey: .cpuTotalMillicores)
        try c.encode(r(cpuAverageMillicores), forKey: .cpuAverageMillicores)
        try c.encode(r(memoryAverageBytes), forKey: .memoryAverageBytes)
        try c.encodeIfPresent(cpuUtilization.map(r), forKey: .cpuUtilization)
        try c.encodeIfPresent(memoryUtilization.map(r), forKey: .memoryUtilization)
        try c.encodeIfPresent(requestsPerSecond.map(r), forKey: .requestsPerSecond)
    }

    public static let csvHeader = "timestamp,window_seconds,pods,cpu_total_millicores,cpu_average_millicores,memory_average_bytes,cpu_utilization_percent,memory_utilization_percent,requests_per_second"

    /// One CSV line (no newline); an unknown utilization or request rate is an empty cell.
    public var csvLine: String {
        [KubeTime.formatMicro(time), compactNumber(windowSeconds), compactNumber(pods), compactNumber(cpuTotalMillicores),
         compactNumber(cpuAverageMillicores), compactNumber(memoryAverageBytes),
         cpuUtilization.map(compactNumber) ?? "", memoryUtilization.map(compactNumber) ?? "",
         requestsPerSecond.map(compactNumber) ?? ""].joined(separator: ",")
    }

    /// Header plus one line per sample, each ending in a newline.
    public static func csv(_ samples: [WorkloadMetricsSample]) -> String {
        var out = csvHeader + "\n"
        for s in samples { out += s.csvLine + "\n" }
        return out
    }
}

/// Which workload a history belongs to.
public struct WorkloadRef: Codable, Hashable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var kind: String
    public var name: String
    public init(namespace: String, kind: String, name: String) { self.namespace = namespace; self.kind = kind; self.name = name }
    public var description: String { "\(kind.lowercased())/\(name) in namespace \(namespace)" }
}

public struct WorkloadMetricsList: Codable, Hashable, Sendable {
    public var apiVersion: String = WorkloadMetricsGroup.apiVersion
    public var kind: String = "WorkloadMetricsList"
    public var workload: WorkloadRef
    public var items: [WorkloadMetricsSample]
    public init(workload: WorkloadRef, items: [WorkloadMetricsSample]) { self.workload = workload; self.items = items }
}

/// Integers without a decimal point, others with at most three decimals: 2 → "2", 2.5 → "2.5",
/// 33.33333 → "33.333". CSV and JSON readers take either.
public func compactNumber(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    var s = String(format: "%.3f", v)
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s
}
