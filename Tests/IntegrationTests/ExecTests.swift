import Testing
import Foundation
import NIOCore
import NIOSSL
import HummingbirdWSClient
import Logging
import API
import APIServer
import Agent
import Client
import PKI

/// What one exec session produced.
struct ExecResult: Sendable {
    var stdout = Data()
    var stderr = Data()
    var status: JSONValue?
    /// When the status arrived (what a client acts on; the close handshake may take longer).
    var statusAt: ContinuousClock.Instant?
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs an exec through the apiserver the way kubectl does: a WebSocket with v5.channel.k8s.io.
func wsExec(_ c: TestCluster, pod: String, command: [String], stdin: Data? = nil, tty: Bool = false, resize: (UInt16, UInt16)? = nil,
            container: String? = nil, certPEM: String? = nil, keyPEM: String? = nil, proto: String = RemoteCommand.v5,
            abandonAfter: Duration? = nil, plusForSpace: Bool = false) async throws -> ExecResult {
    let size = resize.map { [$0.0, $0.1] }
    return try await withDeadline(90, "exec \(command) in \(pod)") {
        try await wsExecSession(c, pod: pod, command: command, stdin: stdin, tty: tty, resize: size.map { ($0[0], $0[1]) }, container: container,
                                certPEM: certPEM, keyPEM: keyPEM, proto: proto, abandonAfter: abandonAfter, plusForSpace: plusForSpace)
    }
}

func wsExecSession(_ c: TestCluster, pod: String, command: [String], stdin: Data? = nil, tty: Bool = false, resize: (UInt16, UInt16)? = nil,
                   container: String? = nil, certPEM: String? = nil, keyPEM: String? = nil, proto: String = RemoteCommand.v5,
                   abandonAfter: Duration? = nil, plusForSpace: Bool = false) async throws -> ExecResult {
    let admin = try Kubeconfig.load(path: "\(c.dir)/admin.kubeconfig").resolve()
    let tls = try TLSConfig.client(caPEM: c.caPEM, certPEM: certPEM ?? admin.certPEM ?? "", keyPEM: keyPEM ?? admin.keyPEM ?? "")
    // kubectl (Go's url.Values) writes a space as "+".
    var q = command.map { "command=" + (plusForSpace ? RemoteCommand.Options.escape($0).replacingOccurrences(of: "%20", with: "+") : RemoteCommand.Options.escape($0)) }
    q += ["stdout=true", "stderr=\(!tty)", "stdin=\(stdin != nil)", "tty=\(tty)"]
    if let container { q.append("container=\(container)") }
    var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
    config.additionalHeaders[.secWebSocketProtocol] = "\(proto), \(RemoteCommand.v4)"
    config.sniHostname = "kubernetes"
    let result = ResultBox()
    try await WebSocketClient.connect(url: "wss://127.0.0.1:\(c.port)/api/v1/namespaces/default/pods/\(pod)/exec?\(q.joined(separator: "&"))",
                                      configuration: config, tlsConfiguration: tls, logger: Logger(label: "exec-test")) { inbound, outbound, _ in
        if let (w, h) = resize {
            var b = ByteBuffer(); b.writeInteger(RemoteCommand.resize); b.writeString(#"{"Width":\#(w),"Height":\#(h)}"#)
            try await outbound.write(.binary(b))
        }
        if let stdin {
            // In 32 KiB pieces, as kubectl sends it.
            var off = 0
            while off < stdin.count {
                let end = min(off + 32768, stdin.count)
                var b = ByteBuffer(); b.writeInteger(RemoteCommand.stdin); b.writeBytes(stdin[off..<end])
                try await outbound.write(.binary(b))
                off = end
            }
            var close = ByteBuffer(); close.writeInteger(RemoteCommand.close); close.writeInteger(RemoteCommand.stdin)
            try await outbound.write(.binary(close))
        }
        if let abandonAfter {
            try await Task.sleep(for: abandonAfter)
            return   // leave without reading: the connection goes away
        }
        for try await m in inbound.messages(maxSize: 1 << 20) {
            guard case .binary(var b) = m, let ch = b.readInteger(as: UInt8.self) else { continue }
            let d = Data(b.readableBytesView)
            switch ch {
            case RemoteCommand.stdout: result.value.stdout.append(d)
            case RemoteCommand.stderr: result.value.stderr.append(d)
            case RemoteCommand.error: result.value.status = try? JSONValue.parse(d); result.value.statusAt = .now
            default: break
            }
        }
    }
    return result.value
}

final class ResultBox: @unchecked Sendable { var value = ExecResult() }

@Suite(.serialized, .enabled(if: canRunRealPods, "needs root, runc, CNI plugins and the image tools")) struct ExecTests {
    @Test func execThroughTheApiserverToRunc() async throws {
        let image = try await TestRegistry.shared.image()
        try await withRealNode("x1", subnet: 211) { c, _ in
            let k = try c.admin()
            _ = try await eventually(15, "node Ready") { try? await k.get(Node.self, "x1").isReady == true ? true : nil }
            _ = try await k.create(try podFrom("""
                apiVersion: v1
                kind: Pod
                metadata: {name: box}
                spec:
                  nodeName: x1
                  terminationGracePeriodSeconds: 1
                  containers:
                  - {name: main, image: \(image), command: ["/bin/sh", "-c", "sleep 3600"]}
                """))
            try await waitPod(k, "box", "Running") { $0.status?.phase == "Running" }

            // stdout, stderr and success.
            var r = try await wsExec(c, pod: "box", command: ["/bin/sh", "-c", "echo out; echo err >&2"])
            #expect(r.text == "out\n" && String(decoding: r.stderr, as: UTF8.self) == "err\n")
            #expect(r.status?["status"]?.stringValue == "Success")

            // A non-zero exit code comes back as NonZeroExitCode with an ExitCode cause.
            r = try await wsExec(c, pod: "box", command: ["/bin/sh", "-c", "exit 3"], plusForSpace: true)
            #expect(r.status?["reason"]?.stringValue == "NonZeroExitCode")
            #expect(r.status?["details"]?["causes"]?.arrayValue?.first?["message"]?.stringValue == "3")

            // stdin, closed by the v5 close signal; a megabyte goes through intact.
            let big = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            r = try await wsExec(c, pod: "box", command: ["/bin/sh", "-c", "cat | busybox md5sum"], stdin: big)
            let want = try shell("python3 -c 'import hashlib; print(hashlib.md5(bytes((i*7)&255 for i in range(1<<20))).hexdigest())'")
            #expect(r.text.hasPrefix(want.trimmingCharacters(in: .whitespacesAndNewlines)), "output: \(r.text.debugDescription), status: \(String(describing: r.status))")

            // A terminal, with the size the client sets.
            r = try await wsExec(c, pod: "box", command: ["/bin/sh", "-c", "echo start; sleep 1; busybox stty size; test -t 0 && echo tty"], tty: true, resize: (100, 40))
            #expect(r.text.contains("40 100") && r.text.contains("tty"), "output: \(r.text.debugDescription), status: \(String(describing: r.status))")

            // v4 clients work too (no close signal: they end by closing).
            r = try await wsExec(c, pod: "box", command: ["echo", "v4"], proto: RemoteCommand.v4)
            #expect(r.text == "v4\n")

            // A missing container is a clear Status, not a hang.
            let missing = try await wsExec(c, pod: "box", command: ["true"], container: "nope")
            #expect(missing.status?["status"]?.stringValue == "Failure")
            #expect(missing.status?["message"]?.stringValue?.contains("container nope is not valid") == true)

            // A client that vanishes mid-stream leaves no process behind.
            let marker = "sleep 4242"
            _ = try await wsExec(c, pod: "box", command: ["/bin/sh", "-c", marker], abandonAfter: .milliseconds(800))
            _ = try await eventually(10, "the abandoned process is killed") { () -> Bool? in
                // The bracket keeps pgrep's own shell (whose command line holds the pattern) out of the match.
                let out = (try? shell("pgrep -f 'sleep 424[2]' || true")) ?? "x"
                return out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? true : nil
            }

            // A node may not exec into another node's pod: the upgrade is refused.
            let other = try c.server.pki.ca.issue(commonName: "system:node:elsewhere", organizations: ["system:nodes"], usage: .client)
            await #expect(throws: (any Error).self) {
                _ = try await wsExec(c, pod: "box", command: ["true"], certPEM: other.certificatePEM, keyPEM: other.keyPEM)
            }
            // Without an upgrade, the endpoint says what it needs.
            let plain = try await k.request(.POST, "/api/v1/namespaces/default/pods/box/exec", query: ["command": "true"])
            #expect(plain.status == 400 && String(decoding: plain.body, as: UTF8.self).contains("Upgrade request required"))
        }
    }
}
