// Builds the apiserver: PKI and kubeconfigs in the data dir on first start, the SQLite store,
// the HTTPS (mutual TLS) application, and background services (namespace finalization).
import Foundation
import Synchronization
import Hummingbird
import HummingbirdWebSocket
import HummingbirdTLS
import NIOCore
import NIOSSL
import ServiceLifecycle
import Logging
import API
import Store
import Etcd
import PKI
import Client

public struct APIServerConfig: Sendable {
    public var dataDir: String
    public var advertiseAddress: String = "127.0.0.1"
    public var bindAddress: String = "0.0.0.0"
    public var securePort: Int = 6443
    public var tlsSANs: [String] = []
    /// Keep everything in memory (tests, hollow clusters); PKI is still written to dataDir.
    public var inMemory = false
    /// The EncryptionConfiguration for data at rest; nil: DATA_DIR/encryption.yaml, made on first start.
    public var encryptionConfig: String?
    public var storeOptions = StoreOptions()
    public var bookmarkInterval: Duration = .seconds(5)
    public var logLevel: Logger.Level = .info
    /// The metrics collector (metrics.k8s.io and the workload history in DATA_DIR/metrics.db).
    public var metrics = MetricsConfig()
    /// The Service address range and NodePort range (--service-cluster-ip-range, --service-node-port-range).
    public var services = ServiceNetworkConfig()
    /// After SIGTERM/SIGINT: how long open requests (and clients that keep connections alive) get
    /// before every connection is closed; the process exits at the latest 5 s after that.
    public var shutdownGracePeriod: Duration = .seconds(15)
    /// Keep objects in etcd instead of DATA_DIR/state.db (--etcd-servers); nil: SQLite.
    public var etcd: EtcdConfig?
    /// Join the control plane of a running apiserver (--join-server, --server-token): on first
    /// start the shared CA and keys are fetched from it.
    public var join: ServerJoinConfig?
    /// The apiserver URLs written into the kubeconfigs made here (--kubeconfig-server, several
    /// comma-separated for clients that fail over); nil: https://ADVERTISE:PORT.
    public var kubeconfigServer: String?
    /// How long an Event is kept after its newest timestamp (--event-ttl, Kubernetes' default 1 h).
    public var eventTTL: Double = 3600
    public init(dataDir: String) { self.dataDir = dataDir }
}

/// The files the apiserver keeps in its data dir.
public struct DataDirLayout: Sendable {
    public var dir: String
    public var caCert: String { "\(dir)/pki/ca.crt" }
    public var caKey: String { "\(dir)/pki/ca.key" }
    /// The ServiceAccount token signing key (P-256), made on first start.
    public var serviceAccountKey: String { "\(dir)/pki/sa.key" }
    public var serverCert: String { "\(dir)/pki/apiserver.crt" }
    public var serverKey: String { "\(dir)/pki/apiserver.key" }
    public var serverSANs: String { "\(dir)/pki/apiserver.sans" }
    public var joinToken: String { "\(dir)/join-token" }
    public var database: String { "\(dir)/state.db" }
    public var encryptionConfig: String { "\(dir)/encryption.yaml" }
    /// Usage history per workload; separate from state.db, safe to delete.
    public var metricsDatabase: String { "\(dir)/metrics.db" }
    public func kubeconfig(_ name: String) -> String { "\(dir)/\(name).kubeconfig" }
    public init(dir: String) { self.dir = dir }
}

public struct ClusterPKI: Sendable {
    public var ca: CertificateAuthority
    public var server: KeyPair
    public var token: JoinToken
    /// The apiserver's client identity toward agents (logs, stats): kube-apiserver-kubelet-client.
    public var kubeletClient: KeyPair

