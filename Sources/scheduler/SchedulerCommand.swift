// The scheduler executable: argument parsing only; see Scheduler.
import ArgumentParser
import API
import Foundation
import Logging
import Client
import Scheduler

@main
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scheduler", abstract: "Binds pending pods to nodes (filter → score → bind).", version: BuildInfo.versionLine)
    @Option(help: "Kubeconfig with the system:kube-scheduler identity.") var kubeconfig: String
    @Option(name: .customLong("leader-elect"), help: "Run only while holding the kube-system/kube-scheduler Lease.") var leaderElect: Bool = true
    @Option(help: "Identity for leader election (default: hostname_pid).") var identity: String?
    @Option(name: .customLong("leader-elect-lease-duration"), help: "How long a leader's Lease holds after its last renewal (others wait this long to take it; default 4s).") var leaseDuration: String?
    @Option(name: .customLong("leader-elect-renew-deadline"), help: "How long the leader keeps trying to renew before it stops leading and exits; shorter than the lease duration (default 3s).") var renewDeadline: String?
    @Option(name: .customLong("leader-elect-retry-period"), help: "Between renewals of the Lease (default 1s; tries to take it: 500ms).") var retryPeriod: String?
    @Option(help: "Workers deciding where pods go (1: one after another, as kube-scheduler; bindings and status writes are done apart either way).") var workers: Int = 1
    @Option(name: .customLong("scheduled-events-qps"), help: "Scheduled Events written one by one per second (burst twice that); above it they are combined, one per namespace per second. 0 writes every one.") var scheduledEventsQPS: Double = 50
    @Option(name: .customLong("metrics-bind-address"), help: "Where GET /metrics and /healthz are served, plain HTTP (HOST:PORT; port 0 picks a free one; 0 turns it off).") var metricsBindAddress: String = "127.0.0.1:10251"
    @Option(name: .customLong("log-level")) var logLevel: String = "info"

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        var config = SchedulerConfig()
        config.workers = workers
        guard scheduledEventsQPS >= 0, scheduledEventsQPS.isFinite else { throw ValidationError("--scheduled-events-qps: \(scheduledEventsQPS) must be 0 or more") }
        config.scheduledEvents = EventRateLimit.qps(scheduledEventsQPS)
        let settings = config
        try await runComponent(client: client, leaseName: "kube-scheduler", leaderElect: leaderElect, identity: identity, logLevel: logLevel,
                                 timings: (leaseDuration, renewDeadline, retryPeriod), metricsAddress: metricsBindAddress) {
            // A fresh scheduler for every term of leadership (informers, cache, queue).
            await Scheduler(client: client, config: settings).run()
        }
    }
}
