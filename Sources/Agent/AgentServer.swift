// The agent's HTTPS endpoint (the kubelet's port 10250): container logs for the apiserver's
// pods/log proxy, and the stats summary the metrics collector scrapes. Mutual TLS: the agent
// presents its node certificate, and only the apiserver's kubelet-client identity or an admin
// (group system:masters) may call it.
import Foundation
import Synchronization
import Hummingbird
import HummingbirdTLS
import HummingbirdWebSocket
import NIOCore
import NIOSSL
import Logging
import API
import Client
import PKI

public struct AgentContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public init(source: ApplicationRequestContextSource) { coreContext = .init(source: source); channel = source.channel }
}

/// CPU use per container as a rate, from successive cumulative samples (the Summary API's
/// usageNanoCores), sampled in the background so a scrape is a read of the latest figures.
final class StatsSampler: Sendable {
    struct Sample: Sendable { var cpu: UInt64; var at: Date; var nanoCores: UInt64 }
    let last = Mutex<[String: Sample]>([:])          // "<uid>/<container>"
    let nodeLast = Mutex<(busy: UInt64, total: UInt64, nanoCores: UInt64)?>(nil)

    func update(uid: String, _ stats: [ContainerStats]) -> [(ContainerStats, UInt64)] {
        last.withLock { m in
            stats.map { s in
                let key = "\(uid)/\(s.name)"
                var rate: UInt64 = m[key]?.nanoCores ?? 0
                if let prev = m[key], s.timestamp > prev.at, s.cpuUsageNanoSeconds >= prev.cpu {
                    rate = UInt64(Double(s.cpuUsageNanoSeconds - prev.cpu) / s.timestamp.timeIntervalSince(prev.at))
                }
                m[key] = Sample(cpu: s.cpuUsageNanoSeconds, at: s.timestamp, nanoCores: rate)
                return (s, rate)
            }
        }
    }

    /// Whole-node CPU (from /proc/stat) in nanocores, and memory working set from /proc/meminfo.
    func node() -> (nanoCores: UInt64, workingSet: UInt64) {
        var nano: UInt64 = 0
        if let stat = HostFile.text("/proc/stat"), let line = stat.split(separator: "\n").first {
            let f = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
            if f.count >= 5 {
                let idle = f[3] + f[4], total = f.reduce(0, +), busy = total - idle
                let cpus = UInt64(ProcessInfo.processInfo.activeProcessorCount)
                nano = nodeLast.withLock { l in
                    var r = l?.nanoCores ?? 0
                    if let l, total > l.total { r = (busy - min(busy, l.busy)) * cpus * 1_000_000_000 / (total - l.total) }
                    l = (busy, total, r)
                    return r
                }
            }
        }
        var mem: [String: UInt64] = [:]
        for line in (HostFile.text("/proc/meminfo") ?? "").split(separator: "\n") {
            let p = line.split(separator: " ", omittingEmptySubsequences: true)
            if p.count >= 2 { mem[String(p[0].dropLast())] = (UInt64(p[1]) ?? 0) * 1024 }
        }
        let ws = (mem["MemTotal"] ?? 0) - min(mem["MemTotal"] ?? 0, mem["MemAvailable"] ?? 0)
        return (nano, ws)
    }

    /// Forgets the samples of every pod not in `uids` (the pods sampled in this pass), so that
    /// pods that have gone do not stay in memory for the agent's lifetime.
    func forget(allBut uids: Set<String>) {
        last.withLock { m in
            m = m.filter { k, _ in uids.contains(String(k[..<(k.firstIndex(of: "/") ?? k.endIndex)])) }
        }
    }
}

public final class AgentServer: Sendable {
    let agent: NodeAgent
    let port: Int
    let tls: TLSConfiguration
    let logger = Logger(label: "agent-server")
    let identities = Mutex<[ObjectIdentifier: CertIdentity?]>([:])
    let summary = Mutex<JSONValue>(.object([:]))
    let sampler = StatsSampler()
    /// Failed reads of the connection counters (the first is logged).
    let connectionsFailed = Mutex(0)
    /// The last read of the connection counters: the summary's field, when, and how long it took.
    let connections = Mutex<(doc: JSONValue, at: Date, cost: Double)?>(nil)
    let boundPort = Mutex<Int>(0)

