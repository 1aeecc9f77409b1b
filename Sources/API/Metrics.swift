// The metrics.k8s.io/v1beta1 objects metrics-server serves (PodMetrics, NodeMetrics), with
// usage written the way it writes it, so that kubectl top and the HPA read ours unchanged:
// cpu in nanocores canonicalized ("329087452n", "250m", "2"), memory in bytes with a binary
// suffix when exact ("2748180Ki"), window as a Go duration ("1.002s").
import Foundation

public enum MetricsGroup {
    public static let name = "metrics.k8s.io"
    public static let version = "v1beta1"
    public static var apiVersion: String { "\(name)/\(version)" }
    /// Resource descriptions for routing and authorization; these are not stored kinds, so they
    /// are not in `Resources.all`.
    public static let pods = ResourceInfo(group: name, version: version, kind: "PodMetrics", plural: "pods")
    public static let nodes = ResourceInfo(group: name, version: version, kind: "NodeMetrics", plural: "nodes", namespaced: false)
}

public struct ContainerMetrics: Codable, Hashable, Sendable {
    public var name: String
    /// "cpu" and "memory" quantities, as strings: cpu has nano precision, which `Quantity`
    /// (milli precision) cannot hold.
    public var usage: [String: String]
    public init(name: String, usage: [String: String]) { self.name = name; self.usage = usage }
}

public struct PodMetrics: Codable, Hashable, Sendable {
    public var apiVersion: String? = MetricsGroup.apiVersion
    public var kind: String? = "PodMetrics"
    public var metadata: ObjectMeta
    /// End of the window the usage averages over (RFC 3339).
    public var timestamp: String
    /// Go duration ("1.002s").
    public var window: String
    public var containers: [ContainerMetrics]
    public init(metadata: ObjectMeta, timestamp: String, window: String, containers: [ContainerMetrics]) {
        self.metadata = metadata; self.timestamp = timestamp; self.window = window; self.containers = containers
    }
}

public struct NodeMetrics: Codable, Hashable, Sendable {
    public var apiVersion: String? = MetricsGroup.apiVersion
    public var kind: String? = "NodeMetrics"
    public var metadata: ObjectMeta
    public var timestamp: String
    public var window: String
    public var usage: [String: String]
    public init(metadata: ObjectMeta, timestamp: String, window: String, usage: [String: String]) {
        self.metadata = metadata; self.timestamp = timestamp; self.window = window; self.usage = usage
    }
}

