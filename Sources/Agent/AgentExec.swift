// The agent's exec endpoint: GET /exec/NAMESPACE/POD/CONTAINER?command=...&stdin=&stdout=&stderr=&tty=
// upgraded to a WebSocket speaking v5.channel.k8s.io (or v4), reached by the apiserver's
// pods/exec relay. The process runs through the runtime's exec command and dies with the session.
import Foundation
import Synchronization
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import Logging
import API
import PKI

extension AgentServer {
    struct ClientGone: Error {}

    func shouldUpgrade(_ request: HTTPRequest, _ channel: any Channel) async -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        guard let target = request.path, let comps = URLComponents(string: target) else { return .dontUpgrade }
        let parts = comps.path.split(separator: "/").map(String.init)
        guard parts.count >= 3, ["exec", "attach", "portforward"].contains(parts[0]) else { return .dontUpgrade }
        // Only the apiserver's kubelet-client identity (or an admin) may exec; anyone else gets
        // the plain HTTP answer (401/403) from the responder.
        guard let who = await identity(channel), who.user == "kube-apiserver-kubelet-client" || who.groups.contains("system:masters") else {
            return .dontUpgrade
        }
        if parts[0] == "portforward" {
            let port = comps.queryItems?.first(where: { $0.name == "port" })?.value.flatMap { Int($0) } ?? 0
            let (namespace, podName) = (parts[1], parts[2])
            let handler: WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context> = { [self] inbound, outbound, _ in
                await self.runPortForward(namespace: namespace, pod: podName, port: port, inbound: inbound, outbound: GatedOutbound(raw: outbound))
            }
            return .upgrade([:], handler)
        }
        guard let proto = RemoteCommand.negotiate(request.headerFields[.secWebSocketProtocol]) else { return .dontUpgrade }
        var options = RemoteCommand.Options.parse(query: RemoteCommand.Options.queryPairs(comps))
        if parts.count > 3 { options.container = parts[3] }
        let (namespace, podName) = (parts[1], parts[2])
        let opts = options
        let attach = parts[0] == "attach"
        let handler: WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context> = { [self] inbound, outbound, _ in
            if attach {
                await self.runAttach(namespace: namespace, pod: podName, options: opts, proto: proto, inbound: inbound, outbound: GatedOutbound(raw: outbound))
            } else {
                await self.runExec(namespace: namespace, pod: podName, options: opts, proto: proto, inbound: inbound, outbound: GatedOutbound(raw: outbound))
            }
        }
        return .upgrade([.secWebSocketProtocol: proto], handler)
    }

    /// Finds the running container a session targets, or says why not.
    func execTarget(namespace: String, pod name: String, container: String?) async -> Result<(podUID: String, containerID: String), ExecRefusal> {
        guard let pod = agent.pods.get("\(namespace)/\(name)"), let uid = pod.metadata.uid else {
            return .failure(ExecRefusal("pod \(namespace)/\(name) is not on node \(agent.config.nodeName)"))
        }
        let names = pod.spec?.containers.map(\.name) ?? []
        let cname: String
        if let container, !container.isEmpty {
            guard names.contains(container) else { return .failure(ExecRefusal("container \(container) is not valid for pod \(name)")) }
            cname = container
        } else if let first = names.first {
            cname = first
        } else {
            return .failure(ExecRefusal("pod \(name) has no containers"))
        }
        guard let c = await agent.runtime.containers(podUID: uid).filter({ $0.name == cname && $0.isRunning }).last else {
            return .failure(ExecRefusal("unable to upgrade connection: container not found (\"\(cname)\")"))
        }
        return .success((uid, c.id))
    }

    struct ExecRefusal: Error { let message: String; init(_ m: String) { message = m } }

    /// Writes one message of the channel protocol: the channel byte, then the bytes.
    static func sendChannel(_ outbound: GatedOutbound, _ channel: UInt8, _ bytes: some Collection<UInt8>) async throws {
        var b = ByteBuffer()
        b.reserveCapacity(bytes.count + 1)
        b.writeInteger(channel)
        b.writeBytes(bytes)
        try await outbound.write(.binary(b))
    }

    /// Ends a session that cannot run: a failure Status on the error channel, then a close.
    static func failSession(_ outbound: GatedOutbound, _ inbound: WebSocketInboundStream, _ message: String) async {
        await outbound.awaitStart(inbound)
        try? await sendChannel(outbound, RemoteCommand.error, RemoteCommand.failureStatus(message))
        try? await outbound.close(.normalClosure, reason: nil)
    }

    func runExec(namespace: String, pod: String, options: RemoteCommand.Options, proto: String,
                 inbound: WebSocketInboundStream, outbound: GatedOutbound) async {
        func send(_ channel: UInt8, _ d: Data) async throws { try await Self.sendChannel(outbound, channel, d) }
        func fail(_ message: String) async { await Self.failSession(outbound, inbound, message) }
        guard !options.command.isEmpty else { return await fail("you must specify at least one command for the container") }
        let target: (podUID: String, containerID: String)
        switch await execTarget(namespace: namespace, pod: pod, container: options.container) {
        case .success(let t): target = t
        case .failure(let r): return await fail(r.message)
        }
        let id = UUID().uuidString.prefix(12).lowercased()
        let pidFile = "/tmp/orch-exec-\(id).pid"
        // The client's input is read from the start. What comes before the process exists (a
        // terminal's first size, early stdin) is held for it.
        let input = ExecInput()
        let idle = IdleWatch(timeout: agent.config.streamingIdleTimeout)
        enum Event { case outputDone, exited(Int32), clientGone }
        enum Outcome { case refused(String), ended(Int32?), broken }
        var session: ExecSession?
        defer { session?.cleanup() }
        let outcome: Outcome
        do {
            outcome = try await withThrowingTaskGroup(of: Event.self) { g in
                g.addTask {
                    defer { input.end() }
                    for try await msg in inbound.messages(maxSize: 1 << 20) {
                        idle.touch()
                        outbound.received()
                        guard case .binary(var b) = msg, let ch = b.readInteger(as: UInt8.self) else { continue }
                        switch ch {
                        case RemoteCommand.stdin: input.stdin(Data(b.readableBytesView))
                        case RemoteCommand.resize:
                            if let r = RemoteCommand.parseResize(b.readableBytesView) { input.resize(width: r.width, height: r.height) }
                        case RemoteCommand.close where proto == RemoteCommand.v5:
                            if b.readInteger(as: UInt8.self) == RemoteCommand.stdin { input.closeStdin() }
                        default: break
                        }
                    }
                    return .clientGone
                }
                // A terminal starts at the client's size: kubectl sends it first thing. A process
                // that asks for its size at once (stty size) would otherwise see none, because runc
                // sizes the container's terminal only after the process has started.
                let size = options.tty ? await input.firstSize(within: .seconds(1)) : nil
                guard let (binary, args) = agent.runtime.streamingExec(podUID: target.podUID, containerID: target.containerID, command: options.command,
                                                                        tty: options.tty, size: size, pidFile: pidFile) else {
                    await outbound.gate.wait()
                    g.cancelAll()
                    return .refused("exec is not supported by this node's runtime (\(agent.runtime.name))")
                }
                // Starting a process blocks briefly (fork and exec): on a thread of its own, not the task pool.
                let started: Result<ExecSession, Error> = await withCheckedContinuation { cont in
                    Thread {
                        cont.resume(returning: Result { try ExecSession(binary: binary, args: args, options: options, pidFile: pidFile, initialSize: size) })
                    }.start()
                }
                let s: ExecSession
                switch started {
                case .success(let x): s = x
                case .failure(let error):
                    try? FileManager.default.removeItem(atPath: pidFile + ".process.json")
                    await outbound.gate.wait()
                    g.cancelAll()
                    return .refused("cannot start the command: \(error)")
                }
                session = s
                input.attach(s)
                g.addTask {
                    for await (ch, d) in s.output { idle.touch(); try await send(ch, d) }
                    return .outputDone
                }
                g.addTask {
                    var c: Int32 = -1
                    for await x in s.exited { c = x }
                    return .exited(c)
                }
                g.addTask {
                    await idle.wait()
                    return .clientGone
                }
                var code: Int32?
                var outputDone = false
                while let e = try await g.next() {
                    switch e {
                    case .outputDone: outputDone = true
                    case .exited(let c):
                        code = c
                        // Output still in the pipes comes right after; a process's orphans may hold them longer.
                        if !outputDone {
                            g.addTask { try await Task.sleep(for: .seconds(2)); return .outputDone }
                        }
                    case .clientGone:
                        throw ClientGone()
                    }
                    if outputDone, code != nil { g.cancelAll(); return .ended(code) }
                }
                return .ended(code)
            }
        } catch {
            outcome = .broken
        }
        switch outcome {
        case .broken:
            // The client went away or the socket broke: nothing may outlive the session.
            session?.kill()
        case .refused(let message):
            try? await send(RemoteCommand.error, RemoteCommand.failureStatus(message))
            try? await outbound.close(.normalClosure, reason: nil)
        case .ended(let code):
            try? await send(RemoteCommand.error, RemoteCommand.exitStatus(code ?? -1, command: options.command))
            try? await outbound.close(.normalClosure, reason: nil)
        }
    }
}

