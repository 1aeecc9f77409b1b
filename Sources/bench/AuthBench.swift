// bench authn — what authentication and RBAC cost per request: the same GET of a pod, in one
// run against one in-process apiserver, as the admin (system:masters, no RBAC lookup), as a
// certificate user allowed by a RoleBinding, and with a ServiceAccount token (signature check,
// account and pod lookups, then RBAC); then again with 2,000 unrelated bindings in the cache.
import ArgumentParser
import Foundation
import API
import APIServer
import Client
import PKI

struct AuthBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "authn",
        abstract: "GETs/s as the admin, an RBAC-bound certificate user and a ServiceAccount token, in one run.")
    @Option(help: "Concurrent clients.") var clients: Int = 8
    @Option(help: "Seconds per phase.") var duration: Double = 5
    @Option(help: "Rounds; the identities alternate within each.") var rounds: Int = 2

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bench-authn-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var cfg = APIServerConfig(dataDir: dir)
        cfg.securePort = 0; cfg.bindAddress = "127.0.0.1"; cfg.inMemory = true; cfg.logLevel = .error
        let server = try APIServer(config: cfg)
        let running = try await server.start()
        let url = "https://127.0.0.1:\(running.port)"
        let ca = server.pki.ca.certificatePEM
        func certClient(_ user: String, _ groups: [String]) throws -> KubeClient {
            let kp = try server.pki.ca.issue(commonName: user, organizations: groups, usage: .client)
            return try KubeClient(config: .init(server: url, caPEM: ca, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, token: nil, namespace: "bench", tlsServerName: nil))
        }
        let admin = try certClient("admin", ["system:masters"])
        _ = try await admin.create(Namespace(name: "bench"))
        _ = try await admin.create(ServiceAccount(name: "reader", namespace: "bench"))
        var pod = benchPod("holder", ns: "bench")
        pod.spec?.serviceAccountName = "reader"
        pod = try await admin.create(pod)
        _ = try await admin.create(RoleBinding(name: "readers", namespace: "bench", roleRef: RoleRef(kind: "ClusterRole", name: "view"),
                                               subjects: [.user("viewer"), .serviceAccount("reader", namespace: "bench")]))
        let token = try await admin.requestToken(serviceAccount: "reader", namespace: "bench", expirationSeconds: 3600,
                                                 boundPod: ("holder", pod.metadata.uid ?? "")).token
        let identities: [(String, KubeClient)] = [
            ("admin certificate (system:masters)", admin),
            ("certificate user, RoleBinding", try certClient("viewer", [])),
            ("ServiceAccount token, RoleBinding", try KubeClient(config: .init(server: url, caPEM: ca, certPEM: nil, keyPEM: nil, token: token,
                                                                                 namespace: "bench", tlsServerName: nil))),
        ]
        let path = Resources.pods.path(namespace: "bench", name: "holder")
        for (_, k) in identities {   // warm up, and prove each identity is allowed
            let r = try await k.request(.GET, path)
            guard r.status == 200 else { throw CtlBenchError("GET as a bench identity answered \(r.status)") }
        }
        print("| bindings in the cache | identity | GETs | GETs/s | p50 ms | p99 ms | vs admin |")
        print("|---|---|---|---|---|---|---|")
        for extra in [0, 2000] {
            if extra > 0 {
                for i in 0..<extra / 2 {
                    _ = try await admin.create(ClusterRoleBinding(name: "noise-\(i)", roleRef: RoleRef(kind: "ClusterRole", name: "view"), subjects: [.user("u\(i)")]))
                    _ = try await admin.create(RoleBinding(name: "noise-\(i)", namespace: "bench", roleRef: RoleRef(kind: "ClusterRole", name: "edit"), subjects: [.group("g\(i)")]))
                }
                // The cache follows a watch: wait (bounded) until a binding made after the noise counts.
                _ = try await admin.create(RoleBinding(name: "probe", namespace: "bench", roleRef: RoleRef(kind: "ClusterRole", name: "view"), subjects: [.user("probe")]))
                let probe = try certClient("probe", [])
                let until = ContinuousClock.now + .seconds(30)
                while try await probe.request(.GET, path).status != 200 {
                    guard ContinuousClock.now < until else { throw CtlBenchError("the RBAC cache did not catch up within 30 s") }
                    try await Task.sleep(for: .milliseconds(20))
                }
                await probe.shutdown()
            }
            var totals: [String: (Int, Double, [Double])] = [:]
            for _ in 1...rounds {
                for (name, k) in identities {
                    let (lat, secs) = try await concurrentLatencies(clients: clients, duration: duration) {
                        let r = try await k.request(.GET, path)
                        guard r.status == 200 else { throw CtlBenchError("GET answered \(r.status)") }
                    }
                    let t = totals[name] ?? (0, 0, [])
                    totals[name] = (t.0 + lat.count, t.1 + secs, t.2 + lat)
                }
            }
            let base = totals[identities[0].0].map { Double($0.0) / $0.1 } ?? 1
            for (name, _) in identities {
                let (n, secs, lat) = totals[name]!
                let sorted = lat.sorted()
                let rate = Double(n) / secs
                print(String(format: "| %d | %@ | %d | %.0f | %.2f | %.2f | %.2f |", extra, name, n, rate,
                             percentile(sorted, 0.5) * 1000, percentile(sorted, 0.99) * 1000, rate / base))
            }
        }
        for (_, k) in identities { await k.shutdown() }
        await running.stop()
    }
}