    /// Creates the CA, serving certificate, kubeconfigs and join token on first start; reuses them
    /// later. The serving certificate is re-issued when the wanted SANs change.
    public static func ensure(_ layout: DataDirLayout, advertise: String, port: Int, sans extra: [String], kubeconfigServer: String? = nil, logger: Logger) throws -> ClusterPKI {
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(layout.dir)/pki", withIntermediateDirectories: true)
        _ = chmod(layout.dir, 0o700)
        let ca: CertificateAuthority
        if fm.fileExists(atPath: layout.caCert), fm.fileExists(atPath: layout.caKey) {
            ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: layout.caCert, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: layout.caKey, encoding: .utf8))
        } else {
            ca = try CertificateAuthority.generate()
            try writeFile(layout.caKey, ca.keyPEM, mode: 0o600)
            try writeFile(layout.caCert, ca.certificatePEM)
            logger.info("created cluster CA", metadata: ["path": "\(layout.caCert)"])
        }
        var dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        var host = [CChar](repeating: 0, count: 256)
        if gethostname(&host, 255) == 0 { dns.append(String(cString: host)) }
        var ips = ["127.0.0.1"]
        for s in [advertise] + extra {
            if s.isEmpty { continue }
            if s.contains(":") || s.split(separator: ".").allSatisfy({ Int($0) != nil }) { if !ips.contains(s) { ips.append(s) } }
            else if !dns.contains(s) { dns.append(s) }
        }
        let wanted = (dns.sorted() + ips.sorted()).joined(separator: ",")
        let current = try? String(contentsOfFile: layout.serverSANs, encoding: .utf8)
        let server: KeyPair
        if current == wanted, fm.fileExists(atPath: layout.serverCert), fm.fileExists(atPath: layout.serverKey) {
            server = KeyPair(certificatePEM: try String(contentsOfFile: layout.serverCert, encoding: .utf8),
                             keyPEM: try String(contentsOfFile: layout.serverKey, encoding: .utf8))
        } else {
            server = try ca.issue(commonName: "kube-apiserver", dnsNames: dns, ipAddresses: ips, usage: .server)
            try writeFile(layout.serverKey, server.keyPEM, mode: 0o600)
            try writeFile(layout.serverCert, server.certificatePEM)
            try writeFile(layout.serverSANs, wanted)
            logger.info("issued serving certificate", metadata: ["sans": "\(wanted)"])
        }
        let url = kubeconfigServer ?? "https://\(advertise.contains(":") ? "[\(advertise)]" : advertise):\(port)"
        for (file, user, groups) in [("admin", "admin", ["system:masters"]),
                                     ("scheduler", "system:kube-scheduler", [String]()),
                                     ("controller-manager", "system:kube-controller-manager", [String]())] {
            let path = layout.kubeconfig(file)
            if let existing = try? Kubeconfig.load(path: path), (try? existing.resolve().server) == url { continue }
            let kp = try ca.issue(commonName: user, organizations: groups, usage: .client)
            let kc = Kubeconfig(server: url, caPEM: ca.certificatePEM, user: user, certPEM: kp.certificatePEM, keyPEM: kp.keyPEM)
            try writeFile(path, try kc.yaml(), mode: 0o600)
        }
        let token: JoinToken
        if let t = try? String(contentsOfFile: layout.joinToken, encoding: .utf8), let parsed = try? JoinToken(parsing: t), parsed.caHash == ca.publicKeyHash {
            token = parsed
        } else {
            token = JoinToken.generate(caHash: ca.publicKeyHash)
            try writeFile(layout.joinToken, token.description + "\n", mode: 0o600)
        }
        let kcCert = "\(layout.dir)/pki/apiserver-kubelet-client.crt", kcKey = "\(layout.dir)/pki/apiserver-kubelet-client.key"
        let kubeletClient: KeyPair
        if let c = try? String(contentsOfFile: kcCert, encoding: .utf8), let k = try? String(contentsOfFile: kcKey, encoding: .utf8) {
            kubeletClient = KeyPair(certificatePEM: c, keyPEM: k)
        } else {
            kubeletClient = try ca.issue(commonName: "kube-apiserver-kubelet-client", organizations: ["system:masters"], usage: .client)
            try writeFile(kcKey, kubeletClient.keyPEM, mode: 0o600)
            try writeFile(kcCert, kubeletClient.certificatePEM)
        }
        return ClusterPKI(ca: ca, server: server, token: token, kubeletClient: kubeletClient)
    }
}

