// The agent's attach endpoint: GET /attach/NAMESPACE/POD/CONTAINER?stdin=&stdout=&stderr=&tty=
// upgraded to a WebSocket speaking v5.channel.k8s.io (or v4), like exec. The session shows what
// the container writes from now on (read from its log file as the shim writes it), and, for a
// container with `stdin: true`, feeds the client's stdin to the container through the shim's
// stdin socket. A container with `tty: true` is attached to its terminal: typed input and sizes
// go to the shim, which holds the terminal's master. It ends when the client leaves or the container exits.
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOPosix
import Logging
import API

extension AgentServer {
    func runAttach(namespace: String, pod: String, options: RemoteCommand.Options, proto: String,
                   inbound: WebSocketInboundStream, outbound: GatedOutbound) async {
        func send(_ channel: UInt8, _ bytes: some Collection<UInt8>) async throws { try await Self.sendChannel(outbound, channel, bytes) }
        func fail(_ message: String) async { await Self.failSession(outbound, inbound, message) }
        let target: (podUID: String, containerID: String)
        switch await execTarget(namespace: namespace, pod: pod, container: options.container) {
        case .success(let t): target = t
        case .failure(let r): return await fail(r.message)
        }
        guard let info = await agent.runtime.containers(podUID: target.podUID).first(where: { $0.id == target.containerID }),
              let logPath = agent.runtime.logPath(podUID: target.podUID, container: info.name, attempt: info.attempt) else {
            return await fail("attach is not supported by this node's runtime (\(agent.runtime.name))")
        }
        let spec = agent.pods.get("\(namespace)/\(pod)")?.spec?.containers.first { $0.name == info.name }
        // A container with `tty: true` has a terminal, kept by the shim: its socket takes framed
        // input and sizes (see orch-shim).
        let terminal = spec?.tty == true
        if options.tty && !terminal {
            return await fail("Unable to use a TTY - container \(info.name) did not allocate one")
        }
        if options.stdin && spec?.stdin != true {
            return await fail("container \(info.name) of pod \(pod) does not take input: set stdin: true in its spec to attach with stdin")
        }
        // stdin: the shim's socket, when the container keeps its stdin open.
        var stdinChannel: NIOAsyncChannel<ByteBuffer, ByteBuffer>?
        if options.stdin || (options.tty && terminal) {
            guard let socket = agent.runtime.attachStdin(podUID: target.podUID, containerID: target.containerID) else {
                return await fail("container \(info.name) of pod \(pod) does not take input: set stdin: true in its spec to attach with stdin")
            }
            do {
                stdinChannel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(unixDomainSocketPath: socket) { ch in
                        ch.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch,
                                                                        configuration: .init(isOutboundHalfClosureEnabled: true))
                        }
                    }
            } catch {
                return await fail("cannot attach to the stdin of container \(info.name): \(error)")
            }
        }
        let runtime = agent.runtime
        let (podUID, containerID) = target
        let stdinPipe = stdinChannel
        let follower = LogFollower(path: logPath)
        enum Event { case clientGone, exited }
        let idle = IdleWatch(timeout: agent.config.streamingIdleTimeout)
        do {
            try await withThrowingTaskGroup(of: Event.self) { g in
                g.addTask {
                    for try await msg in inbound.messages(maxSize: 1 << 20) {
                        idle.touch()
                        outbound.received()
                        guard case .binary(var b) = msg, let ch = b.readInteger(as: UInt8.self) else { continue }
                        switch ch {
                        case RemoteCommand.stdin where terminal:
                            try? await stdinPipe?.channel.writeAndFlush(Self.shimFrame("d", b.readableBytesView))
                        case RemoteCommand.stdin: try? await stdinPipe?.channel.writeAndFlush(b)
                        case RemoteCommand.resize where terminal:
                            if let r = RemoteCommand.parseResize(b.readableBytesView) {
                                let size: [UInt8] = [UInt8(r.width >> 8), UInt8(r.width & 0xff), UInt8(r.height >> 8), UInt8(r.height & 0xff)]
                                try? await stdinPipe?.channel.writeAndFlush(Self.shimFrame("r", size))
                            }
                        case RemoteCommand.close where proto == RemoteCommand.v5 && !terminal:
                            if b.readInteger(as: UInt8.self) == RemoteCommand.stdin { try? await stdinPipe?.channel.close() }
                        default: break
                        }
                    }
                    return .clientGone
                }
                g.addTask {
                    // The container's output as it is written, until it exits.
                    while true {
                        let chunk = follower.read()
                        if !chunk.isEmpty {
                            idle.touch()
                            if options.stdout { try await send(RemoteCommand.stdout, chunk) }
                            continue
                        }
                        let running = await runtime.containers(podUID: podUID).contains { $0.id == containerID && $0.isRunning }
                        if !running {
                            let rest = follower.read()
                            if !rest.isEmpty, options.stdout { try await send(RemoteCommand.stdout, rest) }
                            return .exited
                        }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                g.addTask {
                    await idle.wait()
                    return .clientGone
                }
                let first = try await g.next()
                g.cancelAll()
                if first == .exited {
                    try? await send(RemoteCommand.error, RemoteCommand.exitStatus(0, command: []))
                    try? await outbound.close(.normalClosure, reason: nil)
                }
            }
        } catch {}
        try? await stdinChannel?.channel.close()
    }
}

extension AgentServer {
    /// One frame of the shim's terminal socket: a type byte, a big-endian length, the payload.
    static func shimFrame(_ type: Character, _ payload: some Collection<UInt8>) -> ByteBuffer {
        // The shim takes frames of up to 64 KiB: larger input goes as several.
        var f = ByteBuffer()
        let bytes = Array(payload)
        var off = 0
        repeat {
            let n = min(32768, bytes.count - off)
            f.writeInteger(type.asciiValue!)
            f.writeInteger(UInt32(n))
            f.writeBytes(bytes[off..<off + n])
            off += n
        } while off < bytes.count
        return f
    }
}

/// Reads what is appended to a log file from the moment it is made, following the shim's rotation
/// (LOG renamed to LOG.1 and a new LOG started).
final class LogFollower: @unchecked Sendable {
    let path: String
    private var handle: FileHandle?
    private var offset: UInt64 = 0
    private var inode: UInt64 = 0

    init(path: String) {
        self.path = path
        open(atEnd: true)
    }

    deinit { try? handle?.close() }

    private func open(atEnd: Bool) {
        try? handle?.close()
        handle = FileHandle(forReadingAtPath: path)
        var st = stat()
        inode = stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
        offset = atEnd ? ((try? handle?.seekToEnd()) ?? 0) : 0
    }

    /// New bytes, or none yet.
    func read() -> [UInt8] {
        if let d = try? handle?.read(upToCount: 1 << 16), !d.isEmpty {
            offset += UInt64(d.count)
            return Array(d)
        }
        // Rotated: the old file is finished; the new one is read from its start.
        var st = stat()
        if stat(path, &st) == 0, UInt64(st.st_ino) != inode {
            open(atEnd: false)
            return read()
        }
        return []
    }
}
