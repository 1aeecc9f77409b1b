import Testing
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import HummingbirdWSClient
import Logging
import API
import APIServer
import Agent
import Client
import PKI
import SPDY

/// What one forwarded connection of a SPDY session brought back.
struct ForwardResult: Sendable { var data = Data(); var error = "" }

final class ForwardBox: @unchecked Sendable {
    let lock = NSLock()
    var results: [ForwardResult]
    init(_ n: Int) { results = Array(repeating: ForwardResult(), count: n) }
}

/// One SPDY/3.1 session inside a WebSocket (subprotocol SPDY/3.1+portforward.k8s.io), the way
/// kubectl 1.32 opens pods/portforward: for each request an error stream and a data stream
/// (requestID i), the payload sent and half-closed, the answer read until both streams end.
func spdyForward(_ c: TestCluster, pod: String, requests: [(port: Int, payload: Data)], certPEM: String? = nil, keyPEM: String? = nil,
                 abandonAfter: Duration? = nil) async throws -> [ForwardResult] {
    let reqs = requests.map { ForwardRequest(port: $0.port, payload: $0.payload) }
    return try await withDeadline(60, "port-forward of \(requests.count) connection(s) to \(pod)") {
        try await spdyForwardSession(c, pod: pod, requests: reqs.map { ($0.port, $0.payload) }, certPEM: certPEM, keyPEM: keyPEM, abandonAfter: abandonAfter)
    }
}

struct ForwardRequest: Sendable { let port: Int; let payload: Data }

func spdyForwardSession(_ c: TestCluster, pod: String, requests: [(port: Int, payload: Data)], certPEM: String? = nil, keyPEM: String? = nil,
                        abandonAfter: Duration? = nil) async throws -> [ForwardResult] {
    let admin = try Kubeconfig.load(path: "\(c.dir)/admin.kubeconfig").resolve()
    let tls = try TLSConfig.client(caPEM: c.caPEM, certPEM: certPEM ?? admin.certPEM ?? "", keyPEM: keyPEM ?? admin.keyPEM ?? "")
    var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
    config.additionalHeaders[.secWebSocketProtocol] = "SPDY/3.1+portforward.k8s.io"
    config.sniHostname = "kubernetes"
    let box = ForwardBox(requests.count)
    try await WebSocketClient.connect(url: "wss://127.0.0.1:\(c.port)/api/v1/namespaces/default/pods/\(pod)/portforward",
                                      configuration: config, tlsConfiguration: tls, logger: Logger(label: "pf-test")) { inbound, outbound, _ in
        let codec = SPDYCodec()
        var out: [UInt8] = []
        for (i, r) in requests.enumerated() {
            let errorID = UInt32(4 * i + 1), dataID = UInt32(4 * i + 3)
            let h = { (t: String) in [SPDYHeader(name: "streamtype", value: t), SPDYHeader(name: "port", value: String(r.port)),
                                      SPDYHeader(name: "requestid", value: String(i))] }
            out += codec.encode(.synStream(streamID: errorID, associatedTo: 0, priority: 0, flags: SPDYFlags.fin, headers: h("error")))
            out += codec.encode(.synStream(streamID: dataID, associatedTo: 0, priority: 0, flags: 0, headers: h("data")))
            out += codec.encode(.data(streamID: dataID, flags: SPDYFlags.fin, payload: Array(r.payload)))
        }
        // Written in pieces that split frames, as a byte stream may.
        var off = 0
        while off < out.count {
            let end = min(off + 3000, out.count)
            try await outbound.write(.binary(ByteBuffer(bytes: out[off..<end])))
            off = end
        }
        if let abandonAfter {
            try await Task.sleep(for: abandonAfter)
            return
        }
        let decoder = SPDYCodec()
        var open = Set<UInt32>()
        for i in 0..<requests.count {
            open.insert(UInt32(4 * i + 1))
            open.insert(UInt32(4 * i + 3))
        }
        reading: for try await m in inbound.messages(maxSize: 16 << 20) {
            guard case .binary(let b) = m else { continue }
            decoder.feed(b.readableBytesView)
            while let f = try decoder.nextFrame() {
                switch f {
                case .data(let id, let flags, let payload):
                    let i = Int(id - 1) / 4
                    box.lock.withLock {
                        if id % 4 == 3 { box.results[i].data.append(contentsOf: payload) } else { box.results[i].error += String(decoding: payload, as: UTF8.self) }
                    }
                    if flags & SPDYFlags.fin != 0 { open.remove(id) }
                case .rstStream(let id, _):
                    open.remove(id)
                default: break
                }
                if open.isEmpty { break reading }
            }
        }
        try? await outbound.close(.normalClosure, reason: nil)
    }
    return box.results
}

