import Testing
import Foundation
import API
import APIServer
import Client
import Store
import Agent

@Suite(.serialized) struct RobustnessTests {
    /// Malformed input of many shapes gets a 4xx Status; the server keeps answering and keeps its data.
    @Test func malformedInputNeverCrashesOrCorrupts() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(ConfigMap(name: "keep", namespace: "default", data: ["x": "1"]))
        let coll = Resources.configmaps.path(namespace: "default")
        let item = Resources.configmaps.path(namespace: "default", name: "keep")
        var rng = SystemRandomNumberGenerator()
        let valid = #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fuzz"},"data":{"a":"b"}}"#
        var bodies: [Data] = [
            Data(), Data("null".utf8), Data("[]".utf8), Data("\"str\"".utf8), Data("{".utf8),
            Data(String(repeating: "[", count: 100_000).utf8),
            Data(("{\"a\":" + String(repeating: "{\"a\":", count: 2000) + "1" + String(repeating: "}", count: 2001)).utf8),
            Data(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#.utf8),
            Data(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#.utf8),
            Data(#"{"metadata":{"name":"x","labels":{"bad key!":"v"}}}"#.utf8),
            Data(#"{"metadata":{"name":"\ud800"}}"#.utf8),
            Data([0xFF, 0xFE, 0x00, 0x01]),
        ]
        for cut in stride(from: 1, to: valid.utf8.count, by: 7) { bodies.append(Data(valid.utf8.prefix(cut))) }
        for _ in 0..<50 { bodies.append(Data((0..<Int.random(in: 1...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })) }
        for body in bodies {
            let r1 = try await k.request(.POST, coll, body: body)
            #expect((400..<500).contains(r1.status), "POST \(String(decoding: body.prefix(40), as: UTF8.self)) -> \(r1.status)")
            let r2 = try await k.request(.PUT, item, body: body)
            #expect((400..<500).contains(r2.status))
            // An empty JSON patch ("[]") is valid; everything else here is not.
            let r3 = try await k.request(.PATCH, item, body: body, contentType: "application/json-patch+json")
            #expect(body == Data("[]".utf8) ? r3.status == 200 : (400..<500).contains(r3.status))
            let r4 = try await k.request(.PATCH, item, body: body, contentType: "application/merge-patch+json")
            #expect(r4.status < 500)
            #expect(try KubeJSON.decode(Status.self, from: r1.body).kind == "Status")
        }
        #expect(try await k.request(.PATCH, item, body: Data("{}".utf8), contentType: "text/plain").status == 415)
        #expect(try await k.request(.GET, "/api/v1/namespaces/default/configmaps?labelSelector=%ZZ").status < 500)
        #expect(try await k.request(.GET, "/api/v1/nosuchthing").status == 404)
        #expect(try await k.request(.GET, "/apis/apps/v9/deployments").status == 404)
        // Data accepted before is intact, and the store still takes writes.
        let kept = try await k.get(ConfigMap.self, "keep")
        #expect(kept.data?["x"] == "1")
        _ = try await k.create(ConfigMap(name: "after", namespace: "default"))
    }

    /// Two answers the fuzzer (hack/fuzz) found wrong: CONNECT held its connection open after
    /// the answer (NIO takes it for a tunnel), so a client waited until its own timeout; and the
    /// logs of a pod bound to a node that does not exist were a 503 where Kubernetes says 404.
    @Test func connectIsAnsweredAndClosedAndLogsOnAnUnknownNodeAreNotFound() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let kp = try c.server.pki.ca.issue(commonName: "fuzz-admin", organizations: ["system:masters"], usage: .client)
        let crt = c.dir + "/fuzz.crt", key = c.dir + "/fuzz.key"
        try kp.certificatePEM.write(toFile: crt, atomically: true, encoding: .utf8)
        try kp.keyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sk", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "--cert", crt, "--key", key, "-X", "CONNECT", c.url + "/api/v1/namespaces"]
        let out = Pipe()
        curl.standardOutput = out
        let started = Date()
        try curl.run()
        let code = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        curl.waitUntilExit()
        #expect(code == "405")
        #expect(curl.terminationStatus == 0, "curl ended with \(curl.terminationStatus) (28: it waited for the connection to end)")
        #expect(Date().timeIntervalSince(started) < 5)

        let k = try c.admin()
        _ = try await k.create(pod("lost", node: "no-such-node"))
        let r = try await k.request(.GET, Resources.pods.path(namespace: "default", name: "lost", subresource: "log"))
        #expect(r.status == 404)
        #expect(try KubeJSON.decode(Status.self, from: r.body).message == "nodes \"no-such-node\" not found")
    }

    /// A deletecollection in which some deletes fail answers with the failure (as Kubernetes:
    /// the first error), not 200; the objects that could go are gone, the others are kept.
    @Test func deleteCollectionReportsAFailedDelete() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        let a = try await k.create(ConfigMap(name: "a", namespace: "default"))
        _ = try await k.create(ConfigMap(name: "b", namespace: "default"))
        _ = try await k.create(ConfigMap(name: "c", namespace: "default"))
        // A UID precondition that only "a" meets: the deletes of "b" and "c" fail with 409.
        let body = Data(#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"\#(a.metadata.uid ?? "")"}}"#.utf8)
        let r = try await k.request(.DELETE, Resources.configmaps.path(namespace: "default"), body: body)
        #expect(r.status == 409, "\(r.status) \(String(decoding: r.body, as: UTF8.self))")
        let st = try KubeJSON.decode(Status.self, from: r.body)
        #expect(st.reason == "Conflict")
        #expect(st.message?.contains("Precondition failed") == true)
        let left = try await k.list(ConfigMap.self, namespace: "default").items.map(\.metadata.name).compactMap { $0 }.filter { ["a", "b", "c"].contains($0) }
        #expect(left.sorted() == ["b", "c"])
        // Nothing failing: 200 with what was deleted.
        let ok = try await k.request(.DELETE, Resources.configmaps.path(namespace: "default"), query: ["labelSelector": "nothing=matches"])
        #expect(ok.status == 200)
    }

    /// What a node reports as its addresses is validated on write (each error names the field),
    /// and an address stored before that is never made into a URL: pods/log answers 503.
    @Test func oddNodeAddressesAreRefusedAndNeverReachAURL() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(Node(name: "odd"))
        let node = "/api/v1/nodes/odd/status"
        func put(_ addrs: String) async throws -> RawResponse {
            let cur = try await k.request(.GET, "/api/v1/nodes/odd")
            var j = try JSONValue.parse(cur.body)
            j["status"] = try JSONValue.parse(Data(#"{"addresses":\#(addrs),"daemonEndpoints":{"kubeletEndpoint":{"Port":10250}}}"#.utf8))
            return try await k.request(.PUT, node, body: try j.encoded())
        }
        let odd: [(String, String)] = [
            (#"[{"type":"InternalIP","address":"198.18.0.5/x?y#z"}]"#, "status.addresses[0].address"),
            (#"[{"type":"InternalIP","address":""}]"#, "status.addresses[0].address"),
            (#"[{"type":"InternalIP","address":"999.1.1.1"}]"#, "status.addresses[0].address"),
            (#"[{"type":"InternalIP","address":"01.2.3.4"}]"#, "status.addresses[0].address"),
            (#"[{"type":"ExternalIP","address":"[::1]"}]"#, "status.addresses[0].address"),
            (#"[{"type":"InternalIP","address":"fe80::1%eth0"}]"#, "status.addresses[0].address"),
            (#"[{"type":"Hostname","address":"http://evil.example/"}]"#, "status.addresses[0].address"),
            (#"[{"type":"Hostname","address":"has space"}]"#, "status.addresses[0].address"),
            (#"[{"type":"InternalDNS","address":"\#(String(repeating: "a", count: 300))"}]"#, "status.addresses[0].address"),
            (#"[{"type":"Weird","address":"198.18.0.5"}]"#, "status.addresses[0].type"),
            (#"[{"type":"InternalIP","address":"198.18.0.5"},{"type":"InternalIP","address":"198.18.0.5"}]"#, "status.addresses[1]"),
        ]
        for (addrs, field) in odd {
            let r = try await put(addrs)
            #expect(r.status == 422, "\(addrs) -> \(r.status)")
            let st = try KubeJSON.decode(Status.self, from: r.body)
            #expect(st.message?.contains(field) == true, "\(addrs): \(st.message ?? "")")
        }
        let good = try await put(#"[{"type":"InternalIP","address":"198.18.0.5"},{"type":"ExternalIP","address":"fd00::5"},{"type":"Hostname","address":"odd"}]"#)
        #expect(good.status == 200, "\(String(decoding: good.body, as: UTF8.self))")

        // An address that got into the store before the check: pods/log refuses it, the server lives.
        let key = ObjectKey(resource: "nodes", namespace: "", name: "odd")
        let stored = try #require(c.server.store.get(key))
        var j = try JSONValue.parse(stored.data)
        j["status"]?["addresses"] = try JSONValue.parse(Data(#"[{"type":"InternalIP","address":"x/../../?q=1"}]"#.utf8))
        _ = try await c.server.store.write(.update(StoredObject(key: key, data: try j.encoded(), labels: stored.labels, fields: stored.fields), expectedRevision: stored.revision))
        _ = try await k.request(.POST, "/api/v1/namespaces/default/pods", body: Data(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"on-odd"},"spec":{"nodeName":"odd","containers":[{"name":"c","image":"i"}]}}"#.utf8))
        let log = try await k.request(.GET, "/api/v1/namespaces/default/pods/on-odd/log")
        #expect(log.status == 503, "\(log.status) \(String(decoding: log.body, as: UTF8.self))")
        #expect(String(decoding: log.body, as: UTF8.self).contains("neither an IP address nor a DNS name"))
        #expect(try await k.request(.GET, "/api/v1/nodes/odd").status == 200)
    }
}

/// A listening socket on 0.0.0.0 and a free port, held until `close(fd)`: the port is taken.
func holdPort() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientError("socket: errno \(errno)") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = INADDR_ANY
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { close(fd); throw ClientError("bind: errno \(errno)") }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

@Suite(.serialized) struct PortInUseTests {
    /// A component whose port is taken ends with an error that says so, promptly (it must not
    /// wait for anything else, such as its informers' first sync).
    @Test func anAgentWhosePortIsTakenEndsWithTheError() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let held = try holdPort()
        defer { close(held.fd) }
        let kp = try c.server.pki.ca.issue(commonName: "system:node:taken", organizations: ["system:nodes"], ipAddresses: ["127.0.0.1"], usage: .both)
        let client = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        var config = AgentConfig(nodeName: "taken")
        config.address = "127.0.0.1"
        config.serverPort = held.port
        let agent = NodeAgent(client: client, config: config, runtime: FakeRuntime())
        let server = try AgentServer(agent: agent, port: held.port, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM, caPEM: c.caPEM)
        let outcome = Lines()
        let run = Task {
            do { try await agent.run(with: server); outcome.append("returned without an error") }
            catch { outcome.append("\(error)") }
        }
        defer { run.cancel() }
        let said = try await eventually(15, "the agent ends") { outcome.all.first }
        #expect(said == "cannot listen on 0.0.0.0:\(held.port): address already in use", "\(said)")
    }
}
