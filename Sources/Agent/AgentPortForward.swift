// The agent's port-forward endpoint: GET /portforward/NAMESPACE/POD?port=N upgraded to a WebSocket,
// reached by the apiserver's pods/portforward relay, one WebSocket per forwarded connection.
// The agent connects to localhost:N inside the pod's network namespace (as the kubelet does, so a
// server bound to 127.0.0.1 in the pod is reachable) and copies bytes both ways:
//   binary messages   the connection's bytes, either way;
//   text "eof"        (apiserver to agent) the client finished sending: the agent shuts down its write side;
//   text other        (agent to apiserver) why the connection failed, followed by a close.
// The agent closes the WebSocket when the pod's side of the connection ends.
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOPosix
import Logging
import API

#if canImport(Glibc)
import Glibc
#endif

/// Sockets opened inside another network namespace: a thread switches namespace, opens and
/// connects the socket (which stays in the namespace it was made in), and switches back.
enum NamespaceSocket {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func connect(netns: String, port: Int) async throws -> Int32 {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Int32, Error>) in
            let t = Thread { cont.resume(with: Result { try connectOnThisThread(netns: netns, port: port) }) }
            t.start()
        }
    }

    private static let cloneNewNet: Int32 = 0x4000_0000

    /// setns(2), which Glibc's Swift overlay does not export (it is a _GNU_SOURCE function).
    private static let setnsFunction: (@convention(c) (Int32, Int32) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    private static func setns(_ fd: Int32, _ type: Int32) -> Int32 {
        guard let f = setnsFunction else { errno = ENOSYS; return -1 }
        return f(fd, type)
    }

    private static func connectOnThisThread(netns: String, port: Int) throws -> Int32 {
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard home >= 0 else { throw Failure(description: "cannot open this thread's network namespace: \(String(cString: strerror(errno)))") }
        defer { close(home) }
        let target = open(netns, O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw Failure(description: "cannot open network namespace \(netns): \(String(cString: strerror(errno)))") }
        defer { close(target) }
        guard setns(target, cloneNewNet) == 0 else { throw Failure(description: "cannot enter network namespace \(netns): \(String(cString: strerror(errno)))") }
        defer { _ = setns(home, cloneNewNet) }
        // localhost: IPv4 first, then IPv6.
        var lastError = ECONNREFUSED
        for family in [AF_INET, AF_INET6] {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = errno; continue }
            var rc: Int32
            if family == AF_INET {
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                a.sin_port = in_port_t(UInt16(port).bigEndian)
                a.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
                rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            } else {
                var a = sockaddr_in6()
                a.sin6_family = sa_family_t(AF_INET6)
                a.sin6_port = in_port_t(UInt16(port).bigEndian)
                a.sin6_addr = in6addr_loopback
                rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            }
            if rc == 0 { return fd }
            lastError = errno
            close(fd)
        }
        throw Failure(description: "dial tcp localhost:\(port): connect: \(String(cString: strerror(lastError)))")
    }
}

extension AgentServer {
    func runPortForward(namespace: String, pod name: String, port: Int,
                        inbound: WebSocketInboundStream, outbound: GatedOutbound) async {
        func fail(_ message: String) async {
            await outbound.awaitStart(inbound)
            try? await outbound.write(.text(message))
            try? await outbound.close(.normalClosure, reason: nil)
        }
        guard (1...65535).contains(port) else { return await fail("invalid port \(port): it must be between 1 and 65535") }
        guard let pod = agent.pods.get("\(namespace)/\(name)"), let uid = pod.metadata.uid else {
            return await fail("pod \(namespace)/\(name) is not on node \(agent.config.nodeName)")
        }
        if pod.isTerminal { return await fail("cannot forward a port of pod \(name): its phase is \(pod.phase ?? "")") }
        guard let netns = agent.runtime.podNetworkNamespace(podUID: uid) else {
            return await fail("port-forward is not supported by this node's runtime (\(agent.runtime.name)), or pod \(name) has no network yet")
        }
        let fd: Int32
        do { fd = try await NamespaceSocket.connect(netns: netns, port: port) } catch {
            return await fail("error forwarding port \(port) to pod \(name), uid \(uid): \(error)")
        }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .withConnectedSocket(fd) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch,
                                                                    configuration: .init(isOutboundHalfClosureEnabled: true))
                    }
                }
        } catch {
            close(fd)
            return await fail("error forwarding port \(port) to pod \(name): \(error)")
        }
        enum Side { case clientGone, podDone }
        let idle = IdleWatch(timeout: agent.config.streamingIdleTimeout)
        do {
            try await channel.executeThenClose { podIn, podOut in
                try await withThrowingTaskGroup(of: Side.self) { g in
                    g.addTask {
                        for try await m in inbound.messages(maxSize: 1 << 20) {
                            idle.touch()
                            outbound.received()
                            switch m {
                            case .binary(let b): try await podOut.write(b)
                            case .text(let t) where t == PortForwardWire.endOfInput: podOut.finish()
                            case .text: break
                            }
                        }
                        return .clientGone
                    }
                    g.addTask {
                        for try await b in podIn { idle.touch(); try await outbound.write(.binary(b)) }
                        return .podDone
                    }
                    g.addTask {
                        await idle.wait()
                        return .clientGone
                    }
                    let first = try await g.next()
                    g.cancelAll()
                    if first == .podDone { try? await outbound.close(.normalClosure, reason: nil) }
                }
            }
        } catch {
            try? await outbound.close(.normalClosure, reason: nil)
        }
    }
}
