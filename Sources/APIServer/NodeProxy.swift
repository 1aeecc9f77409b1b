// Requests the apiserver makes to agents on a user's behalf: `pods/log` is streamed from the
// agent of the pod's node over mutual TLS (the apiserver presents kube-apiserver-kubelet-client;
// the agent presents its node certificate, verified against the cluster CA).
import Foundation
import AsyncHTTPClient
import Hummingbird
import NIOCore
import NIOSSL
import API
import PKI
import Store

public final class NodeProxy: Sendable {
    let http: HTTPClient
    /// The same identity for streams (exec), which are WebSockets to the agent.
    let tls: TLSConfiguration

    public init(ca: String, client: KeyPair) throws {
        var tls = try TLSConfig.client(caPEM: ca, certPEM: client.certificatePEM, keyPEM: client.keyPEM)
        // Agents are addressed by IP; their certificates name the node, not the address.
        tls.certificateVerification = .noHostnameVerification
        self.tls = tls
        var c = HTTPClient.Configuration(tlsConfiguration: tls, timeout: .init(connect: .seconds(5)))
        // A dead node's refusals fail at once rather than growing a backoff that delays the
        // node's requests after it is back.
        c.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }

    // Not syncShutdown: the last reference may go on an event loop (a connection that outlived the
    // server), where blocking is forbidden; a client shutting down keeps itself alive until done.
    deinit { http.shutdown(queue: .global()) { _ in } }

    /// https://ADDRESS:PORT of a node's agent, from its status.
    static func endpoint(_ node: Node) throws -> String {
        guard let port = node.status?.daemonEndpoints?.kubeletEndpoint?.Port, port > 0 else {
            throw Status.serviceUnavailable("node \(node.name) has no agent endpoint (status.daemonEndpoints)")
        }
        let addrs = node.status?.addresses ?? []
        guard let a = (addrs.first { $0.type == "InternalIP" } ?? addrs.first)?.address else {
            throw Status.serviceUnavailable("node \(node.name) reports no address")
        }
        // Validated on write; checked again here, as it becomes a URL (stored before validation existed).
        guard Validation.isIPAddress(a) || Validation.dns1123Subdomain(a) == nil else {
            throw Status.serviceUnavailable("node \(node.name) reports an address that is neither an IP address nor a DNS name: \"\(a.prefix(64))\"")
        }
        return "https://\(a.contains(":") ? "[\(a)]" : a):\(port)"
    }

    /// GET /stats/summary of one agent, with `timeout` seconds for all of it (connect, head,
    /// body): the collector scrapes every node concurrently and a hung one must fail on time.
    func statsSummary(endpoint: String, timeout: Double) async throws -> Data {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        return try await withThrowingTaskGroup(of: Data?.self) { g in
            g.addTask {
                let resp = try await self.http.execute(HTTPClientRequest(url: "\(endpoint)/stats/summary"), deadline: .now() + .milliseconds(Int64(timeout * 1000)))
                let body = try await resp.body.collect(upTo: 256 << 20)
                guard resp.status == .ok else {
                    throw Status.serviceUnavailable("\(endpoint)/stats/summary answered \(resp.status.code): \(String(buffer: body).prefix(200))")
                }
                return Data(buffer: body)
            }
            g.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { g.cancelAll() }
            guard let first = try await g.next(), let data = first else {
                throw Status.timeout("\(endpoint)/stats/summary did not answer within \(goDuration(seconds: timeout))")
            }
            return data
        }
    }

    func podLogs(store: any ObjectStore, namespace: String, pod name: String, query: [String: String]) async throws -> Response {
        guard let po = store.get(Objects.key(Resources.pods, namespace, name)) else { throw Status.notFound(Resources.pods, name) }
        let pod = try KubeJSON.decode(Pod.self, from: po.data)
        guard let nodeName = pod.spec?.nodeName else {
            throw Status.badRequest("pod \(name) is not scheduled to a node yet, so it has no logs")
        }
        guard let no = store.get(Objects.key(Resources.nodes, nil, nodeName)) else {
            // As Kubernetes answers: the pod names a node that does not exist (404, not a fault of ours).
            throw Status.notFound(Resources.nodes, nodeName)
        }
        let base = try Self.endpoint(try KubeJSON.decode(Node.self, from: no.data))
        var comps = URLComponents(string: "\(base)/containerLogs/\(namespace)/\(name)")!
        comps.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
        let resp: HTTPClientResponse
        do { resp = try await http.execute(HTTPClientRequest(url: comps.url!.absoluteString), timeout: .hours(24)) }
        catch { throw Status.serviceUnavailable("cannot reach the agent of node \(nodeName): \(error)") }
        guard resp.status == .ok else {
            let body = try await resp.body.collect(upTo: 1 << 16)
            let msg = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            throw resp.status.code == 404 ? Status.notFound(Resources.pods, name) : Status.badRequest(msg)
        }
        let body = ResponseBody { writer in
            for try await chunk in resp.body { try await writer.write(chunk) }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/plain"], body: body)
    }
}