    /// `certPEM`/`keyPEM`: the node certificate (issued for client and server auth).
    public init(agent: NodeAgent, port: Int, certPEM: String, keyPEM: String, caPEM: String) throws {
        self.agent = agent
        self.port = port
        var t = try TLSConfig.server(certPEM: certPEM, keyPEM: keyPEM, caPEM: caPEM)
        t.certificateVerification = .noHostnameVerification   // a client certificate is required
        tls = t
    }

    public var listeningPort: Int { boundPort.withLock { $0 } }

    public func run() async throws {
        let responder = CallbackResponder<AgentContext> { [self] request, context in await self.respond(request, context) }
        // Exec sessions upgrade to a WebSocket (Kubernetes' channel protocol); everything else is HTTP.
        let app = Application(responder: responder,
                              server: try .tls(.http1WebSocketUpgrade(configuration: .init(ws: .init(maxFrameSize: 1 << 20))) { [self] request, channel, _ in
                                  await self.shouldUpgrade(request, channel)
                              }, tlsConfiguration: tls),
                              configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: nil),
                              onServerRunning: { [self] ch in self.boundPort.withLock { $0 = ch.localAddress?.port ?? 0 } }, logger: logger)
        let port = self.port
        try await withThrowingTaskGroup(of: Void.self) { g in
            g.addTask {
                do { try await app.runService() }
                catch let e as IOError where self.boundPort.withLock({ $0 }) == 0 {
                    throw ListenError(address: "0.0.0.0", port: port, errno: e.errnoCode)
                }
            }
            g.addTask { await self.sampleLoop() }
            try await g.next()
            g.cancelAll()
        }
    }

    // MARK: stats

    func sampleLoop() async {
        while !Task.isCancelled {
            await sample()
            try? await agent.clock.sleep(for: agent.config.statsInterval)
        }
    }

    /// The summary's extension field with the proxy's per-pod connection counters.
    public static let serviceConnectionsField = "serviceConnections"

    /// Builds the Summary API document (a subset of the kubelet's /stats/summary).
    func sample() async {
        let now = KubeTime.formatMicro(agent.clock.now())
        var podsOut: [JSONValue] = []
        var sampled: Set<String> = []
        defer { sampler.forget(allBut: sampled) }
        for pod in agent.pods.list() {
            guard let uid = pod.metadata.uid, pod.status?.phase == "Running" else { continue }
            sampled.insert(uid)
            let rated = sampler.update(uid: uid, await agent.runtime.stats(podUID: uid))
            guard !rated.isEmpty else { continue }
            var cpuSum: UInt64 = 0, memSum: UInt64 = 0, usageSum: UInt64 = 0
            let containers: [JSONValue] = rated.map { s, rate in
                cpuSum += rate; memSum += s.memoryWorkingSetBytes; usageSum += s.cpuUsageNanoSeconds
                return .object(["name": .string(s.name),
                                "cpu": .object(["time": .string(now), "usageNanoCores": .int(Int64(rate)), "usageCoreNanoSeconds": .int(Int64(s.cpuUsageNanoSeconds))]),
                                "memory": .object(["time": .string(now), "workingSetBytes": .int(Int64(s.memoryWorkingSetBytes))])])
            }
            podsOut.append(.object([
                "podRef": .object(["name": .string(pod.name), "namespace": .string(pod.namespace), "uid": .string(uid)]),
                "containers": .array(containers),
                "cpu": .object(["time": .string(now), "usageNanoCores": .int(Int64(cpuSum)), "usageCoreNanoSeconds": .int(Int64(usageSum))]),
                "memory": .object(["time": .string(now), "workingSetBytes": .int(Int64(memSum))]),
            ]))
        }
        let node = sampler.node()
        var fields: [String: JSONValue] = [
            "node": .object(["nodeName": .string(agent.config.nodeName),
                             "cpu": .object(["time": .string(now), "usageNanoCores": .int(Int64(node.nanoCores))]),
                             "memory": .object(["time": .string(now), "workingSetBytes": .int(Int64(node.workingSet))])]),
            "pods": .array(podsOut),
        ]
        // Not in the kubelet's summary: connections this node's Service rules sent to each pod
        // (wherever it runs). The apiserver sums them over nodes into requests_per_second.
        if let c = await serviceConnections() { fields[Self.serviceConnectionsField] = c }
        let doc: JSONValue = .object(fields)
        summary.withLock { $0 = doc }
    }

    /// The proxy's per-pod connection counters for the summary, read again only once
    /// `connectionsReadFactor` times the last read's duration has passed: nft loads the whole
    /// table to list them (about 1 s at 10,000 endpoints, `bench proxy`), so a large cluster
    /// reads them less often instead of spending a core on it. The figures carry the time they
    /// were read, so rates stay exact. Nil without nftables.
    func serviceConnections() async -> JSONValue? {
        let now = agent.clock.now()
        if let last = connections.withLock({ $0 }),
           now.timeIntervalSince(last.at) < max(agent.config.statsInterval, Self.connectionsReadFactor * last.cost) - 0.05 {
            return last.doc
        }
        let started = ContinuousClock.now
        do {
            guard let conns = try await agent.proxy.podConnections() else { return nil }
            let d = ContinuousClock.now - started
            let cost = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            let at = agent.clock.now()
            let doc: JSONValue = .object([
                "time": .string(KubeTime.formatMicro(at)),
                "pods": .array(conns.map { c in
                    .object(["podRef": .object(["name": .string(c.name), "namespace": .string(c.namespace), "uid": .string(c.uid)]),
                             "ip": .string(c.ip), "connections": .int(Int64(clamping: c.connections))])
                }),
            ])
            connections.withLock { $0 = (doc, at, cost) }
            connectionsFailed.withLock { $0 = 0 }
            return doc
        } catch {
            connectionsFailed.withLock { n in
                if n == 0 { logger.warning("reading the Service connection counters failed", metadata: ["error": "\(error)"]) }
                n += 1
            }
            return nil
        }
    }
    /// The counters are read at most once per this many times the last read took.
    static let connectionsReadFactor = 10.0

    /// The latest stats summary (what GET /stats/summary returns).
    public func summaryDocument() async -> JSONValue { summary.withLock { $0 } }

    // MARK: HTTP

    func identity(_ channel: any Channel) async -> CertIdentity? {
        let id = ObjectIdentifier(channel)
        if let v = identities.withLock({ $0[id] }) { return v }
        let cert = try? await channel.nioSSL_peerCertificate().get()
        let ident = cert.flatMap { c in (try? c.toDERBytes()).flatMap { CertIdentity.from(derBytes: $0) } }
        identities.withLock { $0[id] = .some(ident) }
        channel.closeFuture.whenComplete { _ in _ = self.identities.withLock { $0.removeValue(forKey: id) } }
        return ident
    }

    static func text(_ code: HTTPResponse.Status, _ s: String) -> Response {
        Response(status: code, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: s + "\n")))
    }

    func respond(_ request: Request, _ context: AgentContext) async -> Response {
        let path = request.uri.path
        if path == "/healthz" { return Self.text(.ok, "ok") }
        guard let who = await identity(context.channel) else { return Self.text(.unauthorized, "Unauthorized: a client certificate is required") }
        guard who.user == "kube-apiserver-kubelet-client" || who.groups.contains("system:masters") else {
            return Self.text(.forbidden, "Forbidden: user \(who.user) may not use the node's endpoint")
        }
        let parts = path.split(separator: "/").map(String.init)
        var q: [String: String] = [:]
        for item in request.uri.queryParameters { q[String(item.key)] = String(item.value) }
        if parts == ["metrics"] {
            // As the kubelet's /metrics: the agent's failure counters and its process figures.
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: ComponentMetrics.shared.render())))
        }
        if parts == ["stats", "summary"] {
            let body = (try? summary.withLock { $0 }.encoded()) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: body)))
        }
        if parts.first == "portforward" {
            return Self.text(.badRequest, "portforward needs a WebSocket upgrade")
        }
        if parts.first == "exec" || parts.first == "attach" {
            return Self.text(.badRequest, "\(parts[0]) needs a WebSocket upgrade with one of the subprotocols \(RemoteCommand.protocols.joined(separator: ", "))")
        }
        if parts.count >= 3, parts[0] == "containerLogs" {
            return await logs(namespace: parts[1], pod: parts[2], container: parts.count > 3 ? parts[3] : q["container"], query: q)
        }
        return Self.text(.notFound, "404 page not found")
    }

    func logs(namespace: String, pod name: String, container: String?, query q: [String: String]) async -> Response {
        guard let pod = agent.pods.get("\(namespace)/\(name)"), let uid = pod.metadata.uid else {
            return Self.text(.notFound, "pod \(namespace)/\(name) is not on node \(agent.config.nodeName)")
        }
        let names = pod.spec?.containers.map(\.name) ?? []
        let cname: String
        if let container, !container.isEmpty {
            guard names.contains(container) else { return Self.text(.badRequest, "container \(container) is not valid for pod \(name)") }
            cname = container
        } else if names.count == 1 { cname = names[0] }
        else { return Self.text(.badRequest, "a container name must be specified for pod \(name), choose one of: [\(names.joined(separator: " "))]") }
        let attempts = await agent.runtime.containers(podUID: uid).filter { $0.name == cname }.sorted { $0.attempt < $1.attempt }
        let previous = q["previous"] == "true"
        guard let target = previous ? (attempts.count > 1 ? attempts[attempts.count - 2] : nil) : attempts.last else {
            return Self.text(.badRequest, previous ? "previous terminated container \"\(cname)\" in pod \"\(name)\" not found"
                                                   : "container \"\(cname)\" in pod \"\(name)\" is waiting to start")
        }
        guard let file = agent.runtime.logPath(podUID: uid, container: cname, attempt: target.attempt) else {
            return Self.text(.ok, "")
        }
        let tail = q["tailLines"].flatMap(Int.init)
        let limitBytes = q["limitBytes"].flatMap(Int.init)
        let follow = q["follow"] == "true" && !previous
        let runtime = agent.runtime
        let body = ResponseBody { writer in
            var offset: UInt64 = 0
            var sent = 0
            let fh = FileHandle(forReadingAtPath: file)
            defer { try? fh?.close() }
            if let fh {
                let data = (try? fh.readToEnd()) ?? Data()
                offset = UInt64(data.count)
                var out = data
                if let tail {
                    var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                    if lines.last?.isEmpty == true { lines.removeLast() }
                    out = Data(lines.suffix(max(0, tail)).joined(separator: [UInt8(ascii: "\n")]))
                    if !out.isEmpty { out.append(UInt8(ascii: "\n")) }
                }
                if let limitBytes { out = out.prefix(limitBytes) }
                sent += out.count
                if !out.isEmpty { try await writer.write(ByteBuffer(data: out)) }
            }
            if follow {
                var path = file
                // Until the container exits (or the client goes away): new bytes as they land.
                while !Task.isCancelled {
                    if let limitBytes, sent >= limitBytes { break }
                    let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
                    if size < offset { offset = 0 }   // rotated
                    if size > offset, let h = FileHandle(forReadingAtPath: path) {
                        try? h.seek(toOffset: offset)
                        let d = (try? h.readToEnd()) ?? Data()
                        try? h.close()
                        offset += UInt64(d.count)
                        sent += d.count
                        try await writer.write(ByteBuffer(data: d))
                        continue
                    }
                    let now = await runtime.containers(podUID: uid).first { $0.id == target.id }
                    if now == nil || now?.isRunning == false {
                        // The last bytes may land after the exit status.
                        if let h = FileHandle(forReadingAtPath: path) {
                            try? h.seek(toOffset: offset)
                            let d = (try? h.readToEnd()) ?? Data()
                            try? h.close()
                            if !d.isEmpty { try await writer.write(ByteBuffer(data: d)) }
                        }
                        break
                    }
                    path = file
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: body)
    }
}

extension NodeAgent {
    /// Runs the agent with its HTTPS endpoint; when either ends, the other is cancelled.
    public func run(with server: AgentServer) async throws {
        try await withThrowingTaskGroup(of: Void.self) { g in
            g.addTask { try await self.run() }
            g.addTask { try await server.run() }
            try await g.next()
            g.cancelAll()
        }
    }
}
