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

    /// Two apiservers on one etcd; the second joins the first with its server token.
    static func twoAPIServers(_ dir: String, _ etcd: LocalEtcd, serviceCIDR: String? = nil) async throws -> (TestCluster, TestCluster) {
        let c1 = try await TestCluster.start(dir: dir + "/api-1") {
            $0.etcd = etcd.config
            if let serviceCIDR { $0.services = ServiceNetworkConfig(serviceCIDR: CIDR(serviceCIDR)!) }
        }
        let token = try JoinToken(parsing: String(contentsOfFile: c1.dir + "/server-token", encoding: .utf8))
        let c2 = try await TestCluster.start(dir: dir + "/api-2") {
            $0.etcd = etcd.config
            $0.join = ServerJoinConfig(servers: [c1.url], token: token)
            if let serviceCIDR { $0.services = ServiceNetworkConfig(serviceCIDR: CIDR(serviceCIDR)!) }
        }
        return (c1, c2)
    }

    @Test func anApiserverJoinsWithTheServerTokenOnly() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-join-\(UUID().uuidString.prefix(8))").path
        let etcd = try LocalEtcd(dir: dir + "/etcd")
        defer { etcd.kill(); try? FileManager.default.removeItem(atPath: dir) }
        let c1 = try await TestCluster.start(dir: dir + "/api-1") {
            $0.etcd = etcd.config
            $0.services = ServiceNetworkConfig(serviceCIDR: CIDR("198.18.210.0/26")!)
        }
        defer { Task { await c1.cleanup() } }
        let token = try JoinToken(parsing: String(contentsOfFile: c1.dir + "/server-token", encoding: .utf8))
        let nodeToken = try JoinToken(parsing: String(contentsOfFile: c1.dir + "/join-token", encoding: .utf8))

        // Wrong credentials are refused, and nothing is written into the joiner's directory.
        for (bad, why) in [(JoinToken(caHash: token.caHash, id: token.id, secret: String(repeating: "x", count: 16)), "needs the server token"),
                           (nodeToken, "needs the server token"),
                           (JoinToken(caHash: "sha256:" + String(repeating: "0", count: 64), id: token.id, secret: token.secret), "expects sha256:0000")] {
            await #expect(throws: (any Error).self) {
                _ = try await TestCluster.start(dir: dir + "/api-bad") { $0.etcd = etcd.config; $0.join = ServerJoinConfig(servers: [c1.url], token: bad) }
            }
            do {
                try await ServerJoin.joinIfNeeded(ServerJoinConfig(servers: [c1.url], token: bad), layout: DataDirLayout(dir: dir + "/api-bad"), logger: .init(label: "t"))
                Issue.record("joined with a bad token")
            } catch { #expect("\(error)".contains(why), "\(error)") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/api-bad/pki/ca.key"))
        }

        // The joiner, started with an empty data directory, shares the CA and keys and serves the same objects.
        let admin1 = try c1.admin()
        _ = try await admin1.create(Secret(name: "shared", namespace: "default", stringData: ["k": "sealed-by-the-first"]))
        let c2 = try await TestCluster.start(dir: dir + "/api-2") {
            $0.etcd = etcd.config
            $0.join = ServerJoinConfig(servers: ["https://127.0.0.1:1", c1.url], token: token)
            $0.services = ServiceNetworkConfig(serviceCIDR: CIDR("198.18.210.0/26")!)
        }
        defer { Task { await c2.cleanup() } }
        #expect(c2.caPEM == c1.caPEM)
        for f in ["pki/ca.key", "pki/sa.key", "encryption.yaml", "join-token", "server-token"] {
            #expect(try String(contentsOfFile: c1.dir + "/" + f, encoding: .utf8) == String(contentsOfFile: c2.dir + "/" + f, encoding: .utf8), "\(f)")
        }
        #expect(try String(contentsOfFile: c1.dir + "/pki/apiserver.key", encoding: .utf8) != String(contentsOfFile: c2.dir + "/pki/apiserver.key", encoding: .utf8))
        let admin2 = try c2.admin()
        let s = try await admin2.get(Secret.self, "shared", namespace: "default")
        #expect(s.data?["k"] == Data("sealed-by-the-first".utf8).base64EncodedString())
        // A ServiceAccount token issued by one apiserver is accepted by the other.
        _ = try await admin1.create(ServiceAccount(name: "robot", namespace: "default"))
        let tr = try await admin1.request(.POST, "/api/v1/namespaces/default/serviceaccounts/robot/token",
                                          body: try JSONValue.object(["apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": .object([:])]).encoded())
        let jwt = try #require(try JSONValue.parse(tr.body)["status"]?["token"]?.stringValue)
        let viaToken = try KubeClient(config: .init(server: c2.url, caPEM: c2.caPEM, certPEM: nil, keyPEM: nil, token: jwt, namespace: "default", tlsServerName: nil))
        // Authenticated (the signature checks out), then refused by RBAC by name: 403, not 401.
        do {
            _ = try await viaToken.list(Pod.self, namespace: "default")
            Issue.record("a ServiceAccount without roles listed pods")
        } catch { #expect("\(error)".contains("system:serviceaccount:default:robot"), "\(error)") }

        // Both apiservers allocate cluster IPs at once from one range: every Service gets its own.
        let ips = try await withThrowingTaskGroup(of: String.self) { g in
            for i in 0..<24 {
                let k = i % 2 == 0 ? admin1 : admin2
                g.addTask {
                    let body = JSONValue.object(["apiVersion": "v1", "kind": "Service", "metadata": .object(["name": .string("svc-\(i)")]),
                                                 "spec": .object(["ports": .array([.object(["port": 80])]), "type": "NodePort"])])
                    let r = try await k.request(.POST, Resources.services.path(namespace: "default"), body: try body.encoded())
                    let svc = try KubeJSON.decode(Service.self, from: r.body)
                    return "\(svc.spec?.clusterIP ?? "-") \(svc.spec?.ports?.first?.nodePort ?? 0)"
                }
            }
            var out: [String] = []
            for try await ip in g { out.append(ip) }
            return out
        }
        let clusterIPs = ips.map { $0.split(separator: " ")[0] }, nodePorts = ips.map { $0.split(separator: " ")[1] }
        #expect(Set(clusterIPs).count == 24 && Set(nodePorts).count == 24, "\(ips.sorted())")
        #expect(clusterIPs.allSatisfy { CIDR("198.18.210.0/26")!.contains(String($0)) })
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