/// Usage quantities: formatting as Kubernetes canonicalizes them and parsing back to integers.
public enum UsageQuantity {
    /// Nanocores as a decimal-SI quantity with the largest exact suffix, as metrics-server's
    /// `NewScaledQuantity(n, -9)` prints: 0 → "0", 250_000_000 → "250m", 329_087_452 →
    /// "329087452n", 2_000_000_000 → "2", 12_000 → "12u".
    public static func cpu(nanoCores: UInt64) -> String {
        if nanoCores == 0 { return "0" }
        let steps: [(UInt64, String)] = [(1_000_000_000_000_000_000, "G"), (1_000_000_000_000_000, "M"), (1_000_000_000_000, "k"),
                                         (1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")]
        for (unit, suffix) in steps where nanoCores % unit == 0 { return "\(nanoCores / unit)\(suffix)" }
        return "\(nanoCores)n"
    }

    /// Bytes as a binary-SI quantity: the largest power-of-1024 suffix that divides exactly,
    /// else plain bytes (Kubernetes' CanonicalizeBytes): 4 MiB → "4Mi", 1536 → "1536".
    public static func memory(bytes: UInt64) -> String {
        if bytes < 1024 { return "\(bytes)" }
        let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
        var v = bytes, i = 0
        while i < suffixes.count - 1 && v % 1024 == 0 { v /= 1024; i += 1 }
        return "\(v)\(suffixes[i])"
    }

    /// A quantity in nano-units, rounded up: "250m" → 250_000_000, "329087452n" → 329087452,
    /// "1.5" → 1_500_000_000. Throws for text that is not a quantity.
    public static func nanoValue(_ s: String) throws -> Int64 { try scaled(s, exponent: 9) }

    /// A quantity in whole units, rounded up as Kubernetes' Value() does: "2748180Ki" → 2814136320.
    public static func value(_ s: String) throws -> Int64 { try scaled(s, exponent: 0) }

    /// Rounds up to milli-units (Kubernetes' MilliValue), what the HPA compares with requests.
    public static func milliValue(_ s: String) throws -> Int64 { try scaled(s, exponent: 3) }

    static let decimalSuffixes: [String: Int] = ["n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18]
    static let binarySuffixes: [String: Int] = ["Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60]

    /// The value × 10^exponent, rounded up, exact for every suffix (Decimal arithmetic).
    static func scaled(_ input: String, exponent: Int) throws -> Int64 {
        let s = input.trimmingCharacters(in: .whitespaces)
        var number = Substring(s)
        while let last = number.last, last.isLetter { number = number.dropLast() }
        let suffix = String(s.dropFirst(number.count))
        var digits = number
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        // Decimal(string:) stops at the first character it cannot use ("1.2.3" → 1.2): check first.
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), digits.filter({ $0 == "." }).count <= 1,
              digits.contains(where: \.isNumber),
              var d = Decimal(string: String(number), locale: Locale(identifier: "en_US_POSIX")) else {
            throw QuantityError(input, "not a quantity")
        }
        if let e = decimalSuffixes[suffix] {
            let p = e + exponent
            if p >= 0 { d *= pow(Decimal(10), p) } else { d /= pow(Decimal(10), -p) }
        } else if let b = binarySuffixes[suffix] {
            d *= pow(Decimal(2), b) * pow(Decimal(10), exponent)
        } else {
            throw QuantityError(input, "unknown suffix \"\(suffix)\"")
        }
        var rounded = Decimal()
        NSDecimalRound(&rounded, &d, 0, .up)
        guard rounded <= Decimal(Int64.max), rounded >= Decimal(Int64.min) else { throw QuantityError(input, "value too large") }
        return NSDecimalNumber(decimal: rounded).int64Value
    }
}

/// Go's time.Duration text (what metav1.Duration holds), for seconds ≥ 0: "500ms", "1.002s",
/// "1m0s", "1h0m0s". kubectl parses PodMetrics.window with time.ParseDuration.
public func goDuration(seconds: Double) -> String {
    let nanos = Int64((max(0, seconds) * 1e9).rounded())
    if nanos == 0 { return "0s" }
    if nanos < 1_000_000_000 {
        if nanos % 1_000_000 == 0 { return "\(nanos / 1_000_000)ms" }
        return trimmed(Double(nanos) / 1e6, digits: 6) + "ms"
    }
    let h = nanos / 3_600_000_000_000, m = nanos / 60_000_000_000 % 60
    let secs = trimmed(Double(nanos % 60_000_000_000) / 1e9, digits: 9) + "s"
    if h > 0 { return "\(h)h\(m)m\(secs)" }
    if m > 0 { return "\(m)m\(secs)" }
    return secs
}

/// Fixed digits, trailing zeros (and a bare point) removed.
private func trimmed(_ v: Double, digits: Int) -> String {
    var s = String(format: "%.\(digits)f", v)
    if s.contains(".") {
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
    }
    return s
}

/// Parses Go's time.Duration text ("1.002s", "1m30s", "500ms", "15s") to seconds; nil if invalid.
public func parseGoDuration(_ s: String) -> Double? {
    let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
    var rest = Substring(s.trimmingCharacters(in: .whitespaces))
    guard !rest.isEmpty else { return nil }
    if rest == "0" { return 0 }
    var total = 0.0
    while !rest.isEmpty {
        let num = rest.prefix { $0.isNumber || $0 == "." }
        guard !num.isEmpty, let v = Double(num) else { return nil }
        rest = rest.dropFirst(num.count)
        guard let (u, f) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { return nil }
        rest = rest.dropFirst(u.count)
        total += v * f
    }
    return total
}

/// custom.metrics.k8s.io: per-object metrics, here the Service proxy's request rate per pod.
/// v1beta2 (what the HPA asks for) and v1beta1 answer the same paths in their own shapes.
public enum CustomMetricsGroup {
    public static let name = "custom.metrics.k8s.io"
    public static let versions = ["v1beta2", "v1beta1"]
    /// Connections per second that Services sent to the pod, summed over every node's proxy.
    public static let requestsPerSecond = "requests_per_second"
    public static let metricNames = [requestsPerSecond]
    /// For authorization: reading a pod's metric is `get` on `pods` in this group.
    public static func pods(_ version: String) -> ResourceInfo {
        ResourceInfo(group: name, version: version, kind: "MetricValueList", plural: "pods")
    }
    public static func path(version: String = "v1beta2", namespace: String, pod: String = "*", metric: String) -> String {
        "/apis/\(name)/\(version)/namespaces/\(namespace)/pods/\(pod)/\(metric)"
    }
}

/// One value of a MetricValueList (either version: `metric` is v1beta2's, `metricName` v1beta1's).
public struct MetricValue: Codable, Hashable, Sendable {
    public struct Identifier: Codable, Hashable, Sendable {
        public var name: String
        public var selector: JSONValue?
        public init(name: String, selector: JSONValue? = nil) { self.name = name; self.selector = selector }
    }
    public var describedObject: ObjectReference
    public var metric: Identifier?
    public var metricName: String?
    public var timestamp: String
    public var windowSeconds: Int64?
    public var value: Quantity
    public init(describedObject: ObjectReference, metric: Identifier? = nil, metricName: String? = nil, timestamp: String, windowSeconds: Int64?, value: Quantity) {
        self.describedObject = describedObject; self.metric = metric; self.metricName = metricName
        self.timestamp = timestamp; self.windowSeconds = windowSeconds; self.value = value
    }
    /// The metric's name in either version.
    public var name: String { metric?.name ?? metricName ?? "" }
}

public struct MetricValueList: Codable, Hashable, Sendable {
    public var kind: String = "MetricValueList"
    public var apiVersion: String
    public var metadata: ListMeta = ListMeta()
    public var items: [MetricValue]
    public init(apiVersion: String, items: [MetricValue]) { self.apiVersion = apiVersion; self.items = items }
}

/// An HPA's `type: Pods` source: the average of a per-pod metric against `target.averageValue`.
public struct PodsMetricSource: Codable, Hashable, Sendable {
    public struct Identifier: Codable, Hashable, Sendable {
        public var name: String
        public var selector: LabelSelector?
        public init(name: String, selector: LabelSelector? = nil) { self.name = name; self.selector = selector }
    }
    public var metric: Identifier
    public var target: MetricTarget
    public init(metric: Identifier, target: MetricTarget) { self.metric = metric; self.target = target }
}

/// An HPA status's `type: Pods` entry.
public struct PodsMetricStatus: Codable, Hashable, Sendable {
    public var metric: PodsMetricSource.Identifier
    public var current: MetricValueStatus
    public init(metric: PodsMetricSource.Identifier, current: MetricValueStatus) { self.metric = metric; self.current = current }
}
