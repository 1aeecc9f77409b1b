import Testing
import Foundation
import API
import APIServer
import Client
import PKI

@Suite(.serialized) struct SecurityTests {
    @Test func noCertificateIsUnauthorizedExceptPublicEndpoints() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let anon = try c.anonymous()
        #expect(try await anon.request(.GET, "/healthz").status == 200)
        #expect(try await anon.request(.GET, "/version").status == 200)
        let r = try await anon.request(.GET, "/api/v1/pods")
        #expect(r.status == 401)
        #expect(try KubeJSON.decode(Status.self, from: r.body).reason == "Unauthorized")
    }

    @Test func foreignCertificateFailsTheHandshake() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let other = try CertificateAuthority.generate(commonName: "evil")
        let kp = try other.issue(commonName: "admin", organizations: ["system:masters"], usage: .client)
        let k = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        await #expect(throws: (any Error).self) { _ = try await k.request(.GET, "/api/v1/pods") }
    }

    @Test func nodesTouchOnlyTheirOwnObjects() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(pod("mine", node: "n1"))
        _ = try await admin.create(pod("theirs", node: "n2"))
        _ = try await admin.create(Node(name: "n2"))
        let n1 = try c.client(user: "system:node:n1", groups: ["system:nodes"])

        // Own node: create and update allowed; another node's: refused with who/what.
        _ = try await n1.create(Node(name: "n1"))
        await #expect { _ = try await n1.patch(Node.self, "n2", mergePatch: .object(["metadata": .object(["labels": .object(["x": .string("y")])])])) } throws: {
            status($0)?.code == 403 && (status($0)?.message ?? "").contains("User \"system:node:n1\" cannot patch resource \"nodes\"")
        }
        // Pods: own pods readable, others' not; listing must be pinned to itself.
        #expect(try await n1.get(Pod.self, "mine").name == "mine")
        await #expect { _ = try await n1.get(Pod.self, "theirs") } throws: { status($0)?.code == 403 }
        await #expect { _ = try await n1.list(Pod.self, allNamespaces: true) } throws: { status($0)?.code == 403 }
        #expect(try await n1.list(Pod.self, allNamespaces: true, fieldSelector: "spec.nodeName=n1").items.map(\.name) == ["mine"])
        // Status of own pods only; no spec writes.
        var mine = try await n1.get(Pod.self, "mine")
        mine.status?.phase = "Running"
        #expect(try await n1.updateStatus(mine).status?.phase == "Running")
        var theirs = try await admin.get(Pod.self, "theirs")
        theirs.status?.phase = "Running"
        await #expect { _ = try await n1.updateStatus(theirs) } throws: { status($0)?.code == 403 }
        await #expect { _ = try await n1.update(mine) } throws: { status($0)?.code == 403 }
        // Leases: own only.
        _ = try await n1.create(Lease(name: "n1", namespace: "kube-node-lease", spec: LeaseSpec()))
        await #expect { _ = try await n1.patch(Lease.self, "n2", namespace: "kube-node-lease", mergePatch: .object([:])) } throws: { status($0)?.code == 403 }
        // Nothing else.
        await #expect { _ = try await n1.list(Deployment.self) } throws: { status($0)?.code == 403 }
        await #expect { _ = try await n1.create(ConfigMap(name: "x", namespace: "default")) } throws: { status($0)?.code == 403 }
    }

    @Test func schedulerAndControllerManagerRoles() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(pod("p"))
        let sched = try c.client(user: "system:kube-scheduler", groups: [])
        try await sched.bind(pod: "p", namespace: "default", node: "n1")
        await #expect { try await sched.delete(Pod.self, "p") } throws: { status($0)?.code == 403 }
        let cm = try c.client(user: "system:kube-controller-manager", groups: [])
        _ = try await cm.create(pod("q"))
        await #expect { _ = try await cm.create(Secret(name: "s", namespace: "default")) } throws: { status($0)?.code == 403 }
        let stranger = try c.client(user: "bob", groups: ["devs"])
        await #expect { _ = try await stranger.list(Pod.self) } throws: { status($0)?.code == 403 }
    }

    @Test func kubeconfigsAndKeysOnDisk() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        for f in ["admin", "scheduler", "controller-manager"] {
            let kc = try Kubeconfig.load(path: "\(c.dir)/\(f).kubeconfig")
            let r = try kc.resolve()
            let (id, _) = try describeCertificate(pem: r.certPEM!)
            #expect(id.user == ["admin": "admin", "scheduler": "system:kube-scheduler", "controller-manager": "system:kube-controller-manager"][f])
        }
        for key in ["pki/ca.key", "pki/apiserver.key", "admin.kubeconfig", "join-token"] {
            let attrs = try FileManager.default.attributesOfItem(atPath: "\(c.dir)/\(key)")
            #expect((attrs[.posixPermissions] as? Int) == 0o600, "\(key)")
        }
        let token = try JoinToken(parsing: String(contentsOfFile: "\(c.dir)/join-token", encoding: .utf8))
        #expect(token.caHash == c.server.pki.ca.publicKeyHash)
        // The join token authenticates as a bootstrapper that may only create CSRs.
        let boot = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: nil, keyPEM: nil, token: token.bearer, namespace: "default", tlsServerName: nil))
        await #expect { _ = try await boot.list(Pod.self) } throws: { status($0)?.code == 403 }
        #expect(try await boot.request(.GET, Resources.csrs.path(namespace: nil)).status == 200)
    }

    @Test func restartKeepsStateAndRevisionsGrow() async throws {
        let c = try await TestCluster.start()
        let k = try c.admin()
        let d = try await k.call(.POST, Resources.deployments.path(namespace: "default"), body: try deploymentJSON("keep").encoded())
        let rv = Int64(try KubeJSON.decode(Deployment.self, from: d.body).metadata.resourceVersion!)!
        let caBefore = c.server.pki.ca.certificatePEM
        await c.stop()
        await k.shutdown()
        let again = try await TestCluster.start(dir: c.dir)
        defer { Task { await again.cleanup() } }
        #expect(again.server.pki.ca.certificatePEM == caBefore)
        let k2 = try again.admin()
        let kept = try await k2.get(Deployment.self, "keep")
        #expect(Int64(kept.metadata.resourceVersion!) == rv)
        let next = try await k2.create(ConfigMap(name: "after", namespace: "default"))
        #expect(Int64(next.metadata.resourceVersion!)! > rv)
    }
}
