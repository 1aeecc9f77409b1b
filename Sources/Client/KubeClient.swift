// A typed REST + watch client for the Kubernetes API over mutual TLS, configured from a kubeconfig.
import Foundation
import Synchronization
import AsyncHTTPClient
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import API
import PKI

public struct ClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

public struct RawResponse: Sendable {
    public var status: Int
    public var body: Data
    public var warnings: [String]
}

/// The HTTP method type of `request` and `call`, for callers that do not import NIO.
public typealias KubeHTTPMethod = HTTPMethod

public final class KubeClient: Sendable {
    /// Every apiserver this client may use (a kubeconfig or --server value may list several,
    /// comma-separated); requests go to the one in use, and move on when it cannot be reached.
    public let servers: [String]
    private let active = Mutex(0)
    /// Open watches, by the index of the apiserver they read from: when requests find that
    /// apiserver gone, its watches are cut too (a host that vanished leaves connections that
    /// never end), and their informers watch again on the next one.
    private let watches = Mutex<(next: Int, open: [Int: (server: Int, task: Task<Void, Never>)])>((0, [:]))
    /// With several apiservers, how long one attempt may wait for an answer before the next is
    /// tried: an apiserver whose host vanished never answers on a kept-alive connection.
    /// Longer than the store's own timeout (2 s on etcd), so a store that is down is reported by the
    /// apiserver as 503 with its reason.
    public static let failoverAttemptTimeout = TimeAmount.seconds(4)
    /// This client's attempt timeout with several apiservers (`failoverAttemptTimeout` unless
    /// given: an agent renewing its Lease every second must move on sooner).
    public let attemptTimeout: TimeAmount
    /// Watch events a reader may fall behind by: past that the watch ends with an error (after
    /// every event it did deliver), and the reader watches again from its last resourceVersion;
    /// a watch never buffers without limit and never skips an event.
    public let watchBuffer: Int
    private let overflows = Mutex(0)
    /// How many watches of this client ended because their reader fell behind.
    public var watchOverflows: Int { overflows.withLock { $0 } }
    /// With several apiservers and watches open, the one in use is asked for /readyz every
    /// second: a watch on an apiserver that vanished would otherwise wait forever, and one
    /// whose store is down would go quiet. When it does not answer 200 within 2 s, the client
    /// moves on (and so do its watches).
    private let prober = Mutex<Task<Void, Never>?>(nil)
    /// The apiserver in use now.
    public var server: String { servers[active.withLock { $0 }] }
    public let namespace: String
    /// The cluster CA the client trusts (PEM), when its kubeconfig names one.
    public let caPEM: String?
    let http: HTTPClient
    let token: String?
    /// The client's TLS identity, also used for streams (exec), which are WebSockets.
    let tls: TLSConfiguration

    public init(config: Kubeconfig.Resolved, timeout: TimeAmount = .seconds(30), attemptTimeout: TimeAmount = KubeClient.failoverAttemptTimeout,
                watchBuffer: Int = 10_000) throws {
        self.attemptTimeout = attemptTimeout
        self.watchBuffer = max(1, watchBuffer)
        servers = config.server.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        guard !servers.isEmpty else { throw ClientError("no apiserver URL given") }
        namespace = config.namespace
        caPEM = config.caPEM
        token = config.token
        var tls = try TLSConfig.client(caPEM: config.caPEM, certPEM: config.certPEM, keyPEM: config.keyPEM)
        if config.tlsServerName != nil { tls.certificateVerification = .fullVerification }
        self.tls = tls
        var c = HTTPClient.Configuration(tlsConfiguration: tls)
        // With other apiservers to go to, a connection not made within a second moves on.
        c.timeout = .init(connect: servers.count > 1 ? .seconds(1) : .seconds(5), read: .seconds(600))
        c.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        // The pool's own retries of a failed connection back off exponentially, counting every
        // failure of every request since the last success: a burst of refusals while an apiserver
        // restarts (a second) left later requests waiting up to a minute for the next try, and a
        // controller-manager without its leader Lease for 5 to 25 s. A failed connection fails
        // its requests at once instead, and `execute` tries again every 200 ms.
        c.connectionPool.retryConnectionEstablishment = false
        c.decompression = .disabled
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }

