// Node-local DNS server: answers the cluster zone from the current ClusterDNSTable over UDP and
// TCP, and relays every other name to upstream resolvers, SERVFAIL when none of them answers.

import Logging
import NIOCore
import NIOPosix
import Synchronization

public final class DNSServer: Sendable {
    public let host: String
    public let requestedPort: Int
    public let upstreams: [String]

    private let upstreamAddresses: [SocketAddress]
    private let upstreamTimeout: TimeAmount
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state: Mutex<State>
    private let answeredCount = Atomic<Int>(0)
    private let forwardedCount = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)
    private let lastFailureLog = Atomic<Int64>(Int64.min)

    /// Relayed queries each hold a socket for up to the timeout; past this we answer SERVFAIL
    /// at once instead of letting a flood of outside names exhaust descriptors.
    static let maxForwardsInFlight = 1024
    static let maxTCPConnections = 512
    static let tcpIdleTimeout = TimeAmount.seconds(30)

    private struct State {
        var table: ClusterDNSTable
        var udp: (any Channel)?
        var tcp: (any Channel)?
        var port: Int?
        var stopped = false
        var connections: [ObjectIdentifier: any Channel] = [:]
        var forwards: [UInt64: Task<Void, Never>] = [:]
        var nextForward: UInt64 = 0
    }

    /// - Parameters:
    ///   - upstreams: "ip" or "ip:port" ("[v6]:port" for IPv6), tried in order.
    ///   - port: 0 picks a free port that is then free for both UDP and TCP (see `localPort`).
    public init(host: String = "0.0.0.0", port: Int = 53, upstreams: [String],
                table: ClusterDNSTable = ClusterDNSTable(services: []),
                upstreamTimeout: TimeAmount = .seconds(2),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "dns")) {
        self.host = host
        self.requestedPort = port
        self.upstreams = upstreams
        self.upstreamTimeout = upstreamTimeout
        self.group = group
        self.logger = logger
        var addrs: [SocketAddress] = []
        for u in upstreams {
            if let a = DNSServer.parseUpstream(u) { addrs.append(a) } else {
                logger.error("ignoring unusable DNS upstream", metadata: ["upstream": "\(u)"])
            }
        }
        self.upstreamAddresses = addrs
        self.state = Mutex(State(table: table))
    }

    /// Every reply sent to a client: local answers, relayed answers, FORMERR and SERVFAIL.
    public var answered: Int { answeredCount.load(ordering: .relaxed) }
    /// Replies relayed from an upstream.
    public var forwarded: Int { forwardedCount.load(ordering: .relaxed) }
    /// The port bound by `start()`, for UDP and TCP alike.
    public var localPort: Int? { state.withLock { $0.port } }
    public var table: ClusterDNSTable { state.withLock { $0.table } }

    /// Swaps in a new record table; queries already being answered finish with the old one.
    public func update(_ table: ClusterDNSTable) {
        state.withLock { $0.table = table }
    }

    static func parseUpstream(_ s: String) -> SocketAddress? {
        var hostPart = s, port = 53
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            hostPart = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if s.filter({ $0 == ":" }).count == 1, let colon = s.firstIndex(of: ":") {
            hostPart = String(s[..<colon])
            guard let p = Int(s[s.index(after: colon)...]) else { return nil }
            port = p
        }
        guard (1...65535).contains(port) else { return nil }
        return try? SocketAddress(ipAddress: hostPart, port: port)
    }

    // MARK: Lifecycle

    /// Binds UDP and TCP on the same port and returns once both listen.
    public func start() async throws {
        do {
            var attempt = 0
            while true {
                attempt += 1
                let udp = try await bindUDP(port: requestedPort)
                let port = udp.localAddress?.port ?? requestedPort
                do {
                    let tcp = try await bindTCP(port: port)
                    state.withLock { $0.udp = udp; $0.tcp = tcp; $0.port = port; $0.stopped = false }
                    return
                } catch {
                    try? await udp.close()
                    // With an ephemeral port the TCP side may be taken by someone else; pick again.
                    if requestedPort != 0 || attempt >= 16 { throw error }
                }
            }
        } catch {
            logger.error("DNS server failed to bind", metadata: ["host": "\(host)", "port": "\(requestedPort)", "error": "\(error)"])
            throw error
        }
    }

    public func stop() async {
        let (udp, tcp, conns, tasks) = state.withLock { s in
            s.stopped = true
            defer { s.udp = nil; s.tcp = nil; s.connections = [:]; s.forwards = [:] }
            return (s.udp, s.tcp, Array(s.connections.values), Array(s.forwards.values))
        }
        for t in tasks { t.cancel() }
        try? await udp?.close()
        try? await tcp?.close()
        for c in conns { try? await c.close() }
        for t in tasks { await t.value }
    }

    private func bindUDP(port: Int) async throws -> any Channel {
        try await DatagramBootstrap(group: group)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
            .channelOption(.maxMessagesPerRead, value: 16)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSUDPServerHandler(server: self))
                }
            }
            .bind(host: host, port: port).get()
    }

    private func bindTCP(port: Int) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard self.admitConnection(channel) else {
                        channel.close(promise: nil)
                        return
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: DNSServer.tcpIdleTimeout),
                        ByteToMessageHandler(DNSLengthPrefixDecoder()),
                        DNSTCPServerHandler(server: self),
                    ])
                }
            }
            .bind(host: host, port: port).get()
    }

    private func admitConnection(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let ok = state.withLock { s in
            guard !s.stopped, s.connections.count < DNSServer.maxTCPConnections else { return false }
            s.connections[id] = channel
            return true
        }
        if ok {
            channel.closeFuture.whenComplete { [self] _ in _ = state.withLock { $0.connections.removeValue(forKey: id) } }
        }
        return ok
    }

    // MARK: Query handling

    enum Outcome {
        case drop
        case reply([UInt8])
        case forward(DNSMessage)
    }

    /// The synchronous part of handling one query: everything except relaying upstream.
    func process(_ bytes: [UInt8], overTCP: Bool) -> Outcome {
        let query: DNSMessage
        do {
            query = try DNSMessage.decode(bytes)
        } catch {
            // Never answer something that claims to be a response: two servers could ping-pong.
            guard bytes.count > 2, bytes[2] & 0x80 == 0, let reply = DNSMessage.formErrReply(for: error) else { return .drop }
            answeredCount.add(1, ordering: .relaxed)
            return .reply(reply.encode())
        }
        if query.isResponse { return .drop }
        let table = state.withLock { $0.table }
        switch table.answer(query) {
        case .response(let msg):
            answeredCount.add(1, ordering: .relaxed)
            return .reply(msg.encode(maxSize: overTCP ? 65535 : query.udpReplyLimit))
        case .forward:
            return .forward(query)
        }
    }

    /// Relays in a task of its own so the event loop keeps serving; `send` delivers the reply.
    func spawnForward(_ raw: [UInt8], _ query: DNSMessage, overTCP: Bool, send: @escaping @Sendable ([UInt8]) -> Void) {
        if inFlight.add(1, ordering: .relaxed).newValue > DNSServer.maxForwardsInFlight {
            inFlight.subtract(1, ordering: .relaxed)
            answeredCount.add(1, ordering: .relaxed)
            send(servFail(query, overTCP: overTCP))
            return
        }
        state.withLock { s in
            guard !s.stopped else {
                inFlight.subtract(1, ordering: .relaxed)
                return
            }
            let key = s.nextForward
            s.nextForward &+= 1
            s.forwards[key] = Task { [self] in
                let out = await forward(raw, query, overTCP: overTCP)
                inFlight.subtract(1, ordering: .relaxed)
                _ = state.withLock { $0.forwards.removeValue(forKey: key) }
                if !Task.isCancelled {
                    answeredCount.add(1, ordering: .relaxed)
                    send(out)
                }
            }
        }
    }

    /// Tries each upstream in order and returns the reply to send to the client.
    func forward(_ raw: [UInt8], _ query: DNSMessage, overTCP: Bool) async -> [UInt8] {
        guard let question = query.questions.first else { return servFail(query, overTCP: overTCP) }
        for upstream in upstreamAddresses {
            if Task.isCancelled { break }
            // A fresh id (and, for UDP, a fresh source port) per attempt makes spoofed replies
            // hard to land; the client's id is restored on the way back.
            let upstreamID = UInt16.random(in: 0...UInt16.max)
            var sent = raw
            sent[0] = UInt8(upstreamID >> 8); sent[1] = UInt8(upstreamID & 0xFF)
            let expect = DNSUpstreamExpectation(id: upstreamID, question: question)
            let deadline = NIODeadline.now() + upstreamTimeout
            let reply: [UInt8]?
            if overTCP {
                reply = try? await exchangeTCP(sent, expect, upstream, deadline)
            } else {
                reply = try? await exchangeUDP(sent, expect, upstream, deadline)
            }
            guard var out = reply else { continue }
            forwardedCount.add(1, ordering: .relaxed)
            out[0] = UInt8(query.id >> 8); out[1] = UInt8(query.id & 0xFF)
            if !overTCP && out.count > query.udpReplyLimit {
                var tc = DNSMessage.reply(to: query, rcode: DNSResponseCode(rawValue: UInt16(out[3] & 0x0F)))
                tc.truncated = true
                return tc.encode()
            }
            return out
        }
        if !upstreamAddresses.isEmpty && !Task.isCancelled { logForwardFailure(question) }
        return servFail(query, overTCP: overTCP)
    }

    private func servFail(_ query: DNSMessage, overTCP: Bool) -> [UInt8] {
        DNSMessage.reply(to: query, rcode: .servFail).encode(maxSize: overTCP ? 65535 : query.udpReplyLimit)
    }

    /// At most one line per 10 s: an unreachable upstream would otherwise log once per query.
    private func logForwardFailure(_ q: DNSQuestion) {
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let last = lastFailureLog.load(ordering: .relaxed)
        guard last == Int64.min || now - last > 10_000_000_000,
              lastFailureLog.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        logger.error("no DNS upstream answered", metadata: ["name": "\(q.name)", "upstreams": "\(upstreams)"])
    }

    private func exchangeUDP(_ query: [UInt8], _ expect: DNSUpstreamExpectation, _ upstream: SocketAddress,
                             _ deadline: NIODeadline) async throws -> [UInt8] {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            channel = try await DatagramBootstrap(group: loop)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65535))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(
                            DNSUpstreamUDPHandler(upstream: upstream, expect: expect, promise: promise))
                    }
                }
                .bind(host: upstream.protocol == .inet6 ? "::" : "0.0.0.0", port: 0).get()
        } catch {
            promise.fail(error)
            throw error
        }
        let buffer = channel.allocator.buffer(bytes: query)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: upstream, data: buffer), promise: nil)
        return try await awaitReply(channel, promise, deadline)
    }

    private func exchangeTCP(_ query: [UInt8], _ expect: DNSUpstreamExpectation, _ upstream: SocketAddress,
                             _ deadline: NIODeadline) async throws -> [UInt8] {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            let remaining = deadline - NIODeadline.now()
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(remaining > .milliseconds(1) ? remaining : .milliseconds(1))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(DNSLengthPrefixDecoder()),
                            DNSUpstreamTCPHandler(expect: expect, promise: promise),
                        ])
                    }
                }
                .connect(to: upstream).get()
        } catch {
            promise.fail(error)
            throw error
        }
        var buffer = channel.allocator.buffer(capacity: query.count + 2)
        buffer.writeInteger(UInt16(query.count))
        buffer.writeBytes(query)
        channel.writeAndFlush(buffer, promise: nil)
        return try await awaitReply(channel, promise, deadline)
    }

    /// Waits for the handler's verdict; the deadline and task cancellation both close the
    /// channel, which fails the promise through `channelInactive`.
    private func awaitReply(_ channel: any Channel, _ promise: EventLoopPromise<[UInt8]>,
                            _ deadline: NIODeadline) async throws -> [UInt8] {
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

// MARK: - Channel handlers

struct DNSUpstreamFailure: Error {}

/// What a genuine upstream reply must match: our id, QR set, and the question we asked.
struct DNSUpstreamExpectation: Sendable {
    let id: UInt16
    let question: DNSQuestion

    func accepts(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 12, UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id, bytes[2] & 0x80 != 0 else { return false }
        // Compare the question by re-encoding it: replies echo it uncompressed at offset 12.
        let asked = DNSMessage(questions: [question]).encode(compress: false)
        let qdcount = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        guard qdcount == 1, bytes.count >= asked.count else {
            // Some servers omit the question in error replies; the id and address must suffice.
            return qdcount == 0
        }
        for i in 12..<asked.count where dnsLowercase(bytes[i]) != dnsLowercase(asked[i]) { return false }
        return true
    }
}

/// Splits a TCP stream into DNS messages, each preceded by a 16-bit length.
struct DNSLengthPrefixDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        let frame = buffer.readSlice(length: Int(length))!
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

private final class DNSUDPServerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let server: DNSServer
    var pendingFlush = false

    init(server: DNSServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let bytes = Array(envelope.data.readableBytesView)
        switch server.process(bytes, overTCP: false) {
        case .drop:
            return
        case .reply(let out):
            let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: out))
            context.write(Self.wrapOutboundOut(reply), promise: nil)
            pendingFlush = true
        case .forward(let query):
            let channel = context.channel
            let remote = envelope.remoteAddress
            server.spawnForward(bytes, query, overTCP: false) { out in
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: channel.allocator.buffer(bytes: out)),
                                      promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingFlush {
            pendingFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Per-datagram errors (e.g. ICMP unreachable from a vanished client) must not take the
        // listening socket down; there is nothing to do about them.
    }
}