/// Open file descriptors of this process (the apiserver and the agent run in it).
func openFDs() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }

/// What the open descriptors are, by kind (for a failure message).
func fdSummary() -> String {
    var kinds: [String: Int] = [:]
    for f in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        let t = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(f)")) ?? "?"
        let k = t.hasPrefix("socket:") ? "socket" : t.hasPrefix("pipe:") ? "pipe" : t.hasPrefix("anon_inode:") ? t : t.hasPrefix("/dev/") ? t : "file"
        kinds[k, default: 0] += 1
    }
    return kinds.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
}

@Suite(.serialized, .enabled(if: canRunRealPods, "needs root, runc, CNI plugins and the image tools")) struct StreamTests {
    @Test func portForwardAttachAndIdleTimeout() async throws {
        let image = try await TestRegistry.shared.image()
        try await withRealNode("s1", subnet: 212, streamingIdleTimeout: 3) { c, _ in
            let k = try c.admin()
            _ = try await eventually(15, "node Ready") { try? await k.get(Node.self, "s1").isReady == true ? true : nil }
            // A web server bound to the pod's loopback only: reachable through port-forward, which
            // connects inside the pod's network namespace, and from nowhere else.
            _ = try await k.create(try podFrom("""
                apiVersion: v1
                kind: Pod
                metadata: {name: web}
                spec:
                  nodeName: s1
                  terminationGracePeriodSeconds: 1
                  containers:
                  - name: main
                    image: \(image)
                    command: ["/bin/sh", "-c", "mkdir -p /www && echo hello-pf > /www/index.html && dd if=/dev/zero of=/www/big bs=1024 count=4096 2>/dev/null && exec busybox httpd -f -p 127.0.0.1:8080 -h /www"]
                  - name: reader
                    image: \(image)
                    command: ["/bin/sh", "-c", "echo reader-started; while read l; do echo got:$l; done; echo stdin-closed; sleep 3600"]
                    stdin: true
                    stdinOnce: true
                  - name: term
                    image: \(image)
                    command: ["/bin/sh"]
                    stdin: true
                    stdinOnce: true
                    tty: true
                """))
            try await waitPod(k, "web", "Running") { $0.status?.phase == "Running" && ($0.status?.containerStatuses ?? []).allSatisfy { $0.ready == true } }

            // 50 concurrent HTTP requests through one SPDY session, and a large download.
            let get = Data("GET / HTTP/1.0\r\n\r\n".utf8)
            var results: [ForwardResult] = []
            _ = try await eventually(10, "the web server answers") { () -> Bool? in
                results = (try? await spdyForward(c, pod: "web", requests: [(8080, get)])) ?? []
                return results.first.map { String(decoding: $0.data, as: UTF8.self).contains("hello-pf") } == true ? true : nil
            }
            results = try await spdyForward(c, pod: "web", requests: Array(repeating: (8080, get), count: 50))
            let good = results.filter { String(decoding: $0.data, as: UTF8.self).hasPrefix("HTTP/1.1 200") && String(decoding: $0.data, as: UTF8.self).contains("hello-pf") }
            #expect(good.count == 50, "errors: \(Set(results.map(\.error)))")
            results = try await spdyForward(c, pod: "web", requests: [(8080, Data("GET /big HTTP/1.0\r\n\r\n".utf8))])
            #expect(results[0].data.count > 4096 * 1024 && results[0].data.suffix(4096 * 1024).allSatisfy { $0 == 0 })

            // A port nobody listens on: the error stream says so; the session is not hurt.
            results = try await spdyForward(c, pod: "web", requests: [(9, get), (8080, get)])
            #expect(results[0].error.contains("refused"), "error: \(results[0].error)")
            #expect(String(decoding: results[1].data, as: UTF8.self).contains("hello-pf"))
            // Again and again, quickly: the agent's refusal comes within a millisecond of the upgrade,
            // which the apiserver's WebSocket client could lose (hanging the forward) until the agent
            // waited for the apiserver's start; and each ends at once (no wait for TLS close_notify).
            for round in 0..<20 {
                let t0 = ContinuousClock.now
                let r = try await spdyForward(c, pod: "web", requests: [(9, get), (8080, get)])
                #expect(r[0].error.contains("refused") && String(decoding: r[1].data, as: UTF8.self).contains("hello-pf"), "round \(round)")
                #expect(ContinuousClock.now - t0 < .seconds(2), "round \(round) took \(ContinuousClock.now - t0)")
            }

            // The channel protocol (the Python client's): ports in the query, channels 0 and 1.
            let admin = try Kubeconfig.load(path: "\(c.dir)/admin.kubeconfig").resolve()
            let client = try KubeClient(config: .init(server: "https://127.0.0.1:\(c.port)", caPEM: c.caPEM, certPEM: admin.certPEM, keyPEM: admin.keyPEM,
                                                      token: nil, namespace: "default", tlsServerName: "kubernetes"))
            let (ready, readyCont) = AsyncStream<[Int]>.makeStream()
            let forwarding = Task {
                try await client.portForward(namespace: "default", pod: "web", address: "127.0.0.1", specs: [PortForwardSpec(local: 0, remote: 8080)],
                                             ready: { readyCont.yield($0); readyCont.finish() }, onError: { _ in })
            }
            let local = try #require(try await withDeadline(30, "the client's port-forward listening") { () -> [Int]? in
                var it = ready.makeAsyncIterator()
                return await it.next()
            }?.first)
            let body = try shell("curl -s -m 10 http://127.0.0.1:\(local)/")
            #expect(body.contains("hello-pf"))
            forwarding.cancel()

            // A node may not forward into another node's pod.
            let other = try c.server.pki.ca.issue(commonName: "system:node:elsewhere", organizations: ["system:nodes"], usage: .client)
            await #expect(throws: (any Error).self) {
                _ = try await spdyForward(c, pod: "web", requests: [(8080, get)], certPEM: other.certificatePEM, keyPEM: other.keyPEM)
            }

            // Clients that vanish mid-stream leave no descriptor behind (the apiserver and the agent
            // run in this process) and no exec'd process in the container.
            // Warm up first: the first exec starts the process machinery's own threads and descriptors.
            _ = try await wsExec(c, pod: "web", command: ["true"], container: "main")
            _ = try await wsExec(c, pod: "web", command: ["/bin/sh", "-c", "sleep 4343"], container: "main", abandonAfter: .milliseconds(300))
            _ = try await eventually(10, "the warm-up's abandoned process is killed") { () -> Bool? in
                let out = (try? shell("pgrep -f 'sleep 434[3]' || true")) ?? "x"
                return out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? true : nil
            }
            let baseline = openFDs()
            let before = fdSummary()
            for _ in 0..<5 {
                _ = try await spdyForward(c, pod: "web", requests: Array(repeating: (8080, Data("GET /big HTTP/1.0\r\n\r\n".utf8)), count: 5),
                                          abandonAfter: .milliseconds(200))
                _ = try await wsExec(c, pod: "web", command: ["/bin/sh", "-c", "sleep 4343"], container: "main", abandonAfter: .milliseconds(300))
            }
            do {
                _ = try await eventually(15, "descriptors back to \(baseline)") { openFDs() <= baseline + 2 ? true : nil }
            } catch {
                Issue.record("descriptors: \(openFDs()) now, \(baseline) before; before: \(before); now: \(fdSummary())")
                _ = try? shell("ss -tanp | grep 'pid=\(getpid()),' > /tmp/stream-test-ss.txt")
            }
            _ = try await eventually(10, "the abandoned processes are killed") { () -> Bool? in
                let out = (try? shell("pgrep -f 'sleep 434[3]' || true")) ?? "x"
                return out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? true : nil
            }

            // cp, as kubectl does it: tar through exec, a 10 MB file in and out, checksums equal.
            let work = "\(c.dir)/cp"
            try FileManager.default.createDirectory(atPath: "\(work)/out", withIntermediateDirectories: true)
            _ = try shell("head -c 10000000 /dev/urandom > \(work)/big10 && tar cf \(work)/in.tar -C \(work) big10")
            let tarIn = try Data(contentsOf: URL(fileURLWithPath: "\(work)/in.tar"))
            var r = try await wsExec(c, pod: "web", command: ["tar", "xf", "-", "-C", "/tmp"], stdin: tarIn, container: "main")
            #expect(r.status?["status"]?.stringValue == "Success", "tar in: \(String(describing: r.status))")
            r = try await wsExec(c, pod: "web", command: ["tar", "cf", "-", "-C", "/tmp", "big10"], container: "main")
            try r.stdout.write(to: URL(fileURLWithPath: "\(work)/out.tar"))
            let sums = try shell("tar xf \(work)/out.tar -C \(work)/out && md5sum < \(work)/big10 && md5sum < \(work)/out/big10")
            let lines = sums.split(separator: "\n")
            #expect(lines.count == 2 && lines[0] == lines[1], "checksums: \(sums)")

            // Attach: output from now on, stdin into the container (stdinOnce: closed when we leave).
            let attached = try await wsAttach(c, pod: "web", container: "reader", stdin: Data("one\ntwo\n".utf8),
                                              before: { $0.contains("got:two") }, after: { $0.contains("stdin-closed") })
            #expect(attached.text.contains("got:one") && attached.text.contains("got:two") && attached.text.contains("stdin-closed"),
                    "attach output: \(attached.text.debugDescription) status: \(String(describing: attached.status))")
            // A container without stdin: true cannot take input.
            let refused = try await wsAttach(c, pod: "web", container: "main", stdin: Data("x\n".utf8), before: { _ in false })
            #expect(refused.status?["message"]?.stringValue?.contains("stdin: true") == true)
            // A container with a terminal (what kubectl run -it makes): typed input, the size we set.
            let term = try await wsAttach(c, pod: "web", container: "term", stdin: Data("stty size; echo term-$((6*7))\n".utf8), tty: (100, 30),
                                          before: { $0.contains("30 100") && $0.contains("term-42") })
            #expect(term.text.contains("30 100") && term.text.contains("term-42"), "tty attach output: \(term.text.debugDescription) status: \(String(describing: term.status))")
            // Without a terminal in the spec, -t is refused as kubectl expects.
            let noTTY = try await wsAttach(c, pod: "web", container: "reader", stdin: Data(), tty: (80, 24), before: { _ in false })
            #expect(noTTY.status?["message"]?.stringValue?.contains("did not allocate one") == true, "\(String(describing: noTTY.status))")
            // stdinOnce: leaving typed an end of file, so the shell exited and was restarted; what
            // the terminal showed is that run's log.
            _ = try await eventually(15, "the shell ended by leaving, and its log") { () -> Bool? in
                let restarted = (try? await k.get(Pod.self, "web"))?.status?.containerStatuses?.first { $0.name == "term" }?.restartCount ?? 0
                guard restarted >= 1 else { return nil }
                let r = try? await k.request(.GET, "/api/v1/namespaces/default/pods/web/log", query: ["container": "term", "previous": "true"])
                return r.map { String(decoding: $0.body, as: UTF8.self) }?.contains("term-42") == true ? true : nil
            }

            // A pod whose node is down: a clear Status at once, not a hang.
            var ghost = Node(name: "ghost")
            ghost.status = NodeStatus()
            ghost.status?.addresses = [NodeAddress(type: "InternalIP", address: "127.0.0.1")]
            ghost.status?.conditions = [NodeCondition(type: "Ready", status: "Unknown")]
            _ = try await k.create(ghost)
            _ = try await k.create(try podFrom("""
                apiVersion: v1
                kind: Pod
                metadata: {name: stranded}
                spec:
                  nodeName: ghost
                  tolerations:
                  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
                  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute}
                  containers:
                  - {name: main, image: \(image)}
                """))
            let downStart = ContinuousClock.now
            let down = try await wsExec(c, pod: "stranded", command: ["true"])
            #expect(down.status?["message"]?.stringValue?.contains("node ghost of pod stranded is not ready") == true, "\(String(describing: down.status))")
            #expect(down.statusAt.map { $0 - downStart < .seconds(3) } == true, "the refusal came after \(String(describing: down.statusAt.map { $0 - downStart }))")

            // The idle timeout (3 s here; 4 h by default) ends a session where nothing moves.
            let started = ContinuousClock.now
            let idle = try await wsExec(c, pod: "web", command: ["/bin/sh", "-c", "sleep 4444"], container: "main")
            let took = ContinuousClock.now - started
            #expect(took < .seconds(15) && took >= .seconds(3), "an idle exec lasted \(took)")
            #expect(idle.status == nil)
            _ = try await eventually(10, "the idle session's process is killed") { () -> Bool? in
                let out = (try? shell("pgrep -f 'sleep 444[4]' || true")) ?? "x"
                return out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? true : nil
            }
        }
    }
}

