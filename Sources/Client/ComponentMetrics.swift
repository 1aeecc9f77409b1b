// What a component counts of the failures it lives through without stopping (a write that failed
// and will be tried again, an Event not recorded, a watch that fell behind), whether it leads,
// and its process's memory and CPU; served as Prometheus text by the scheduler and the
// controller-manager on --metrics-bind-address (GET /metrics, GET /healthz), by the agent on its
// own port, and appended to the apiserver's /metrics page.
import Foundation
import Synchronization
import NIOCore
import NIOPosix
import NIOHTTP1
import Logging
import API

public final class ComponentMetrics: Sendable {
    /// The process's counters: every loop of a component counts into this one.
    public static let shared = ComponentMetrics()

    /// The families this project defines, with their help text and type.
    static let families: [String: (help: String, type: String)] = [
        "orchestrator_failed_writes_total": ("Writes a control loop made that failed; each is logged and tried again, by writer.", "counter"),
        "orchestrator_events_failed_total": ("Events the apiserver refused, by component.", "counter"),
        "orchestrator_events_dropped_total": ("Events dropped because the recorder's buffer was full, by component.", "counter"),
        "orchestrator_client_watch_overflows_total": ("Watches ended because their reader fell behind the bounded buffer (each resumed from its last resourceVersion).", "counter"),
        "leader_election_master_status": ("1 while this process holds the named leader-election Lease, 0 otherwise.", "gauge"),
        "orchestrator_leader_lease_lost_total": ("Terms that ended because the Lease could not be renewed within the renew deadline (the component then stopped its work and campaigned again).", "counter"),
    ]

    struct Key: Hashable, Comparable {
        var name: String
        var labels: [String]   // "k=\"v\"" in the order given
        static func < (a: Key, b: Key) -> Bool { (a.name, a.labels.joined(separator: ",")) < (b.name, b.labels.joined(separator: ",")) }
    }
    private let values = Mutex<[Key: Double]>([:])

    public init() {}

    static func key(_ name: String, _ labels: KeyValuePairs<String, String>) -> Key {
        Key(name: name, labels: labels.map { "\($0.key)=\"\(escape($0.value))\"" })
    }
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Adds `by` to a counter.
    public func count(_ name: String, _ labels: KeyValuePairs<String, String> = [:], by: Double = 1) {
        let k = Self.key(name, labels)
        values.withLock { $0[k, default: 0] += by }
    }
    /// Sets a gauge.
    public func set(_ name: String, _ labels: KeyValuePairs<String, String> = [:], to v: Double) {
        let k = Self.key(name, labels)
        values.withLock { $0[k] = v }
    }
    /// A counter's or gauge's value (0 when never written).
    public func value(_ name: String, _ labels: KeyValuePairs<String, String> = [:]) -> Double {
        let k = Self.key(name, labels)
        return values.withLock { $0[k] ?? 0 }
    }

    /// A failed write of a control loop (see `orchestrator_failed_writes_total`).
    public func failedWrite(_ writer: String) { count("orchestrator_failed_writes_total", ["writer": writer]) }

    /// Prometheus text (format 0.0.4): this registry's series, then the process's.
    public func render(process: Bool = true) -> String {
        let all = values.withLock { $0 }.sorted { $0.key < $1.key }
        var out = ""
        var last = ""
        for (k, v) in all {
            if k.name != last {
                last = k.name
                let f = Self.families[k.name] ?? ("", "untyped")
                if !f.help.isEmpty { out += "# HELP \(k.name) \(f.help)\n" }
                out += "# TYPE \(k.name) \(f.type)\n"
            }
            let value = v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
            out += k.labels.isEmpty ? "\(k.name) \(value)\n" : "\(k.name){\(k.labels.joined(separator: ","))} \(value)\n"
        }
        if process {
            out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes \(residentBytes())\n"
            out += "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total \(cpuSeconds())\n"
        }
        return out
    }
}

