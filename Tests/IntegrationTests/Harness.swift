// A real apiserver on loopback with a temp data dir, and clients with various identities.
import Foundation
import Testing
import API
import APIServer
import Client
import PKI
import Store
import Agent
import Controllers
import Scheduler

final class TestCluster: @unchecked Sendable {
    let dir: String
    var server: APIServer
    var running: RunningAPIServer
    var port: Int { running.port }

    static func start(dir: String? = nil, inMemory: Bool = false, tweak: (inout APIServerConfig) -> Void = { _ in }) async throws -> TestCluster {
        let d = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("apiserver-\(UUID())").path
        var c = APIServerConfig(dataDir: d)
        c.securePort = 0
        c.bindAddress = "127.0.0.1"
        c.inMemory = inMemory
        c.logLevel = .warning
        tweak(&c)
        let s = try await APIServer.open(config: c)
        let r = try await s.start()
        return TestCluster(dir: d, server: s, running: r)
    }

    init(dir: String, server: APIServer, running: RunningAPIServer) { self.dir = dir; self.server = server; self.running = running }

    func stop() async { await running.stop() }
    func cleanup() async { await stop(); try? FileManager.default.removeItem(atPath: dir) }

    var caPEM: String { server.pki.ca.certificatePEM }
    var url: String { "https://127.0.0.1:\(port)" }

    func admin() throws -> KubeClient {
        let kc = try Kubeconfig.load(path: "\(dir)/admin.kubeconfig")
        var r = try kc.resolve()
        r.server = url
        return try KubeClient(config: r)
    }

    func client(user: String, groups: [String]) throws -> KubeClient {
        let kp = try server.pki.ca.issue(commonName: user, organizations: groups, usage: .client)
        return try KubeClient(config: .init(server: url, caPEM: caPEM, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
    }

    func anonymous() throws -> KubeClient {
        try KubeClient(config: .init(server: url, caPEM: caPEM, certPEM: nil, keyPEM: nil, token: nil, namespace: "default", tlsServerName: nil))
    }
}

/// Polls until `check` returns a value or the deadline passes.
func eventually<T>(_ seconds: Double = 10, _ what: String = "condition", _ check: () async throws -> T?) async throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if let v = try await check() { return v }
        if Date() > deadline { throw ClientError("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

func deploymentJSON(_ name: String, replicas: Int = 2, extra: String = "") -> JSONValue {
    try! JSONValue.parse(Data("""
    {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"\(name)","labels":{"app":"\(name)"}},
     "spec":{"replicas":\(replicas)\(extra),"selector":{"matchLabels":{"app":"\(name)"}},
             "template":{"metadata":{"labels":{"app":"\(name)"}},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}}}
    """.utf8))
}

func pod(_ name: String, node: String? = nil, ns: String = "default", labels: [String: String] = [:]) -> Pod {
    var p = Pod(metadata: ObjectMeta(name: name, namespace: ns, labels: labels), spec: PodSpec(containers: [Container(name: "c", image: "busybox:1")]))
    p.spec?.nodeName = node
    return p
}

func status(_ e: Error) -> Status? { e as? Status }

/// Read-modify-write that retries on 409, as client-go's RetryOnConflict: controllers update
/// status concurrently, so a plain get-then-update may lose the race.
@discardableResult
func modify<T: KubeObject>(_ k: KubeClient, _ type: T.Type, _ name: String, namespace: String? = nil, _ change: (inout T) -> Void) async throws -> T {
    for _ in 0..<20 {
        var o = try await k.get(T.self, name, namespace: namespace)
        change(&o)
        do { return try await k.update(o) } catch let s as Status where s.code == 409 { continue }
    }
    throw ClientError("gave up after 20 conflicts updating \(name)")
}

/// Asserts `check` holds at every poll for `seconds`: how a test says "this never happens"
/// (a negative claim needs a window; it is watched throughout, not slept through).
func holds(for seconds: Double, _ what: String, _ check: () async throws -> Bool) async throws {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if try await !check() { Issue.record("\(what) stopped holding"); return }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Runs `body` with a deadline: past it, the call fails naming `what` (and the body is cancelled
/// but not awaited, so a session that ignores cancellation cannot hang the test).
func withDeadline<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let gate = DeadlineGate<T>()
    return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
        gate.set(cont)
        let work = Task {
            do { gate.finish(.success(try await body())) } catch { gate.finish(.failure(error)) }
        }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            if gate.finish(.failure(ClientError("\(what) did not finish within \(Int(seconds))s"))) { work.cancel() }
        }
    }
}

final class DeadlineGate<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var cont: CheckedContinuation<T, Error>?
    func set(_ c: CheckedContinuation<T, Error>) { lock.withLock { cont = c } }
    /// Resumes the caller once; true for the call that did.
    @discardableResult func finish(_ r: Result<T, Error>) -> Bool {
        let c: CheckedContinuation<T, Error>? = lock.withLock { let c = cont; cont = nil; return c }
        c?.resume(with: r)
        return c != nil
    }
}

/// A controller-manager (signing node certificates) and a scheduler in process, and one hollow
/// node joined with the cluster's token and Ready: what the workload tests start from. Cancel
/// the returned tasks when done.
struct HollowNodeSetup {
    let runtime: FakeRuntime
    let agent: NodeAgent
    let tasks: [Task<Void, Never>]
    func stop() { for t in tasks { t.cancel() } }
}

/// A client with the identity node `node` gets by joining with the cluster's token (its
/// certificate is signed by the controller-manager's CSR signer, which must be running).
func joinedNodeClient(_ c: TestCluster, node: String) async throws -> KubeClient {
    let creds = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: node, dataDir: c.dir + "/agent-\(node)")
    return try KubeClient(config: .init(server: c.url, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
}

func startControlPlaneAndHollowNode(_ c: TestCluster, node: String, address: String,
                                    tweak: (inout AgentConfig) -> Void = { _ in }) async throws -> HollowNodeSetup {
    var cmConfig = ControllerManagerConfig()
    cmConfig.ca = c.server.pki.ca
    let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cmConfig)
    let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
    var tasks = [Task { await cm.run() }, Task { await sched.run() }]
    let agentClient = try await joinedNodeClient(c, node: node)
    var config = AgentConfig(nodeName: node)
    config.address = address
    tweak(&config)
    let rt = FakeRuntime()
    let agent = NodeAgent(client: agentClient, config: config, runtime: rt)
    tasks.append(Task { try? await agent.run() })
    let k = try c.admin()
    _ = try await eventually(15, "node \(node) Ready") { try? await k.get(Node.self, node).isReady == true ? true : nil }
    return HollowNodeSetup(runtime: rt, agent: agent, tasks: tasks)
}

/// How many requests the test apiserver has answered with this verb, resource and code, from its
/// /metrics (apiserver_request_total).
func requestCount(_ c: TestCluster, verb: String, resource: String, code: Int = 200) async throws -> Int {
    let page = String(decoding: try await c.admin().call(.GET, "/metrics").body, as: UTF8.self)
    let key = "apiserver_request_total{verb=\"\(verb)\",resource=\"\(resource)\",code=\"\(code)\"} "
    guard let line = page.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return 0 }
    return Int(line.dropFirst(key.count)) ?? 0
}
