// The apiserver executable: argument parsing only; see APIServer.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import APIServer
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
        (for nodes). Later starts reuse them. State lives in DATA_DIR/state.db (SQLite, WAL); the per-workload usage \
        history in DATA_DIR/metrics.db (safe to delete).
        """)

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
        guard let cidr = CIDR(serviceClusterIPRange), cidr.prefix >= 12, cidr.prefix <= 28 else {
            throw ValidationError("--service-cluster-ip-range: \"\(serviceClusterIPRange)\" must be an IPv4 network such as 198.18.128.0/20 (prefix /12 to /28, no host bits set)")
        }
        guard let ports = ServiceNetworkConfig.parsePortRange(serviceNodePortRange) else {
            throw ValidationError("--service-node-port-range: \"\(serviceNodePortRange)\" must be LOW-HIGH within 1-65535, e.g. 30000-32767")
        }
        config.services = ServiceNetworkConfig(serviceCIDR: cidr, nodePortRange: ports)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return h
        }
        // One apiserver per data directory: a second one would write the same database.
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let lockPath = "\(dataDir)/apiserver.lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw ValidationError("--data-dir \(dataDir) is in use by another apiserver (\(lockPath) is locked); stop it first")
        }
        let server = try APIServer(config: config)
        try await server.run()
        close(lock)
    }
}