/// User plus system CPU seconds of this process, from /proc/self/stat.
public func cpuSeconds() -> Double {
    guard let s = HostFile.text("/proc/self/stat"), let close = s.lastIndex(of: ")") else { return 0 }
    // Fields after the command's closing parenthesis: state is field 3; utime and stime are 14 and 15.
    let f = s[s.index(after: close)...].split(separator: " ")
    guard f.count > 12, let u = Double(f[11]), let st = Double(f[12]) else { return 0 }
    return (u + st) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// RSS from /proc/self/statm.
public func residentBytes() -> Int {
    guard let s = HostFile.text("/proc/self/statm") else { return 0 }
    let parts = s.split(separator: " ")
    guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The plain-HTTP endpoint of a control-plane component: GET /metrics and GET /healthz, nothing
/// else. It listens on loopback by default, as kube-proxy's metrics endpoint does.
public final class MetricsEndpoint: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let server: NIOAsyncChannel<Connection, Never>
    let metrics: ComponentMetrics
    public let host: String
    /// The bound port (the one asked for, or the one the kernel chose for port 0).
    public let port: Int

    /// Parses --metrics-bind-address: HOST:PORT or [V6]:PORT; "0" or "" turn the endpoint off (nil).
    public static func parseAddress(_ s: String) throws -> (host: String, port: Int)? {
        if s == "0" || s.isEmpty { return nil }
        guard let colon = s.lastIndex(of: ":") else { throw ClientError("--metrics-bind-address: \"\(s)\" must be HOST:PORT, such as 127.0.0.1:10252, or 0 to turn it off") }
        var host = String(s[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port), !host.isEmpty,
              IPv4(host) != nil || host.contains(":") || host == "localhost" else {
            throw ClientError("--metrics-bind-address: \"\(s)\" must be HOST:PORT with an IP address and a port of 0 to 65535, such as 127.0.0.1:10252, or 0 to turn it off")
        }
        return (host, port)
    }

    /// Binds at once; a taken port or a foreign address is a ListenError naming the address.
    public init(host: String, port: Int, metrics: ComponentMetrics = .shared) async throws {
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try Connection(wrappingChannelSynchronously: ch)
                    }
                }
        } catch let e as IOError {
            throw ListenError(address: host, port: port, errno: e.errnoCode)
        }
        self.metrics = metrics
        self.host = host
        self.port = server.channel.localAddress?.port ?? port
    }

    /// Serves until cancelled.
    public func run() async throws {
        try await withTaskCancellationHandler {
            try await server.executeThenClose { accepted in
                try await withThrowingDiscardingTaskGroup { g in
                    for try await conn in accepted {
                        g.addTask { try? await self.serve(conn) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String) {
        guard head.method == .GET || head.method == .HEAD else { return (.methodNotAllowed, "text/plain; charset=utf-8", "only GET is served here\n") }
        switch head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "" {
        case "/metrics": return (.ok, "text/plain; version=0.0.4", metrics.render())
        case "/healthz", "/livez", "/readyz": return (.ok, "text/plain; charset=utf-8", "ok\n")
        default: return (.notFound, "text/plain; charset=utf-8", "404 page not found: this endpoint serves /metrics and /healthz\n")
        }
    }

    func serve(_ conn: Connection) async throws {
        try await conn.executeThenClose { input, output in
            var head: HTTPRequestHead?
            for try await part in input {
                switch part {
                case .head(let h): head = h
                case .body: continue
                case .end:
                    guard let h = head else { return }
                    head = nil
                    let (status, type, body) = answer(h)
                    var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", "\(body.utf8.count)")])
                    if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
                    try await output.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                    if h.method != .HEAD { try await output.write(.body(.byteBuffer(ByteBuffer(string: body)))) }
                    try await output.write(.end(nil))
                    if !h.isKeepAlive { return }
                }
            }
        }
    }
}
