// The controller-manager executable: argument parsing only; see ControllerManager.
import ArgumentParser
import API
import Foundation
import Logging
import Client
import Controllers
import PKI

@main
struct ControllerManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controller-manager",
        abstract: "Runs the ReplicaSet, Deployment, NodeLifecycle, garbage-collection, CSR-signing and HorizontalPodAutoscaler controllers.",
        version: BuildInfo.versionLine)
    @Option(help: "Kubeconfig with the system:kube-controller-manager identity.") var kubeconfig: String
    @Option(name: .customLong("leader-elect"), help: "Run only while holding the kube-system/kube-controller-manager Lease.") var leaderElect: Bool = true
    @Option(help: "Identity for leader election (default: hostname_pid).") var identity: String?
    @Option(name: .customLong("leader-elect-lease-duration"), help: "How long a leader's Lease holds after its last renewal (others wait this long to take it; default 4s).") var leaseDuration: String?
    @Option(name: .customLong("leader-elect-renew-deadline"), help: "How long the leader keeps trying to renew before it stops leading and exits; shorter than the lease duration (default 3s).") var renewDeadline: String?
    @Option(name: .customLong("leader-elect-retry-period"), help: "Between renewals of the Lease (default 1s; tries to take it: 500ms).") var retryPeriod: String?
    @Option(name: .customLong("node-monitor-grace-period"), help: "Seconds without a Lease renewal before a node is Unknown.") var grace: Double = 5
    @Option(name: .customLong("pod-eviction-timeout"), help: "Seconds a node may be Unknown before its pods are evicted.") var eviction: Double = 5
    @Option(name: .customLong("node-monitor-period"), help: "Seconds between checks of the nodes' Leases.") var monitorPeriod: Double = 0.25
    @Option(name: .customLong("node-fast-detection"), help: "Mark a node gone, and evict its pods at once, when its Lease misses 3 of the renewals its agent announces and its host does not answer a TCP connect to the agent (false: only the grace period and the eviction timeout).") var fastDetection: Bool = true
    @Option(name: .customLong("node-eviction-rate"), help: "Pod evictions per second.") var evictionRate: Double = 20
    @Option(name: .customLong("cluster-signing-cert-file"), help: "CA certificate for signing node CSRs (the apiserver's DATA_DIR/pki/ca.crt).") var signingCert: String?
    @Option(name: .customLong("cluster-signing-key-file"), help: "CA key for signing node CSRs.") var signingKey: String?
    @Option(name: .customLong("concurrent-syncs"), help: "Workers per controller.") var workers: Int = 4
    @Option(name: .customLong("hpa-sync-period"), help: "Seconds between HorizontalPodAutoscaler syncs.") var hpaSyncPeriod: Double = 1
    @Option(name: .customLong("hpa-tolerance"), help: "Usage-ratio band around the target inside which the HPA does not scale.") var hpaTolerance: Double = 0.1
    @Option(name: .customLong("hpa-downscale-stabilization"), help: "Seconds of recommendations the HPA keeps the highest of before scaling down.") var hpaDownscale: Double = 300
    @Option(name: .customLong("hpa-metrics-api"), help: "Read pod usage from the apiserver's metrics.k8s.io (false: HPAs report that they cannot get metrics).")
    var hpaMetricsAPI: Bool = true
    @Option(name: .customLong("hpa-metrics-history"), help: "Predictive HPAs read the apiserver's persisted workload history (false: only what this process measured since it started).")
    var hpaMetricsHistory: Bool = true
    @Option(name: .customLong("metrics-bind-address"), help: "Where GET /metrics and /healthz are served, plain HTTP (HOST:PORT; port 0 picks a free one; 0 turns it off).") var metricsBindAddress: String = "127.0.0.1:10252"
    @Option(name: .customLong("log-level")) var logLevel: String = "info"

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        var config = ControllerManagerConfig()
        config.nodeLifecycle.gracePeriod = grace
        config.nodeLifecycle.evictionDelay = eviction
        config.nodeLifecycle.evictionsPerSecond = evictionRate
        config.nodeLifecycle.monitorPeriod = monitorPeriod
        config.nodeLifecycle.fastDetection = fastDetection
        config.workers = workers
        config.hpa.syncPeriod = hpaSyncPeriod
        config.hpa.algorithm.tolerance = hpaTolerance
        config.hpa.algorithm.downscaleStabilizationWindow = hpaDownscale
        // The apiserver's metrics collector serves both (metrics.k8s.io and metrics.orchestrator.io).
        config.podMetrics = hpaMetricsAPI ? MetricsAPIPodSource(client: client) : nil
        config.metricsHistory = hpaMetricsHistory ? WorkloadMetricsHistory(client: client) : nil
        if let c = signingCert, let k = signingKey {
            config.ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: c, encoding: .utf8), keyPEM: String(contentsOfFile: k, encoding: .utf8))
        }
        let settings = config
        try await runComponent(client: client, leaseName: "kube-controller-manager", leaderElect: leaderElect, identity: identity, logLevel: logLevel,
                                 timings: (leaseDuration, renewDeadline, retryPeriod), metricsAddress: metricsBindAddress) {
            // A fresh controller manager for every term of leadership (informers, queues, expectations).
            await ControllerManager(client: client, config: settings).run()
        }
    }
}
