// The apiserver executable: argument parsing only; see APIServer.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import APIServer
import Etcd
import PKI
import API
import Logging

@main
struct APIServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apiserver",
        abstract: "Serves the Kubernetes API over mutual TLS, persisted in SQLite.",
        discussion: """
        On first start, writes into --data-dir: pki/ca.crt and ca.key (the cluster CA), pki/apiserver.crt/.key \
        (serving certificate), admin.kubeconfig, scheduler.kubeconfig, controller-manager.kubeconfig, and join-token \
        (for nodes) and server-token (for more apiservers: --join-server). Later starts reuse them. State lives in DATA_DIR/state.db (SQLite, WAL); the per-workload usage \
        history in DATA_DIR/metrics.db (safe to delete).
        """,
        version: BuildInfo.versionLine)

    @Option(name: .customLong("data-dir"), help: "Directory for state, PKI and kubeconfigs.")
    var dataDir: String
    @Option(name: .customLong("advertise-address"), help: "Address clients use to reach this server (in the certificate and kubeconfigs).")
    var advertiseAddress: String = "127.0.0.1"
    @Option(name: .customLong("secure-port"), help: "HTTPS port.")
    var securePort: Int = 6443
    @Option(name: .customLong("bind-address"), help: "Address to listen on.")
    var bindAddress: String = "0.0.0.0"
    @Option(name: .customLong("tls-san"), help: "Extra subject alternative name for the serving certificate (repeatable).")
    var tlsSANs: [String] = []
    @Option(name: .customLong("watch-history"), help: "Revisions kept for watch replay.")
    var watchHistory: Int = 50_000
    @Option(name: .customLong("metrics-interval"), help: "Seconds between scrapes of the node agents' stats (metrics.k8s.io, workload history); 0 disables.")
    var metricsInterval: Double = 1
    @Option(name: .customLong("metrics-scrape-timeout"), help: "Seconds one node's stats scrape may take.")
    var metricsScrapeTimeout: Double = 2
    @Option(name: .customLong("metrics-rate-window"), help: "Seconds of samples a CPU rate is computed over (smooths bursty load for the HPA).")
    var metricsRateWindow: Double = 5
    @Option(name: .customLong("service-cluster-ip-range"), help: "The CIDR Services get their cluster IPs from (the first is the kubernetes Service's, the tenth the cluster DNS address).")
    var serviceClusterIPRange: String = "198.18.128.0/20"
    @Option(name: .customLong("service-node-port-range"), help: "The ports NodePort Services get, LOW-HIGH.")
    var serviceNodePortRange: String = "30000-32767"
    @Option(name: .customLong("encryption-provider-config"), help: "EncryptionConfiguration for Secrets at rest (aesgcm keys, the first seals; default: DATA_DIR/encryption.yaml, made on first start).")
    var encryptionProviderConfig: String?
    @Option(name: .customLong("etcd-servers"), help: "Keep objects in etcd at these client URLs (comma-separated https://HOST:PORT) instead of DATA_DIR/state.db.")
    var etcdServers: String?
    @Option(name: .customLong("etcd-cafile"), help: "CA certificate that signed the etcd servers' certificates.")
    var etcdCAFile: String?
    @Option(name: .customLong("etcd-certfile"), help: "Client certificate for etcd.")
    var etcdCertFile: String?
    @Option(name: .customLong("etcd-keyfile"), help: "Key of the etcd client certificate.")
    var etcdKeyFile: String?
    @Option(name: .customLong("etcd-prefix"), help: "The key prefix objects are kept under in etcd.")
    var etcdPrefix: String = "/registry"
    @Option(name: .customLong("etcd-compaction-interval"), help: "Seconds between compactions of etcd's history (one apiserver compacts per interval); 0: never.")
    var etcdCompactionInterval: Int = 300
    @Flag(name: .customLong("migrate-from-sqlite"), help: "Copy every object of DATA_DIR/state.db into the etcd of --etcd-servers (which must hold none yet), then exit. resourceVersions change.")
    var migrateFromSQLite = false
    @Option(name: .customLong("join-server"), help: "Join the control plane of the apiserver(s) at this URL (comma-separated https://HOST:PORT): on first start, fetch the cluster CA, service-account key, encryption key and tokens from it. Needs --server-token and, to share state, the same --etcd-servers.")
    var joinServer: String?
    @Option(name: .customLong("server-token"), help: "The server token for --join-server: DATA_DIR/server-token of a running apiserver, as the token or @FILE.")
    var serverToken: String?
    @Option(name: .customLong("kubeconfig-server"), help: "The server URL(s) written into the kubeconfigs made in --data-dir (comma-separated: clients fail over between them); default https://ADVERTISE-ADDRESS:PORT.")
    var kubeconfigServer: String?
    @Option(name: .customLong("event-ttl"), help: "How long Events are kept after their last update (a duration: 1h, 30m, 90s).")
    var eventTTL: String = "1h"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        var config = APIServerConfig(dataDir: dataDir)
        config.advertiseAddress = advertiseAddress
        config.securePort = securePort
        config.bindAddress = bindAddress
        config.tlsSANs = tlsSANs
        config.encryptionConfig = encryptionProviderConfig
        config.storeOptions.logCapacity = watchHistory
        guard metricsInterval >= 0, metricsScrapeTimeout > 0 else {
            throw ValidationError("--metrics-interval must be 0 (off) or more, --metrics-scrape-timeout more than 0")
        }
        config.metrics.interval = metricsInterval
        config.metrics.scrapeTimeout = metricsScrapeTimeout
        config.metrics.rateSpan = max(0, metricsRateWindow)
        config.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        guard let ttl = parseGoDuration(eventTTL), ttl > 0 else {
            throw ValidationError("--event-ttl: \"\(eventTTL)\" must be a duration above 0, such as 1h, 30m or 90s")
        }
        config.eventTTL = ttl
        guard let cidr = CIDR(serviceClusterIPRange), cidr.prefix >= 12, cidr.prefix <= 28 else {
            throw ValidationError("--service-cluster-ip-range: \"\(serviceClusterIPRange)\" must be an IPv4 network such as 198.18.128.0/20 (prefix /12 to /28, no host bits set)")
        }
        guard let ports = ServiceNetworkConfig.parsePortRange(serviceNodePortRange) else {
            throw ValidationError("--service-node-port-range: \"\(serviceNodePortRange)\" must be LOW-HIGH within 1-65535, e.g. 30000-32767")
        }
        config.services = ServiceNetworkConfig(serviceCIDR: cidr, nodePortRange: ports)
        if let servers = etcdServers {
            let urls = servers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for u in urls {
                guard let c = URLComponents(string: u), c.scheme == "https" || c.scheme == "http", c.host != nil, c.port != nil else {
                    throw ValidationError("--etcd-servers: \"\(u)\" must be https://HOST:PORT (or http://HOST:PORT)")
                }
            }
            guard !urls.isEmpty else { throw ValidationError("--etcd-servers: no URL given") }
            if urls.contains(where: { $0.hasPrefix("https:") }) {
                for (flag, v) in [("--etcd-cafile", etcdCAFile), ("--etcd-certfile", etcdCertFile), ("--etcd-keyfile", etcdKeyFile)] {
                    guard let v else { throw ValidationError("\(flag) is required with an https etcd server") }
                    guard FileManager.default.isReadableFile(atPath: v) else { throw ValidationError("\(flag): cannot read \(v)") }
                }
            }
            guard etcdPrefix.hasPrefix("/"), !etcdPrefix.hasSuffix("/") || etcdPrefix == "/" else {
                throw ValidationError("--etcd-prefix: \"\(etcdPrefix)\" must start with / and not end with one")
            }
            guard etcdCompactionInterval >= 0 else { throw ValidationError("--etcd-compaction-interval must be 0 (never) or more seconds") }
            var e = EtcdConfig(endpoints: urls)
            e.caFile = etcdCAFile; e.certFile = etcdCertFile; e.keyFile = etcdKeyFile
            e.prefix = etcdPrefix
            e.compactionInterval = .seconds(etcdCompactionInterval)
            config.etcd = e
        }
        if let j = joinServer {
            let urls = j.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for u in urls {
                guard let c = URLComponents(string: u), c.scheme == "https", c.host != nil else {
                    throw ValidationError("--join-server: \"\(u)\" must be https://HOST:PORT")
                }
            }
            guard !urls.isEmpty else { throw ValidationError("--join-server: no URL given") }
            guard var raw = serverToken else { throw ValidationError("--join-server needs --server-token (DATA_DIR/server-token of a running apiserver, or @FILE)") }
            if raw.hasPrefix("@") {
                let file = String(raw.dropFirst())
                guard let t = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("--server-token: cannot read \(file)") }
                raw = t
            }
            let token: JoinToken
            do { token = try JoinToken(parsing: raw) } catch { throw ValidationError("--server-token: \(error)") }
            guard config.etcd != nil else {
                throw ValidationError("--join-server needs --etcd-servers: apiservers share state only through etcd (SQLite is one apiserver's file)")
            }
            config.join = ServerJoinConfig(servers: urls, token: token)
        } else if serverToken != nil {
            throw ValidationError("--server-token is given without --join-server")
        }
        if let k = kubeconfigServer {
            let urls = k.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !urls.isEmpty, urls.allSatisfy({ URLComponents(string: $0)?.scheme == "https" && URLComponents(string: $0)?.host != nil }) else {
                throw ValidationError("--kubeconfig-server: \"\(k)\" must be one or more comma-separated https://HOST:PORT")
            }
            config.kubeconfigServer = urls.joined(separator: ",")
        }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return h
        }
        // One apiserver per data directory: a second one would write the same database (with
        // etcd, each apiserver of several has a data directory of its own).
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let lockPath = "\(dataDir)/apiserver.lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw ValidationError("--data-dir \(dataDir) is in use by another apiserver (\(lockPath) is locked); stop it first")
        }
        if migrateFromSQLite {
            guard config.etcd != nil else { throw ValidationError("--migrate-from-sqlite needs --etcd-servers") }
            let r = try await APIServer.migrateSQLiteToEtcd(config: config)
            print("copied \(r.objects) objects from \(dataDir)/state.db (revision \(r.from)) into etcd (now at revision \(r.to)); start the apiserver with the same --etcd-* flags")
            close(lock)
            return
        }
        let server = try await APIServer.open(config: config)
        try await server.run()
        close(lock)
    }
}
