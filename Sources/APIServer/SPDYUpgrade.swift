// The plain `Upgrade: SPDY/3.1` request that clients without WebSocket tunnelling send for
// pods/portforward (kubectl falls back to it when the WebSocket upgrade is refused; client-go
// programs built before 1.30 only know it). NIO's HTTP upgrade in Hummingbird speaks only
// WebSocket, so a small handler sits between TLS and HTTP: it reads each connection's first
// request head, and when that head asks for SPDY/3.1 it answers 101 itself and carries the
// connection's bytes to a SPDY session; any other connection it passes on untouched and leaves.
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import NIOCore
import Logging
import API

/// What the apiserver does with an upgrade request: the response head and, when accepted, the session.
struct SPDYUpgradeDecision: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: Data
    /// Runs the session over the upgraded connection's bytes.
    var session: (@Sendable (_ input: AsyncStream<ByteBuffer>, _ write: @escaping @Sendable (ByteBuffer) async throws -> Void) async -> Void)?
}

/// A parsed request head.
struct SPDYRequestHead: Sendable {
    var method: String
    var target: String
    var headers: [(String, String)]
    func values(_ name: String) -> [String] {
        headers.filter { $0.0.lowercased() == name }.flatMap { $0.1.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    }
}

typealias SPDYUpgradeDecider = @Sendable (SPDYRequestHead, any Channel) async -> SPDYUpgradeDecision

final class SPDYUpgradeSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case sniffing(ByteBuffer)
        case deciding(ByteBuffer)
        case upgraded(AsyncStream<ByteBuffer>.Continuation)
        case closing
    }
    private var state = State.sniffing(ByteBuffer())
    /// Shutdown began while the first request head was still arriving; HTTP gets the event once it has the head.
    private var quiesced = false
    private let decide: SPDYUpgradeDecider
    /// A head longer than this is not ours: HTTP gets it (and its own limits).
    static let maxHead = 16 << 10

    init(decide: @escaping SPDYUpgradeDecider) { self.decide = decide }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        switch state {
        case .sniffing(var buf):
            buf.writeBuffer(&chunk)
            let view = buf.readableBytesView
            guard let end = Self.headEnd(view) else {
                if buf.readableBytes > Self.maxHead { passOn(context: context, buf) } else { state = .sniffing(buf) }
                return
            }
            guard let head = Self.parse(Array(view[view.startIndex..<end])),
                  head.values("upgrade").contains(where: { $0.lowercased() == "spdy/3.1" }) else {
                passOn(context: context, buf)
                return
            }
            buf.moveReaderIndex(forwardBy: end - view.startIndex)
            state = .deciding(buf)
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            let channel = context.channel
            let decide = self.decide
            Task {
                let d = await decide(head, channel)
                loop.execute { bound.value.0.decided(d, context: bound.value.1) }
            }
        case .deciding(var buf):
            buf.writeBuffer(&chunk)
            state = .deciding(buf)
        case .upgraded(let c):
            c.yield(chunk)
        case .closing:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .upgraded(let c) = state { c.finish() }
        state = .closing
        context.fireChannelInactive()
    }

    /// Graceful shutdown (the server's ChannelShouldQuiesceEvent, sent once to every open connection).
    /// Hummingbird's HTTPConnectionStateHandler, which closes idle connections on it, is added only
    /// once the first request head is parsed; before that nothing acts on the event, and the
    /// connection would be served for as long as its client keeps using it, holding the process up.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        switch state {
        case .sniffing(let buf) where buf.readableBytes == 0:
            // No request yet (often still in the TLS handshake): nothing to finish, close.
            state = .closing
            context.close(promise: nil)
        case .sniffing:
            // A first request is arriving: let HTTP answer it, then close (see passOn).
            quiesced = true
        case .deciding, .upgraded:
            // A SPDY port-forward session ends with the apiserver.
            context.close(promise: nil)
        case .closing:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func passOn(context: ChannelHandlerContext, _ buf: ByteBuffer) {
        state = .closing
        context.fireChannelRead(wrapInboundOut(buf))
        // HTTP now holds the head and its connection-state handler is in place: hand it the
        // shutdown held back, so it closes the connection after this response.
        if quiesced { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func decided(_ d: SPDYUpgradeDecision, context: ChannelHandlerContext) {
        guard case .deciding(let rest) = state else { return }
        var head = "HTTP/1.1 \(d.status) \(d.status == 101 ? "Switching Protocols" : HTTPResponse.Status(code: d.status).reasonPhrase)\r\n"
        for (k, v) in d.headers { head += "\(k): \(v)\r\n" }
        if d.session == nil { head += "Content-Length: \(d.body.count)\r\nConnection: close\r\n" }
        head += "\r\n"
        var out = context.channel.allocator.buffer(capacity: head.utf8.count + d.body.count)
        out.writeString(head)
        out.writeBytes(d.body)
        guard let session = d.session else {
            state = .closing
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        let (input, feed) = AsyncStream.makeStream(of: ByteBuffer.self)
        state = .upgraded(feed)
        if rest.readableBytes > 0 { feed.yield(rest) }
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        let channel = context.channel
        let write: @Sendable (ByteBuffer) async throws -> Void = { b in
            let p = loop.makePromise(of: Void.self)
            loop.execute { bound.value.writeAndFlush(NIOAny(b), promise: p) }
            try await p.futureResult.get()
        }
        Task {
            await session(input, write)
            try? await channel.close()
        }
    }

    /// Where the head ends (just past the blank line), if it has.
    static func headEnd(_ v: ByteBufferView) -> Int? {
        var i = v.startIndex
        let crlfcrlf: [UInt8] = [13, 10, 13, 10]
        while i + 3 < v.endIndex {
            if v[i] == 13, v[i + 1] == 10, v[i + 2] == 13, v[i + 3] == 10 { return i + crlfcrlf.count }
            i += 1
        }
        return nil
    }

    static func parse(_ bytes: [UInt8]) -> SPDYRequestHead? {
        guard let text = String(bytes: bytes, encoding: .utf8) else { return nil }
        var lines = text.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        guard !lines.isEmpty else { return nil }
        let first = lines.removeFirst().split(separator: " ")
        guard first.count == 3, first[2].hasPrefix("HTTP/1.") else { return nil }
        var headers: [(String, String)] = []
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { return nil }
            headers.append((String(l[..<colon]).trimmingCharacters(in: .whitespaces), String(l[l.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
        return SPDYRequestHead(method: String(first[0]), target: String(first[1]), headers: headers)
    }
}

/// A child channel that puts the sniffer in front of another (inside TLS).
struct SPDYUpgradeChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let decide: SPDYUpgradeDecider
    var connections: ConnectionTracker? = nil

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        connections?.add(channel)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(SPDYUpgradeSniffer(decide: decide))
        }.flatMap { base.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension ServerChildChannel {
    func withSPDYUpgrade(_ decide: @escaping SPDYUpgradeDecider, connections: ConnectionTracker? = nil) -> SPDYUpgradeChannel<Self> {
        SPDYUpgradeChannel(base: self, decide: decide, connections: connections)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with WebSocket upgrades, and plain SPDY/3.1 upgrades answered by `decide`.
    static func http1WebSocketAndSPDYUpgrade(
        configuration: HTTP1WebSocketUpgradeChannel.Configuration,
        shouldUpgrade: @escaping @Sendable (HTTPRequest, any Channel, Logger) async throws -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>>,
        decide: @escaping SPDYUpgradeDecider,
        connections: ConnectionTracker? = nil
    ) -> HTTPServerBuilder {
        .init { responder in
            HTTP1WebSocketUpgradeChannel(responder: responder, configuration: configuration, shouldUpgrade: shouldUpgrade)
                .withSPDYUpgrade(decide, connections: connections)
        }
    }
}

extension APIHandler {
    /// Answers a plain SPDY/3.1 upgrade: pods/portforward with X-Stream-Protocol-Version
    /// portforward.k8s.io, authorized as the WebSocket variant is.
    func decideSPDYUpgrade(_ head: SPDYRequestHead, _ channel: any Channel) async -> SPDYUpgradeDecision {
        func refuse(_ s: Status) -> SPDYUpgradeDecision {
            SPDYUpgradeDecision(status: s.code ?? 400, headers: [("Content-Type", "application/json")], body: s.kubernetesJSON(), session: nil)
        }
        guard let comps = URLComponents(string: head.target) else { return refuse(Status.badRequest("malformed request target")) }
        let segs = comps.path.split(separator: "/").map(String.init)
        guard segs.count == 7, segs[0] == "api", segs[1] == "v1", segs[2] == "namespaces", segs[4] == "pods",
              ["portforward", "exec", "attach"].contains(segs[6]) else {
            return refuse(Status(status: "Failure", message: "the SPDY/3.1 upgrade is served for pods/exec, pods/attach and pods/portforward only", reason: "BadRequest", code: 400))
        }
        let (namespace, name, subresource) = (segs[3], segs[5], segs[6])
        guard let nodes else { return refuse(Status.serviceUnavailable("this apiserver has no client identity for nodes")) }
        guard let identity = await identities.identity(for: channel) else {
            return refuse(Status(status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401))
        }
        guard let po = store.get(Objects.key(Resources.pods, namespace, name)), let pod = try? KubeJSON.decode(Pod.self, from: po.data) else {
            return refuse(Status.notFound(Resources.pods, name))
        }
        let attrs = RequestAttributes(user: identity, verb: "create", resource: Resources.pods, subresource: subresource,
                                      namespace: namespace, name: name, fieldNodeName: nil)
        switch authz.authorize(attrs) {
        case .allow: break
        case .allowIfBoundTo(let node) where pod.spec?.nodeName == node: break
        default:
            return refuse(Status.forbidden("pods \"\(name)\" is forbidden: User \"\(identity.user)\" cannot create resource \"pods/\(subresource)\" in the namespace \"\(namespace)\"", Resources.pods, name))
        }
        if subresource != "portforward" {
            // exec and attach: the v4 channel protocol's streams over SPDY (kubectl's fallback).
            guard head.values("x-stream-protocol-version").contains(RemoteCommand.v4) else {
                return refuse(Status(status: "Failure", message: "\(subresource) over SPDY/3.1 needs X-Stream-Protocol-Version: \(RemoteCommand.v4) (older versions are not served)",
                                     reason: "BadRequest", code: 400))
            }
            var options = RemoteCommand.Options.parse(query: RemoteCommand.Options.queryPairs(comps))
            if subresource == "exec", options.command.isEmpty {
                return refuse(Status.badRequest("you must specify at least one command for the container"))
            }
            if options.container == nil { options.container = pod.spec?.containers.first?.name }
            let opts = options
            let logger = self.logger
            return SPDYUpgradeDecision(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                                              ("X-Stream-Protocol-Version", RemoteCommand.v4)], body: Data()) { [self] input, write in
                let session = SPDYExecSession(subresource: subresource, options: opts, logger: logger, write: write) { body in
                    try await self.dialAgentStream(subresource, pod: pod, options: opts, nodes: nodes, body: body)
                }
                await session.run(input: input)
            }
        }
        guard head.values("x-stream-protocol-version").contains(PortForwardProtocol.spdy) else {
            return refuse(Status(status: "Failure", message: "port-forward over SPDY/3.1 needs X-Stream-Protocol-Version: \(PortForwardProtocol.spdy)",
                                 reason: "BadRequest", code: 400))
        }
        let logger = self.logger
        let dial = agentDialer(pod: pod, nodes: nodes)
        return SPDYUpgradeDecision(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                                          ("X-Stream-Protocol-Version", PortForwardProtocol.spdy)], body: Data()) { input, write in
            let session = SPDYPortForwardSession(pod: pod, logger: logger, dial: dial, write: write)
            await session.run(input: input)
        }
    }
}
