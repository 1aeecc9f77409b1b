// pods/portforward, the way kubectl 1.32 and the client libraries ask for it:
//   - a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io: a SPDY/3.1 session carried in the
//     WebSocket's binary messages (kubectl's default), each forwarded connection a pair of SPDY
//     streams (error and data) tied by a requestID header;
//   - a WebSocket with v4.channel.k8s.io (or no subprotocol): the channel protocol the Python
//     client speaks, with the ports in the query (?ports=8080,9090), channel 2i carrying port i's
//     bytes and 2i+1 its errors, each opened by the port number (2 bytes, little endian).
// The plain `Upgrade: SPDY/3.1` variant is served by SPDYUpgrade.swift with the same session.
// Every forwarded connection becomes one WebSocket to the pod's agent (see the agent's
// AgentPortForward.swift), which connects to the port inside the pod's network namespace.
import Foundation
import Synchronization
import Hummingbird
import HummingbirdWebSocket
import HummingbirdWSClient
import NIOCore
import Logging
import API
import SPDY

public enum PortForwardProtocol {
    public static let spdyTunnel = "SPDY/3.1+portforward.k8s.io"
    public static let spdy = "portforward.k8s.io"
    public static let channel = "v4.channel.k8s.io"
}

extension APIHandler {
    func portForwardUpgrade(pod: Pod, offered: String?, query: URLComponents, nodes: NodeProxy) -> UpgradeResult {
        let list = (offered ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let logger = self.logger
        if list.contains(PortForwardProtocol.spdyTunnel) {
            let handler: WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context> = { [self] inbound, outbound, _ in
                let session = SPDYPortForwardSession(pod: pod, logger: logger, dial: self.agentDialer(pod: pod, nodes: nodes)) { bytes in
                    try await outbound.write(.binary(bytes))
                }
                await session.run(input: inbound.messages(maxSize: 16 << 20).compactMap { m -> ByteBuffer? in
                    if case .binary(let b) = m { return b }
                    return nil
                })
                try? await outbound.close(.normalClosure, reason: nil)
            }
            return .upgrade([.secWebSocketProtocol: PortForwardProtocol.spdyTunnel], handler)
        }
        // The channel protocol: v4 when offered (the Python client offers v5 and v4), else none.
        guard list.isEmpty || list.contains(PortForwardProtocol.channel) else { return .dontUpgrade }
        let ports = (query.queryItems ?? []).filter { $0.name == "ports" }.flatMap { ($0.value ?? "").split(separator: ",") }
            .map { Int($0.trimmingCharacters(in: .whitespaces)) ?? 0 }
        guard !ports.isEmpty, ports.allSatisfy({ (1...65535).contains($0) }), ports.count <= 64 else { return .dontUpgrade }
        let handler: WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context> = { [self] inbound, outbound, _ in
            await self.relayPortForwardChannels(pod: pod, ports: ports, dial: self.agentDialer(pod: pod, nodes: nodes),
                                                inbound: inbound, outbound: outbound)
        }
        return .upgrade(list.isEmpty ? [:] : [.secWebSocketProtocol: PortForwardProtocol.channel], handler)
    }

    /// The reason a port-forward request cannot be upgraded, for the plain HTTP answer.
    static let portForwardRefusal =
        "Upgrade request required: port-forward needs a WebSocket with subprotocol \(PortForwardProtocol.spdyTunnel), "
            + "or \(PortForwardProtocol.channel) with ports=PORT[,PORT...] (each 1-65535) in the query, or an Upgrade: SPDY/3.1 request"

    /// Opens one forwarded connection to the pod's agent and runs `body` with it.
    func agentDialer(pod: Pod, nodes: NodeProxy) -> AgentDialer {
        AgentDialer { [self] port, body in
            try await dialAgent("portforward", path: "/portforward/\(pod.namespace)/\(pod.name)", query: "port=\(port)", proto: nil,
                                pod: pod, nodes: nodes, body: body)
        }
    }

    func relayPortForwardChannels(pod: Pod, ports: [Int], dial: AgentDialer,
                                  inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let send: @Sendable (Int, [UInt8]) async throws -> Void = { channel, bytes in
            var b = ByteBuffer()
            b.reserveCapacity(bytes.count + 1)
            b.writeInteger(UInt8(channel))
            b.writeBytes(bytes)
            try await outbound.write(.binary(b))
        }
        // Each channel opens with its port number.
        for (i, p) in ports.enumerated() {
            let le = [UInt8(p & 0xff), UInt8(p >> 8)]
            try? await send(2 * i, le)
            try? await send(2 * i + 1, le)
        }
        var inputs: [AsyncStream<ForwardInput>.Continuation] = []
        var streams: [AsyncStream<ForwardInput>] = []
        for _ in ports {
            let (s, c) = AsyncStream.makeStream(of: ForwardInput.self)
            streams.append(s)
            inputs.append(c)
        }
        let feed = inputs
        await withTaskGroup(of: Bool.self) { g in
            for (i, port) in ports.enumerated() {
                let input = streams[i]
                g.addTask {
                    do {
                        try await dial.connect(port) { agentIn, agentOut in
                            try await PortForwardPump.run(input: input, agentIn: agentIn, agentOut: agentOut) { bytes in
                                try await send(2 * i, Array(bytes.readableBytesView))
                            } onError: { text in
                                try? await send(2 * i + 1, Array(text.utf8))
                            }
                        }
                    } catch {
                        try? await send(2 * i + 1, Array("\(error)".utf8))
                    }
                    return true
                }
            }
            // The client's messages, routed to their port by channel; the client leaving ends all.
            g.addTask {
                do {
                    for try await m in inbound.messages(maxSize: 1 << 20) {
                        var b: ByteBuffer
                        switch m {
                        case .binary(let x): b = x
                        case .text(let t): b = ByteBuffer(string: t)
                        }
                        guard let ch = b.readInteger(as: UInt8.self) else { continue }
                        let i = Int(ch) / 2
                        if Int(ch) % 2 == 0, i < feed.count, b.readableBytes > 0 { feed[i].yield(.data(b)) }
                    }
                } catch {}
                return false
            }
            var remaining = ports.count
            while let r = await g.next() {
                if r { remaining -= 1 } else { break }
                if remaining == 0 { break }
            }
            g.cancelAll()
            for c in feed { c.finish() }
        }
        try? await outbound.close(.normalClosure, reason: nil)
    }
}

/// What a forwarded connection receives from the client.
enum ForwardInput: Sendable { case data(ByteBuffer), endOfInput }

/// Opens a WebSocket to the agent for one forwarded connection to `port` of a pod.
struct AgentDialer: Sendable {
    let connect: @Sendable (_ port: Int, _ body: @Sendable @escaping (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws -> Void
    init(_ connect: @escaping @Sendable (_ port: Int, _ body: @Sendable @escaping (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws -> Void) {
        self.connect = connect
    }
}

/// Copies one forwarded connection between the client's side (input, output) and the agent's WebSocket.
enum PortForwardPump {
    static func run(input: AsyncStream<ForwardInput>, agentIn: WebSocketInboundStream, agentOut: WebSocketOutboundWriter,
                    output: @escaping @Sendable (ByteBuffer) async throws -> Void,
                    onError: @escaping @Sendable (String) async -> Void) async throws {
        enum Side { case inputDone, agentDone }
        try await withThrowingTaskGroup(of: Side.self) { g in
            g.addTask {
                for await x in input {
                    switch x {
                    case .data(let b): try await agentOut.write(.binary(b))
                    case .endOfInput: try await agentOut.write(.text(PortForwardWire.endOfInput))
                    }
                }
                return .inputDone
            }
            g.addTask {
                for try await m in agentIn.messages(maxSize: 16 << 20) {
                    switch m {
                    case .binary(let b): try await output(b)
                    case .text(let t): await onError(t)
                    }
                }
                return .agentDone
            }
            // The pod's side ending ends the connection; the client's side ending only half-closes it.
            while let s = try await g.next() {
                if s == .agentDone { break }
            }
            g.cancelAll()
            try? await agentOut.close(.normalClosure, reason: nil)
        }
    }
}

/// One SPDY/3.1 port-forward session: streams arrive in pairs (error, data) with the same
/// requestID and port; each pair is one forwarded connection.
final class SPDYPortForwardSession: @unchecked Sendable {
    let pod: Pod
    let logger: Logger
    let dial: AgentDialer
    let writer: SPDYWriter

    /// Touched only by the reading task.
    private struct Pair {
        var port: Int
        var errorStream: UInt32?
        var dataStream: UInt32?
        let input: AsyncStream<ForwardInput>
        let feed: AsyncStream<ForwardInput>.Continuation
        var task: Task<Void, Never>?
        init(port: Int) {
            self.port = port
            (input, feed) = AsyncStream.makeStream(of: ForwardInput.self)
        }
    }
    private var pairs: [String: Pair] = [:]
    private var streamRequest: [UInt32: String] = [:]
    /// Requests whose connection is over, set by their tasks and dropped by the reading task, so a
    /// long-lived forward does not keep every connection it ever carried.
    private let finished = Mutex<[String]>([])

    init(pod: Pod, logger: Logger, dial: AgentDialer, write: @escaping @Sendable (ByteBuffer) async throws -> Void) {
        self.pod = pod
        self.logger = logger
        self.dial = dial
        self.writer = SPDYWriter(write: write)
    }

    func run<S: AsyncSequence>(input: S) async where S.Element == ByteBuffer {
        do {
            try await forEachSPDYFrame(input) { frame in
                dropFinished()
                await handle(frame)
            }
        } catch {
            logger.debug("port-forward session of pod \(pod.name) ended: \(error)")
            if error is SPDYError { try? await writer.send(.goAway(lastGoodStreamID: 0, status: SPDYStatus.protocolError)) }
        }
        // The client is gone: nothing outlives the session.
        for p in pairs.values {
            p.feed.finish()
            p.task?.cancel()
        }
        for p in pairs.values { await p.task?.value }
        pairs.removeAll()
    }

    private func dropFinished() {
        for r in finished.withLock({ f in defer { f.removeAll() }; return f }) {
            guard let p = pairs.removeValue(forKey: r) else { continue }
            for id in [p.errorStream, p.dataStream].compactMap({ $0 }) { streamRequest.removeValue(forKey: id) }
        }
    }

    private func handle(_ frame: SPDYFrame) async {
        switch frame {
        case .synStream(let id, _, _, let flags, let headers):
            var h: [String: String] = [:]
            for x in headers { h[x.name.lowercased()] = x.value }
            let type = h["streamtype"] ?? ""
            guard type == "error" || type == "data", let port = Int(h["port"] ?? ""), (1...65535).contains(port) else {
                // A stream we cannot use is refused, and the session goes on.
                try? await writer.send(.rstStream(streamID: id, status: SPDYStatus.refusedStream))
                return
            }
            try? await writer.send(.synReply(streamID: id, flags: 0, headers: []))
            // Old clients sent no requestID: the data stream follows its error stream by 2.
            let request = h["requestid"] ?? String(type == "error" ? id : id &- 2)
            var pair = pairs[request] ?? Pair(port: port)
            if type == "error" {
                pair.errorStream = id
            } else {
                pair.dataStream = id
                if flags & SPDYFlags.fin != 0 { pair.feed.yield(.endOfInput) }
            }
            streamRequest[id] = request
            pairs[request] = pair
            if let e = pair.errorStream, let d = pair.dataStream, pair.task == nil {
                start(request: request, port: pair.port, errorStream: e, dataStream: d, input: pair.input)
            }
        case .data(let id, let flags, let payload):
            guard let r = streamRequest[id], let pair = pairs[r], id == pair.dataStream else { return }
            if !payload.isEmpty { pair.feed.yield(.data(ByteBuffer(bytes: payload))) }
            if flags & SPDYFlags.fin != 0 { pair.feed.yield(.endOfInput) }
        case .rstStream(let id, _):
            guard let r = streamRequest[id], let pair = pairs[r] else { return }
            pair.feed.finish()
            pair.task?.cancel()
        case .ping(let id):
            try? await writer.send(.ping(id: id))
        default:
            break
        }
    }

    private func start(request: String, port: Int, errorStream: UInt32, dataStream: UInt32, input stream: AsyncStream<ForwardInput>) {
        let writer = self.writer, dial = self.dial, pod = self.pod
        pairs[request]?.task = Task { [self] in
            defer { finished.withLock { $0.append(request) } }
            var failure = ""
            do {
                try await dial.connect(port) { agentIn, agentOut in
                    try await PortForwardPump.run(input: stream, agentIn: agentIn, agentOut: agentOut) { b in
                        try await writer.send(.data(streamID: dataStream, flags: 0, payload: Array(b.readableBytesView)))
                    } onError: { text in
                        try? await writer.send(.data(streamID: errorStream, flags: 0, payload: Array(text.utf8)))
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                failure = "error forwarding port \(port) to pod \(pod.name): \(error)"
            }
            if Task.isCancelled { return }
            if !failure.isEmpty { try? await writer.send(.data(streamID: errorStream, flags: 0, payload: Array(failure.utf8))) }
            try? await writer.send(.data(streamID: errorStream, flags: SPDYFlags.fin, payload: []))
            try? await writer.send(.data(streamID: dataStream, flags: SPDYFlags.fin, payload: []))
        }
    }
}

/// Decodes a byte stream (arbitrarily cut) into SPDY frames and hands each to `handle`, until the
/// stream ends or the peer says GOAWAY; throws SPDYError on a malformed stream.
func forEachSPDYFrame<S: AsyncSequence>(_ input: S, _ handle: (SPDYFrame) async -> Void) async throws where S.Element == ByteBuffer {
    let decoder = SPDYCodec()
    for try await chunk in input {
        decoder.feed(chunk.readableBytesView)
        while let frame = try decoder.nextFrame() {
            if case .goAway = frame { return }
            await handle(frame)
        }
    }
}

/// Encodes and writes frames one at a time, in the order they were asked for: header blocks share
/// one compression context, so their order on the wire must be the order they were compressed in.
/// A writer waits for its write to finish, which is the session's backpressure.
actor SPDYWriter {
    private let codec = SPDYCodec()
    private let write: @Sendable (ByteBuffer) async throws -> Void
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    static let maxData = 1 << 20

    init(write: @escaping @Sendable (ByteBuffer) async throws -> Void) { self.write = write }

    func send(_ frame: SPDYFrame) async throws {
        while busy { await withCheckedContinuation { waiting.append($0) } }
        busy = true
        defer {
            busy = false
            if !waiting.isEmpty { waiting.removeFirst().resume() }
        }
        // A data frame's length has 24 bits: larger payloads go as several frames.
        if case .data(let id, let flags, let payload) = frame, payload.count > Self.maxData {
            var start = 0
            while start < payload.count {
                let end = min(start + Self.maxData, payload.count)
                let last = end == payload.count
                try await write(ByteBuffer(bytes: codec.encode(.data(streamID: id, flags: last ? flags : 0, payload: Array(payload[start..<end])))))
                start = end
            }
            return
        }
        try await write(ByteBuffer(bytes: codec.encode(frame)))
    }
}
