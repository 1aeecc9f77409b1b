import Testing
import Foundation
import API
import APIServer
import Agent
import Client
import Controllers

/// The agent with the real runtime: a real apiserver, a docker-registry on 127.0.0.1 serving a
/// busybox image built with umoci, runc containers in CNI-wired network namespaces. Root only.
let canRunRealPods = canRunContainers && imageToolsPresent && FileManager.default.isExecutableFile(atPath: "\(CNINetwork.locatePlugins())/bridge")

/// A registry with the test image, shared by the tests of this file (started once).
actor TestRegistry {
    static let shared = TestRegistry()
    var ref: String?
    var dir = ""
    var pid = ""
    func image() throws -> String {
        if let ref { return ref }
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = Int.random(in: 30000...40000)
        let r = "127.0.0.1:\(port)/test/busybox:1.0"
        pid = try shell(". \(root)/hack/lib/common.sh; . \(root)/hack/lib/images.sh; start_registry \(dir)/reg \(port); build_busybox_image \(dir) \(r) >&2")
            .split(separator: "\n").last.map(String.init) ?? ""
        // The registry process is ours; it ends with the test process (killed at exit below).
        let p = pid
        // A plain kill(2): at exit, starting a Foundation Process can deadlock with its own
        // process-monitoring thread, and the test binary would never end.
        atexit_b { if let n = Int32(p.trimmingCharacters(in: .whitespacesAndNewlines)), n > 1 { _ = kill(n, SIGTERM) } }
        ref = r
        return r
    }
}

/// atexit with a Swift closure (one registration per process is enough here).
nonisolated(unsafe) var atexitBlocks: [() -> Void] = []
func atexit_b(_ f: @escaping () -> Void) {
    if atexitBlocks.isEmpty { atexit { for b in atexitBlocks { b() } } }
    atexitBlocks.append(f)
}

/// One agent on the host's root network namespace with its own bridge and pod CIDR.
struct RealNode {
    let cluster: TestCluster
    let name: String
    let dir: String
    let bridge: String
    let cidr: String
    var agent: NodeAgent
    var runtime: RuncRuntime
    var server: AgentServer
    var task: Task<Void, Never>

    static func start(_ c: TestCluster, name: String, subnet: Int, dir existing: String? = nil, backoff: Double = 1,
                      streamingIdleTimeout: Double? = nil) async throws -> RealNode {
        let dir = existing ?? c.dir + "/agent-\(name)"
        let creds = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: name, dataDir: dir)
        let client = try KubeClient(config: .init(server: c.url, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        let bridge = "orcht\(subnet)"
        let cidr = "198.19.\(subnet).0/24"
        let shim = #filePath.components(separatedBy: "/Tests/")[0] + "/.build/debug/orch-shim"
        let rt = try await RuncRuntime(RuncRuntimeConfig(dataDir: dir, nodeName: name, network: CNINetwork(bridge: bridge, podCIDR: cidr, ipamDataDir: dir + "/cni"), shim: shim))
        var config = AgentConfig(nodeName: name)
        config.podCIDR = cidr
        config.address = "127.0.0.1"
        config.backoffBase = backoff
        config.backoffMax = backoff * 4
        if let streamingIdleTimeout { config.streamingIdleTimeout = streamingIdleTimeout }
        let port = try freePort()
        config.serverPort = port
        let agent = NodeAgent(client: client, config: config, runtime: rt)
        let server = try AgentServer(agent: agent, port: port, certPEM: creds.certPEM, keyPEM: creds.keyPEM, caPEM: creds.caPEM)
        let task = Task { _ = try? await agent.run(with: server) }
        return RealNode(cluster: c, name: name, dir: dir, bridge: bridge, cidr: cidr, agent: agent, runtime: rt, server: server, task: task)
    }

    /// Stops the agent (its containers keep running, as when the agent process dies).
    func stopAgent() async { task.cancel(); _ = await task.value }

    /// Removes every pod the runtime holds, then the bridge.
    func teardown() async {
        await stopAgent()
        for uid in await runtime.pods() { try? await runtime.remove(podUID: uid) }
        _ = try? Command.runSync("/usr/sbin/ip", ["link", "del", bridge])
        runtime.removeNodeCgroups()
    }
}

/// The controller-manager (CSR signer, GC) for a test cluster.
func startControllerManager(_ c: TestCluster) throws -> Task<Void, Never> {
    var cfg = ControllerManagerConfig()
    cfg.ca = c.server.pki.ca
    let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cfg)
    return Task { await cm.run() }
}

