import Testing
import Foundation
import NIOCore
import API
import APIServer
import Client

/// A client whose apiserver restarts: requests refused while it was down must not hold up the
/// ones made after it listens again.
@Suite struct ClientReconnectTests {
    /// An apiserver on a known port, a client that has talked to it, and the apiserver stopped.
    static func clusterGone() async throws -> (TestCluster, Int, KubeClient) {
        let port = try freePort()
        let c = try await TestCluster.start { $0.securePort = port }
        let client = try c.admin()
        _ = try await client.get(Namespace.self, "default")
        await c.stop()
        return (c, port, client)
    }

    /// A hundred requests refused while nothing listens (more than the client's 64 connections
    /// to a host), then the apiserver comes back on the same port: the next request is answered
    /// within a second or two. AsyncHTTPClient's pool used to retry the failed connections on an
    /// exponential backoff counted over all of them, and later requests queued behind it for up
    /// to a minute: a controller-manager lost its leader Lease for 5 to 25 s after a 0.3 s restart.
    @Test func refusalsWhileTheApiserverIsDownDoNotDelayRequestsAfterItIsBack() async throws {
        let (c, port, client) = try await Self.clusterGone()
        let failed = try await withDeadline(20, "the refused requests end") {
            await withTaskGroup(of: Bool.self) { g in
                for _ in 0..<100 {
                    g.addTask { (try? await client.request(.GET, "/api/v1/namespaces/default", timeout: .seconds(1))) == nil }
                }
                return await g.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(failed == 100)
        let again = try await TestCluster.start(dir: c.dir) { $0.securePort = port }
        defer { Task { await again.cleanup() } }
        let ns = try await withDeadline(2, "the first request after the restart") {
            try await client.get(Namespace.self, "default")
        }
        #expect(ns.metadata.name == "default")
    }

    /// With one apiserver, a request made while it restarts waits for it (tries to connect again
    /// every 200 ms) rather than failing at the first refusal.
    @Test func aRequestMadeWhileTheApiserverRestartsWaitsForIt() async throws {
        let (c, port, client) = try await Self.clusterGone()
        let pending = Task { try await client.get(Namespace.self, "default") }
        try await Task.sleep(for: .milliseconds(700))   // the apiserver stays down a while
        let again = try await TestCluster.start(dir: c.dir) { $0.securePort = port }
        defer { Task { await again.cleanup() } }
        let ns = try await withDeadline(5, "the pending request") { try await pending.value }
        #expect(ns.metadata.name == "default")
    }
}
