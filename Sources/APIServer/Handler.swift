// HTTP routing for the Kubernetes API: authentication, authorization, discovery, and the
// resource verbs (get, list, watch, create, update, patch, delete) with their subresources.
import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import NIOSSL
import HTTPTypes
import Synchronization
import Logging
import API
import Client
import Store
import PKI

public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
    public var maxUploadSize: Int { 3 << 20 }
}

/// Client certificate identity, resolved once per connection.
final class IdentityCache: Sendable {
    private let map = Mutex<[ObjectIdentifier: CertIdentity?]>([:])
    func identity(for channel: any Channel) async -> CertIdentity? {
        let id = ObjectIdentifier(channel)
        if let v = map.withLock({ $0[id] }) { return v }
        let cert = try? await channel.nioSSL_peerCertificate().get()
        let ident = cert.flatMap { c in (try? c.toDERBytes()).flatMap { CertIdentity.from(derBytes: $0) } }
        map.withLock { $0[id] = .some(ident) }
        channel.closeFuture.whenComplete { _ in _ = self.map.withLock { $0.removeValue(forKey: id) } }
        return ident
    }
}

struct ResourcePath {
    var info: ResourceInfo
    var namespace: String?
    var name: String?
    var subresource: String?
    /// Set when the request names another version of the stored kind (autoscaling/v1 HPAs).
    var view: VersionView? = nil
}

final class APIHandler: Sendable {
    let registry: Registry
    let store: any ObjectStore
    let authz: Authorizer
    let tokens: TokenIssuer
    /// Tokens whose signature has been checked, with the account and pod revisions seen then.
    let tokenCache = Mutex<[String: CachedToken]>([:])
    let metrics: APIMetrics
    let identities = IdentityCache()
    let bootstrapToken: JoinToken?
    let serverAddress: String
    let logger: Logger
    let bookmarkInterval: Duration
    let caPEM: String
    let nodes: NodeProxy?
    /// The metrics pipeline (metrics.k8s.io and the workload history); nil when disabled.
    let metricsCollector: MetricsCollector?
    /// Files a joining apiserver receives from POST /bootstrap/server; nil for in-memory servers.
    let serverShare: (token: JoinToken, layout: DataDirLayout, encryptionConfig: String?)?

    init(registry: Registry, metrics: APIMetrics, bootstrapToken: JoinToken?, serverAddress: String, logger: Logger, bookmarkInterval: Duration = .seconds(5), caPEM: String = "",
         nodes: NodeProxy? = nil, metricsCollector: MetricsCollector? = nil, tokens: TokenIssuer,
         serverShare: (token: JoinToken, layout: DataDirLayout, encryptionConfig: String?)? = nil) {
        self.caPEM = caPEM
        self.serverShare = serverShare
        self.tokens = tokens
        self.authz = Authorizer(rbac: registry.rbac)
        self.nodes = nodes
        self.metricsCollector = metricsCollector
        self.registry = registry; self.store = registry.store; self.metrics = metrics
        self.bootstrapToken = bootstrapToken; self.serverAddress = serverAddress; self.logger = logger
        self.bookmarkInterval = bookmarkInterval
    }

    // MARK: responses

