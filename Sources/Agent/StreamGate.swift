// The agent's side of a stream from the apiserver (exec, attach, port-forward) writes nothing until
// the apiserver's first message has arrived. The apiserver's WebSocket client can lose frames that
// reach it while it is still finishing its side of the upgrade (seen as a port-forward whose
// "connection refused" never arrived, and the forward hanging); the apiserver sends
// `AgentStream.start` as soon as its side is ready, so whatever the agent writes after it is read.
import Foundation
import Synchronization
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
import API

/// Opens once; waiters resume then (or when their task is cancelled, as the session is ending).
final class StartGate: Sendable {
    private struct State { var open = false; var waiters: [UUID: CheckedContinuation<Void, Never>] = [:] }
    private let state = Mutex(State())

    var isOpen: Bool { state.withLock { $0.open } }

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard !s.open else { return [] }
            s.open = true
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    func wait() async {
        if isOpen { return }
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.open || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// The outbound side of an agent stream: writes wait for the apiserver's start.
struct GatedOutbound: Sendable {
    let raw: WebSocketOutboundWriter
    let gate = StartGate()

    func write(_ frame: WebSocketOutboundWriter.OutboundFrame) async throws {
        await gate.wait()
        try await raw.write(frame)
    }

    func close(_ code: WebSocketErrorCode, reason: String?) async throws {
        await gate.wait()
        try await raw.close(code, reason: reason)
    }

    /// Called for every message read from the apiserver: the first opens the gate.
    func received() { gate.open() }

    /// For a session that ends before reading anything (a refusal): waits for the apiserver's
    /// first message, so that what is written next is not lost. Uses up `inbound`.
    func awaitStart(_ inbound: WebSocketInboundStream) async {
        if gate.isOpen { return }
        do { for try await _ in inbound.messages(maxSize: 1 << 20) { break } } catch {}
        gate.open()
    }
}