/// Runs `body` against a cluster with one real node, then removes every container, namespace,
/// mount and bridge the node made, also when `body` fails.
final class NodeRef: @unchecked Sendable {
    var node: RealNode
    init(_ n: RealNode) { node = n }
}

func withRealNode(_ name: String, subnet: Int, streamingIdleTimeout: Double? = nil, _ body: (TestCluster, NodeRef) async throws -> Void) async throws {
    let c = try await TestCluster.start(inMemory: true)
    let cm = try startControllerManager(c)
    let ref = NodeRef(try await RealNode.start(c, name: name, subnet: subnet, streamingIdleTimeout: streamingIdleTimeout))
    var failure: Error?
    do { try await body(c, ref) } catch { failure = error }
    await ref.node.teardown()
    cm.cancel()
    await c.cleanup()
    if let failure { throw failure }
}

/// Waits for a pod to satisfy `check`; on timeout the error carries the pod's status.
@discardableResult
func waitPod(_ k: KubeClient, _ name: String, _ what: String, _ seconds: Double = 30, _ check: (Pod) -> Bool) async throws -> Pod {
    do {
        return try await eventually(seconds, "\(name): \(what)") { () -> Pod? in
            let p = try? await k.get(Pod.self, name); return p.map(check) == true ? p : nil
        }
    } catch {
        let st = (try? await k.get(Pod.self, name)).flatMap { try? KubeJSON.encode($0.status) }.map { String(decoding: $0, as: UTF8.self) } ?? "no pod"
        throw ClientError("\(error); status: \(st)")
    }
}

func podFrom(_ yaml: String) throws -> Pod {
    let doc = try Manifests.parse(yaml, file: "test.yaml")[0]
    return try KubeJSON.decode(Pod.self, from: doc.object.encoded())
}