private final class DNSTCPServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: DNSServer

    init(server: DNSServer) { self.server = server }

    static func frame(_ out: [UInt8], _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: out.count + 2)
        buffer.writeInteger(UInt16(min(out.count, 0xFFFF)))
        buffer.writeBytes(out.prefix(0xFFFF))
        return buffer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(Self.unwrapInboundIn(data).readableBytesView)
        switch server.process(bytes, overTCP: true) {
        case .drop:
            // Without a readable header the stream is not DNS; stop reading it.
            context.close(promise: nil)
        case .reply(let out):
            context.writeAndFlush(Self.wrapOutboundOut(Self.frame(out, context.channel.allocator)), promise: nil)
        case .forward(let query):
            // Replies may go out of order; clients match them by id (RFC 7766).
            let channel = context.channel
            server.spawnForward(bytes, query, overTCP: true) { out in
                channel.writeAndFlush(DNSTCPServerHandler.frame(out, channel.allocator), promise: nil)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

private final class DNSUpstreamUDPHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let upstream: SocketAddress
    let expect: DNSUpstreamExpectation
    let promise: EventLoopPromise<[UInt8]>

    init(upstream: SocketAddress, expect: DNSUpstreamExpectation, promise: EventLoopPromise<[UInt8]>) {
        self.upstream = upstream; self.expect = expect; self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        // Anything from elsewhere, or not matching, is ignored: keep waiting for the real reply.
        guard envelope.remoteAddress == upstream else { return }
        let bytes = Array(envelope.data.readableBytesView)
        guard expect.accepts(bytes) else { return }
        promise.succeed(bytes)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSUpstreamFailure())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A refused port shows up here (ICMP); fail fast instead of waiting out the timeout.
        promise.fail(error)
        context.close(promise: nil)
    }
}

private final class DNSUpstreamTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let expect: DNSUpstreamExpectation
    let promise: EventLoopPromise<[UInt8]>

    init(expect: DNSUpstreamExpectation, promise: EventLoopPromise<[UInt8]>) {
        self.expect = expect; self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(Self.unwrapInboundIn(data).readableBytesView)
        guard expect.accepts(bytes) else { return }
        promise.succeed(bytes)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSUpstreamFailure())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