public final class APIServer: Sendable {
    public let config: APIServerConfig
    public let layout: DataDirLayout
    public let store: any ObjectStore
    /// Terminating namespaces whose final delete failed (logged once each until it succeeds).
    let namespaceDeleteFailures = Mutex<Set<String>>([])
    public let registry: Registry
    public let pki: ClusterPKI
    let handler: APIHandler
    let logger: Logger
    /// The metrics pipeline; nil when `config.metrics.interval` is 0.
    public let metricsCollector: MetricsCollector?
    public let tokens: TokenIssuer
    private let portBox = PortBox()
    /// Every accepted connection, so that shutdown can end the ones still open at its deadline.
    private let connections = ConnectionTracker()

    /// Opens the configured store (etcd: connects, retrying until it answers) and builds the server.
    public static func open(config: APIServerConfig) async throws -> APIServer {
        var logger = Logger(label: "apiserver")
        logger.logLevel = config.logLevel
        if let join = config.join {
            try await ServerJoin.joinIfNeeded(join, layout: DataDirLayout(dir: config.dataDir), logger: logger)
        }
        guard var etcd = config.etcd else { return try APIServer(config: config) }
        etcd.encryption = try encryption(config, DataDirLayout(dir: config.dataDir), logger)
        let store = try await EtcdStore.open(config: etcd, options: config.storeOptions, logger: logger)
        return try APIServer(config: config, store: store)
    }

    /// Copies every object of DATA_DIR/state.db into the (empty) etcd of `config.etcd`; returns
    /// (objects copied, SQLite revision, etcd revision after). Stop the apiserver first.
    public static func migrateSQLiteToEtcd(config: APIServerConfig) async throws -> (objects: Int, from: Int64, to: Int64) {
        guard var etcd = config.etcd else { throw StoreError.backend("no etcd servers given") }
        var logger = Logger(label: "migrate")
        logger.logLevel = config.logLevel
        let layout = DataDirLayout(dir: config.dataDir)
        guard FileManager.default.fileExists(atPath: layout.database) else { throw StoreError.backend("\(layout.database) does not exist") }
        let enc = try encryption(config, layout, logger)
        // Sealed Secrets are opened with the data directory's keys, and sealed again for etcd.
        let source = try Store(backend: EncryptingBackend(SQLiteBackend(path: layout.database), config: enc), logger: logger)
        var all: [StoredObject] = []
        for r in source.cache.resourceNames() { all += source.list(resource: r, namespace: nil).items }
        etcd.encryption = enc
        let target = try await EtcdStore.open(config: etcd, logger: logger, patience: .seconds(30))
        defer { target.shutdown() }
        let n = try await target.importObjects(all)
        return (n, source.currentRevision, target.currentRevision)
    }

