// Container probes as the kubelet runs them: exec (in the container), httpGet (success is a
// status in [200, 400)), tcpSocket (a connection opens), each within timeoutSeconds; and the
// bookkeeping of consecutive successes and failures against the thresholds.
import Foundation
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOSSL
import API
import Client

enum ProbeKind: String, Sendable { case startup, liveness, readiness }

struct ProbeTracker: Sendable {
    var successes = 0
    var failures = 0
    var lastRun: Date?
    /// nil until the thresholds decide; then the probe's verdict.
    var result: Bool?
    var lastMessage = ""

    /// Records one outcome; returns true when the verdict changed.
    mutating func record(_ ok: Bool, message: String, probe: Probe, kind: ProbeKind) -> Bool {
        let before = result
        if ok { successes += 1; failures = 0 } else { failures += 1; successes = 0 }
        lastMessage = message
        let successThreshold = kind == .readiness ? (probe.successThreshold ?? 1) : 1
        let failureThreshold = probe.failureThreshold ?? 3
        if ok, successes >= successThreshold { result = true }
        if !ok, failures >= failureThreshold { result = false }
        return before != result
    }
}

struct Prober: Sendable {
    let http: HTTPClient
    /// One client per process for every probe (never shut down; probes check liveness, not
    /// identity, so HTTPS is not verified, as the kubelet does).
    static let sharedHTTP: HTTPClient = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        var c = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .follow(max: 10, allowCycles: false),
                                         timeout: .init(connect: .seconds(1)))
        // One try per probe, as the kubelet's: a refused connection fails it at once. (The pool's
        // retries back off across failures, so a slow starter's probes would keep waiting on
        // that backoff after it listens.)
        c.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }()
    let runtime: any ContainerRuntime

    /// Resolves a named port through the container's ports.
    static func port(_ p: IntOrString, _ c: Container) -> Int? {
        switch p {
        case .int(let i): return Int(i)
        case .string(let s): return Int(s) ?? c.ports?.first { $0.name == s }?.containerPort
        }
    }

    func run(_ probe: Probe, pod: Pod, container: Container, containerID: String, podIP: String?) async -> (ok: Bool, message: String) {
        if runtime.hollow { return (true, "") }
        let timeout = Double(max(1, probe.timeoutSeconds ?? 1))
        if let exec = probe.exec {
            do {
                let r = try await runtime.exec(podUID: pod.metadata.uid ?? "", containerID: containerID, command: exec.command ?? [], timeout: timeout)
                return r.status == 0 ? (true, "") : (false, "exec \(exec.command ?? []) exited with \(r.status): \(r.output.prefix(200))")
            } catch { return (false, "exec probe: \(error)") }
        }
        if let h = probe.httpGet {
            guard let port = Self.port(h.port, container) else { return (false, "httpGet: port \(h.port) is not a port of the container") }
            let host = h.host ?? podIP ?? "127.0.0.1"
            let scheme = (h.scheme ?? "HTTP").lowercased()
            let path = h.path.map { $0.hasPrefix("/") ? $0 : "/\($0)" } ?? "/"
            var req = HTTPClientRequest(url: "\(scheme)://\(host):\(port)\(path)")
            req.headers.add(name: "User-Agent", value: "orchestrator-probe/1.0")
            for hd in h.httpHeaders ?? [] { req.headers.replaceOrAdd(name: hd.name, value: hd.value) }
            do {
                let resp = try await http.execute(req, timeout: .milliseconds(Int64(timeout * 1000)))
                _ = try? await resp.body.collect(upTo: 10 << 10)
                let code = Int(resp.status.code)
                return (200..<400).contains(code) ? (true, "") : (false, "HTTP probe failed with statuscode: \(code)")
            } catch { return (false, "Get \"\(scheme)://\(host):\(port)\(path)\": \(error)") }
        }
        if let t = probe.tcpSocket {
            guard let port = Self.port(t.port, container) else { return (false, "tcpSocket: port \(t.port) is not a port of the container") }
            let host = t.host ?? podIP ?? "127.0.0.1"
            let failure = await TCPDial.dial(host: host, port: port, timeout: timeout).failure
            // Worded as the kubelet's: "dial tcp HOST:PORT: connect: connection refused".
            return failure.map { (false, "dial tcp \(host):\(port): \($0)") } ?? (true, "")
        }
        return (false, "probe has no handler (exec, httpGet or tcpSocket)")
    }
}
