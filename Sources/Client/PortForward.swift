// Port-forward as a client: a local listener, and for each connection it accepts a WebSocket to
// pods/NAME/portforward speaking the channel protocol (v4.channel.k8s.io, ?ports=PORT): channel 0
// the connection's bytes, channel 1 the server's error text; each channel opens with the port
// number (2 bytes, little endian), which is skipped.
import Foundation
import NIOCore
import NIOPosix
import HummingbirdWSClient
import Logging
import API

public struct PortForwardSpec: Sendable, Equatable {
    public var local: Int
    public var remote: Int
    public init(local: Int, remote: Int) { self.local = local; self.remote = remote }
    /// "8080" (the same port locally), "18080:8080", or ":8080" (any free local port).
    public static func parse(_ s: String) throws -> PortForwardSpec {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func port(_ p: String, allowZero: Bool) throws -> Int {
            guard let n = Int(p), (allowZero ? 0 : 1)...65535 ~= n else {
                throw ClientError("invalid port \"\(p)\" in \"\(s)\": a port is a number from 1 to 65535")
            }
            return n
        }
        switch parts.count {
        case 1: let r = try port(parts[0], allowZero: false); return PortForwardSpec(local: r, remote: r)
        case 2: return PortForwardSpec(local: parts[0].isEmpty ? 0 : try port(parts[0], allowZero: true), remote: try port(parts[1], allowZero: false))
        default: throw ClientError("invalid port mapping \"\(s)\": use PORT, LOCAL:REMOTE or :REMOTE")
        }
    }
}

extension KubeClient {
    /// Carries one local connection to `port` of a pod until either side ends it. Returns the
    /// server's error text for the connection, if it sent one.
    public func forward(connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, namespace: String, pod: String, port: Int) async throws -> String? {
        let url = "wss" + server.dropFirst("https".count) + "/api/v1/namespaces/\(namespace)/pods/\(pod)/portforward?ports=\(port)"
        var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
        config.additionalHeaders[.secWebSocketProtocol] = RemoteCommand.v4
        if let host = URLComponents(string: server)?.host, host.first?.isNumber == true || host.contains(":") { config.sniHostname = "kubernetes" }
        let errorText = StatusBox()
        try await connection.executeThenClose { localIn, localOut in
            try await WebSocketClient.connect(url: url, configuration: config, tlsConfiguration: tls, logger: Logger(label: "port-forward")) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Bool.self) { g in
                    g.addTask {
                        for try await b in localIn {
                            var m = ByteBuffer(); m.reserveCapacity(b.readableBytes + 1)
                            m.writeInteger(UInt8(0)); m.writeImmutableBuffer(b)
                            try await outbound.write(.binary(m))
                        }
                        return false
                    }
                    g.addTask {
                        var opened = [false, false]
                        var text = ""
                        for try await m in inbound.messages(maxSize: 16 << 20) {
                            guard case .binary(var b) = m, let ch = b.readInteger(as: UInt8.self), ch < 2 else { continue }
                            if !opened[Int(ch)] { opened[Int(ch)] = true; continue }   // the port number
                            if ch == 0 { try await localOut.write(b) } else {
                                text += b.readString(length: b.readableBytes) ?? ""
                                errorText.set(.string(text))
                            }
                        }
                        return true
                    }
                    // Either side ending ends the connection (this protocol has no half-close).
                    _ = try await g.next()
                    g.cancelAll()
                    try? await outbound.close(.normalClosure, reason: nil)
                }
            }
        }
        return errorText.get()?.stringValue
    }

    /// Listens on `address`:spec.local for each spec and forwards every connection to the pod,
    /// until cancelled. `ready` gets the bound local ports in order.
    public func portForward(namespace: String, pod: String, address: String, specs: [PortForwardSpec],
                            ready: @escaping @Sendable ([Int]) -> Void, onError: @escaping @Sendable (String) -> Void) async throws {
        var servers: [(NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>, PortForwardSpec)] = []
        for spec in specs {
            let s = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: address, port: spec.local) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
                    }
                }
            servers.append((s, spec))
        }
        ready(servers.map { $0.0.channel.localAddress?.port ?? 0 })
        try await withThrowingDiscardingTaskGroup { g in
            for (server, spec) in servers {
                g.addTask {
                    try await server.executeThenClose { accepted in
                        try await withThrowingDiscardingTaskGroup { conns in
                            for try await conn in accepted {
                                conns.addTask {
                                    do {
                                        if let e = try await self.forward(connection: conn, namespace: namespace, pod: pod, port: spec.remote), !e.isEmpty {
                                            onError("an error occurred forwarding \(spec.local) -> \(spec.remote): \(e)")
                                        }
                                    } catch {
                                        onError("an error occurred forwarding \(spec.local) -> \(spec.remote): \(error)")
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
