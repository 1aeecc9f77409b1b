import Testing
import Foundation
import API
import APIServer
import Agent
import PKI
import Client
import Controllers
import Scheduler

@Suite(.serialized) struct AgentTests {
    @Test func hollowAgentJoinsRegistersAndRunsPods() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        var cmConfig = ControllerManagerConfig()
        cmConfig.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cmConfig)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let dir = c.dir + "/agent-h1"
        // A wrong token is refused with a clear message before anything is stored.
        let bad = "K1-sha256:" + String(repeating: "0", count: 64) + "::abcdef.0123456789abcdef"
        await #expect { _ = try await Join.credentials(server: c.url, token: bad, nodeName: "h1", dataDir: dir) } throws: {
            "\($0)".contains("join token expects")
        }
        let tasks = [Task { await cm.run() }, Task { await sched.run() }]
        defer { for t in tasks { t.cancel() } }
        let creds = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: "h1", dataDir: dir)
        let agentClient = try KubeClient(config: .init(server: c.url, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        var config = AgentConfig(nodeName: "h1")
        config.labels = ["pool": "hollow"]
        config.address = "198.18.0.11"
        let agent = NodeAgent(client: agentClient, config: config, runtime: FakeRuntime())
        let run = Task { try? await agent.run() }
        defer { run.cancel() }
        // A second start reuses the stored certificate without the token.
        _ = try await Join.credentials(server: c.url, token: nil, nodeName: "h1", dataDir: dir)

        let k = try c.admin()
        let node = try await eventually(10, "node Ready") { () -> Node? in
            let n = try? await k.get(Node.self, "h1"); return n?.isReady == true ? n : nil
        }
        #expect(node.metadata.labels?["pool"] == "hollow")
        #expect((node.status?.capacity?["cpu"]?.milli ?? 0) >= 1000)
        #expect(node.status?.addresses?.first == NodeAddress(type: "InternalIP", address: "198.18.0.11"))
        let lease1 = try await eventually(15, "lease") { try? await k.get(Lease.self, "h1", namespace: "kube-node-lease").spec?.renewTime }
        _ = try await eventually(15, "lease renewed") { () -> Bool? in
            try await k.get(Lease.self, "h1", namespace: "kube-node-lease").spec?.renewTime != lease1 ? true : nil
        }

        _ = try await k.create(try webDeployment("hollow", replicas: 3))
        let pods = try await eventually(20, "3 running pods") { () -> [Pod]? in
            let p = try await k.list(Pod.self, labelSelector: "app=hollow").items.filter { $0.isReady && $0.phase == "Running" }
            return p.count == 3 ? p : nil
        }
        #expect(pods.allSatisfy { $0.spec?.nodeName == "h1" && $0.status?.podIP != nil && $0.status?.hostIP == "198.18.0.11" })
        // Scale down: the agent finishes the graceful deletions.
        try await k.call(.PATCH, Resources.deployments.path(namespace: "default", name: "hollow", subresource: "scale"),
                         body: Data(#"{"spec":{"replicas":1}}"#.utf8), contentType: "application/merge-patch+json")
        _ = try await eventually(20, "scaled down") { () -> Bool? in
            try await k.list(Pod.self, labelSelector: "app=hollow").items.count == 1 ? true : nil
        }
    }

    @Test func aNodeRenewsItsCertificateWithItsCurrentIdentity() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let cm = try startControllerManager(c)
        defer { cm.cancel() }
        let dir = c.dir + "/agent-renew"
        let first = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: "rn", dataDir: dir)
        #expect(first.renewAt > Date() && first.renewAt < Date().addingTimeInterval(366 * 86400))
        let renewed = try await Join.renew(server: c.url, current: first, nodeName: "rn", dataDir: dir)
        #expect(renewed.certPEM != first.certPEM && renewed.keyPEM != first.keyPEM)
        #expect(try describeCertificate(pem: renewed.certPEM).identity.user == "system:node:rn")
        // The new pair is what a restart loads, and it authenticates as the node.
        let stored = try await Join.credentials(server: c.url, token: nil, nodeName: "rn", dataDir: dir)
        #expect(stored.certPEM == renewed.certPEM)
        let k = try KubeClient(config: .init(server: c.url, caPEM: stored.caPEM, certPEM: stored.certPEM, keyPEM: stored.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        _ = try await k.create(Node(name: "rn"))
        #expect(try await k.get(Node.self, "rn").name == "rn")
        await k.shutdown()
    }
}