func mountinfo() -> String { (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "" }

@Suite(.serialized, .enabled(if: canRunRealPods, "needs root, runc, CNI plugins and the image tools")) struct RuncAgentTests {
    @Test func runsRealPodsWithProbesRestartsLogsAndCleanDeletion() async throws {
        let image = try await TestRegistry.shared.image()
        try await withRealNode("r1", subnet: 201) { c, ref in
        let node = ref.node
        let k = try c.admin()
        _ = try await eventually(15, "node Ready") { try? await k.get(Node.self, "r1").isReady == true ? true : nil }
        #expect(try await k.get(Node.self, "r1").spec?.podCIDR == "198.19.201.0/24")

        // A long-running pod: output reaches the log, it gets an address from the pod CIDR, and an
        // exec readiness probe decides Ready.
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: talker}
            spec:
              nodeName: r1
              terminationGracePeriodSeconds: 2
              containers:
              - name: main
                image: \(image)
                command: ["/bin/sh", "-c", "echo hello from $(hostname) as $POD_NAME; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"]
                env:
                - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
                resources: {limits: {memory: 64Mi, cpu: 500m}}
                readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}
            """))
        let running = try await eventually(30, "talker Running") { () -> Pod? in
            let p = try? await k.get(Pod.self, "talker"); return p?.status?.phase == "Running" ? p : nil
        }
        let ip = try #require(running.status?.podIP)
        #expect(ip.hasPrefix("198.19.201."))
        #expect(running.status?.condition("Ready")?.status == "False")
        let uid = try #require(running.metadata.uid)
        let cid = try #require(await node.runtime.containers(podUID: uid).first?.id)
        _ = try await eventually(10, "output in the log") { () -> Bool? in
            let path = node.runtime.logPath(podUID: uid, container: "main", attempt: 0) ?? ""
            return ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains("hello from talker as talker") ? true : nil
        }
        // The same through the apiserver, which proxies pods/log to the node's agent over mTLS.
        let logs = try await eventually(10, "logs through the apiserver") { () -> String? in
            let r = try? await k.request(.GET, "/api/v1/namespaces/default/pods/talker/log", query: ["tailLines": "2"])
            let text = r.map { String(decoding: $0.body, as: UTF8.self) } ?? ""
            return text.contains("tick") ? text : nil
        }
        #expect(logs.split(separator: "\n").count == 2)
        // follow: new lines arrive on an open stream.
        let followed = try await k.request(.GET, "/api/v1/namespaces/default/pods/talker/log", query: ["follow": "true", "limitBytes": "200"])
        #expect(String(decoding: followed.body, as: UTF8.self).contains("hello from talker"))
        // Stats for the metrics collector, through the agent's endpoint.
        _ = try await eventually(10, "stats summary") { () -> Bool? in
            let st = await node.server.summaryDocument()
            return st["pods"]?.arrayValue?.contains { $0["podRef"]?["name"]?.stringValue == "talker" && ($0["memory"]?["workingSetBytes"]?.intValue ?? 0) > 0 } == true ? true : nil
        }
        // The pod answers on its address from the host (the bridge is the pods' gateway).
        #expect(try await node.runtime.exec(podUID: uid, containerID: cid, command: ["/bin/sh", "-c", "ip -4 addr show eth0 | grep -c \(ip)"], timeout: 5).output.contains("1"))
        _ = try await node.runtime.exec(podUID: uid, containerID: cid, command: ["/bin/touch", "/tmp/ready"], timeout: 5)
        _ = try await eventually(10, "Ready after the readiness probe passes") { try? await k.get(Pod.self, "talker").status?.condition("Ready")?.status == "True" ? true : nil }
        // cgroup limits from resources, and stats from the cgroup.
        let stats = await node.runtime.stats(podUID: uid)
        #expect(stats.first?.memoryWorkingSetBytes ?? 0 > 0)
        let limit = (try? String(contentsOfFile: "/sys/fs/cgroup/memory/orchestrator/r1/\(cid)/memory.limit_in_bytes", encoding: .utf8)) ?? ""
        #expect(limit.trimmingCharacters(in: .whitespacesAndNewlines) == "\(64 << 20)")

        // A crashing container backs off: restarts grow, the state says CrashLoopBackOff, and the
        // last state keeps the exit code.
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: crasher}
            spec:
              nodeName: r1
              containers:
              - {name: main, image: \(image), command: ["/bin/sh", "-c", "echo dying; exit 3"]}
            """))
        let crashing = try await eventually(30, "CrashLoopBackOff") { () -> ContainerStatus? in
            let cs = try? await k.get(Pod.self, "crasher").status?.containerStatuses?.first
            return cs?.state?.waiting?.reason == "CrashLoopBackOff" && (cs?.restartCount ?? 0) >= 1 ? cs : nil
        }
        #expect(crashing.lastState?.terminated?.exitCode == 3)

        // A failing liveness probe restarts the container.
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: sick}
            spec:
              nodeName: r1
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: \(image)
                command: ["/bin/sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 1000"]
                livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
            """))
        let restarted = try await eventually(40, "restart after liveness failure") { () -> ContainerStatus? in
            let cs = try? await k.get(Pod.self, "sick").status?.containerStatuses?.first
            return (cs?.restartCount ?? 0) >= 1 ? cs : nil
        }
        #expect(restarted.lastState?.terminated != nil)

        // httpGet readiness and tcpSocket liveness against busybox httpd.
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: web}
            spec:
              nodeName: r1
              containers:
              - name: httpd
                image: \(image)
                command: ["/bin/sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
                ports: [{name: http, containerPort: 8080}]
                readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
                livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
            """))
        _ = try await eventually(30, "web Ready through httpGet") { try? await k.get(Pod.self, "web").status?.condition("Ready")?.status == "True" ? true : nil }

        // restartPolicy Never: exit 0 → Succeeded, exit 1 → Failed.
        for (name, code, phase) in [("ok-job", 0, "Succeeded"), ("bad-job", 1, "Failed")] {
            _ = try await k.create(try podFrom("""
                apiVersion: v1
                kind: Pod
                metadata: {name: \(name)}
                spec:
                  nodeName: r1
                  restartPolicy: Never
                  containers:
                  - {name: main, image: \(image), command: ["/bin/sh", "-c", "exit \(code)"]}
                """))
            try await waitPod(k, name, phase) { $0.status?.phase == phase }
        }

        // A missing image: ErrImagePull, then ImagePullBackOff.
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: noimage}
            spec:
              nodeName: r1
              containers:
              - {name: main, image: "\(image.replacingOccurrences(of: "busybox:1.0", with: "missing:9"))"}
            """))
        var reasons = Set<String>()
        do {
            _ = try await eventually(30, "ErrImagePull then ImagePullBackOff") { () -> Bool? in
                if let r = try? await k.get(Pod.self, "noimage").status?.containerStatuses?.first?.state?.waiting?.reason { reasons.insert(r) }
                return reasons.isSuperset(of: ["ErrImagePull", "ImagePullBackOff"]) ? true : nil
            }
        } catch {
            print("DEBUG noimage", reasons, String(decoding: try KubeJSON.encode(try await k.get(Pod.self, "noimage")), as: UTF8.self))
            throw error
        }

        // Deletion: the shell ignores SIGTERM as PID 1, so SIGKILL ends it after the 2 s grace
        // period; nothing of the pod is left: runc container, netns, mount, cgroup.
        let before = Date()
        try await k.delete(Pod.self, "talker")
        _ = try await eventually(15, "talker gone") { () -> Bool? in
            do { _ = try await k.get(Pod.self, "talker"); return nil } catch let s as Status where s.code == 404 { return true }
        }
        #expect(Date().timeIntervalSince(before) < 8)
        let runcIDs = try Command.runSync(Runc.locate(), ["--root", node.dir + "/runc", "list", "-q"]).stdout
        #expect(!runcIDs.contains(uid))
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/orch-\(uid)"))
        #expect(!mountinfo().contains(uid))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/orchestrator/r1/\(cid)"))
        #expect(!FileManager.default.fileExists(atPath: node.dir + "/pods/\(uid)"))
        }
    }

    @Test func aRestartedAgentAdoptsRunningContainers() async throws {
        let image = try await TestRegistry.shared.image()
        try await withRealNode("r2", subnet: 202) { c, ref in
        var node = ref.node
        let k = try c.admin()
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: keeper}
            spec:
              nodeName: r2
              containers:
              - {name: main, image: \(image), command: ["/bin/sh", "-c", "echo started; exec sleep 1000"]}
            """))
        _ = try await k.create(try podFrom("""
            apiVersion: v1
            kind: Pod
            metadata: {name: goner}
            spec:
              nodeName: r2
              containers:
              - {name: main, image: \(image), command: ["/bin/sh", "-c", "exec sleep 1000"]}
            """))
        let first = try await eventually(30, "both Running") { () -> [Pod]? in
            let ps = try await k.list(Pod.self, namespace: "default").items
            return ps.count == 2 && ps.allSatisfy { $0.status?.phase == "Running" } ? ps : nil
        }
        let keeper = first.first { $0.name == "keeper" }!, goner = first.first { $0.name == "goner" }!
        let cid = keeper.status?.containerStatuses?.first?.containerID
        await node.stopAgent()
        // While the agent is down, one pod is force-deleted: the next agent removes its containers.
        try await k.delete(Pod.self, "goner", options: DeleteOptions(gracePeriodSeconds: 0))
        let pid = try #require(await node.runtime.containers(podUID: keeper.metadata.uid!).first).id
        node = try await RealNode.start(c, name: "r2", subnet: 202, dir: node.dir)
        ref.node = node
        _ = try await eventually(20, "leftovers of the deleted pod removed") { () -> Bool? in
            await node.runtime.pods().contains(goner.metadata.uid!) ? nil : true
        }
        // The kept pod was adopted: same container, no restart, still Running.
        try await holds(for: 2, "the adopted pod keeps its container") {
            let p = try await k.get(Pod.self, "keeper")
            return p.status?.phase == "Running" && p.status?.containerStatuses?.first?.containerID == cid
                && p.status?.containerStatuses?.first?.restartCount == 0
        }
        #expect(await node.runtime.containers(podUID: keeper.metadata.uid!).map(\.id) == [pid])
        }
    }
}