    /// The encryption configuration for data at rest (made on first start when not given).
    static func encryption(_ config: APIServerConfig, _ layout: DataDirLayout, _ logger: Logger) throws -> EncryptionConfig {
        let path = config.encryptionConfig ?? layout.encryptionConfig
        if config.encryptionConfig == nil && !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: layout.dir, withIntermediateDirectories: true)
            try EncryptionConfigFile.createDefault(path)
        }
        let enc = try EncryptionConfigFile.load(path)
        logger.info("encryption at rest", metadata: ["resources": "\(enc.resources.sorted())", "config": "\(path)",
                                                     "sealing key": "\(enc.identityFirst ? "none (identity first)" : enc.keys.first?.name ?? "none")"])
        return enc
    }

    public init(config: APIServerConfig, store provided: (any ObjectStore)? = nil) throws {
        self.config = config
        var logger = Logger(label: "apiserver")
        logger.logLevel = config.logLevel
        self.logger = logger
        layout = DataDirLayout(dir: config.dataDir)
        // Pods reach the API as https://kubernetes.default.svc (the `kubernetes` Service's cluster IP).
        let inCluster = [config.services.apiServiceIP.description, "kubernetes.default.svc.cluster.local"]
        pki = try ClusterPKI.ensure(layout, advertise: config.advertiseAddress, port: config.securePort, sans: config.tlsSANs + inCluster,
                                   kubeconfigServer: config.kubeconfigServer, logger: logger)
        let serverToken = try ServerJoin.ensureToken(layout, ca: pki.ca)
        tokens = TokenIssuer(key: try TokenIssuer.loadOrCreateKey(layout.serviceAccountKey), clock: { Date() })
        if let given = provided {
            self.store = given
        } else {
            var sealingRef: EncryptingBackend? = nil
            var backend: any StoreBackend = config.inMemory ? MemoryBackend() : try SQLiteBackend(path: layout.database)
            if !config.inMemory {
                let enc = try Self.encryption(config, layout, logger)
                let sealing = EncryptingBackend(backend, config: enc)
                backend = sealing
                sealingRef = sealing
            }
            self.store = try Store(backend: backend, options: config.storeOptions, logger: logger)
            if let s = sealingRef, s.resealed > 0 {
                logger.notice("re-sealed stored objects under the first key of the encryption configuration", metadata: ["objects": "\(s.resealed)"])
            }
        }
        registry = Registry(store: store, logger: logger, services: config.services)
        let nodes = try NodeProxy(ca: pki.ca.certificatePEM, client: pki.kubeletClient)
        if config.metrics.enabled {
            let history = try MetricsHistoryDB(path: config.inMemory ? ":memory:" : layout.metricsDatabase,
                                               rawRetention: config.metrics.rawRetention, minuteRetention: config.metrics.minuteRetention)
            var l = logger
            l[metadataKey: "component"] = "metrics"
            metricsCollector = MetricsCollector(store: store, proxy: nodes, history: history, config: config.metrics, logger: l, now: registry.clock)
        } else {
            metricsCollector = nil
        }
        handler = APIHandler(registry: registry, metrics: APIMetrics(), bootstrapToken: pki.token,
                             serverAddress: "\(config.advertiseAddress):\(config.securePort)", logger: logger, bookmarkInterval: config.bookmarkInterval,
                             caPEM: pki.ca.certificatePEM, nodes: nodes, metricsCollector: metricsCollector, tokens: tokens,
                             serverShare: config.inMemory ? nil : (serverToken, layout, config.encryptionConfig))
    }

    /// The port actually bound (useful with port 0); waits until the server listens.
    public func boundPort() async -> Int { await portBox.wait() }

    /// Creates the namespaces every cluster has.
    func bootstrapNamespaces() async throws {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] where store.get(Objects.key(Resources.namespaces, nil, ns)) == nil {
            let body: JSONValue = .object(["apiVersion": .string("v1"), "kind": .string("Namespace"), "metadata": .object(["name": .string(ns)])])
            do { _ = try await registry.create(Namespace.self, namespace: nil, body: body, validation: .strict) }
            catch let s as Status where s.code == 409 {}
        }
        // Their default ServiceAccount and CA ConfigMap at once, so that the first pods need not
        // wait for the controller-manager (which keeps both in every namespace).
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if store.get(Objects.key(Resources.serviceaccounts, ns, "default")) == nil {
                let sa: JSONValue = .object(["apiVersion": "v1", "kind": "ServiceAccount", "metadata": .object(["name": "default", "namespace": .string(ns)])])
                do { _ = try await registry.create(ServiceAccount.self, namespace: ns, body: sa, validation: .strict) } catch let s as Status where s.code == 409 {}
            }
            if store.get(Objects.key(Resources.configmaps, ns, Registry.rootCAConfigMap)) == nil {
                let cm: JSONValue = .object(["apiVersion": "v1", "kind": "ConfigMap", "metadata": .object(["name": .string(Registry.rootCAConfigMap), "namespace": .string(ns)]),
                                             "data": .object(["ca.crt": .string(pki.ca.certificatePEM)])])
                do { _ = try await registry.create(ConfigMap.self, namespace: ns, body: cm, validation: .strict) } catch let s as Status where s.code == 409 {}
            }
        }
    }

    /// The Services every cluster has: `default/kubernetes` for the API itself (with its
    /// Endpoints and EndpointSlice, kept pointing at this apiserver) and `kube-system/kube-dns`,
    /// the address every node's agent answers DNS on.
    func bootstrapServices(port boundPort: Int) async throws {
        await registry.allocator?.repair()
        let svcNet = config.services
        let port = Int64(boundPort)
        let ip = config.advertiseAddress
        func ensure<T: ServedKind>(_ type: T.Type, _ ns: String, _ name: String, _ body: JSONValue, replace: Bool) async throws {
            let key = Objects.key(T.resource, ns, name)
            if store.get(key) == nil {
                do { _ = try await registry.create(type, namespace: ns, body: body, validation: .strict); return }
                catch let s as Status where s.code == 409 {}
            }
            guard replace, let cur = store.get(key), var j = try? JSONValue.parse(cur.data) else { return }
            var want = body
            want["metadata"] = j["metadata"]
            for k in ["subsets", "endpoints", "ports", "addressType"] where want[k] != nil { j[k] = want[k] }
            if j != (try? JSONValue.parse(cur.data)) { _ = try await registry.update(type, namespace: ns, name: name, body: j, subresource: nil, validation: .strict) }
        }
        try await ensure(Service.self, "default", "kubernetes", .object([
            "metadata": .object(["name": "kubernetes", "labels": .object(["component": "apiserver", "provider": "kubernetes"])]),
            "spec": .object(["clusterIP": .string(svcNet.apiServiceIP.description), "type": "ClusterIP", "sessionAffinity": "None",
                             "ports": .array([.object(["name": "https", "port": 443, "protocol": "TCP", "targetPort": .int(port)])])]),
        ]), replace: false)
        try await ensure(Endpoints.self, "default", "kubernetes", .object([
            "metadata": .object(["name": "kubernetes", "labels": .object(["endpointslice.kubernetes.io/skip-mirror": "true"])]),
            "subsets": .array([.object(["addresses": .array([.object(["ip": .string(ip)])]),
                                        "ports": .array([.object(["name": "https", "port": .int(port), "protocol": "TCP"])])])]),
        ]), replace: true)
        try await ensure(EndpointSlice.self, "default", "kubernetes", .object([
            "metadata": .object(["name": "kubernetes", "labels": .object([EndpointSlice.serviceNameLabel: "kubernetes"])]),
            "addressType": "IPv4",
            "endpoints": .array([.object(["addresses": .array([.string(ip)]), "conditions": .object(["ready": true])])]),
            "ports": .array([.object(["name": "https", "port": .int(port), "protocol": "TCP"])]),
        ]), replace: true)
        try await ensure(Service.self, "kube-system", "kube-dns", .object([
            "metadata": .object(["name": "kube-dns", "labels": .object(["k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"])]),
            "spec": .object(["clusterIP": .string(svcNet.dnsServiceIP.description), "type": "ClusterIP",
                             "ports": .array([.object(["name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53]),
                                              .object(["name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53])])]),
        ]), replace: false)
    }

    /// The default StorageClass, `local-path` (the built-in provisioner, as k3s ships), made when
    /// missing.
    func bootstrapStorage() async throws {
        guard store.get(Objects.key(Resources.storageclasses, nil, StorageNames.localPathClass)) == nil else { return }
        let body: JSONValue = .object([
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": .object(["name": .string(StorageNames.localPathClass), "annotations": .object([StorageNames.defaultClassAnnotation: "true"])]),
            "provisioner": .string(StorageNames.localPathProvisioner), "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        ])
        do { _ = try await registry.create(StorageClass.self, namespace: nil, body: body, validation: .strict) }
        catch let s as Status where s.code == 409 {}
    }

    /// Deletes what terminating namespaces hold, then the namespaces themselves.
    func finalizeNamespaces() async {
        let (nss, _) = store.list(resource: Resources.namespaces.groupResource, namespace: nil)
        for ns in nss where ns.fields["status.phase"] == "Terminating" {
            let name = ns.key.name
            var remaining = 0
            for resource in store.resources(inNamespace: name) {
                guard let type = Kinds.byResource[resource] else { continue }
                remaining += await deleteAll(type, namespace: name)
            }
            if remaining == 0 {
                if let cur = store.get(ns.key) {
                    do {
                        _ = try await store.write(.delete(ns.key, expectedRevision: cur.revision, finalData: Self.restamp(cur.data)))
                        logger.info("namespace deleted", metadata: ["namespace": "\(name)"])
                    } catch {
                        // Tried again on the next pass (every 500 ms); said once per namespace.
                        ComponentMetrics.shared.failedWrite("namespace-finalizer")
                        if namespaceDeleteFailures.withLock({ $0.insert(name).inserted }) {
                            logger.error("could not delete namespace; retrying", metadata: ["namespace": "\(name)", "error": "\(error)"])
                        }
                        continue
                    }
                    namespaceDeleteFailures.withLock { _ = $0.remove(name) }
                }
            }
        }
    }

    /// Deletes the Events whose newest time (the last of creationTimestamp, the managedFields'
    /// write times, firstTimestamp, lastTimestamp, eventTime, series.lastObservedTime) is
    /// more than `config.eventTTL` before `now`, from the store and so from every watch (a
    /// DELETED event, as an expiring etcd lease gives in Kubernetes). Another apiserver deleting
    /// the same Event first is no failure. Returns how many were deleted.
    @discardableResult
    func expireEvents(now: Date) async -> Int {
        let cutoff = now.addingTimeInterval(-config.eventTTL)
        let (items, _) = store.list(resource: Resources.events.groupResource, namespace: nil)
        var deleted = 0, failed = 0
        for o in items {
            guard let newest = Self.newestTime(ofEvent: o.data) else { continue }
            guard newest < cutoff else { continue }
            do {
                _ = try await store.write(.delete(o.key, expectedRevision: o.revision, finalData: Self.restamp(o.data)))
                deleted += 1
            } catch StoreError.notFound, StoreError.conflict {
                // Deleted or rewritten meanwhile (another apiserver, a recorder's update).
            } catch {
                failed += 1
                if failed == 1 { logger.error("could not delete an expired event; trying again on the next pass", metadata: ["event": "\(o.key.namespace)/\(o.key.name)", "error": "\(error)"]) }
            }
        }
        if deleted > 0 { logger.debug("expired events deleted", metadata: ["count": "\(deleted)", "ttl": "\(goDuration(seconds: config.eventTTL))"]) }
        return deleted
    }

    static func newestTime(ofEvent data: Data) -> Date? {
        guard let j = try? JSONValue.parse(data) else { return nil }
        var stamps = [j["metadata"]?["creationTimestamp"], j["firstTimestamp"], j["lastTimestamp"], j["eventTime"], j["series"]?["lastObservedTime"]]
        stamps += (j["metadata"]?["managedFields"]?.arrayValue ?? []).map { $0["time"] }   // each write's time
        return stamps.compactMap { $0?.stringValue }.compactMap { KubeTime.parse($0) }.max()
    }

    static func restamp(_ data: Data) -> Data {
        guard var j = try? JSONValue.parse(data) else { return data }
        j["metadata"]?["resourceVersion"] = .string(Store.revisionPlaceholder)
        return (try? j.encoded()) ?? data
    }

    private func deleteAll<T: ServedKind & TablePrintable>(_ type: T.Type, namespace: String) async -> Int {
        let (items, _) = store.list(resource: T.resource.groupResource, namespace: namespace)
        var left = 0
        for o in items {
            if let (_, gone) = try? await registry.delete(type, namespace: namespace, name: o.key.name, options: DeleteOptions()), gone { continue }
            left += 1
        }
        return left
    }

    /// The HTTPS application and its background services, ready to run in a ServiceGroup.
    public func makeServices() throws -> [any ServiceLifecycle.Service] {
        let tls = try TLSConfig.server(certPEM: pki.server.certificatePEM, keyPEM: pki.server.keyPEM, caPEM: pki.ca.certificatePEM)
        let handler = self.handler
        let responder = CallbackResponder<APIContext> { request, context in await handler.respond(request, context) }
        let box = portBox
        let app = Application(
            responder: responder,
            // Streams (pods/exec, attach, portforward) upgrade to WebSockets; everything else is plain HTTP/1.1.
            // A plain SPDY/3.1 upgrade (port-forward's fallback) is taken before HTTP sees it.
            server: try .tls(.http1WebSocketAndSPDYUpgrade(configuration: .init(ws: .init(maxFrameSize: 1 << 20)), shouldUpgrade: { request, channel, _ in
                await handler.shouldUpgrade(request, channel)
            }, decide: { head, channel in await handler.decideSPDYUpgrade(head, channel) }, connections: connections), tlsConfiguration: tls),
            configuration: .init(address: .hostname(config.bindAddress, port: config.securePort), serverName: nil, backlog: 1024),
            onServerRunning: { channel in box.set(channel.localAddress?.port ?? 0) },
            logger: logger)
        var services: [any ServiceLifecycle.Service] = [Listening(app: app, address: config.bindAddress, port: config.securePort, bound: box), BackgroundLoops(server: self, deletions: registry.allocator?.deletions()), WatchCloser(store: store)]
        if let c = metricsCollector { services.append(MetricsCollectorService(collector: c)) }
        return services
    }

    /// Runs until SIGTERM/SIGINT, then shuts down gracefully.
    public func run() async throws {
        try await bootstrapNamespaces()
        try await registry.bootstrapRBAC()
        registry.rbac.reload()
        try await bootstrapServices(port: config.securePort)
        try await bootstrapStorage()
        var services = try makeServices()
        // Last, so that the group (which stops services in reverse order) starts its clock first.
        // Only here, not in start(): it ends the process.
        services.append(ShutdownDeadline(connections: connections, grace: config.shutdownGracePeriod, logger: logger))
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("apiserver starting", metadata: ["port": "\(config.securePort)", "dataDir": "\(config.dataDir)", "store": "\(store.backendName)",
                                                   "revision": "\(store.currentRevision)"])
        defer { (store as? EtcdStore)?.shutdown() }
        try await group.run()
    }

    /// For tests and embedding: starts in the background; stop() shuts down and waits.
    public func start() async throws -> RunningAPIServer {
        try await bootstrapNamespaces()
        try await registry.bootstrapRBAC()
        registry.rbac.reload()
        let group = ServiceGroup(configuration: .init(services: try makeServices().map { .init(service: $0) }, logger: logger))
        let store = self.store
        let task = Task {
            _ = try? await group.run()
            (store as? EtcdStore)?.shutdown()
        }
        let port = await boundPort()
        try await bootstrapServices(port: port)
        try await bootstrapStorage()
        return RunningAPIServer(port: port, group: group, task: task)
    }
}

public struct RunningAPIServer: Sendable {
    public let port: Int
    let group: ServiceGroup
    let task: Task<Void, Never>
    public func stop() async {
        await group.triggerGracefulShutdown()
        await task.value
    }
}

final class PortBox: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))
    func set(_ p: Int) {
        let ws = state.withLock { s -> [CheckedContinuation<Int, Never>] in s.port = p; let w = s.waiters; s.waiters = []; return w }
        for w in ws { w.resume(returning: p) }
    }
    func get() -> Int? { state.withLock { $0.port } }
    func wait() async -> Int {
        await withCheckedContinuation { c in
            let p = state.withLock { s -> Int? in if let p = s.port { return p }; s.waiters.append(c); return nil }
            if let p { c.resume(returning: p) }
        }
    }
}

import Synchronization

/// Periodic housekeeping: namespace finalization, and releasing what deleted Services held
/// (as they go, and a repair pass every minute for anything a crash left behind).
struct BackgroundLoops: ServiceLifecycle.Service {
    let server: APIServer
    let deletions: StoreSubscription?
    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { g in
                if let alloc = server.registry.allocator {
                    if let deletions { g.addTask { await alloc.releaseOnDelete(deletions) } }
                    g.addTask {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .seconds(60))
                            await alloc.repair()
                        }
                    }
                }
                g.addTask { await server.registry.rbac.run() }
                g.addTask {
                    // Expired Events go every minute (at most a minute past their TTL).
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        await server.expireEvents(now: Date())
                        try? await Task.sleep(for: .seconds(60))
                    }
                }
                g.addTask {
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        await server.finalizeNamespaces()
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                }
                await g.next()
                g.cancelAll()
            }
        } onGracefulShutdown: {}
    }
}

/// Every open connection of the server (registered in SPDYUpgradeChannel.setup).
final class ConnectionTracker: Sendable {
    private let open = Mutex<[ObjectIdentifier: any Channel]>([:])
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        open.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in _ = open.withLock { $0.removeValue(forKey: id) } }
    }
    /// Closes every open connection; returns how many there were.
    @discardableResult
    func closeAll() -> Int {
        let all = open.withLock { Array($0.values) }
        for c in all { c.close(promise: nil) }
        return all.count
    }
}