/// An exec session's input from the client, handed to the process once it runs; until then
/// stdin is held and the terminal's first size awaited.
final class ExecInput: Sendable {
    private enum Held { case stdin(Data), close, resize(UInt16, UInt16) }
    private struct State {
        var session: ExecSession?
        var held: [Held] = []
        var size: (UInt16, UInt16)?
        var ended = false
        var timedOut = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    private func deliver(_ h: Held) {
        guard let s = state.withLock({ st -> ExecSession? in
            if st.session == nil { st.held.append(h) }
            return st.session
        }) else { return }
        Self.apply(h, to: s)
    }

    private static func apply(_ h: Held, to s: ExecSession) {
        switch h {
        case .stdin(let d): s.writeStdin(d)
        case .close: s.closeStdin()
        case .resize(let w, let h): s.resize(width: w, height: h)
        }
    }

    func stdin(_ d: Data) { deliver(.stdin(d)) }
    func closeStdin() { deliver(.close) }
    func resize(width: UInt16, height: UInt16) {
        let w = state.withLock { st -> CheckedContinuation<Void, Never>? in
            if st.size == nil { st.size = (width, height) }
            defer { st.waiter = nil }
            return st.waiter
        }
        w?.resume()
        deliver(.resize(width, height))
    }
    /// The client is gone: nobody waits for a size any more.
    func end() {
        state.withLock { st -> CheckedContinuation<Void, Never>? in
            st.ended = true
            defer { st.waiter = nil }
            return st.waiter
        }?.resume()
    }

    /// The first size the client sent, waiting for it up to `limit`.
    func firstSize(within limit: Duration) async -> (UInt16, UInt16)? {
        let timer = Task { [self] in
            try? await Task.sleep(for: limit)
            state.withLock { st -> CheckedContinuation<Void, Never>? in st.timedOut = true; defer { st.waiter = nil }; return st.waiter }?.resume()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { st -> Bool in
                if st.size != nil || st.ended || st.timedOut { return true }
                st.waiter = c
                return false
            }
            if ready { c.resume() }
        }
        return state.withLock { $0.size }
    }

    /// The process runs: what was held goes to it, in order, and the rest straight after.
    func attach(_ s: ExecSession) {
        // Held input is replayed under the lock so nothing delivered meanwhile overtakes it.
        state.withLock { st in
            for h in st.held { Self.apply(h, to: s) }
            st.held = []
            st.session = s
        }
    }
}
