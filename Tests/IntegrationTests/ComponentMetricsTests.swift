// The control-plane components' own /metrics endpoint (--metrics-bind-address): what it serves,
// that a taken port ends the component with the error, and that the failures loops count and the
// leader gauge show on it.
import Testing
import Foundation
import API
import Client
import Agent
import PKI

/// One plain HTTP/1.1 request to 127.0.0.1:port with Connection: close; the status code and body.
func plainHTTP(_ method: String, port: Int, path: String) async throws -> (code: Int, body: String) {
    try await Task.detached {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket: errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw ClientError("connect to port \(port): errno \(errno)") }
        let req = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard write(fd, req, req.count) == req.count else { throw ClientError("write: errno \(errno)") }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let sp = text.split(separator: " ", maxSplits: 2).dropFirst().first, let code = Int(sp),
              let end = text.range(of: "\r\n\r\n") else { throw ClientError("not an HTTP answer: \(text.prefix(200))") }
        return (code, String(text[end.upperBound...]))
    }.value
}

@Suite(.serialized) struct ComponentMetricsTests {
    @Test func theAddressFlagIsParsedAndBadOnesAreRefusedByName() throws {
        #expect(try MetricsEndpoint.parseAddress("0") == nil)
        #expect(try MetricsEndpoint.parseAddress("") == nil)
        #expect(try MetricsEndpoint.parseAddress("127.0.0.1:10252")! == ("127.0.0.1", 10252))
        #expect(try MetricsEndpoint.parseAddress("0.0.0.0:0")! == ("0.0.0.0", 0))
        #expect(try MetricsEndpoint.parseAddress("[::1]:9100")! == ("::1", 9100))
        for bad in ["10252", "127.0.0.1:", "127.0.0.1:70000", "host name:80", "127.0.0.1:x"] {
            #expect(throws: ClientError.self, "\(bad)") { try MetricsEndpoint.parseAddress(bad) }
            do { _ = try MetricsEndpoint.parseAddress(bad) } catch { #expect("\(error)".contains("--metrics-bind-address"), "\(error)") }
        }
    }

    @Test func theEndpointServesMetricsAndHealthzAndNothingElse() async throws {
        let m = ComponentMetrics()
        m.failedWrite("test-writer")
        m.failedWrite("test-writer")
        m.count("orchestrator_events_dropped_total", ["component": "a \"quoted\" one"])
        let e = try await MetricsEndpoint(host: "127.0.0.1", port: 0, metrics: m)
        let run = Task { try await e.run() }
        defer { run.cancel() }
        let metrics = try await plainHTTP("GET", port: e.port, path: "/metrics")
        #expect(metrics.code == 200)
        let lines = metrics.body.split(separator: "\n").map(String.init)
        #expect(lines.contains("orchestrator_failed_writes_total{writer=\"test-writer\"} 2"), "\(metrics.body)")
        #expect(lines.contains("# TYPE orchestrator_failed_writes_total counter"))
        #expect(lines.contains("orchestrator_events_dropped_total{component=\"a \\\"quoted\\\" one\"} 1"))
        let rss = lines.first { $0.hasPrefix("process_resident_memory_bytes ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        #expect(rss > 1 << 20, "\(rss)")
        #expect(lines.contains { $0.hasPrefix("process_cpu_seconds_total ") })
        #expect(try await plainHTTP("GET", port: e.port, path: "/healthz") == (200, "ok\n"))
        #expect(try await plainHTTP("GET", port: e.port, path: "/debug/pprof").code == 404)
        #expect(try await plainHTTP("POST", port: e.port, path: "/metrics").code == 405)
        // It ends when cancelled, and the port is free again.
        run.cancel()
        _ = await run.result
        let again = try await MetricsEndpoint(host: "127.0.0.1", port: e.port, metrics: m)
        #expect(again.port == e.port)
    }

    /// The scheduler and the controller-manager end at once, with one line naming the address,
    /// when their metrics port is taken; they do not wait to lead first.
    @Test func aComponentWhoseMetricsPortIsTakenEndsWithTheError() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let held = try holdPort()
        defer { close(held.fd) }
        for lease in ["kube-scheduler", "kube-controller-manager"] {
            do {
                try await serveAndLead(client: try c.admin(), leaseName: lease, leaderElect: true, identity: "taken",
                                       metricsAddress: "127.0.0.1:\(held.port)") { Issue.record("\(lease) ran its work") }
                Issue.record("\(lease) returned without an error")
            } catch {
                #expect("\(error)" == "cannot listen on 127.0.0.1:\(held.port): address already in use", "\(error)")
            }
        }
    }

    /// While a component leads, its endpoint says so; the failures its loops count show there, and
    /// on the apiserver's /metrics page for the apiserver's own loops.
    @Test func theLeaderGaugeAndCountedFailuresAreServed() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let port = try freePort()
        let started = Lines()
        let run = Task {
            try await serveAndLead(client: try c.admin(), leaseName: "metrics-test-leader", leaderElect: true, identity: "me",
                                   metricsAddress: "127.0.0.1:\(port)") {
                started.append("leading")
                while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
            }
        }
        defer { run.cancel() }
        _ = try await eventually(15, "the gauge says it leads") { () -> Bool? in
            let r = try? await plainHTTP("GET", port: port, path: "/metrics")
            return r?.body.contains("leader_election_master_status{name=\"metrics-test-leader\"} 1") == true ? true : nil
        }
        #expect(started.all == ["leading"])
        // A refused event, counted by the recorder of this process: on the apiserver's page too.
        let recorder = EventRecorder(client: try c.client(user: "nobody", groups: []), component: "metrics-test")
        let target = try await c.admin().create(ConfigMap(name: "metrics-about", namespace: "default"))
        recorder.record(target, reason: "Test", message: "refused")
        _ = try await eventually(10, "the refused event on /metrics") { () -> Bool? in
            let page = try? await plainHTTP("GET", port: port, path: "/metrics")
            return page?.body.contains("orchestrator_events_failed_total{component=\"metrics-test\"} 1") == true ? true : nil
        }
        let api = try await c.admin().request(.GET, "/metrics")
        #expect(String(decoding: api.body, as: UTF8.self).contains("orchestrator_events_failed_total{component=\"metrics-test\"} 1"))
    }

    /// A leader that cannot renew within the deadline (the apiserver is down) stops all its work,
    /// and when the apiserver is back it campaigns again and starts its work afresh: the process
    /// does not end. A manual clock drives the elector; the apiserver (SQLite) is real.
    @Test func aLeaderThatLosesItsLeaseStopsItsWorkAndCampaignsAgain() async throws {
        let port = try freePort()
        let c = try await TestCluster.start { $0.securePort = port }
        defer { Task { await c.cleanup() } }
        let clock = ManualClock()
        let terms = Lines()
        let lost0 = ComponentMetrics.shared.value("orchestrator_leader_lease_lost_total", ["name": "campaign-again"])
        let client = try c.client(user: "system:kube-controller-manager", groups: [])
        let run = Task {
            try await serveAndLead(client: client, leaseName: "campaign-again", leaderElect: true, identity: "a", clock: clock) {
                terms.append("start")
                while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
                terms.append("stop")
            }
        }
        defer { run.cancel() }
        _ = try await eventually(10, "the first term") { terms.all == ["start"] ? true : nil }
        #expect(ComponentMetrics.shared.value("leader_election_master_status", ["name": "campaign-again"]) == 1)
        await c.stop()
        // Renewals fail: the manual clock moves on a quarter second at a time until the term ends.
        for _ in 0..<40 where terms.all.count < 2 {
            _ = try await eventually(10, "the elector waits") { clock.sleeperCount() > 0 || terms.all.count >= 2 ? true : nil }
            if terms.all.count < 2 { clock.advance(by: 0.25) }
        }
        #expect(terms.all == ["start", "stop"])
        #expect(ComponentMetrics.shared.value("leader_election_master_status", ["name": "campaign-again"]) == 0)
        #expect(ComponentMetrics.shared.value("orchestrator_leader_lease_lost_total", ["name": "campaign-again"]) == lost0 + 1)
        // The apiserver comes back on the same port and data: a new term starts, in the same process.
        let again = try await TestCluster.start(dir: c.dir) { $0.securePort = port }
        defer { Task { await again.stop() } }
        for _ in 0..<200 where terms.all.count < 3 {
            _ = try await eventually(15, "the elector waits") { clock.sleeperCount() > 0 || terms.all.count >= 3 ? true : nil }
            if terms.all.count < 3 { clock.advance(by: 0.25) }
        }
        #expect(terms.all == ["start", "stop", "start"])
        let lease = try await again.admin().get(Lease.self, "campaign-again", namespace: "kube-system")
        #expect(lease.spec?.holderIdentity == "a")
        #expect(ComponentMetrics.shared.value("leader_election_master_status", ["name": "campaign-again"]) == 1)
        run.cancel()
    }

    /// The agent serves the same page at /metrics on its HTTPS port, to system:masters (and the
    /// apiserver's kubelet client), not to anyone else the CA signed.
    @Test func theAgentServesMetricsOnItsPort() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let port = try freePort()
        let kp = try c.server.pki.ca.issue(commonName: "system:node:m1", organizations: ["system:nodes"], ipAddresses: ["127.0.0.1"], usage: .both)
        let client = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        var config = AgentConfig(nodeName: "m1")
        config.address = "127.0.0.1"
        config.serverPort = port
        config.proxy.mode = "none"
        let agent = NodeAgent(client: client, config: config, runtime: FakeRuntime())
        let server = try AgentServer(agent: agent, port: port, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, caPEM: c.caPEM)
        let run = Task { try? await agent.run(with: server) }
        defer { run.cancel() }
        ComponentMetrics.shared.failedWrite("agent-metrics-test")
        let opsKey = try c.server.pki.ca.issue(commonName: "ops", organizations: ["system:masters"], usage: .client)
        let ops = try KubeClient(config: .init(server: "https://127.0.0.1:\(port)", caPEM: c.caPEM, certPEM: opsKey.certificatePEM, keyPEM: opsKey.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        let page = try await eventually(15, "the agent's /metrics") { () -> String? in
            guard let r = try? await ops.request(.GET, "/metrics"), r.status == 200 else { return nil }
            return String(decoding: r.body, as: UTF8.self)
        }
        #expect(page.contains("orchestrator_failed_writes_total{writer=\"agent-metrics-test\"} 1"), "\(page.prefix(400))")
        #expect(page.contains("process_resident_memory_bytes "))
        let someone = try c.server.pki.ca.issue(commonName: "someone", organizations: [], usage: .client)
        let other = try KubeClient(config: .init(server: "https://127.0.0.1:\(port)", caPEM: c.caPEM, certPEM: someone.certificatePEM, keyPEM: someone.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        #expect(try await other.request(.GET, "/metrics").status == 403)
    }
}
