// The metrics pipeline end to end on hollow nodes: a real apiserver with its collector, the
// controller-manager (CSR signer, and the HPA reading metrics.k8s.io), the scheduler, and agents
// with the fake runtime whose pods burn the cpu their annotation names, served over the agents'
// mutual-TLS stats endpoint.
import Testing
import Foundation
import Synchronization
import API
import APIServer
import Agent
import Client
import Controllers
import Scheduler

/// A port nothing listens on right now (the kernel's pick for an ephemeral bind).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard bound else { throw ClientError("bind: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// One hollow node: joined with the token, FakeRuntime, and its HTTPS endpoint on a free port.
struct HollowNode {
    let name: String
    let task: Task<Void, Never>

    static func start(_ c: TestCluster, name: String, statsInterval: Double = 0.2, proxyRunner: ProxyApplier.Runner? = nil) async throws -> HollowNode {
        let dir = c.dir + "/agent-\(name)"
        let creds = try await Join.credentials(server: c.url, token: c.server.pki.token.description, nodeName: name, dataDir: dir)
        let client = try KubeClient(config: .init(server: c.url, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        var config = AgentConfig(nodeName: name)
        config.address = "127.0.0.1"
        config.statsInterval = statsInterval
        config.capacity = ["cpu": try Quantity(parsing: "8"), "memory": try Quantity(parsing: "16Gi"), "pods": try Quantity(parsing: "110")]
        let port = try freePort()
        config.serverPort = port
        if proxyRunner != nil { config.proxy.mode = "nftables" }
        let agent = NodeAgent(client: client, config: config, runtime: FakeRuntime(), proxyRunner: proxyRunner)
        let server = try AgentServer(agent: agent, port: port, certPEM: creds.certPEM, keyPEM: creds.keyPEM, caPEM: creds.caPEM)
        let task = Task { _ = try? await agent.run(with: server) }
        return HollowNode(name: name, task: task)
    }

    func stop() async { task.cancel(); await task.value }
}

/// A Deployment whose pods request 200m cpu and burn `load` millicores (FakeRuntime annotation).
func loadDeployment(_ name: String, replicas: Int, load: Int) throws -> Deployment {
    var d = try webDeployment(name, replicas: replicas, cpu: "200m")
    d.spec?.template.metadata?.annotations = [FakeRuntime.cpuAnnotation: "\(load)"]
    return d
}

func setLoad(_ k: KubeClient, _ name: String, _ load: Int) async throws {
    _ = try await k.patch(Deployment.self, name, namespace: "default",
                          mergePatch: .object(["spec": .object(["template": .object(["metadata": .object(["annotations": .object([FakeRuntime.cpuAnnotation: .string("\(load)")])])])])]))
}

func podMetrics(_ k: KubeClient, selector: String) async throws -> [PodMetrics] {
    let r = try await k.call(.GET, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", query: ["labelSelector": selector])
    return try KubeJSON.decode(ObjectList<PodMetrics>.self, from: r.body).items
}

func history(_ k: KubeClient, _ kind: String, _ name: String, since: Int = 600) async throws -> [WorkloadMetricsSample] {
    let r = try await k.call(.GET, WorkloadMetricsGroup.path(namespace: "default", kind: kind, name: name), query: ["since": "\(since)"])
    return try KubeJSON.decode(WorkloadMetricsList.self, from: r.body).items
}

func millicores(_ m: PodMetrics) -> Int64 { m.containers.reduce(0) { $0 + ((try? UsageQuantity.milliValue($1.usage["cpu"] ?? "")) ?? 0) } }

@Suite(.serialized) struct MetricsPipelineTests {
    @Test func metricsAPIServesHollowPodsAndTheHistorySurvivesARestart() async throws {
        let tweak: (inout APIServerConfig) -> Void = { $0.metrics.interval = 0.2; $0.metrics.flushInterval = 0.5 }
        let c = try await TestCluster.start(tweak: tweak)
        let admin = try c.admin()
        let cmClient = try c.client(user: "system:kube-controller-manager", groups: [])
        var cfg = ControllerManagerConfig()
        cfg.ca = c.server.pki.ca
        let cm = ControllerManager(client: cmClient, config: cfg)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let tasks = [Task { await cm.run() }, Task { await sched.run() }]
        let node = try await HollowNode.start(c, name: "hollow-m1")

        // Discovery: kubectl top looks for the group in /apis, then lists its resources.
        let groups = try JSONValue.parse(try await admin.call(.GET, "/apis").body)
        #expect(groups["groups"]?.arrayValue?.contains { $0["name"]?.stringValue == "metrics.k8s.io" } == true)
        let resources = try JSONValue.parse(try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1").body)
        #expect(Set(resources["resources"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []) == ["pods", "nodes"])

        _ = try await admin.create(try loadDeployment("busy", replicas: 2, load: 400))
        let items = try await eventually(30, "PodMetrics of 2 busy pods") { () -> [PodMetrics]? in
            let m = try await podMetrics(admin, selector: "app=busy")
            return m.count == 2 ? m : nil
        }
        for m in items {
            #expect((360...440).contains(millicores(m)), "\(m.metadata.name ?? ""): \(m.containers)")
            #expect(m.containers.first?.usage["memory"] == "4Mi")
            #expect(m.metadata.labels?["app"] == "busy" && m.kind == "PodMetrics" && m.apiVersion == "metrics.k8s.io/v1beta1")
            #expect(parseGoDuration(m.window).map { $0 > 0 && $0 < 2 } == true, "window \(m.window)")
        }
        // One by name; an unknown name is a Kubernetes 404.
        let one = try KubeJSON.decode(PodMetrics.self, from: try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/\(items[0].metadata.name!)").body)
        #expect(one.metadata.name == items[0].metadata.name)
        await #expect { try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope") } throws: {
            status($0)?.code == 404 && status($0)?.message == "pods.metrics.k8s.io \"nope\" not found"
        }
        // Selectors filter; a field selector on the name works too.
        #expect(try await podMetrics(admin, selector: "app=other").isEmpty)
        let byField = try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/pods", query: ["fieldSelector": "metadata.name=\(items[1].metadata.name!)"])
        #expect(try KubeJSON.decode(ObjectList<PodMetrics>.self, from: byField.body).items.map(\.metadata.name) == [items[1].metadata.name])

        // The node's own figures.
        let nm = try await eventually(10, "NodeMetrics") { () -> NodeMetrics? in
            let r = try? await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/nodes/hollow-m1")
            return r.flatMap { try? KubeJSON.decode(NodeMetrics.self, from: $0.body) }
        }
        let nodeMemory = try UsageQuantity.value(nm.usage["memory"] ?? "0")
        #expect(nm.usage["cpu"] != nil && nodeMemory > 0)
        let nodeList = try KubeJSON.decode(ObjectList<NodeMetrics>.self, from: try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/nodes").body)
        #expect(nodeList.items.map(\.metadata.name) == ["hollow-m1"] && nodeList.kind == "NodeMetricsList")

        // Who may read: as pods and nodes. The controller-manager may, the scheduler and nodes may not.
        #expect(try await podMetrics(cmClient, selector: "app=busy").count == 2)
        let schedClient = try c.client(user: "system:kube-scheduler", groups: [])
        await #expect { try await podMetrics(schedClient, selector: "app=busy") } throws: { status($0)?.code == 403 }
        let nodeClient = try c.client(user: "system:node:hollow-m1", groups: ["system:nodes"])
        await #expect { try await nodeClient.call(.GET, "/apis/metrics.k8s.io/v1beta1/nodes") } throws: { status($0)?.code == 403 }
        await #expect { try await history(nodeClient, "deployment", "busy") } throws: { status($0)?.code == 403 }

        // History: samples for the Deployment (not its ReplicaSet), two pods at ~200 % of requests.
        let samples = try await eventually(15, "history of deployment/busy with 2 pods") { () -> [WorkloadMetricsSample]? in
            let h = try await history(admin, "deployment", "busy")
            return h.filter { $0.pods == 2 }.count >= 5 ? h : nil
        }
        let full = samples.filter { $0.pods == 2 }
        #expect(full.allSatisfy { (180...220).contains($0.cpuUtilization ?? 0) && (720...880).contains($0.cpuTotalMillicores) }, "\(full)")
        #expect(full.allSatisfy { $0.windowSeconds == 0.2 })
        let csv = String(decoding: try await admin.call(.GET, WorkloadMetricsGroup.path(namespace: "default", kind: "deploy", name: "busy"),
                                                        query: ["since": "600", "format": "csv"]).body, as: UTF8.self)
        #expect(csv.hasPrefix(WorkloadMetricsSample.csvHeader + "\n") && csv.split(separator: "\n").count >= samples.count + 1)
        await #expect { try await history(admin, "deployment", "nothing") } throws: { status($0)?.code == 404 }
        await #expect { try await history(admin, "node", "busy") } throws: { status($0)?.code == 400 }

        // Restart on the same data dir: what was recorded before is still there.
        await node.stop()
        for t in tasks { t.cancel() }
        let before = try await history(admin, "deployment", "busy")
        await c.stop()
        await admin.shutdown()
        let again = try await TestCluster.start(dir: c.dir, tweak: tweak)
        defer { Task { await again.cleanup() } }
        let k2 = try again.admin()
        let after = try await history(k2, "deployment", "busy")
        let afterTimes = Set(after.map(\.time))
        #expect(before.count >= 5 && before.allSatisfy { afterTimes.contains($0.time) }, "\(before.count) before, \(after.count) after the restart")
        #expect(FileManager.default.fileExists(atPath: c.dir + "/metrics.db"))
        // The restarted server has no live figures until a node reports again.
        #expect(try await podMetrics(k2, selector: "app=busy").isEmpty)
    }

    @Test func aHungAgentDoesNotSlowTheScrapesOfTheOthers() async throws {
        let c = try await TestCluster.start(inMemory: true) { $0.metrics.interval = 0.25; $0.metrics.scrapeTimeout = 1.5; $0.metrics.rateSpan = 0 }  // rates over one interval, so a window shows the gap between scrapes
        let admin = try c.admin()
        var cfg = ControllerManagerConfig()
        cfg.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cfg)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        let tasks = [Task { await cm.run() }, Task { await sched.run() }]
        let node = try await HollowNode.start(c, name: "hollow-ok", statsInterval: 0.25)
        // A listener that completes TCP handshakes (the kernel does) but never answers TLS.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 } }
        listen(fd, 64)
        defer { close(fd); Task { await node.stop(); for t in tasks { t.cancel() }; await c.cleanup() } }
        // Unschedulable (and never Ready), so that no pod lands on it.
        var hungNode = Node(name: "hung")
        var spec = NodeSpec()
        spec.unschedulable = true
        hungNode.spec = spec
        var hung = try await admin.create(hungNode)
        var st = NodeStatus()
        st.addresses = [NodeAddress(type: "InternalIP", address: "127.0.0.1")]
        st.daemonEndpoints = NodeDaemonEndpoints(kubeletEndpoint: DaemonEndpoint(Port: Int(UInt16(bigEndian: addr.sin_port))))
        hung.status = st
        _ = try await admin.updateStatus(hung)

        _ = try await admin.create(try loadDeployment("steady", replicas: 2, load: 100))
        _ = try await eventually(30, "PodMetrics of the hollow pods") { () -> Bool? in try await podMetrics(admin, selector: "app=steady").count == 2 ? true : nil }
        // For three timeouts' worth of time, the hollow node's figures come from scrapes about
        // an interval apart (the window is the time between the two samples a rate uses),
        // never one timeout apart as if each round waited for the hung node.
        var windows: [Double] = []
        let end = Date().addingTimeInterval(4.5)
        while Date() < end {
            for m in try await podMetrics(admin, selector: "app=steady") { windows.append(parseGoDuration(m.window) ?? 99) }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(!windows.isEmpty && windows.allSatisfy { $0 < 1.0 }, "windows: \(windows)")
        let page = String(decoding: try await admin.call(.GET, "/metrics").body, as: UTF8.self)
        let failures = page.split(separator: "\n").first { $0.hasPrefix("metrics_scrape_failures_total ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        #expect(failures >= 2, "scrape failures: \(failures)")
        await #expect { try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/nodes/hung") } throws: { status($0)?.code == 404 }
        #expect(try await admin.call(.GET, "/apis/metrics.k8s.io/v1beta1/nodes/hollow-ok").status == 200)
    }

    /// A cluster collecting metrics every 0.25 s, with a controller-manager (HPA sync 0.5 s, pod
    /// metrics from the metrics API, and with `history` the workload history) and a scheduler.
    func hpaStack(history: Bool) async throws -> (TestCluster, KubeClient, [Task<Void, Never>]) {
        let c = try await TestCluster.start(inMemory: true) { $0.metrics.interval = 0.25 }
        let admin = try c.admin()
        let cmClient = try c.client(user: "system:kube-controller-manager", groups: [])
        var cfg = ControllerManagerConfig()
        cfg.ca = c.server.pki.ca
        cfg.hpa.syncPeriod = 0.5
        cfg.podMetrics = MetricsAPIPodSource(client: cmClient)
        if history { cfg.metricsHistory = WorkloadMetricsHistory(client: cmClient) }
        let cm = ControllerManager(client: cmClient, config: cfg)
        let sched = Scheduler(client: try c.client(user: "system:kube-scheduler", groups: []))
        return (c, admin, [Task { await cm.run() }, Task { await sched.run() }])
    }

    @Test func hpaFollowsMeasuredCPUOnHollowNodes() async throws {
        let (c, admin, tasks) = try await hpaStack(history: true)
        let node = try await HollowNode.start(c, name: "hollow-hpa", statsInterval: 0.25)
        defer { Task { await node.stop(); for t in tasks { t.cancel() }; await c.cleanup() } }

        _ = try await admin.create(try loadDeployment("load", replicas: 1, load: 0))
        // Scale-up limited to what Kubernetes allows per period, with a 1 s period so the test
        // does not wait out the default 15 s; scale-down after 3 s of lower recommendations.
        let fast = HPAScalingRules(stabilizationWindowSeconds: 0, selectPolicy: "Max", policies: [HPAScalingPolicy(type: "Percent", value: 500, periodSeconds: 1)])
        _ = try await admin.create(HorizontalPodAutoscaler(metadata: ObjectMeta(name: "load", namespace: "default"), spec: HPASpec(
            scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "load", apiVersion: "apps/v1"), minReplicas: 1, maxReplicas: 6,
            metrics: [.resource("cpu", MetricTarget(type: "Utilization", averageUtilization: 50))],
            behavior: HPABehavior(scaleUp: fast, scaleDown: HPAScalingRules(stabilizationWindowSeconds: 3)))))

        func hpa() async throws -> HorizontalPodAutoscaler { try await admin.get(HorizontalPodAutoscaler.self, "load", namespace: "default") }
        // Idle: a valid metric at 0 %, one replica.
        _ = try await eventually(30, "HPA sees 0% from metrics.k8s.io") { () -> Bool? in
            let s = try await hpa().status
            return s?.condition("ScalingActive")?.status == "True" && s?.currentMetrics?.first?.resource?.current.averageUtilization == 0 ? true : nil
        }

        // The timeline of replicas and measured utilization, sampled while the load changes.
        let start = Date()
        let timeline = Mutex<[(Double, Int, Int?)]>([])
        let recorder = Task {
            while !Task.isCancelled {
                if let d = try? await admin.get(Deployment.self, "load", namespace: "default"), let h = try? await hpa() {
                    let row = (Date().timeIntervalSince(start), d.spec?.replicas ?? 0, h.status?.currentMetrics?.first?.resource?.current.averageUtilization)
                    timeline.withLock { t in if t.last.map({ $0.1 != row.1 || $0.2 != row.2 }) ?? true { t.append(row) } }
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { recorder.cancel() }

        try await setLoad(admin, "load", 400)
        let loadSet = Date()
        _ = try await eventually(30, "scale-up after the load appears") { () -> Bool? in
            (try await admin.get(Deployment.self, "load", namespace: "default").spec?.replicas ?? 0) > 1 ? true : nil
        }
        let firstScaleUp = Date().timeIntervalSince(loadSet)
        _ = try await eventually(40, "6 replicas (maxReplicas)") { () -> Bool? in
            (try await admin.get(Deployment.self, "load", namespace: "default").spec?.replicas ?? 0) == 6 ? true : nil
        }
        let atMax = Date().timeIntervalSince(loadSet)
        // The history the controller-manager reads for predictive HPAs has the same story.
        let h = try await WorkloadMetricsHistory(client: try c.client(user: "system:kube-controller-manager", groups: []), step: 1).utilization(namespace: "default",
            target: CrossVersionObjectReference(kind: "Deployment", name: "load", apiVersion: "apps/v1"), resource: "cpu", since: start)
        #expect(h.contains { $0.utilization > 150 })

        try await setLoad(admin, "load", 0)
        let loadGone = Date()
        _ = try await eventually(60, "back to 1 replica") { () -> Bool? in
            (try await admin.get(Deployment.self, "load", namespace: "default").spec?.replicas ?? 0) == 1 ? true : nil
        }
        let scaledDown = Date().timeIntervalSince(loadGone)
        recorder.cancel()
        let util = try await hpa().status?.currentMetrics?.first?.resource?.current.averageUtilization
        timeline.withLock { $0.append((Date().timeIntervalSince(start), 1, util)) }

        let rows = timeline.withLock { $0 }
        print("HPA timeline (seconds since the idle state, spec.replicas, measured cpu utilization %):")
        for (t, r, u) in rows { print(String(format: "  %6.2fs  replicas=%d  cpu=%@", t, r, u.map { "\($0)%" } ?? "-")) }
        print(String(format: "load 400m set → first scale-up %.1fs, 6 replicas %.1fs; load 0 → 1 replica %.1fs", firstScaleUp, atMax, scaledDown))
        #expect(firstScaleUp < 10, "first scale-up took \(firstScaleUp)s")
        // Not before the 3 s stabilization window has passed: it counts from the last sync that
        // still recommended 6, and syncs (every 0.5 s) kept recommending 6 until the low
        // figures arrived after the change, so at least 3 - 0.5 s (plus a little queueing slack).
        #expect(scaledDown >= 2.3, "scaled down after \(scaledDown)s")
        #expect(rows.map(\.1).max() == 6)
    }

    /// requests_per_second end to end on a hollow node: the proxy's counters (a stand-in nft
    /// whose counters grow at a set rate per endpoint) → the agent's summary → the collector →
    /// custom.metrics.k8s.io → an HPA with a `type: Pods` metric.
    @Test func hpaScalesOnRequestsPerSecondThroughServices() async throws {
        let (c, admin, tasks) = try await hpaStack(history: false)
        let nft = CountingNft()
        let node = try await HollowNode.start(c, name: "hollow-rps", statsInterval: 0.25, proxyRunner: nft.run)
        defer { Task { await node.stop(); for t in tasks { t.cancel() }; await c.cleanup() } }

        _ = try await admin.create(try loadDeployment("rps", replicas: 2, load: 0))
        let svc = #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"rps","namespace":"default"},"spec":{"selector":{"app":"rps"},"ports":[{"port":80,"targetPort":8080}]}}"#
        _ = try await admin.create(try KubeJSON.decode(Service.self, from: Data(svc.utf8)))
        // 30 connections a second to each endpoint.
        nft.perSecond.withLock { $0 = 30 }
        func values(_ version: String = "v1beta2") async throws -> MetricValueList {
            let r = try await admin.call(.GET, CustomMetricsGroup.path(version: version, namespace: "default", metric: "requests_per_second"), query: ["labelSelector": "app=rps"])
            return try KubeJSON.decode(MetricValueList.self, from: r.body)
        }
        let list = try await eventually(30, "requests_per_second for both pods") { () -> MetricValueList? in
            let l = try await values()
            return l.items.count == 2 && l.items.allSatisfy({ $0.value.milli > 20_000 }) ? l : nil
        }
        #expect(list.apiVersion == "custom.metrics.k8s.io/v1beta2" && list.kind == "MetricValueList")
        for v in list.items {
            #expect(v.describedObject.kind == "Pod" && v.describedObject.apiVersion == "/v1" && v.metric?.name == "requests_per_second")
            #expect(abs(Double(v.value.milli) / 1000 - 30) < 6, "\(v.value)")
        }
        // v1beta1 names the metric its own way; a named pod, an unknown metric, and discovery.
        let old = try await values("v1beta1")
        #expect(old.items.first?.metricName == "requests_per_second" && old.items.first?.metric == nil)
        let one = try #require(list.items.first?.describedObject.name)
        let single = try await admin.call(.GET, CustomMetricsGroup.path(namespace: "default", pod: one, metric: "requests_per_second"))
        #expect(try KubeJSON.decode(MetricValueList.self, from: single.body).items.map(\.describedObject.name) == [one])
        await #expect(throws: Status.self) { try await admin.call(.GET, CustomMetricsGroup.path(namespace: "default", metric: "queue_depth")) }
        let disc = try JSONValue.parse(try await admin.call(.GET, "/apis/custom.metrics.k8s.io/v1beta2").body)
        #expect(disc["resources"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["pods/requests_per_second"])
        // Someone who may not read pods may not read their metrics either.
        let nobody = try c.client(user: "nobody", groups: [])
        await #expect(throws: Status.self) { try await nobody.call(.GET, CustomMetricsGroup.path(namespace: "default", metric: "requests_per_second")) }

        // 30/s per pod against a target of 10/s: the HPA scales 2 → 6.
        var rps = MetricSpec(type: "Pods")
        rps.pods = try JSONValue.from(PodsMetricSource(metric: .init(name: "requests_per_second"), target: MetricTarget(type: "AverageValue", averageValue: try Quantity(parsing: "10"))))
        let fast = HPAScalingRules(stabilizationWindowSeconds: 0, selectPolicy: "Max", policies: [HPAScalingPolicy(type: "Percent", value: 500, periodSeconds: 1)])
        _ = try await admin.create(HorizontalPodAutoscaler(metadata: ObjectMeta(name: "rps", namespace: "default"), spec: HPASpec(
            scaleTargetRef: CrossVersionObjectReference(kind: "Deployment", name: "rps", apiVersion: "apps/v1"), minReplicas: 1, maxReplicas: 6,
            metrics: [rps], behavior: HPABehavior(scaleUp: fast, scaleDown: HPAScalingRules(stabilizationWindowSeconds: 2)))))
        _ = try await eventually(40, "6 replicas from requests_per_second") { () -> Bool? in
            (try await admin.get(Deployment.self, "rps", namespace: "default").spec?.replicas ?? 0) == 6 ? true : nil
        }
        let status = try await admin.get(HorizontalPodAutoscaler.self, "rps", namespace: "default").status
        let pm = try #require(try status?.currentMetrics?.first?.pods?.decode(PodsMetricStatus.self))
        #expect(pm.metric.name == "requests_per_second")
        // The traffic stops: back to one replica.
        nft.perSecond.withLock { $0 = 0 }
        _ = try await eventually(60, "1 replica once the traffic stops") { () -> Bool? in
            (try await admin.get(Deployment.self, "rps", namespace: "default").spec?.replicas ?? 0) == 1 ? true : nil
        }
    }

    /// Back data: two days of a daily pattern imported as CSV become the workload's history at
    /// once, and the HPA's forecaster finds the day in it; bad files and unknown workloads are
    /// refused with nothing kept.
    @Test func importedBackDataIsTheHistoryAndBadFilesKeepNothing() async throws {
        let c = try await TestCluster.start(tweak: { $0.metrics.interval = 0.2; $0.metrics.flushInterval = 0.5 })
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(try webDeployment("shop", replicas: 0))
        let path = WorkloadMetricsGroup.path(namespace: "default", kind: "Deployment", name: "shop")
        let now = Date()
        // Every 5 minutes for two days: demand peaks at noon; the pods follow it.
        var csv = "timestamp,pods,cpu_utilization_percent\n"
        var rows = 0
        for m in stride(from: 2 * 1440, to: 0, by: -5) {
            let t = now.addingTimeInterval(Double(-m) * 60)
            let hour = Double(Int(t.timeIntervalSince1970) % 86400) / 3600
            let demand = 200 + 800 * max(0, sin((hour - 6) / 12 * .pi))   // percent of one pod's request
            let pods = max(2, Int((demand / 70).rounded(.up)))
            csv += "\(KubeTime.format(t)),\(pods),\(compactNumber((demand / Double(pods) * 10).rounded() / 10))\n"
            rows += 1
        }
        let r = try await admin.call(.POST, path, body: Data(csv.utf8), contentType: "text/csv")
        #expect(r.status == 201)
        let res = try KubeJSON.decode(WorkloadMetricsImportResult.self, from: r.body)
        #expect(res.imported == rows && res.olderThanRetention == 0)
        let stored = try await history(admin, "Deployment", "shop", since: 3 * 86400)
        #expect(stored.count == rows, "\(stored.count) samples back, \(rows) imported")

        // The HPA's own history reader and forecaster: the daily period, from the first minute.
        let h = try await WorkloadMetricsHistory(client: admin).utilization(namespace: "default", target: CrossVersionObjectReference(kind: "Deployment", name: "shop"),
                                                                            resource: "cpu", since: now.addingTimeInterval(-2 * 86400 - 60))
        let f = try UtilizationPredictor.forecast(h, resource: "cpu", now: now, lookahead: 300).get()
        #expect(f.period.map { abs($0 - 86400) < 1800 } == true, "\(f.describeMethod); \(h.count) samples")

        // Refused whole: nothing of a file with one bad line is kept, and the line is named.
        let before = try await history(admin, "Deployment", "shop", since: 3 * 86400).count
        let t1 = KubeTime.format(now.addingTimeInterval(-60)), t2 = KubeTime.format(now.addingTimeInterval(-120))
        for (bad, message) in [("timestamp,pods,cpu_utilization_percent\n\(t2),2,50\n\(t1),2,50\n\(t2),2,50\n", "line 4: timestamp \(t2) is not after line 3's"),
                               ("timestamp,pods,cpu_utilization_percent\n\(t2),2,50\n\(t1),2,-1\n", "line 3: cpu_utilization_percent: -1 is negative"),
                               ("timestamp,cpu_utilization_percent\n\(t2),50\n", "line 1: missing column \"pods\"")] {
            await #expect { try await admin.call(.POST, path, body: Data(bad.utf8), contentType: "text/csv") } throws: {
                status($0)?.code == 400 && status($0)?.message?.hasPrefix(message) == true
            }
        }
        #expect(try await history(admin, "Deployment", "shop", since: 3 * 86400).count == before)
        // A workload that does not exist.
        await #expect { try await admin.call(.POST, WorkloadMetricsGroup.path(namespace: "default", kind: "Deployment", name: "nope"), body: Data(csv.utf8), contentType: "text/csv") } throws: {
            status($0)?.code == 404 && status($0)?.message == "deployment \"nope\" does not exist in namespace default: create it before importing its history"
        }
        // Importing is writing: a node may not.
        let node = try c.client(user: "system:node:n1", groups: ["system:nodes"])
        await #expect { try await node.call(.POST, path, body: Data(csv.utf8), contentType: "text/csv") } throws: { status($0)?.code == 403 }
    }
}

/// A stand-in for nft: accepts every script, remembers which endpoint counters exist, and
/// answers `list counters` with counts that grow at `perSecond` for each of them.
final class CountingNft: Sendable {
    let perSecond = Mutex<Double>(0)
    private let state = Mutex<(counters: [String: Double], last: Date)>(([:], Date()))

    var run: ProxyApplier.Runner {
        { [self] exe, args, stdin in
            guard exe.hasSuffix("nft") else { return (0, "", "") }
            self.advance()
            if args.first == "-f", let script = stdin {
                state.withLock { s in
                    for line in script.split(separator: "\n") {
                        let words = line.split(separator: " ")
                        guard words.count == 5, words[1] == "counter" else { continue }
                        if words[0] == "add", s.counters[String(words[4])] == nil { s.counters[String(words[4])] = 0 }
                        if words[0] == "delete" { s.counters.removeValue(forKey: String(words[4])) }
                    }
                }
                return (0, "", "")
            }
            if args.contains("counters") {
                let items = state.withLock { s in s.counters.map { #"{"counter": {"family": "ip", "name": "\#($0.key)", "table": "orchestrator", "handle": 1, "packets": \#(Int($0.value)), "bytes": 0}}"# } }
                return (0, #"{"nftables": [\#(items.joined(separator: ", "))]}"#, "")
            }
            if args.contains("list") { return (1, "", "Error: No such file or directory") }
            return (0, "", "")
        }
    }

    private func advance() {
        let rate = perSecond.withLock { $0 }
        state.withLock { s in
            let now = Date()
            let dt = now.timeIntervalSince(s.last)
            s.last = now
            for k in s.counters.keys { s.counters[k]! += rate * dt }
        }
    }
}