/// Attaches like kubectl attach -i: sends `stdin`, waits (with a deadline) until the output
/// satisfies `before`, closes stdin, then waits until it satisfies `after`. A Status ends the wait.
func wsAttach(_ c: TestCluster, pod: String, container: String, stdin: Data, tty: (UInt16, UInt16)? = nil,
              before: @escaping @Sendable (String) -> Bool = { _ in true }, after: @escaping @Sendable (String) -> Bool = { _ in true }) async throws -> ExecResult {
    let size = tty.map { [$0.0, $0.1] }
    return try await withDeadline(60, "attach to \(pod)/\(container)") {
        try await wsAttachSession(c, pod: pod, container: container, stdin: stdin, tty: size.map { ($0[0], $0[1]) }, before: before, after: after)
    }
}

func wsAttachSession(_ c: TestCluster, pod: String, container: String, stdin: Data, tty: (UInt16, UInt16)?,
                     before: @escaping @Sendable (String) -> Bool, after: @escaping @Sendable (String) -> Bool) async throws -> ExecResult {
    let admin = try Kubeconfig.load(path: "\(c.dir)/admin.kubeconfig").resolve()
    let tls = try TLSConfig.client(caPEM: c.caPEM, certPEM: admin.certPEM ?? "", keyPEM: admin.keyPEM ?? "")
    var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
    config.additionalHeaders[.secWebSocketProtocol] = RemoteCommand.v5
    config.sniHostname = "kubernetes"
    let result = ResultBox()
    let lock = NSLock()
    @Sendable func snapshot() -> ExecResult { lock.withLock { result.value } }
    @Sendable func waitFor(_ ok: @escaping @Sendable (String) -> Bool) async throws {
        _ = try await eventually(10, "attach output") { () -> Bool? in
            let r = snapshot()
            return r.status != nil || ok(r.text) ? true : nil
        }
    }
    do {
    try await WebSocketClient.connect(url: "wss://127.0.0.1:\(c.port)/api/v1/namespaces/default/pods/\(pod)/attach?container=\(container)&stdin=true&stdout=true&stderr=\(tty == nil)&tty=\(tty != nil)",
                                      configuration: config, tlsConfiguration: tls, logger: Logger(label: "attach-test")) { inbound, outbound, _ in
        if let (w, h) = tty {
            var r = ByteBuffer(); r.writeInteger(RemoteCommand.resize); r.writeString(#"{"Width":\#(w),"Height":\#(h)}"#)
            try await outbound.write(.binary(r))
        }
        var b = ByteBuffer(); b.writeInteger(RemoteCommand.stdin); b.writeBytes(stdin)
        try await outbound.write(.binary(b))
        let reader = Task {
            for try await m in inbound.messages(maxSize: 1 << 20) {
                guard case .binary(var b) = m, let ch = b.readInteger(as: UInt8.self) else { continue }
                let d = Data(b.readableBytesView)
                lock.withLock {
                    if ch == RemoteCommand.stdout || ch == RemoteCommand.stderr { result.value.stdout.append(d) }
                    if ch == RemoteCommand.error { result.value.status = try? JSONValue.parse(d) }
                }
            }
        }
        do {
            try await waitFor(before)
            // A refusal (a Status) ends the session at once: that is the answer.
            if snapshot().status != nil { reader.cancel(); return }
            // Leaving closes stdin (stdinOnce); what the container does then comes back before we stop.
            var close = ByteBuffer(); close.writeInteger(RemoteCommand.close); close.writeInteger(RemoteCommand.stdin)
            try await outbound.write(.binary(close))
            try await waitFor(after)
        } catch is CancellationError {
            // The server ended the session (a refusal closes it at once): what arrived is the answer.
        }
        reader.cancel()
        try? await outbound.close(.normalClosure, reason: nil)
    }
    } catch is CancellationError where snapshot().status != nil {
        // The server closed the session with its Status while the handler was still running.
    }
    return snapshot()
}
