// CronJob: makes a Job from spec.jobTemplate at each scheduled time (in spec.timeZone), named
// NAME-<scheduled unix minutes> so that a time is never run twice. After downtime only the most
// recent missed time runs (older ones are counted; more than 100 say so), and not at all if it is
// later than startingDeadlineSeconds. concurrencyPolicy Forbid skips a run while one is active,
// Replace deletes the active ones first. Finished Jobs beyond the history limits are deleted,
// oldest first.
import Foundation
import Logging
import API
import Client

public struct CronJobDecision: Equatable, Sendable {
    public var status: CronJobStatus
    /// The scheduled time to make a Job for now.
    public var create: Date?
    public var deleteJobs: [String] = []
    public var requeueAfter: Double?
    public var events: [JobEvent] = []
}

public enum CronJobLogic {
    public static func jobName(_ cj: CronJob, _ scheduled: Date) -> String { "\(cj.name)-\(Int(scheduled.timeIntervalSince1970) / 60)" }

    static func zone(_ cj: CronJob) -> TimeZone { cj.spec?.timeZone.flatMap { TimeZone(identifier: $0) } ?? TimeZone(identifier: "UTC")! }

    /// Decides for `cj`, given the Jobs it controls.
    public static func decide(_ cj: CronJob, jobs: [Job], now: Date) -> CronJobDecision {
        var status = cj.status ?? CronJobStatus()
        var d = CronJobDecision(status: status)
        guard let spec = cj.spec, let schedule = try? CronSchedule(spec.schedule) else { return d }
        let tz = zone(cj)

        let active = jobs.filter { !($0.status?.finished ?? false) && $0.metadata.deletionTimestamp == nil }
        let succeeded = jobs.filter { $0.status?.condition("Complete") != nil }
        let failed = jobs.filter { $0.status?.condition("Failed") != nil }
        if let last = succeeded.compactMap({ KubeTime.parse($0.status?.completionTime) }).max(),
           KubeTime.parse(status.lastSuccessfulTime).map({ last > $0 }) ?? true {
            status.lastSuccessfulTime = KubeTime.format(last)
        }
        // History: the oldest finished Jobs beyond the limits go.
        func oldestFirst(_ a: Job, _ b: Job) -> Bool {
            (a.status?.startTime ?? a.metadata.creationTimestamp ?? "") < (b.status?.startTime ?? b.metadata.creationTimestamp ?? "")
        }
        for (list, limit) in [(succeeded, spec.successfulJobsHistoryLimit ?? 3), (failed, spec.failedJobsHistoryLimit ?? 1)] where list.count > limit {
            let gone = list.sorted(by: oldestFirst).prefix(list.count - limit).filter { $0.metadata.deletionTimestamp == nil }
            d.deleteJobs += gone.map(\.name)
        }

        var running = active
        if spec.suspend != true {
            var earliest = KubeTime.parse(status.lastScheduleTime) ?? KubeTime.parse(cj.metadata.creationTimestamp) ?? now
            if let dl = spec.startingDeadlineSeconds { earliest = max(earliest, now.addingTimeInterval(-Double(dl))) }
            let missed = schedule.times(after: earliest, upTo: now, in: tz, limit: 100)
            if missed.count > 100 {
                d.events.append(JobEvent(type: "Warning", reason: "TooManyMissedTimes",
                                         message: "too many missed start times: > 100. Set or decrease .spec.startingDeadlineSeconds or check clock skew"))
            }
            if let scheduled = missed.last {
                let name = jobName(cj, scheduled)
                if jobs.contains(where: { $0.name == name }) {
                    status.lastScheduleTime = KubeTime.format(scheduled)
                } else if spec.concurrencyPolicy == "Forbid" && !active.isEmpty {
                    d.events.append(JobEvent(type: "Normal", reason: "JobAlreadyActive", message: "Not starting job because prior execution is running and concurrency policy is Forbid"))
                } else {
                    if spec.concurrencyPolicy == "Replace" {
                        for j in active where !d.deleteJobs.contains(j.name) {
                            d.deleteJobs.append(j.name)
                            d.events.append(JobEvent(type: "Normal", reason: "SuccessfulDelete", message: "Deleted job \(j.name)"))
                        }
                        running = []
                    }
                    d.create = scheduled
                    status.lastScheduleTime = KubeTime.format(scheduled)
                }
            }
            if let next = schedule.next(after: now, in: tz) { d.requeueAfter = max(0.05, next.timeIntervalSince(now)) }
        }
        let refs = running.sorted { $0.name < $1.name }.map {
            ObjectReference(kind: "Job", namespace: $0.namespace, name: $0.name, uid: $0.metadata.uid, apiVersion: "batch/v1")
        }
        status.active = refs.isEmpty ? nil : refs
        d.status = status
        return d
    }

