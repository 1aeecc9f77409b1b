// pods/exec and pods/attach: the WebSocket kubectl and client libraries open (v5.channel.k8s.io, or v4), authorized
// like any request and then relayed, message for message, to the agent of the pod's node over
// mutual TLS with the apiserver's kubelet-client identity.
import Foundation
import Hummingbird
import HummingbirdWebSocket
import HummingbirdWSClient
import NIOCore
import Logging
import API
import PKI

extension APIHandler {
    typealias UpgradeResult = ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>>

    /// Decides whether a request becomes a WebSocket. Anything it declines is answered by the
    /// ordinary responder (which explains why: 401, 403, 404, or "upgrade required").
    func shouldUpgrade(_ request: HTTPRequest, _ channel: any Channel) async -> UpgradeResult {
        guard let target = request.path, let comps = URLComponents(string: target) else { return .dontUpgrade }
        let segs = comps.path.split(separator: "/").map(String.init)
        // /api/v1/namespaces/NS/pods/NAME/{exec,portforward}
        guard segs.count == 7, segs[0] == "api", segs[1] == "v1", segs[2] == "namespaces", segs[4] == "pods",
              ["exec", "attach", "portforward"].contains(segs[6]) else {
            return .dontUpgrade
        }
        let (namespace, name, subresource) = (segs[3], segs[5], segs[6])
        guard let nodes, let identity = (try? await authenticate(headers: request.headerFields, channel: channel)) ?? nil else { return .dontUpgrade }
        let attrs = RequestAttributes(user: identity, verb: "create", resource: Resources.pods, subresource: subresource,
                                      namespace: namespace, name: name, fieldNodeName: nil)
        guard let po = store.get(Objects.key(Resources.pods, namespace, name)), let pod = try? KubeJSON.decode(Pod.self, from: po.data) else {
            return .dontUpgrade
        }
        switch authz.authorize(attrs) {
        case .allow: break
        case .allowIfBoundTo(let node) where pod.spec?.nodeName == node: break
        default: return .dontUpgrade
        }
        if subresource == "portforward" {
            return portForwardUpgrade(pod: pod, offered: request.headerFields[.secWebSocketProtocol], query: comps, nodes: nodes)
        }
        guard let proto = RemoteCommand.negotiate(request.headerFields[.secWebSocketProtocol]) else { return .dontUpgrade }
        let options = RemoteCommand.Options.parse(query: RemoteCommand.Options.queryPairs(comps))
        let logger = self.logger
        let handler: WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context> = { [self] inbound, outbound, _ in
            await self.relayExec(subresource, pod: pod, options: options, proto: proto, nodes: nodes, inbound: inbound, outbound: outbound, logger: logger)
        }
        return .upgrade([.secWebSocketProtocol: proto], handler)
    }

    func relayExec(_ subresource: String, pod: Pod, options: RemoteCommand.Options, proto: String, nodes: NodeProxy,
                   inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger) async {
        func fail(_ message: String) async {
            var b = ByteBuffer()
            b.writeInteger(RemoteCommand.error)
            b.writeBytes(RemoteCommand.failureStatus(message))
            try? await outbound.write(.binary(b))
            try? await outbound.close(.normalClosure, reason: nil)
        }
        var opts = options
        if opts.container == nil { opts.container = pod.spec?.containers.first?.name }
        let path = "/\(subresource)/\(pod.namespace)/\(pod.name)/\(RemoteCommand.Options.escape(opts.container ?? ""))"
        do {
            try await dialAgent(subresource, path: path, query: opts.query, proto: proto, pod: pod, nodes: nodes) { agentIn, agentOut in
                try await withThrowingTaskGroup(of: Bool.self) { g in
                    // Client to agent: stdin, resize, close; the client leaving ends the agent's session.
                    g.addTask {
                        for try await m in inbound.messages(maxSize: 1 << 20) {
                            // Some clients (the Python client's write_stdin) send text frames: the same channel bytes.
                            switch m {
                            case .binary(let b): try await agentOut.write(.binary(b))
                            case .text(let t): try await agentOut.write(.binary(ByteBuffer(string: t)))
                            }
                        }
                        try? await agentOut.close(.normalClosure, reason: nil)
                        return false
                    }
                    // Agent to client: output and the final status.
                    g.addTask {
                        for try await m in agentIn.messages(maxSize: 1 << 20) {
                            if case .binary(let b) = m { try await outbound.write(.binary(b)) }
                        }
                        return true
                    }
                    _ = try await g.next()
                    g.cancelAll()
                }
            }
            try? await outbound.close(.normalClosure, reason: nil)
        } catch {
            await fail("\(error)")
        }
    }

    /// Opens a WebSocket to the agent of the pod's node (GET `path`?`query`, with the apiserver's
    /// kubelet-client identity) and runs `body` with it. Why it could not is a StreamFailure.
    func dialAgent(_ subresource: String, path: String, query: String, proto: String?, pod: Pod, nodes: NodeProxy,
                   body: @escaping @Sendable (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void) async throws {
        guard let nodeName = pod.spec?.nodeName, !nodeName.isEmpty else {
            throw StreamFailure(description: "pod \(pod.name) is not scheduled to a node yet")
        }
        if pod.isTerminal {
            throw StreamFailure(description: "cannot \(subresource == "portforward" ? "forward a port of" : "\(subresource) into a container in") a completed pod; current phase is \(pod.phase ?? "")")
        }
        guard let no = store.get(Objects.key(Resources.nodes, nil, nodeName)), let node = try? KubeJSON.decode(Node.self, from: no.data) else {
            throw StreamFailure(description: "node \(nodeName) of pod \(pod.name) is not registered")
        }
        // A node that stopped reporting is answered at once, not after a connect timeout.
        guard node.isReady else {
            throw StreamFailure(description: "node \(nodeName) of pod \(pod.name) is not ready (its agent stopped reporting): cannot \(subresource == "portforward" ? "forward a port" : subresource)")
        }
        guard let base = try? NodeProxy.endpoint(node) else {
            throw StreamFailure(description: "node \(nodeName) of pod \(pod.name) has no reachable agent")
        }
        var config = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
        if let proto { config.additionalHeaders[.secWebSocketProtocol] = proto }
        // Agents are addressed by IP, which TLS does not allow as a server name (their certificate
        // is checked against the cluster CA, not a name).
        config.sniHostname = nodeName
        // The WebSocket's own close handshake ends a session; TLS's close_notify after it is not
        // waited for long (NIOSSL's default 5 s was sometimes all spent, on every refused port).
        var tls = nodes.tls
        tls.shutdownTimeout = .milliseconds(100)
        do {
            try await WebSocketClient.connect(url: "wss" + base.dropFirst("https".count) + path + "?" + query, configuration: config,
                                              tlsConfiguration: tls, logger: logger) { i, o, _ in
                // The agent writes nothing before this (see the agent's StreamGate).
                try await o.write(.text(AgentStream.start))
                try await body(i, o)
            }
        } catch let e as StreamFailure {
            throw e
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw StreamFailure(description: "cannot reach the agent of node \(nodeName): \(error)")
        }
    }
}

/// Why a stream to an agent could not be made, in the words kubectl prints.
struct StreamFailure: Error, CustomStringConvertible { let description: String }