/// Bounds shutdown as Kubernetes' apiserver does: `grace` after shutdown begins, every connection
/// still open is closed (a client that keeps sending on a keep-alive connection, a pods/log follow,
/// an exec or port-forward session); 5 s later the process exits whatever still runs.
struct ShutdownDeadline: ServiceLifecycle.Service {
    let connections: ConnectionTracker
    let grace: Duration
    let logger: Logger
    func run() async throws {
        try? await gracefulShutdown()
        let (connections, grace, logger) = (self.connections, self.grace, self.logger)
        // Unstructured: it must outlive this service, which returns now so that the group goes on.
        Task {
            try? await Task.sleep(for: grace)
            let n = connections.closeAll()
            if n > 0 { logger.warning("shutdown grace period over, closed the connections still open", metadata: ["connections": "\(n)"]) }
            try? await Task.sleep(for: .seconds(5))
            logger.error("apiserver still running 5s after closing its connections; exiting")
            exit(1)
        }
    }
}

/// The HTTPS application; a failure to open its socket is a ListenError naming the address.
struct Listening<A: ServiceLifecycle.Service>: ServiceLifecycle.Service {
    let app: A
    let address: String
    let port: Int
    let bound: PortBox
    func run() async throws {
        do { try await app.run() }
        catch let e as IOError where bound.get() == nil {
            throw ListenError(address: address, port: port, errno: e.errnoCode)
        }
    }
}

/// Ends open watches when shutdown begins so that the HTTP server can drain.
struct WatchCloser: ServiceLifecycle.Service {
    let store: any ObjectStore
    func run() async throws {
        try? await gracefulShutdown()
        store.closeWatches()
    }
}
