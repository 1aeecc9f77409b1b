// pods/exec and pods/attach over a plain SPDY/3.1 upgrade (X-Stream-Protocol-Version
// v4.channel.k8s.io): what kubectl falls back to when the WebSocket upgrade is refused, and what
// kubectl before 1.29 and older client-go programs always use. The client opens one SPDY stream
// per channel (streamtype error, stdin, stdout, stderr, resize); once every stream the options
// call for is there, the session is relayed to the agent over the same WebSocket the WebSocket
// clients get, and at the end the Status goes on the error stream and every stream is finished.
import Foundation
import Hummingbird
import HummingbirdWebSocket
import HummingbirdWSClient
import NIOCore
import Logging
import API
import SPDY

extension APIHandler {
    /// Opens the agent's exec or attach WebSocket (v5.channel.k8s.io) for a pod and runs `body` with it.
    func dialAgentStream(_ subresource: String, pod: Pod, options: RemoteCommand.Options, nodes: NodeProxy,
                         body: @escaping @Sendable (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws {
        let path = "/\(subresource)/\(pod.namespace)/\(pod.name)/\(RemoteCommand.Options.escape(options.container ?? ""))"
        try await dialAgent(subresource, path: path, query: options.query, proto: RemoteCommand.v5, pod: pod, nodes: nodes, body: body)
    }
}

final class SPDYExecSession: @unchecked Sendable {
    typealias Dial = @Sendable (@escaping @Sendable (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws -> Void
    enum Input: Sendable { case stdin([UInt8]), stdinEnd, resize([UInt8]) }

    let subresource: String
    let options: RemoteCommand.Options
    let logger: Logger
    let writer: SPDYWriter
    let dial: Dial
    /// Touched only by the reading task.
    private var streams: [String: UInt32] = [:]
    private var types: [UInt32: String] = [:]
    private var resizeBuffer: [UInt8] = []
    private var relay: Task<Void, Never>?
    private let input: AsyncStream<Input>
    private let feed: AsyncStream<Input>.Continuation

    init(subresource: String, options: RemoteCommand.Options, logger: Logger, write: @escaping @Sendable (ByteBuffer) async throws -> Void, dial: @escaping Dial) {
        self.subresource = subresource
        self.options = options
        self.logger = logger
        self.writer = SPDYWriter(write: write)
        self.dial = dial
        (input, feed) = AsyncStream.makeStream(of: Input.self)
    }

    /// The streams the options call for (as the kubelet expects them).
    var expected: Set<String> {
        var s: Set<String> = ["error"]
        if options.stdin { s.insert("stdin") }
        if options.stdout { s.insert("stdout") }
        if options.stderr && !options.tty { s.insert("stderr") }
        if options.tty { s.insert("resize") }
        return s
    }

    /// Reads the client's frames until the session is over (the relay finished, or the client left).
    func run(input bytes: AsyncStream<ByteBuffer>) async {
        let finished = AsyncStream<Void>.makeStream()
        await withTaskGroup(of: Void.self) { g in
            g.addTask { [self] in
                do {
                    try await forEachSPDYFrame(bytes) { await handle($0, finished: finished.continuation) }
                } catch {
                    logger.debug("\(subresource) session over SPDY ended: \(error)")
                }
            }
            g.addTask { for await _ in finished.stream { return } }
            // Either the client went away or the relay is done: the session ends.
            await g.next()
            g.cancelAll()
        }
        feed.finish()
        relay?.cancel()
        await relay?.value
    }

    private func handle(_ frame: SPDYFrame, finished: AsyncStream<Void>.Continuation) async {
        switch frame {
        case .synStream(let id, _, _, _, let headers):
            let type = headers.first { $0.name.lowercased() == "streamtype" }?.value ?? ""
            guard ["error", "stdin", "stdout", "stderr", "resize"].contains(type), streams[type] == nil else {
                try? await writer.send(.rstStream(streamID: id, status: SPDYStatus.refusedStream))
                return
            }
            try? await writer.send(.synReply(streamID: id, flags: 0, headers: []))
            streams[type] = id
            types[id] = type
            if relay == nil, expected.isSubset(of: Set(streams.keys)) { start(finished: finished) }
        case .data(let id, let flags, let payload):
            switch types[id] {
            case "stdin":
                if !payload.isEmpty { feed.yield(.stdin(payload)) }
                if flags & SPDYFlags.fin != 0 { feed.yield(.stdinEnd) }
            case "resize":
                // One JSON object per line ({"Width":W,"Height":H}).
                resizeBuffer += payload
                while let nl = resizeBuffer.firstIndex(of: 10) {
                    let line = Array(resizeBuffer[..<nl])
                    resizeBuffer.removeSubrange(...nl)
                    if !line.isEmpty { feed.yield(.resize(line)) }
                }
            default: break
            }
        case .rstStream:
            relay?.cancel()
        case .ping(let id):
            try? await writer.send(.ping(id: id))
        default:
            break
        }
    }

    private func start(finished: AsyncStream<Void>.Continuation) {
        let writer = self.writer, dial = self.dial, input = self.input, streams = self.streams, subresource = self.subresource
        relay = Task {
            let status = StatusHolder()
            do {
                try await dial { agentIn, agentOut in
                    try await withThrowingTaskGroup(of: Bool.self) { g in
                        g.addTask {
                            for await x in input {
                                var b = ByteBuffer()
                                switch x {
                                case .stdin(let d): b.writeInteger(RemoteCommand.stdin); b.writeBytes(d)
                                case .stdinEnd: b.writeInteger(RemoteCommand.close); b.writeInteger(RemoteCommand.stdin)
                                case .resize(let j): b.writeInteger(RemoteCommand.resize); b.writeBytes(j)
                                }
                                try await agentOut.write(.binary(b))
                            }
                            return false
                        }
                        g.addTask {
                            for try await m in agentIn.messages(maxSize: 16 << 20) {
                                guard case .binary(var b) = m, let ch = b.readInteger(as: UInt8.self) else { continue }
                                let rest = Array(b.readableBytesView)
                                switch ch {
                                case RemoteCommand.stdout: if let id = streams["stdout"] { try await writer.send(.data(streamID: id, flags: 0, payload: rest)) }
                                case RemoteCommand.stderr: if let id = streams["stderr"] { try await writer.send(.data(streamID: id, flags: 0, payload: rest)) }
                                case RemoteCommand.error: status.value = rest
                                default: break
                                }
                            }
                            return true
                        }
                        while let agentDone = try await g.next() { if agentDone { break } }
                        g.cancelAll()
                        try? await agentOut.close(.normalClosure, reason: nil)
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                status.value = Array(RemoteCommand.failureStatus("\(error)"))
            }
            if Task.isCancelled { return }
            // The Status (Success, or NonZeroExitCode with the code), then every stream finished.
            if let e = streams["error"] {
                if let s = status.value { try? await writer.send(.data(streamID: e, flags: 0, payload: s)) }
                else if subresource == "exec" { try? await writer.send(.data(streamID: e, flags: 0, payload: Array(RemoteCommand.failureStatus("the session ended without a status")))) }
            }
            for t in ["error", "stdout", "stderr"] {
                if let id = streams[t] { try? await writer.send(.data(streamID: id, flags: SPDYFlags.fin, payload: [])) }
            }
            finished.yield()
        }
    }
}

final class StatusHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [UInt8]?
    var value: [UInt8]? {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}