    static func json(_ code: Int, _ data: Data, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .init(code: code), headers: h, body: .init(byteBuffer: ByteBuffer(data: data)))
    }
    static func error(_ s: Status) -> Response {
        json(s.code ?? 500, s.kubernetesJSON())
    }
    static func text(_ code: Int, _ s: String, type: String = "text/plain; charset=utf-8") -> Response {
        Response(status: .init(code: code), headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    // MARK: entry point

    func respond(_ request: Request, _ context: APIContext) async -> Response {
        let started = ContinuousClock.now
        var verbLabel = request.method.rawValue
        var resourceLabel = ""
        if request.method == .connect {
            // NIO's HTTP parser takes CONNECT for a tunnel and parses nothing more on the
            // connection, so HTTP would hold it open after the answer: refuse it and close.
            let channel = context.channel
            channel.eventLoop.scheduleTask(in: .milliseconds(200)) { channel.close(promise: nil) }
            var r = Self.error(Status.methodNotAllowed("the CONNECT method is not served"))
            r.headers[.connection] = "close"
            return r
        }
        let response: Response
        do {
            response = try await route(request, context, &verbLabel, &resourceLabel)
        } catch let s as Status {
            response = Self.error(s)
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            response = Self.error(.internalError("\(error)"))
        }
        if verbLabel != "WATCH" {
            let d = ContinuousClock.now - started
            let secs = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            metrics.observe(verb: verbLabel, resource: resourceLabel, code: response.status.code, seconds: secs)
        }
        return response
    }

    /// Who is asking: the client certificate, else a bearer token (a ServiceAccount token, or the
    /// join token), then impersonation (Impersonate-User and -Group), which the caller must be
    /// allowed. nil: no credentials at all. A bad token is 401, a refused impersonation 403.
    func authenticate(headers: HTTPFields, channel: any Channel) async throws -> CertIdentity? {
        var found = await identities.identity(for: channel)
        if found == nil, let auth = headers[.authorization], auth.hasPrefix("Bearer ") {
            let presented = String(auth.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
            if let token = bootstrapToken, presented == token.bearer {
                found = CertIdentity(user: "system:bootstrap:\(token.id)", groups: ["system:bootstrappers", "system:authenticated"])
            } else {
                switch authenticateServiceAccount(presented) {
                case .success(let id): found = id
                case .failure(let why): throw Status.unauthorized("Unauthorized: \(why)")
                }
            }
        }
        guard let identity = found else { return nil }
        return try impersonate(identity, headers)
    }

    static let impersonateUser = HTTPField.Name("Impersonate-User")!
    static let impersonateGroup = HTTPField.Name("Impersonate-Group")!

    func impersonate(_ caller: CertIdentity, _ headers: HTTPFields) throws -> CertIdentity {
        let user = headers[Self.impersonateUser]
        let groups = headers[values: Self.impersonateGroup]
        if user == nil && groups.isEmpty { return caller }
        guard let user, !user.isEmpty else { throw Status.badRequest("Impersonate-Group given without Impersonate-User") }
        func check(_ info: ResourceInfo, _ name: String, namespace: String? = nil) throws {
            let a = RequestAttributes(user: caller, verb: "impersonate", resource: info, subresource: nil, namespace: namespace, name: name, fieldNodeName: nil)
            if case .deny(let msg) = authz.authorize(a) { throw Status.forbidden(msg, info, name) }
            if case .allow = authz.authorize(a) { return }
            throw Status.forbidden("\(info.plural) \"\(name)\" is forbidden: User \"\(caller.user)\" cannot impersonate resource \"\(info.plural)\"", info, name)
        }
        var out = CertIdentity(user: user, groups: [])
        let saPrefix = "system:serviceaccount:"
        if user.hasPrefix(saPrefix), case let parts = user.dropFirst(saPrefix.count).split(separator: ":"), parts.count == 2 {
            try check(Resources.serviceaccounts, String(parts[1]), namespace: String(parts[0]))
            if groups.isEmpty { out.groups = ["system:serviceaccounts", "system:serviceaccounts:\(parts[0])"] }
        } else {
            try check(Self.usersInfo, user)
        }
        for g in groups { try check(Self.groupsInfo, g); out.groups.append(g) }
        if user != "system:anonymous" && !out.groups.contains("system:authenticated") { out.groups.append("system:authenticated") }
        return out
    }
    static let usersInfo = ResourceInfo(group: "", version: "v1", kind: "User", plural: "users", namespaced: false)
    static let groupsInfo = ResourceInfo(group: "", version: "v1", kind: "Group", plural: "groups", namespaced: false)

    func route(_ request: Request, _ context: APIContext, _ verbLabel: inout String, _ resourceLabel: inout String) async throws -> Response {
        let path = request.uri.path
        switch path {
        case "/healthz", "/livez": return Self.text(200, "ok")
        case "/readyz":
            // Ready means the store answers: clients with several apiservers leave one that is not.
            if let why = await store.readiness() { return Self.text(503, "not ready: \(why)") }
            return Self.text(200, "ok")
        case "/version": return Self.json(200, Discovery.version())
        case "/cluster-info":
            // Public, as kubeadm's kube-public/cluster-info: joining nodes pin it by hash.
            return Self.json(200, (try? JSONValue.object(["ca.crt": .string(caPEM)]).encoded()) ?? Data())
        case ServerJoin.path:
            return try serveServerBundle(request, context)
        default: break
        }
        guard let identity = try await authenticate(headers: request.headers, channel: context.channel) else {
            throw Status.unauthorized("Unauthorized: a client certificate issued by the cluster CA, or a bearer token, is required")
        }
        return try await Requester.$current.withValue(identity) {
            try await routeAuthenticated(request, identity: identity, path: path, &verbLabel, &resourceLabel)
        }
    }

    /// POST /bootstrap/server: the CA, keys and tokens for an apiserver joining with the server token.
    func serveServerBundle(_ request: Request, _ context: APIContext) throws -> Response {
        guard request.method == .post else { throw Status.methodNotAllowed("\(ServerJoin.path) takes POST") }
        guard let share = serverShare else { throw Status.forbidden("this apiserver does not share its keys (it has no server token)") }
        guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "),
              ServerJoin.matches(String(auth.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces), share.token) else {
            logger.warning("refused a control-plane join: wrong or missing server token", metadata: ["peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"])
            throw Status.unauthorized("Unauthorized: \(ServerJoin.path) needs the server token (DATA_DIR/server-token of a running apiserver)")
        }
        logger.notice("an apiserver joined the control plane", metadata: ["peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"])
        return Self.json(200, try ServerJoin.bundle(share.layout, encryptionConfig: share.encryptionConfig))
    }

    func routeAuthenticated(_ request: Request, identity: CertIdentity, path: String, _ verbLabel: inout String, _ resourceLabel: inout String) async throws -> Response {
        // Segments are percent-decoded, as Kubernetes does: clients escape ":" in names such as
        // "system:node" as %3A.
        let segs = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        if !(segs.first == "api" || segs.first == "apis") || segs.count <= 2 {
            // Paths outside the resources: discovery and /version for everyone signed in, /metrics by RBAC.
            if case .deny(let msg) = authz.authorize(user: identity, verb: request.method == .get ? "get" : request.method.rawValue.lowercased(), path: path) {
                throw Status.forbidden(msg)
            }
        }
        if path == "/metrics" {
            return Self.text(200, metrics.render(store: store) + (metricsCollector?.render() ?? ""), type: "text/plain; version=0.0.4")
        }
        let withMetrics = metricsCollector != nil
        if segs == ["api"] { return Self.json(200, Discovery.apiVersions(serverAddress: serverAddress)) }
        if segs == ["apis"] { return Self.json(200, Discovery.apiGroupList(metrics: withMetrics)) }
        if segs.first == "openapi" {
            if segs == ["openapi", "v3"] { return Self.json(200, Discovery.openAPIRoot()) }
            if segs.count > 2, segs[1] == "v3", let d = Discovery.openAPIGroupVersion(segs[2...].joined(separator: "/")) { return Self.json(200, d) }
            throw Status.notFoundPath()
        }
        let group: String, version: String, rest: ArraySlice<String>
        if segs.count >= 2 && segs[0] == "api" { group = ""; version = segs[1]; rest = segs[2...] }
        else if segs.count >= 2 && segs[0] == "apis" {
            if segs.count == 2 {
                guard let d = Discovery.apiGroup(segs[1], metrics: withMetrics) else { throw Status.notFoundPath() }
                return Self.json(200, d)
            }
            group = segs[1]; version = segs[2]; rest = segs[3...]
        } else { throw Status.notFoundPath() }
        if rest.isEmpty {
            guard let d = Discovery.resourceList(group: group, version: version, metrics: withMetrics) else { throw Status.notFoundPath() }
            return Self.json(200, d)
        }
        if group == Reviews.accessReviews.group, version == "v1", rest.count == 1, let plural = rest.first,
           Reviews.all.contains(where: { $0.plural == plural }) {
            resourceLabel = plural
            guard request.method == .post else { throw Status.methodNotAllowed() }
            return try await review(request, identity: identity, plural: plural)
        }
        if group == BindingList.group, version == "v1", rest.count == 1, rest.first == "bindings" {
            resourceLabel = "bindings"
            guard request.method == .post else { throw Status.methodNotAllowed() }
            return try await batchBind(request, identity: identity)
        }
        if group == MetricsGroup.name || group == WorkloadMetricsGroup.name || group == CustomMetricsGroup.name {
            return try await routeMetrics(request, identity: identity, group: group, version: version, rest: Array(rest), &verbLabel, &resourceLabel)
        }
        guard let rp = parseResourcePath(group: group, version: version, Array(rest)) ?? viewPath(group: group, version: version, Array(rest)) else {
            throw Status.notFoundPath()
        }
        resourceLabel = rp.info.plural + (rp.subresource.map { "/\($0)" } ?? "")
        return try await handleResource(request, identity: identity, rp, &verbLabel)
    }

    /// A path of a version served by conversion: parsed as the stored version, with the view kept.
    func viewPath(group: String, version: String, _ r: [String]) -> ResourcePath? {
        let plural = r.count >= 3 && r[0] == "namespaces" ? r[2] : r.first ?? ""
        guard let v = Versions.view(group: group, version: version, plural: plural),
              var rp = parseResourcePath(group: v.info.group, version: v.info.version, r) else { return nil }
        rp.view = v
        return rp
    }

    func parseResourcePath(group: String, version: String, _ r: [String]) -> ResourcePath? {
        func info(_ plural: String) -> ResourceInfo? { Resources.byPath(group: group, version: version, plural: plural) }
        if r.count >= 3, r[0] == "namespaces", let i = info(r[2]), i.namespaced {
            switch r.count {
            case 3: return ResourcePath(info: i, namespace: r[1], name: nil, subresource: nil)
            case 4: return ResourcePath(info: i, namespace: r[1], name: r[3], subresource: nil)
            case 5: return ResourcePath(info: i, namespace: r[1], name: r[3], subresource: r[4])
            default: return nil
            }
        }
        if r.count == 3, r[0] == "namespaces", group.isEmpty, r[2] == "bindings" {
            return ResourcePath(info: Resources.pods, namespace: r[1], name: nil, subresource: "bindings")
        }
        guard let i = info(r[0]) else { return nil }
        switch r.count {
        case 1: return ResourcePath(info: i, namespace: nil, name: nil, subresource: nil)
        case 2 where !i.namespaced: return ResourcePath(info: i, namespace: nil, name: r[1], subresource: nil)
        case 3 where !i.namespaced: return ResourcePath(info: i, namespace: nil, name: r[1], subresource: r[2])
        default: return nil
        }
    }

    // MARK: resources

    func handleResource(_ request: Request, identity: CertIdentity, _ rp: ResourcePath, _ verbLabel: inout String) async throws -> Response {
        let q = request.uri.queryParameters
        func param(_ k: String) -> String? { q[Substring(k)].map(String.init) }
        let method = request.method
        let isWatch = method == .get && rp.name == nil && Self.goBool(param("watch"))
        let verb: String
        switch method {
        case .get: verb = rp.name == nil ? (isWatch ? "watch" : "list") : "get"
        case .post: verb = "create"
        case .put: verb = "update"
        case .patch: verb = "patch"
        case .delete: verb = rp.name == nil ? "deletecollection" : "delete"
        default: throw Status.methodNotAllowed()
        }
        verbLabel = isWatch ? "WATCH" : (rp.name == nil && method == .get ? "LIST" : method.rawValue)
        if let sub = rp.subresource, sub != "bindings", !rp.info.subresources.contains(sub) { throw Status.notFoundPath() }
        if rp.info.namespaced, let ns = rp.namespace, Validation.dns1123Label(ns) != nil { throw Status.notFound(Resources.namespaces, ns) }

        var fieldNode: String? = nil
        let fieldSel: Selector
        let labelSel: Selector
        do {
            fieldSel = try Selector.parse(param("fieldSelector") ?? "", fieldSelector: true)
            labelSel = try Selector.parse(param("labelSelector") ?? "")
        } catch { throw Status.badRequest("\(error)") }
        if let r = fieldSel.requirements.first(where: { $0.key == "spec.nodeName" && $0.op == .equals }) { fieldNode = r.values.first }

        let subForAuth = rp.subresource == "bindings" ? "binding" : rp.subresource
        let attrs = RequestAttributes(user: identity, verb: verb, resource: rp.info, subresource: subForAuth, namespace: rp.namespace,
                                      name: rp.name, fieldNodeName: fieldNode)
        var boundTo: String? = nil
        var mustBeNamed: String? = nil
        var tokenNode: String? = nil
        switch authz.authorize(attrs) {
        case .allow: break
        case .allowIfTokenForPodOn(let node): tokenNode = node
        case .allowIfBoundTo(let node): boundTo = node
        case .allowIfPinnedTo(let node):
            guard let name = rp.name, let cur = store.get(Objects.key(rp.info, rp.namespace, name)) else { throw Status.notFound(rp.info, rp.name ?? "") }
            if (try? KubeJSON.decode(PersistentVolume.self, from: cur.data))?.pinnedNode != node {
                throw Status.forbidden("\(rp.info.groupResource) \"\(name)\" is forbidden: node \"\(node)\" may only update persistent volumes pinned to it", rp.info, name)
            }
        case .allowIfNamed(let n): mustBeNamed = n
        case .deny(let msg): throw Status.forbidden(msg, rp.info, rp.name)
        }
        if let node = boundTo, let name = rp.name {
            guard let cur = store.get(Objects.key(rp.info, rp.namespace, name)) else { throw Status.notFound(rp.info, name) }
            if cur.fields["spec.nodeName"] != node {
                throw Status.forbidden("\(rp.info.groupResource) \"\(name)\" is forbidden: node \"\(node)\" can only access pods bound to it", rp.info, name)
            }
        }

        guard let type = Kinds.byResource[rp.info.groupResource] else { throw Status.notFoundPath() }
        let validation = FieldValidation(rawValue: param("fieldValidation") ?? "Strict") ?? .strict
        let dryRun = param("dryRun") == "All"
        if let d = param("dryRun"), !d.isEmpty, d != "All" {
            throw Status.badRequest("dryRun: Unsupported value: \"\(d)\": supported values: \"All\"")
        }
        let accept = request.headers[.accept] ?? ""
        let wantsTable = accept.contains("as=Table")
        // Protobuf answers when the client puts it first (client-go's default for built-in kinds).
        let proto = !wantsTable && Self.prefersProtobuf(accept)
        let view = rp.view
        func reply(_ code: Int, _ data: Data, headers: HTTPFields = [:]) -> Response {
            Self.encoded(code, view.map { $0.convertObject(data) } ?? data, protobuf: proto, headers: headers)
        }
        func readObject() async throws -> JSONValue {
            let body = try await readJSON(request)
            return try view.map { try $0.toStored(body) } ?? body
        }
        // Who is writing: the fieldManager parameter, else the client's name from its User-Agent, as Kubernetes.
        let manager = param("fieldManager") ?? Self.managerFromUserAgent(request.headers[.userAgent])
        if let m = param("fieldManager"), m.count > 128 { throw Status.badRequest("fieldManager: Too long: may not be longer than 128") }
        let force = Self.goBool(param("force"))
        if force, request.headers[.contentType].map({ !$0.hasPrefix("application/apply-patch") }) ?? true {
            throw Status.badRequest("force: Invalid value: true: may not be specified for non-apply patch")
        }
        let includeObject = param("includeObject") ?? "Metadata"
        // A read without a resourceVersion is consistent: with several apiservers on one etcd,
        // this one's cache first catches up with every write made anywhere before the request
        // (nothing to wait for with SQLite, where this process makes every write).
        if method == .get, (param("resourceVersion") ?? "").isEmpty {
            do { try await store.sync() } catch { throw Objects.map(error, rp.info, rp.name ?? "") }
        }

        switch (method, rp.name, rp.subresource) {
        case (.get, nil, nil):
            if isWatch { return try watch(type, rp, request: request, labelSel: labelSel, fieldSel: fieldSel, wantsTable: wantsTable, includeObject: includeObject,
                                          resourceVersion: param("resourceVersion"), timeoutSeconds: param("timeoutSeconds").flatMap(Int.init),
                                          bookmarks: Self.goBool(param("allowWatchBookmarks")), protobuf: proto, view: view) }
            return try list(type, rp, labelSel: labelSel, fieldSel: fieldSel, wantsTable: wantsTable, includeObject: includeObject,
                            limit: param("limit").flatMap(Int.init) ?? 0, continueToken: param("continue"), protobuf: proto, view: view)
        case (.get, let name?, nil), (.get, let name?, "status"):
            guard let o = store.get(Objects.key(rp.info, rp.namespace, name)) else { throw Status.notFound(rp.info, name) }
            if wantsTable { return Self.json(200, try table(type, [o], revision: o.revision, includeObject: includeObject)) }
            return reply(200, o.data)
        case (.get, let name?, "scale"):
            return Self.json(200, try KubeJSON.encode(try registry.scale(namespace: rp.namespace ?? "", name: name, info: rp.info)))
        case (.get, let name?, "log"):
            guard let nodes else { throw Status.serviceUnavailable("this apiserver has no client identity for nodes") }
            var q: [String: String] = [:]
            for k in ["container", "follow", "previous", "tailLines", "limitBytes", "timestamps", "sinceSeconds"] { if let v = param(k) { q[k] = v } }
            return try await nodes.podLogs(store: store, namespace: rp.namespace ?? "default", pod: name, query: q)
        case (.post, nil, nil):
            var body = try await readObject()
            if rp.info == Resources.csrs, case .object = body["spec"] ?? .null {
                // Who asked is set by the server, never taken from the body (as Kubernetes does).
                body["spec"]?["username"] = .string(identity.user)
                body["spec"]?["groups"] = .array(identity.groups.map { .string($0) })
            }
            if let n = mustBeNamed, body["metadata"]?["name"]?.stringValue != n {
                throw Status.forbidden("\(rp.info.groupResource) is forbidden: User \"\(identity.user)\" may only create the \(rp.info.kind) named \"\(n)\"", rp.info, nil)
            }
            let (o, warnings) = try await registry.create(type, namespace: rp.namespace, body: body, validation: validation, dryRun: dryRun, manager: manager)
            return reply(201, o.data, headers: warningHeaders(warnings))
        case (_, _?, "exec") where rp.info == Resources.pods, (_, _?, "attach") where rp.info == Resources.pods:
            // Reached only when the WebSocket upgrade was not possible: say what is needed.
            guard nodes != nil else { throw Status.serviceUnavailable("this apiserver has no client identity for nodes") }
            if let name = rp.name, store.get(Objects.key(rp.info, rp.namespace, name)) == nil { throw Status.notFound(rp.info, name) }
            throw Status(status: "Failure", message: "Upgrade request required: \(rp.subresource ?? "exec") needs a WebSocket with subprotocol \(RemoteCommand.protocols.joined(separator: " or ")), or an Upgrade: SPDY/3.1 request with X-Stream-Protocol-Version: \(RemoteCommand.v4)",
                         reason: "BadRequest", code: 400)
        case (_, _?, "portforward") where rp.info == Resources.pods:
            guard nodes != nil else { throw Status.serviceUnavailable("this apiserver has no client identity for nodes") }
            if let name = rp.name, store.get(Objects.key(rp.info, rp.namespace, name)) == nil { throw Status.notFound(rp.info, name) }
            throw Status(status: "Failure", message: Self.portForwardRefusal, reason: "BadRequest", code: 400)
        case (.post, let name?, "token") where rp.info == Resources.serviceaccounts:
            return try await requestToken(request, namespace: rp.namespace ?? "default", name: name, node: tokenNode)
        case (.post, let name?, "eviction") where rp.info == Resources.pods:
            let st = try await registry.evict(namespace: rp.namespace ?? "default", name: name, body: try await readJSON(request))
            return Self.json(201, st.kubernetesJSON())
        case (.post, let name?, "binding"):
            try await registry.bind(namespace: rp.namespace ?? "", name: name, body: try await readJSON(request))
            return Self.json(201, try KubeJSON.encode(Status.success()))
        case (.post, nil, "bindings"):
            let body = try await readJSON(request)
            guard let name = body["metadata"]?["name"]?.stringValue else { throw Status.badRequest("binding needs metadata.name") }
            try await registry.bind(namespace: rp.namespace ?? "", name: name, body: body)
            return Self.json(201, try KubeJSON.encode(Status.success()))
        case (.put, let name?, let sub) where sub == nil || sub == "status" || sub == "approval":
            let (o, warnings) = try await registry.update(type, namespace: rp.namespace, name: name, body: try await readObject(), subresource: sub, validation: validation, dryRun: dryRun, manager: manager)
            return reply(200, o.data, headers: warningHeaders(warnings))
        case (.put, let name?, "scale"):
            let body = try await readJSON(request)
            let s = try await registry.setScale(namespace: rp.namespace ?? "", name: name, info: rp.info, body: body,
                                                precondition: body["metadata"]?["resourceVersion"]?.stringValue.flatMap { Int64($0) })
            return Self.json(200, try KubeJSON.encode(s))
        case (.patch, let name?, let sub) where sub == nil || sub == "status" || sub == "approval":
            var (pt, patch) = try await readPatch(request)
            let existed = store.get(Objects.key(rp.info, rp.namespace, name)) != nil
            if let view, pt != .apply {
                // A patch in another version applies to the object in that version, then converts back.
                guard let cur = store.get(Objects.key(rp.info, rp.namespace, name)) else { throw Status.notFound(rp.info, name) }
                let asView = view.fromStored(try JSONValue.parse(cur.data))
                let patched: JSONValue
                do {
                    switch pt {
                    case .json: patched = try jsonPatch(asView, patch)
                    case .strategic: patched = try strategicMergePatch(asView, patch, message: Schema.kind(apiVersion: view.apiVersion, kind: rp.info.kind)?.name)
                    default: patched = jsonMergePatch(asView, patch)
                    }
                } catch { throw Status.failure422(rp.info, name, "\(error)") }
                var body = try view.toStored(patched)
                body["metadata"]?["resourceVersion"] = .string("\(cur.revision)")
                let (o, warnings) = try await registry.update(type, namespace: rp.namespace, name: name, body: body, subresource: sub,
                                                              validation: validation, dryRun: dryRun, manager: manager)
                return reply(200, o.data, headers: warningHeaders(warnings))
            }
            if let view, pt == .apply { patch = try view.toStored(patch) }
            let (o, warnings) = try await registry.patch(type, namespace: rp.namespace, name: name, patchType: pt, patch: patch, subresource: sub, validation: validation, dryRun: dryRun,
                                                         manager: pt == .apply ? param("fieldManager") : manager, force: force)
            return reply(pt == .apply && !existed ? 201 : 200, o.data, headers: warningHeaders(warnings))
        case (.patch, let name?, "scale"):
            let (pt, patch) = try await readPatch(request)
            let cur = try JSONValue.from(try registry.scale(namespace: rp.namespace ?? "", name: name, info: rp.info))
            let patched: JSONValue
            switch pt {
            case .json: do { patched = try jsonPatch(cur, patch) } catch { throw Status.failure422(rp.info, name, "\(error)") }
            default: patched = jsonMergePatch(cur, patch)
            }
            // Only a resourceVersion the patch itself names is a precondition, not our own read's.
            let named = pt == .json ? patch.arrayValue?.first { $0["path"]?.stringValue == "/metadata/resourceVersion" }?["value"]
                                    : patch["metadata"]?["resourceVersion"]
            let s = try await registry.setScale(namespace: rp.namespace ?? "", name: name, info: rp.info, body: patched,
                                                precondition: named?.stringValue.flatMap { Int64($0) })
            return Self.json(200, try KubeJSON.encode(s))
        case (.delete, let name?, nil):
            let opts = try await readDeleteOptions(request, param("gracePeriodSeconds"), param("propagationPolicy"))
            let (o, gone) = try await registry.delete(type, namespace: rp.namespace, name: name, options: opts)
            return reply(gone ? 200 : 202, o.data)
        case (.delete, nil, nil):
            let opts = try await readDeleteOptions(request, param("gracePeriodSeconds"), param("propagationPolicy"))
            let (items, rev) = store.list(resource: rp.info.groupResource, namespace: rp.info.namespaced ? rp.namespace : nil)
            var deleted: [Data] = []
            var failed: (any Error)?
            // As Kubernetes: every object is tried; one already gone is no failure; any other
            // failure is the answer (the first one), not a 200 that lists only what went.
            for o in items where labelSel.matches(o.labels) && fieldSel.matches(o.fields) {
                do {
                    let (d, _) = try await registry.delete(type, namespace: o.key.namespace, name: o.key.name, options: opts)
                    deleted.append(d.data)
                } catch let s as Status where s.code == 404 {
                } catch {
                    if failed == nil { failed = error }
                }
            }
            if let failed { throw failed }
            return Self.json(200, listBody(rp.info, deleted, revision: rev, continueToken: nil))
        default:
            throw Status.methodNotAllowed()
        }
    }

    static func goBool(_ v: String?) -> Bool { API.goBool(v) }

    /// True when the Accept header's first media type is Kubernetes' protobuf.
    static func prefersProtobuf(_ accept: String) -> Bool {
        guard let first = accept.split(separator: ",").first else { return false }
        return first.trimmingCharacters(in: .whitespaces).hasPrefix(KubeProtobuf.mediaType)
    }

    /// "kubectl/v1.32.4 (linux/amd64) kubernetes/abc" -> "kubectl", as Kubernetes names a manager
    /// that did not give fieldManager.
    static func managerFromUserAgent(_ ua: String?) -> String {
        let name = (ua ?? "").split(separator: "/").first.map(String.init) ?? ""
        let cleaned = String(name.filter { $0.isASCII && !$0.isNewline }.prefix(128))
        return cleaned.isEmpty ? "unknown" : cleaned
    }

    /// A JSON object body as JSON or, when asked, protobuf (falling back to JSON for anything the
    /// schema does not describe).
    static func encoded(_ code: Int, _ data: Data, protobuf: Bool, headers: HTTPFields = [:]) -> Response {
        guard protobuf, let v = try? JSONValue.parse(data), let bytes = try? KubeProtobuf.encodeObject(v) else {
            return json(code, data, headers: headers)
        }
        var h = headers
        h[.contentType] = KubeProtobuf.mediaType
        return Response(status: .init(code: code), headers: h, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    func warningHeaders(_ w: [String]) -> HTTPFields {
        var h = HTTPFields()
        for m in w { h.append(HTTPField(name: HTTPField.Name("Warning")!, value: "299 - \"\(m.replacingOccurrences(of: "\"", with: "\\\""))\"")) }
        return h
    }

    func readBody(_ request: Request) async throws -> Data {
        var req = request
        do {
            let buf = try await req.collectBody(upTo: 3 << 20)
            return Data(buffer: buf)
        } catch {
            throw Status.tooLarge()
        }
    }

    func readJSON(_ request: Request) async throws -> JSONValue {
        let ct = request.headers[.contentType] ?? "application/json"
        let data = try await readBody(request)
        if ct.hasPrefix("application/yaml") { return try Self.parseYAMLBody(data) }
        if ct.hasPrefix(KubeProtobuf.mediaType) {
            do { return try KubeProtobuf.decodeObject(data) } catch { throw Status.badRequest("the protobuf body cannot be decoded: \(error)") }
        }
        do { return try JSONValue.parse(data) } catch {
            throw Status.badRequest("the request body is not valid JSON: \(Self.jsonErrorText(error))")
        }
    }

    /// One YAML document as a JSON tree; an error names the line.
    static func parseYAMLBody(_ data: Data) throws -> JSONValue {
        let docs: [ManifestDocument]
        do { docs = try Manifests.parse(String(decoding: data, as: UTF8.self), file: "the request body") }
        catch { throw Status.badRequest("\(error)") }
        guard docs.count == 1 else { throw Status.badRequest("the request body must hold exactly one YAML document, found \(docs.count)") }
        return docs[0].object
    }

    static func jsonErrorText(_ e: Error) -> String {
        if let de = e as? DecodingError, case .dataCorrupted(let c) = de {
            return (c.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? c.debugDescription
        }
        return "\(e)"
    }

    func readPatch(_ request: Request) async throws -> (Registry.PatchType, JSONValue) {
        let ct = request.headers[.contentType] ?? ""
        let pt: Registry.PatchType
        if ct.hasPrefix("application/merge-patch+json") { pt = .merge }
        else if ct.hasPrefix("application/json-patch+json") { pt = .json }
        else if ct.hasPrefix("application/strategic-merge-patch+json") { pt = .strategic }
        else if ct.hasPrefix("application/apply-patch+yaml") || ct.hasPrefix("application/apply-patch+json") {
            return (.apply, try Self.parseYAMLBody(try await readBody(request)))
        }
        else { throw Status.unsupportedMediaType(ct) }
        let data = try await readBody(request)
        do { return (pt, try JSONValue.parse(data)) } catch { throw Status.badRequest("the patch is not valid JSON: \(Self.jsonErrorText(error))") }
    }

    func readDeleteOptions(_ request: Request, _ grace: String?, _ policy: String?) async throws -> DeleteOptions {
        let data = try await readBody(request)
        var opts = DeleteOptions()
        if !data.isEmpty {
            do { opts = try KubeJSON.decode(DeleteOptions.self, from: data) } catch { throw Status.badRequest("DeleteOptions: \(error)") }
        }
        if let g = grace.flatMap(Int64.init) { opts.gracePeriodSeconds = g }
        if let p = policy { opts.propagationPolicy = p }
        if let p = opts.propagationPolicy, !["Orphan", "Background", "Foreground"].contains(p) {
            throw Status.badRequest("propagationPolicy: Unsupported value: \"\(p)\": supported values: \"Orphan\", \"Background\", \"Foreground\"")
        }
        return opts
    }

    // MARK: list and table

    func listBody(_ info: ResourceInfo, _ items: [Data], revision: Int64, continueToken: String?, remaining: Int? = nil) -> Data {
        var out = Data()
        out.reserveCapacity(items.reduce(128) { $0 + $1.count + 1 })
        out.append(contentsOf: Array("{\"apiVersion\":\"\(info.apiVersion)\",\"items\":[".utf8))
        for (i, d) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(d)
        }
        var meta = "\"resourceVersion\":\"\(revision)\""
        if let c = continueToken { meta += ",\"continue\":\"\(c)\"" }
        if let r = remaining { meta += ",\"remainingItemCount\":\(r)" }
        out.append(contentsOf: Array("],\"kind\":\"\(info.kind)List\",\"metadata\":{\(meta)}}".utf8))
        return out
    }

    func list<T: ServedKind & TablePrintable>(_ type: T.Type, _ rp: ResourcePath, labelSel: Selector, fieldSel: Selector, wantsTable: Bool,
                                              includeObject: String, limit: Int, continueToken: String?, protobuf: Bool = false, view: VersionView? = nil) throws -> Response {
        // Every page of a paginated list comes from the snapshot of its first page: the continue
        // token carries that revision and the last key returned (as Kubernetes' does).
        let ns = rp.info.namespaced ? rp.namespace : nil
        var after: String? = nil
        let all: [StoredObject], rev: Int64
        if let c = continueToken, !c.isEmpty {
            let token = try ListContinue(parsing: c)
            after = token.start
            do { (all, rev) = try store.list(resource: rp.info.groupResource, namespace: ns, atRevision: token.rv) }
            catch StoreError.gone(_, let oldest) {
                throw Status.gone("the continue token's snapshot (revision \(token.rv)) is older than the oldest revision kept (\(oldest)): list again without continue")
            }
        } else {
            (all, rev) = store.list(resource: rp.info.groupResource, namespace: ns)
        }
        var items = all.filter { labelSel.matches($0.labels) && fieldSel.matches($0.fields) }
        if let after { items = items.filter { "\($0.key.namespace)/\($0.key.name)" > after } }
        var next: String? = nil
        var remaining: Int? = nil
        if limit > 0 && items.count > limit {
            remaining = items.count - limit
            items = Array(items.prefix(limit))
            let last = items[items.count - 1].key
            next = ListContinue(rv: rev, start: "\(last.namespace)/\(last.name)").encoded
        }
        if wantsTable { return Self.json(200, try table(type, items, revision: rev, includeObject: includeObject, continueToken: next)) }
        let body = listBody(rp.info, items.map(\.data), revision: rev, continueToken: next, remaining: remaining)
        return Self.encoded(200, view.map { $0.convertList(body) } ?? body, protobuf: protobuf)
    }

    func tableRow<T: ServedKind & TablePrintable>(_ type: T.Type, _ o: StoredObject, includeObject: String) throws -> TableRow {
        let obj = try Objects.decodeStored(T.self, o)
        var rowObject: JSONValue? = nil
        switch includeObject {
        case "None": rowObject = nil
        case "Object": rowObject = try JSONValue.parse(o.data)
        default:
            rowObject = .object(["kind": .string("PartialObjectMetadata"), "apiVersion": .string("meta.k8s.io/v1"),
                                 "metadata": try JSONValue.from(obj.metadata)])
        }
        return TableRow(cells: obj.cells(now: registry.clock()), object: rowObject)
    }

    func table<T: ServedKind & TablePrintable>(_ type: T.Type, _ items: [StoredObject], revision: Int64, includeObject: String, continueToken: String? = nil) throws -> Data {
        var meta = ListMeta(resourceVersion: "\(revision)")
        meta.continue = continueToken
        let t = Table(metadata: meta, columnDefinitions: T.columns, rows: try items.map { try tableRow(type, $0, includeObject: includeObject) })
        return try KubeJSON.encode(t)
    }

    // MARK: watch

    /// How a change looks through a selector: entering the selection is ADDED, leaving it DELETED.
    static func selectorView(_ e: StoreEvent, _ labelSel: Selector, _ fieldSel: Selector) -> StoreEvent? {
        func matches(_ o: StoredObject) -> Bool { labelSel.matches(o.labels) && fieldSel.matches(o.fields) }
        switch e.type {
        case .bookmark: return e
        case .added: return matches(e.object) ? e : nil
        case .deleted: return matches(e.previous ?? e.object) ? e : nil
        case .modified:
            let now = matches(e.object)
            let was = e.previous.map(matches) ?? false
            if now && was { return e }
            if now { return StoreEvent(type: .added, object: e.object, previous: e.previous) }
            if was { return StoreEvent(type: .deleted, object: e.object, previous: e.previous) }
            return nil
        }
    }

    func watch<T: ServedKind & TablePrintable>(_ type: T.Type, _ rp: ResourcePath, request: Request, labelSel: Selector, fieldSel: Selector,
                                               wantsTable: Bool, includeObject: String, resourceVersion: String?, timeoutSeconds: Int?, bookmarks: Bool,
                                               protobuf: Bool = false, view: VersionView? = nil) throws -> Response {
        var from: Int64? = nil
        if let rv = resourceVersion, !rv.isEmpty, rv != "0" {
            guard let r = Int64(rv) else { throw Status.badRequest("resourceVersion: Invalid value: \"\(rv)\": must be a decimal revision") }
            from = r
        }
        var filter: (@Sendable (StoreEvent) -> StoreEvent?)? = nil
        if !(labelSel.isEmpty && fieldSel.isEmpty) {
            filter = { @Sendable e in APIHandler.selectorView(e, labelSel, fieldSel) }
        }
        let info = rp.info
        let timeout = Duration.seconds(timeoutSeconds.map { max(1, $0) } ?? 1800)
        let sub: StoreSubscription
        do {
            sub = try store.watch(resource: info.groupResource, namespace: info.namespaced ? rp.namespace : nil, fromRevision: from, filter: filter)
        } catch let StoreError.gone(requested, oldest) {
            // As Kubernetes: the watch opens, then reports 410 as an ERROR event.
            let st = Status.gone("too old resource version: \(requested) (\(oldest))")
            let line = Data("{\"type\":\"ERROR\",\"object\":".utf8) + st.kubernetesJSON() + Data("}\n".utf8)
            return Self.json(200, line)
        } catch StoreError.closed {
            throw Status.serviceUnavailable("the apiserver is shutting down")
        }
        metrics.watchOpened()
        let bookmarkInterval = self.bookmarkInterval
        let body = ResponseBody { [self] writer in
            defer { sub.cancel(); metrics.watchClosed() }
            try await request.body.consumeWithCancellationOnInboundClose { _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await Task.sleep(for: timeout)
                        sub.cancel()
                    }
                    if bookmarks {
                        group.addTask {
                            while !Task.isCancelled {
                                try await Task.sleep(for: bookmarkInterval)
                                sub.requestBookmark()
                            }
                        }
                    }
                    var first = true
                    // Flush right away so clients see the response headers before the first event.
                    try await writer.write(ByteBuffer())
                    for await e in sub.events {
                        if protobuf {
                            // Length-prefixed protobuf WatchEvents (Accept: application/vnd.kubernetes.protobuf;stream=watch).
                            let object: JSONValue = e.type == .bookmark
                                ? .object(["kind": .string(info.kind), "apiVersion": .string(view?.apiVersion ?? info.apiVersion), "metadata": .object(["resourceVersion": .string("\(e.revision)")])])
                                : try JSONValue.parse(view.map { $0.convertObject(e.object.data) } ?? e.object.data)
                            try await writer.write(ByteBuffer(bytes: try KubeProtobuf.encodeWatchEvent(type: e.type.rawValue, object: object)))
                            continue
                        }
                        var line = Data()
                        line.append(contentsOf: Array("{\"type\":\"\(e.type.rawValue)\",\"object\":".utf8))
                        if e.type == .bookmark {
                            line.append(contentsOf: Array("{\"kind\":\"\(info.kind)\",\"apiVersion\":\"\(view?.apiVersion ?? info.apiVersion)\",\"metadata\":{\"resourceVersion\":\"\(e.revision)\"}}".utf8))
                        } else if wantsTable {
                            var t = Table(metadata: ListMeta(resourceVersion: "\(e.revision)"), columnDefinitions: first ? T.columns : nil,
                                          rows: [try self.tableRow(type, e.object, includeObject: includeObject)])
                            if !first { t.columnDefinitions = nil }
                            line.append(try KubeJSON.encode(t))
                            first = false
                        } else {
                            line.append(view.map { $0.convertObject(e.object.data) } ?? e.object.data)
                        }
                        line.append(contentsOf: Array("}\n".utf8))
                        try await writer.write(ByteBuffer(data: line))
                    }
                    group.cancelAll()
                }
            }
            try await writer.finish(nil)
        }
        let contentType = protobuf ? "\(KubeProtobuf.mediaType);stream=watch" : "application/json"
        // The server closes the connection when a watch ends (it listens for the client going away
        // while it streams); saying so keeps clients from reusing a connection that is about to go.
        return Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "no-cache", .connection: "close"], body: body)
    }
}

/// A list's continue token: base64 of {"v":"meta.k8s.io/v1","rv":REVISION,"start":"NS/NAME"}, the
/// snapshot revision of the first page and the last key returned.
struct ListContinue: Codable {
    var v = "meta.k8s.io/v1"
    var rv: Int64
    var start: String
    init(rv: Int64, start: String) { self.rv = rv; self.start = start }
    init(parsing token: String) throws {
        var b = token
        while b.count % 4 != 0 { b += "=" }
        guard let d = Data(base64Encoded: b), let t = try? JSONDecoder().decode(ListContinue.self, from: d),
              t.v == "meta.k8s.io/v1", t.rv > 0 else {
            throw Status.badRequest("continue: invalid token \"\(token.prefix(80))\" (pass back metadata.continue of the previous page unchanged)")
        }
        self = t
    }
    var encoded: String { (try? JSONEncoder().encode(self)).map { $0.base64EncodedString() } ?? "" }
}