    /// The Job for one scheduled time: the template, owned by the CronJob.
    public static func newJob(_ cj: CronJob, scheduled: Date) -> Job {
        let t = cj.spec?.jobTemplate
        var meta = ObjectMeta(name: jobName(cj, scheduled), namespace: cj.namespace, labels: t?.metadata?.labels, annotations: t?.metadata?.annotations)
        meta.annotations = (meta.annotations ?? [:]).merging([CronJobLabels.scheduledTimestamp: KubeTime.format(scheduled)]) { $1 }
        meta.ownerReferences = [ownerRef(cj)]
        return Job(metadata: meta, spec: t?.spec)
    }
}

public final class CronJobController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "cronjob-controller")

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "cronjob-controller", clock: clock)
        informers.cronJobs.addHandler { [weak self] ev in
            switch ev { case .added(let c), .updated(_, let c), .deleted(let c): self?.queue.add(Informer<CronJob>.key(c)) }
        }
        informers.jobs.addHandler { [weak self] ev in
            switch ev {
            case .added(let j), .updated(_, let j), .deleted(let j):
                if let ref = j.metadata.controllerRef, ref.kind == "CronJob" { self?.queue.add("\(j.namespace)/\(ref.name)") }
            }
        }
    }

    public func run(workers: Int = 2) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        guard let cj = informers.cronJobs.get(key), cj.metadata.deletionTimestamp == nil, let uid = cj.metadata.uid else { return .done }
        let jobs = informers.jobs.list(namespace: cj.namespace).filter { $0.metadata.controllerRef?.uid == uid }
        let now = clock.now()
        let d = CronJobLogic.decide(cj, jobs: jobs, now: now)
        for n in d.deleteJobs {
            do {
                try await client.delete(Job.self, n, namespace: cj.namespace, options: DeleteOptions(propagationPolicy: "Background"))
            } catch let s as Status where s.code == 404 {}
        }
        var status = d.status
        if let scheduled = d.create {
            do {
                let j = try await client.create(CronJobLogic.newJob(cj, scheduled: scheduled))
                events.record(cj, reason: "SuccessfulCreate", message: "Created job \(j.name)")
                let ref = ObjectReference(kind: "Job", namespace: j.namespace, name: j.name, uid: j.metadata.uid, apiVersion: "batch/v1")
                status.active = ((status.active ?? []) + [ref]).sorted { ($0.name ?? "") < ($1.name ?? "") }
            } catch let s as Status where s.code == 409 {
                // Made already (by an earlier pass whose status write was lost).
            } catch {
                events.record(cj, type: "Warning", reason: "FailedCreate", message: "Error creating job: \(error)")
                status.lastScheduleTime = cj.status?.lastScheduleTime
                return .requeue(after: 5)
            }
        }
        for e in d.events { events.record(cj, type: e.type, reason: e.reason, message: e.message) }
        if try await !writeStatus(client, cj, \.status, status) { return .requeue(after: 0) }
        if let r = d.requeueAfter { return .requeue(after: r) }
        return .done
    }
}
