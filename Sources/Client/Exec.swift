// Exec as a client: a WebSocket to pods/NAME/exec speaking v5.channel.k8s.io (v4 as a fallback),
// stdin in, stdout and stderr out, and the exit code from the final Status.
import Foundation
import NIOCore
import HummingbirdWSClient
import Logging
import API

public struct ExecOutcome: Sendable {
    /// The command's exit code (0 on Success).
    public var exitCode: Int32
    /// The final Status the server sent on the error channel.
    public var status: JSONValue?
}

extension KubeClient {
    /// Runs `options.command` in a pod's container. `stdin`: chunks to send, then the end of input.
    /// `size`: the terminal size to set first (with `options.tty`). Output goes to the callbacks.
    public func exec(namespace: String, pod: String, options: RemoteCommand.Options, stdin: AsyncStream<Data>? = nil,
                     size: (width: UInt16, height: UInt16)? = nil,
                     stdout: @escaping @Sendable (Data) -> Void, stderr: @escaping @Sendable (Data) -> Void) async throws -> ExecOutcome {
        let url = "wss" + server.dropFirst("https".count) + "/api/v1/namespaces/\(namespace)/pods/\(pod)/exec?\(options.query)"
        var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
        config.additionalHeaders[.secWebSocketProtocol] = RemoteCommand.protocols.joined(separator: ", ")
        // TLS forbids an IP address as the server name; the apiserver's certificate always names "kubernetes".
        if let host = URLComponents(string: server)?.host, host.first?.isNumber == true || host.contains(":") { config.sniHostname = "kubernetes" }
        let status = StatusBox()
        do {
            try await WebSocketClient.connect(url: url, configuration: config, tlsConfiguration: tls, logger: Logger(label: "exec")) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { g in
                    g.addTask {
                        if let size {
                            var b = ByteBuffer(); b.writeInteger(RemoteCommand.resize)
                            b.writeString(#"{"Width":\#(size.width),"Height":\#(size.height)}"#)
                            try await outbound.write(.binary(b))
                        }
                        guard let stdin else { return }
                        for await chunk in stdin {
                            var b = ByteBuffer(); b.reserveCapacity(chunk.count + 1)
                            b.writeInteger(RemoteCommand.stdin); b.writeBytes(chunk)
                            try await outbound.write(.binary(b))
                        }
                        var close = ByteBuffer(); close.writeInteger(RemoteCommand.close); close.writeInteger(RemoteCommand.stdin)
                        try await outbound.write(.binary(close))
                    }
                    for try await m in inbound.messages(maxSize: 1 << 20) {
                        guard case .binary(var b) = m, let ch = b.readInteger(as: UInt8.self) else { continue }
                        let d = Data(b.readableBytesView)
                        switch ch {
                        case RemoteCommand.stdout: stdout(d)
                        case RemoteCommand.stderr: stderr(d)
                        case RemoteCommand.error: status.set(try? JSONValue.parse(d))
                        default: break
                        }
                    }
                    g.cancelAll()
                }
            }
        } catch let e as WebSocketClientError {
            // The upgrade was refused: the plain answer says why (not found, forbidden, ...).
            let r = try await request(.POST, "/api/v1/namespaces/\(namespace)/pods/\(pod)/exec", query: ["command": options.command.first ?? ""])
            if r.status >= 400, let s = try? KubeJSON.decode(Status.self, from: r.body), s.code != 400 { throw s }
            throw ClientError("cannot open an exec stream to pod \(pod): \(e)")
        }
        guard let st = status.get() else { throw ClientError("the exec stream to pod \(pod) ended without a status") }
        switch st["status"]?.stringValue {
        case "Success": return ExecOutcome(exitCode: 0, status: st)
        default:
            if st["reason"]?.stringValue == "NonZeroExitCode",
               let c = st["details"]?["causes"]?.arrayValue?.first(where: { $0["reason"]?.stringValue == "ExitCode" })?["message"]?.stringValue,
               let code = Int32(c) {
                return ExecOutcome(exitCode: code, status: st)
            }
            throw ClientError(st["message"]?.stringValue ?? "exec failed")
        }
    }
}

final class StatusBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: JSONValue?
    func set(_ v: JSONValue?) { lock.lock(); value = v; lock.unlock() }
    func get() -> JSONValue? { lock.lock(); defer { lock.unlock() }; return value }
}
