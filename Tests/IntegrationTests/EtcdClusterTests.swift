// The whole control plane on a real etcd (one member, mutual TLS): a Deployment runs on a
// hollow node, Secrets are sealed in etcd, and a second apiserver on the same etcd serves the
// same objects and sees the first one's writes.
import Testing
import Foundation
import API
import Client
import APIServer
import Store
import Etcd
import PKI
import Synchronization

@Suite(.serialized) struct EtcdClusterTests {
    static func etcdctl(_ etcd: LocalEtcd, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        p.arguments = ["--endpoints", etcd.clientURL, "--cacert", etcd.config.caFile!, "--cert", etcd.config.certFile!, "--key", etcd.config.keyFile!] + args
        p.environment = ["ETCDCTL_API": "3"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test func theControlPlaneRunsOnEtcd() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-cluster-\(UUID().uuidString.prefix(8))").path
        let etcd = try LocalEtcd(dir: dir + "/etcd")
        defer { etcd.kill(); try? FileManager.default.removeItem(atPath: dir) }
        let c = try await TestCluster.start(dir: dir + "/api-1") { $0.etcd = etcd.config }
        defer { Task { await c.cleanup() } }
        let hollow = try await startControlPlaneAndHollowNode(c, node: "e1", address: "198.18.0.21")
        defer { hollow.stop() }
        let k = try c.admin()
        _ = try await k.create(try webDeployment("on-etcd", replicas: 3))
        let pods = try await eventually(30, "3 running pods") { () -> [Pod]? in
            let p = try await k.list(Pod.self, labelSelector: "app=on-etcd").items.filter { $0.isReady && $0.phase == "Running" }
            return p.count == 3 ? p : nil
        }
        #expect(pods.allSatisfy { $0.spec?.nodeName == "e1" })

        // Objects are kept under kube-apiserver's key layout; Secrets are sealed there.
        _ = try await k.create(Secret(name: "db-pass", namespace: "default", stringData: ["password": "plaintext-marker-4411"]))
        let keys = try Self.etcdctl(etcd, ["get", "/registry/", "--prefix", "--keys-only"])
        #expect(keys.contains("/registry/apps/deployments/default/on-etcd"))
        #expect(keys.contains("/registry/core/namespaces/default"))
        let raw = try Self.etcdctl(etcd, ["get", "/registry/core/secrets/default/db-pass", "--print-value-only"])
        #expect(raw.hasPrefix("k8s:enc:aesgcm:v1:"))
        #expect(!raw.contains("plaintext-marker-4411") && !raw.contains("cGxhaW50ZXh0LW1hcmtlci00NDEx"))

        // A second apiserver (its own data directory with the same PKI) on the same etcd.
        let dir2 = dir + "/api-2"
        try FileManager.default.createDirectory(atPath: dir2, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: c.dir + "/pki", toPath: dir2 + "/pki")
        try FileManager.default.copyItem(atPath: c.dir + "/encryption.yaml", toPath: dir2 + "/encryption.yaml")
        let c2 = try await TestCluster.start(dir: dir2) { $0.etcd = etcd.config }
        defer { Task { await c2.cleanup() } }
        let k2 = try c2.admin()
        let d2 = try await k2.get(Deployment.self, "on-etcd")
        let d1 = try await k.get(Deployment.self, "on-etcd")
        #expect(d2.metadata.resourceVersion == d1.metadata.resourceVersion)
        #expect(try await k2.get(Secret.self, "db-pass").data?["password"] == Data("plaintext-marker-4411".utf8).base64EncodedString())
        // A write through one is read through the other; a stale write through either conflicts.
        var changed = d1
        changed.metadata.labels = ["via": "first"]
        let written = try await k.update(changed)
        let seen = try await k2.get(Deployment.self, "on-etcd")
        #expect(seen.metadata.resourceVersion == written.metadata.resourceVersion)
        #expect(seen.metadata.labels?["via"] == "first")
        var stale = d2
        stale.metadata.labels = ["via": "second"]
        await #expect(throws: (any Error).self) { _ = try await k2.update(stale) }
        // Scaling through the second apiserver reaches the controllers, which talk to the first.
        try await k2.call(.PATCH, Resources.deployments.path(namespace: "default", name: "on-etcd", subresource: "scale"),
                          body: Data(#"{"spec":{"replicas":1}}"#.utf8), contentType: "application/merge-patch+json")
        _ = try await eventually(20, "scaled down through the second apiserver") { () -> Bool? in
            try await k.list(Pod.self, labelSelector: "app=on-etcd").items.count == 1 ? true : nil
        }
    }

    @Test func aSQLiteClusterMovesToEtcd() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-migrate-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try await TestCluster.start(dir: dir + "/api")
        let k = try c.admin()
        var cm = ConfigMap(name: "kept", namespace: "default")
        cm.metadata.labels = ["tier": "db"]
        cm.data = ["k": "v"]
        _ = try await k.create(cm)
        _ = try await k.create(Secret(name: "db-pass", namespace: "default", stringData: ["password": "moved-secret-1"]))
        let before = try await k.list(ConfigMap.self, allNamespaces: true).items.count
        await c.stop()

        let etcd = try LocalEtcd(dir: dir + "/etcd")
        defer { etcd.kill() }
        var config = APIServerConfig(dataDir: dir + "/api")
        config.etcd = etcd.config
        config.logLevel = .warning
        let r = try await APIServer.migrateSQLiteToEtcd(config: config)
        #expect(r.objects > 10)
        // Into an etcd that already holds objects: refused, nothing written.
        await #expect(throws: StoreError.self) { _ = try await APIServer.migrateSQLiteToEtcd(config: config) }

        let c2 = try await TestCluster.start(dir: dir + "/api") { $0.etcd = etcd.config }
        defer { Task { await c2.cleanup() } }
        let k2 = try c2.admin()
        let got = try await k2.get(ConfigMap.self, "kept")
        #expect(got.metadata.labels == ["tier": "db"] && got.data == ["k": "v"])
        #expect(try await k2.list(ConfigMap.self, labelSelector: "tier=db").items.map(\.name) == ["kept"])
        #expect(try await k2.list(ConfigMap.self, allNamespaces: true).items.count == before)
        #expect(try await k2.get(Secret.self, "db-pass").data?["password"] == Data("moved-secret-1".utf8).base64EncodedString())
        let raw = try Self.etcdctl(etcd, ["get", "/registry/core/secrets/default/db-pass", "--print-value-only"])
        #expect(raw.hasPrefix("k8s:enc:aesgcm:v1:"))
    }

    /// Two apiservers on one etcd; a second one's data directory holds the first one's PKI.
    static func twoAPIServers(_ dir: String, _ etcd: LocalEtcd) async throws -> (TestCluster, TestCluster) {
        let c1 = try await TestCluster.start(dir: dir + "/api-1") { $0.etcd = etcd.config }
        try FileManager.default.createDirectory(atPath: dir + "/api-2", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: c1.dir + "/pki", toPath: dir + "/api-2/pki")
        try FileManager.default.copyItem(atPath: c1.dir + "/encryption.yaml", toPath: dir + "/api-2/encryption.yaml")
        let c2 = try await TestCluster.start(dir: dir + "/api-2") { $0.etcd = etcd.config }
        return (c1, c2)
    }

    @Test func clientsMoveToAnotherApiserverAndWatchesResume() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-failover-\(UUID().uuidString.prefix(8))").path
        let etcd = try LocalEtcd(dir: dir + "/etcd")
        defer { etcd.kill(); try? FileManager.default.removeItem(atPath: dir) }
        let (c1, c2) = try await Self.twoAPIServers(dir, etcd)
        defer { Task { await c1.cleanup(); await c2.cleanup() } }
        let kc = try Kubeconfig.load(path: "\(c1.dir)/admin.kubeconfig")
        var r = try kc.resolve()
        r.server = "\(c1.url),\(c2.url)"
        let k = try KubeClient(config: r)
        #expect(k.server == c1.url)
        let informer = Informer<ConfigMap>(client: k, namespace: "default")
        let seen = Mutex<[String: Int]>([:])
        informer.addHandler { e in
            if case .added(let o) = e { seen.withLock { $0[o.name, default: 0] += 1 } }
        }
        let run = Task { await informer.run() }
        defer { run.cancel() }
        _ = try await k.create(ConfigMap(name: "before", namespace: "default"))
        _ = try await eventually(10, "the informer sees the first ConfigMap") { seen.withLock { $0["before"] } }

        await c1.stop()
        let started = ContinuousClock.now
        _ = try await k.create(ConfigMap(name: "after", namespace: "default"))
        let took = ContinuousClock.now - started
        #expect(took < .seconds(2), "the first write after the apiserver went away took \(took)")
        #expect(k.server == c2.url)
        _ = try await eventually(10, "the informer sees the ConfigMap made through the second apiserver") { seen.withLock { $0["after"] } }
        // Every object came once: the watch resumed from its revision on the other apiserver.
        let counts = seen.withLock { $0 }
        #expect(counts["before"] == 1 && counts["after"] == 1 && counts.values.allSatisfy { $0 == 1 }, "\(counts)")
    }
}