    /// Loads a kubeconfig: the explicit path, else $KUBECONFIG, else ~/.kube/config.
    public static func kubeconfigPath(_ explicit: String?) -> String {
        if let e = explicit, !e.isEmpty { return e }
        if let env = ProcessInfo.processInfo.environment["KUBECONFIG"], !env.isEmpty { return String(env.split(separator: ":").first ?? "") }
        return (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.kube/config"
    }

    public convenience init(kubeconfig: String?, context: String? = nil, namespace: String? = nil, server: String? = nil) throws {
        let path = Self.kubeconfigPath(kubeconfig)
        let kc = try Kubeconfig.load(path: path)
        var r = try kc.resolve(context: context, baseDirectory: (path as NSString).deletingLastPathComponent)
        if let namespace { r.namespace = namespace }
        if let server { r.server = server }
        try self.init(config: r)
    }

    // Not syncShutdown: the last reference may go on an event loop (a connection that outlived the
    // server), where blocking is forbidden; a client shutting down keeps itself alive until done.
    deinit {
        prober.withLock { $0?.cancel() }
        http.shutdown(queue: .global()) { _ in }
    }

    public func shutdown() async {
        prober.withLock { $0?.cancel() }
        try? await http.shutdown()
    }

    private func ensureProber() {
        guard servers.count > 1 else { return }
        prober.withLock { p in
            guard p == nil else { return }
            p = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    guard let self, !Task.isCancelled else { return }
                    guard self.watches.withLock({ !$0.open.isEmpty }) else { continue }
                    let (index, base) = self.active.withLock { ($0, self.servers[$0]) }
                    var req = HTTPClientRequest(url: base + "/readyz")
                    if let token = self.token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    var ok = false
                    if let r = try? await self.http.execute(req, timeout: .seconds(2)) {
                        ok = r.status.code == 200
                        _ = try? await r.body.collect(upTo: 1 << 16)
                    }
                    if !ok { self.moveOn(from: index) }
                }
            }
        }
    }

    /// How long a request to the only apiserver goes on trying to connect (it may be restarting).
    static let connectBudget: TimeAmount = .seconds(5)

    /// `http.execute`, and with one apiserver a refused or failed connection (the request never
    /// left) tried again every 200 ms for up to `connectBudget` within `timeout`. With several,
    /// the caller moves on to the next instead.
    func execute(_ req: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        let start = NIODeadline.now()
        let deadline = start + timeout
        let connectUntil = start + min(timeout, Self.connectBudget)
        while true {
            do { return try await http.execute(req, deadline: deadline) }
            catch where servers.count == 1 && Self.isConnectFailure(error) && !Self.isTimeout(error)
                        && NIODeadline.now() + .milliseconds(200) < connectUntil && !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    // MARK: raw

    public func request(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: Data? = nil,
                        contentType: String = "application/json", accept: String = "application/json", timeout: TimeAmount = .seconds(60),
                        headers: [(String, String)] = []) async throws -> RawResponse {
        // With several apiservers: one that cannot be reached is passed over for the next, each
        // tried once per request. Only a failure to connect moves a write on (the request never
        // left); a read moves on after any failure to get an answer.
        var lastError: Error?
        let attemptTimeout = servers.count > 1 ? min(timeout, self.attemptTimeout) : timeout
        for _ in 0..<servers.count {
            let (index, base) = active.withLock { ($0, servers[$0]) }
            var req = HTTPClientRequest(url: url(path, query, base: base))
            req.method = method
            for (k, v) in headers { req.headers.add(name: k, value: v) }
            req.headers.add(name: "Accept", value: accept)
            req.headers.add(name: "User-Agent", value: "ctl/1.0")
            if let token { req.headers.add(name: "Authorization", value: "Bearer \(token)") }
            if let body {
                req.headers.add(name: "Content-Type", value: contentType)
                req.body = .bytes(ByteBuffer(data: body))
            }
            do {
                let resp = try await execute(req, timeout: attemptTimeout)
                let buf = try await resp.body.collect(upTo: 512 << 20)
                return RawResponse(status: Int(resp.status.code), body: Data(buffer: buf), warnings: resp.headers["Warning"])
            } catch {
                lastError = ClientError("cannot reach the apiserver at \(base): \(Self.describe(error))")
                guard servers.count > 1 else { break }
                // The next request goes to the next apiserver. A read is tried there at once;
                // a write only when it never left (it may have been applied otherwise).
                moveOn(from: index)
                guard method == .GET || (Self.isConnectFailure(error) && !Self.isTimeout(error)) else { break }
            }
        }
        throw lastError ?? ClientError("cannot reach the apiserver")
    }

    /// Makes the next apiserver the one in use, unless another request already moved on.
    func moveOn(from index: Int) {
        let moved = active.withLock { a -> Bool in
            guard a == index else { return false }
            a = (index + 1) % servers.count
            return true
        }
        guard moved else { return }
        let cut = watches.withLock { w -> [Task<Void, Never>] in
            let ids = w.open.filter { $0.value.server == index }.map(\.key)
            return ids.compactMap { w.open.removeValue(forKey: $0)?.task }
        }
        for t in cut { t.cancel() }
    }

    static func isTimeout(_ e: Error) -> Bool {
        if let h = e as? HTTPClientError, h == .deadlineExceeded || h == .readTimeout { return true }
        return "\(e)".contains("deadlineExceeded")
    }

    static func isConnectFailure(_ e: Error) -> Bool {
        if let h = e as? HTTPClientError, h == .connectTimeout { return true }
        let d = "\(e)"
        return d.contains("connectTimeout") || d.contains("Connection refused") || d.contains("connectionRefused") || d.contains("No route to host")
    }

    static func describe(_ e: Error) -> String {
        if let s = e as? NIOSSLError { return "TLS: \(s)" }
        if let h = e as? HTTPClientError { return "\(h)" }
        return "\(e)"
    }

    func url(_ path: String, _ query: [String: String], base: String? = nil) -> String {
        var s = (base ?? server) + path
        if !query.isEmpty {
            var comps = URLComponents()
            comps.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
            s += "?" + (comps.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        }
        return s
    }

    /// Performs a request and throws the server's Status on failure.
    @discardableResult
    public func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: Data? = nil,
                     contentType: String = "application/json", accept: String = "application/json") async throws -> RawResponse {
        let r = try await request(method, path, query: query, body: body, contentType: contentType, accept: accept)
        if r.status >= 300 {
            if let s = try? KubeJSON.decode(Status.self, from: r.body), s.kind == "Status" { throw s }
            throw Status(status: "Failure", message: String(decoding: r.body.prefix(500), as: UTF8.self), reason: "Unknown", code: r.status)
        }
        return r
    }

    // MARK: typed

    func ns<T: KubeObject>(_ t: T.Type, _ namespace: String?) -> String? { T.resource.namespaced ? (namespace ?? self.namespace) : nil }

    public func get<T: KubeObject>(_ t: T.Type, _ name: String, namespace: String? = nil) async throws -> T {
        let r = try await call(.GET, T.resource.path(namespace: ns(t, namespace), name: name))
        return try KubeJSON.decode(T.self, from: r.body)
    }

    public func list<T: KubeObject>(_ t: T.Type, namespace: String? = nil, allNamespaces: Bool = false, labelSelector: String? = nil,
                                    fieldSelector: String? = nil) async throws -> ObjectList<T> {
        var q: [String: String] = [:]
        if let l = labelSelector { q["labelSelector"] = l }
        if let f = fieldSelector { q["fieldSelector"] = f }
        let r = try await call(.GET, T.resource.path(namespace: allNamespaces ? nil : ns(t, namespace)), query: q)
        return try KubeJSON.decode(ObjectList<T>.self, from: r.body)
    }

    public func create<T: KubeObject>(_ obj: T) async throws -> T {
        let r = try await call(.POST, T.resource.path(namespace: ns(T.self, obj.metadata.namespace)), body: try KubeJSON.encode(obj))
        return try KubeJSON.decode(T.self, from: r.body)
    }

    public func update<T: KubeObject>(_ obj: T, subresource: String? = nil) async throws -> T {
        let r = try await call(.PUT, T.resource.path(namespace: ns(T.self, obj.metadata.namespace), name: obj.name, subresource: subresource),
                               body: try KubeJSON.encode(obj))
        return try KubeJSON.decode(T.self, from: r.body)
    }

    public func updateStatus<T: KubeObject>(_ obj: T) async throws -> T { try await update(obj, subresource: "status") }

    public func patch<T: KubeObject>(_ t: T.Type, _ name: String, namespace: String? = nil, mergePatch: JSONValue, subresource: String? = nil) async throws -> T {
        let r = try await call(.PATCH, T.resource.path(namespace: ns(t, namespace), name: name, subresource: subresource),
                               body: try mergePatch.encoded(), contentType: "application/merge-patch+json")
        return try KubeJSON.decode(T.self, from: r.body)
    }

    public func delete<T: KubeObject>(_ t: T.Type, _ name: String, namespace: String? = nil, options: DeleteOptions = DeleteOptions()) async throws {
        try await call(.DELETE, T.resource.path(namespace: ns(t, namespace), name: name), body: try KubeJSON.encode(options))
    }

    /// Asks for a pod's graceful deletion through the eviction subresource, which refuses (429)
    /// while a PodDisruptionBudget allows no disruption.
    public func evict(pod: String, namespace: String) async throws {
        let body: JSONValue = .object(["apiVersion": "policy/v1", "kind": "Eviction",
                                       "metadata": .object(["name": .string(pod), "namespace": .string(namespace)])])
        try await call(.POST, Resources.pods.path(namespace: namespace, name: pod, subresource: "eviction"), body: try body.encoded())
    }

    /// A ServiceAccount token through TokenRequest, bound to a pod when one is named; returns
    /// the token and its expiry.
    public func requestToken(serviceAccount: String, namespace: String, audiences: [String] = [], expirationSeconds: Int64,
                             boundPod: (name: String, uid: String)? = nil) async throws -> (token: String, expires: Date) {
        var spec: [String: JSONValue] = ["audiences": .array(audiences.map { .string($0) }), "expirationSeconds": .int(expirationSeconds)]
        if let p = boundPod { spec["boundObjectRef"] = .object(["apiVersion": "v1", "kind": "Pod", "name": .string(p.name), "uid": .string(p.uid)]) }
        let body: JSONValue = .object(["apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": .object(spec)])
        let r = try await call(.POST, Resources.serviceaccounts.path(namespace: namespace, name: serviceAccount, subresource: "token"), body: try body.encoded())
        let out = try JSONValue.parse(r.body)
        guard let token = out["status"]?["token"]?.stringValue else { throw Status(status: "Failure", message: "the TokenRequest answer has no token", reason: "Unknown", code: 500) }
        return (token, KubeTime.parse(out["status"]?["expirationTimestamp"]?.stringValue) ?? Date().addingTimeInterval(Double(expirationSeconds)))
    }

    public func bind(pod: String, namespace: String, node: String) async throws {
        try await call(.POST, Resources.pods.path(namespace: namespace, name: pod, subresource: "binding"),
                       body: try KubeJSON.encode(Binding(podName: pod, namespace: namespace, nodeName: node)))
    }

    /// Binds many pods in one request through the batch bindings extension, with one result per
    /// binding in order. Nil when the server does not offer the extension (404): bind one by one.
    public func bindMany(_ bindings: [Binding]) async throws -> [BindingResult]? {
        let r: RawResponse
        do { r = try await call(.POST, BindingList.path, body: try KubeJSON.encode(BindingList(items: bindings))) }
        catch let s as Status where s.code == 404 { return nil }
        let list = try KubeJSON.decode(BindingResultList.self, from: r.body)
        guard list.items.count == bindings.count else {
            throw ClientError("the server answered \(list.items.count) binding results for \(bindings.count) bindings")
        }
        return list.items
    }

    /// Streams a response body as it arrives (pods/log with follow); errors come as Status.
    public func stream(path: String, query: [String: String]) -> AsyncThrowingStream<Data, Error> {
        var r = HTTPClientRequest(url: self.url(path, query))
        r.headers.add(name: "Accept", value: "*/*")
        if let token = self.token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let req = r
        return AsyncThrowingStream { cont in
            let task = Task {
                do {
                    let resp = try await execute(req, timeout: .seconds(30))
                    if resp.status.code >= 300 {
                        let b = try await resp.body.collect(upTo: 1 << 20)
                        if let s = try? KubeJSON.decode(Status.self, from: Data(buffer: b)) { throw s }
                        throw ClientError("HTTP \(resp.status.code): \(String(buffer: b))")
                    }
                    for try await chunk in resp.body { cont.yield(Data(chunk.readableBytesView)) }
                    cont.finish()
                } catch { cont.finish(throwing: error) }
            }
            cont.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: watch

    /// Streams watch events (one JSON object each) until the server ends the watch or the task is cancelled.
    public func watchRaw(path: String, query: [String: String], accept: String = "application/json") -> AsyncThrowingStream<JSONValue, Error> {
        var q = query
        q["watch"] = "true"
        let (index, base) = active.withLock { ($0, servers[$0]) }
        let req = { () -> HTTPClientRequest in
            var r = HTTPClientRequest(url: self.url(path, q, base: base))
            r.headers.add(name: "Accept", value: accept)
            if let token = self.token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
            return r
        }()
        return AsyncThrowingStream(bufferingPolicy: .bufferingOldest(watchBuffer)) { cont in
            let task = Task {
                do {
                    let resp: HTTPClientResponse
                    do { resp = try await execute(req, timeout: servers.count > 1 ? attemptTimeout : .seconds(30)) } catch {
                        // The next watch goes to another apiserver, from the same revision.
                        if servers.count > 1 { moveOn(from: index) }
                        throw ClientError("cannot reach the apiserver at \(base): \(Self.describe(error))")
                    }
                    if resp.status.code >= 300 {
                        let b = try await resp.body.collect(upTo: 1 << 20)
                        if let s = try? KubeJSON.decode(Status.self, from: Data(buffer: b)) { throw s }
                        throw ClientError("watch failed with HTTP \(resp.status.code)")
                    }
                    var pending = Data()
                    for try await chunk in resp.body {
                        pending.append(contentsOf: chunk.readableBytesView)
                        while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = pending[pending.startIndex..<nl]
                            pending = Data(pending[(nl + 1)...])
                            if line.isEmpty { continue }
                            if case .dropped = cont.yield(try JSONValue.parse(Data(line))) { throw fellBehind(path) }
                        }
                    }
                    cont.finish()
                } catch {
                    cont.finish(throwing: Task.isCancelled ? ClientError("the apiserver at \(base) stopped answering; watch again on the next") : error)
                }
            }
            let id = watches.withLock { w -> Int in
                w.next += 1
                w.open[w.next] = (index, task)
                return w.next
            }
            ensureProber()
            cont.onTermination = { [weak self] _ in
                task.cancel()
                _ = self?.watches.withLock { $0.open.removeValue(forKey: id) }
            }
        }
    }

    /// The error a watch ends with when its reader is `watchBuffer` events behind (counted).
    func fellBehind(_ path: String) -> ClientError {
        overflows.withLock { $0 += 1 }
        ComponentMetrics.shared.count("orchestrator_client_watch_overflows_total")
        return ClientError("watch of \(path): the reader fell \(watchBuffer) events behind; watch again from the last resourceVersion read")
    }

    /// Typed watch: yields (type, object) pairs; ERROR events are thrown as Status.
    public func watch<T: KubeObject>(_ t: T.Type, namespace: String? = nil, allNamespaces: Bool = false, resourceVersion: String? = nil,
                                     labelSelector: String? = nil, fieldSelector: String? = nil, bookmarks: Bool = false,
                                     timeoutSeconds: Int? = nil) -> AsyncThrowingStream<(String, T), Error> {
        var q: [String: String] = [:]
        if let rv = resourceVersion { q["resourceVersion"] = rv }
        if let l = labelSelector { q["labelSelector"] = l }
        if let f = fieldSelector { q["fieldSelector"] = f }
        if bookmarks { q["allowWatchBookmarks"] = "true" }
        if let t = timeoutSeconds { q["timeoutSeconds"] = "\(t)" }
        let path = T.resource.path(namespace: allNamespaces ? nil : ns(t, namespace))
        let raw = watchRaw(path: path, query: q)
        return AsyncThrowingStream(bufferingPolicy: .bufferingOldest(watchBuffer)) { cont in
            let task = Task {
                do {
                    for try await ev in raw {
                        let type = ev["type"]?.stringValue ?? ""
                        guard let obj = ev["object"] else { continue }
                        if type == "ERROR" { throw try obj.decode(Status.self) }
                        if type == "BOOKMARK" {
                            var meta = ObjectMeta()
                            meta.resourceVersion = obj["metadata"]?["resourceVersion"]?.stringValue
                            var j = try JSONValue.from(meta)
                            j = .object(["metadata": j])
                            if let o = try? j.decode(T.self), case .dropped = cont.yield((type, o)) { throw fellBehind(path) }
                            continue
                        }
                        if case .dropped = cont.yield((type, try obj.decode(T.self))) { throw fellBehind(path) }
                    }
                    cont.finish()
                } catch { cont.finish(throwing: error) }
            }
            cont.onTermination = { _ in task.cancel() }
        }
    }
}
