// The controller-manager: shared informers plus every controller, run together while this
// process holds the kube-system/kube-controller-manager Lease.
import Foundation
import Logging
import API
import Client
import PKI

public struct ControllerManagerConfig: Sendable {
    public var nodeLifecycle = NodeLifecycleConfig()
    public var ca: CertificateAuthority?
    public var workers = 4
    public var hpa = HPAControllerConfig()
    /// Pod usage for the HPA; nil: HPAs say they cannot get metrics. The controller-manager
    /// executable uses `MetricsAPIPodSource` (the apiserver's metrics.k8s.io).
    public var podMetrics: (any PodMetricsSource)?
    /// Utilization history for predictive HPAs; nil: the HPA controller records its own. The
    /// executable uses `WorkloadMetricsHistory` (the apiserver's persisted workload history).
    public var metricsHistory: (any MetricsHistory)?
    public init() {}
}

public final class ControllerManager: Sendable {
    public let informers: SharedInformers
    public let replicaSets: ReplicaSetController
    public let deployments: DeploymentController
    public let nodeLifecycle: NodeLifecycleController
    public let gc: GarbageCollector
    public let csr: CSRSigner?
    public let hpa: HPAController
    public let endpointSlices: EndpointSliceController
    public let disruption: DisruptionController
    public let jobs: JobController
    public let cronJobs: CronJobController
    public let daemonSets: DaemonSetController
    public let statefulSets: StatefulSetController
    public let volumes: VolumeController
    public let serviceAccounts: ServiceAccountsController
    let config: ControllerManagerConfig

    public init(client: KubeClient, config: ControllerManagerConfig = ControllerManagerConfig(), clock: any ControlClock = SystemControlClock()) {
        self.config = config
        let informers = SharedInformers(client: client)
        self.informers = informers
        replicaSets = ReplicaSetController(client: client, informers: informers, clock: clock)
        deployments = DeploymentController(client: client, informers: informers, clock: clock)
        nodeLifecycle = NodeLifecycleController(client: client, informers: informers, config: config.nodeLifecycle, clock: clock)
        gc = GarbageCollector(client: client, informers: informers, clock: clock)
        hpa = HPAController(client: client, informers: informers, metrics: config.podMetrics, history: config.metricsHistory, config: config.hpa, clock: clock)
        endpointSlices = EndpointSliceController(client: client, informers: informers, clock: clock)
        disruption = DisruptionController(client: client, informers: informers, clock: clock)
        jobs = JobController(client: client, informers: informers, clock: clock)
        cronJobs = CronJobController(client: client, informers: informers, clock: clock)
        daemonSets = DaemonSetController(client: client, informers: informers, clock: clock)
        statefulSets = StatefulSetController(client: client, informers: informers, clock: clock)
        volumes = VolumeController(client: client, informers: informers, clock: clock)
        serviceAccounts = ServiceAccountsController(client: client, informers: informers, clock: clock)
        if let ca = config.ca { csr = CSRSigner(client: client, informers: informers, ca: ca, clock: clock) } else { csr = nil }
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await self.informers.run() }
            g.addTask {
                await self.informers.waitForSync()
                await withTaskGroup(of: Void.self) { c in
                    c.addTask { await self.replicaSets.run(workers: self.config.workers) }
                    c.addTask { await self.deployments.run(workers: self.config.workers) }
                    c.addTask { await self.nodeLifecycle.run() }
                    c.addTask { await self.gc.run() }
                    c.addTask { await self.hpa.run() }
                    c.addTask { await self.endpointSlices.run(workers: self.config.workers) }
                    c.addTask { await self.disruption.run(workers: 2) }
                    c.addTask { await self.jobs.run(workers: self.config.workers) }
                    c.addTask { await self.cronJobs.run(workers: 2) }
                    c.addTask { await self.daemonSets.run(workers: 2) }
                    c.addTask { await self.statefulSets.run(workers: 2) }
                    c.addTask { await self.volumes.run(workers: 2) }
                    c.addTask { await self.serviceAccounts.run() }
                    if let csr = self.csr { c.addTask { await csr.run() } }
                }
            }
        }
    }
}
