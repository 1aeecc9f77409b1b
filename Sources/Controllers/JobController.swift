// Job: runs pods until `completions` succeed (or, Indexed, until every index has), at most
// `parallelism` at once. Each pod carries the batch.kubernetes.io/job-tracking finalizer: a pod
// that ended is first written into status.uncountedTerminatedPods, then its finalizer removed,
// then it is moved into the counts, so no pod is counted twice or lost, whatever restarts in
// between. Failures (and, with restartPolicy OnFailure, container restarts) beyond backoffLimit,
// activeDeadlineSeconds, or a podFailurePolicy FailJob rule fail the job; replacements wait an
// exponential backoff (10 s doubling, at most 6 min). suspend stops the pods; a finished job is
// deleted ttlSecondsAfterFinished later.
import Foundation
import Logging
import Synchronization
import API
import Client

/// What the Job controller should do, from the job and its pods: pure, for table tests.
public struct JobDecision: Equatable, Sendable {
    public var status: JobStatus
    /// Pods to create: nil for a NonIndexed pod, else its completion index.
    public var create: [Int?] = []
    /// Active pods to delete (the job is over, suspended, or runs more than parallelism).
    public var delete: [String] = []
    /// Pods whose tracking finalizer goes, once `status` (which records them) is written.
    public var removeFinalizers: [String] = []
    public var deleteJob = false
    public var requeueAfter: Double?
    public var events: [JobEvent] = []
}

public struct JobEvent: Equatable, Sendable {
    public var type: String, reason: String, message: String
}

public enum JobLogic {
    static let backoffBase = 10.0, backoffMax = 360.0

    public static func index(of p: Pod) -> Int? {
        (p.metadata.annotations?[JobLabels.completionIndex] ?? p.labels[JobLabels.completionIndex]).flatMap { Int($0) }
    }

    static func hasFinalizer(_ p: Pod) -> Bool { (p.metadata.finalizers ?? []).contains(JobLabels.trackingFinalizer) }

    /// Ended as far as the job is concerned: terminal, or deleted before it succeeded.
    static func ended(_ p: Pod) -> (ended: Bool, succeeded: Bool) {
        if p.phase == "Succeeded" { return (true, true) }
        if p.phase == "Failed" { return (true, false) }
        if p.metadata.deletionTimestamp != nil { return (true, false) }
        return (false, false)
    }

    /// The first podFailurePolicy rule that matches a failed pod, if any.
    static func matchingRule(_ job: Job, _ p: Pod) -> PodFailurePolicyRule? {
        guard let rules = job.spec?.podFailurePolicy?.rules, p.phase == "Failed" else { return nil }
        for rule in rules {
            if let ec = rule.onExitCodes {
                let codes = (p.status?.containerStatuses ?? []).filter { ec.containerName == nil || $0.name == ec.containerName }
                    .compactMap { $0.state?.terminated?.exitCode }.filter { $0 != 0 }
                let hit = codes.contains { ec.operator == "In" ? ec.values.contains(Int($0)) : !ec.values.contains(Int($0)) }
                if hit { return rule }
            }
            if let conds = rule.onPodConditions {
                let hit = conds.contains { pat in (p.status?.conditions ?? []).contains { $0.type == pat.type && $0.status == (pat.status ?? "True") } }
                if hit { return rule }
            }
        }
        return nil
    }

    static func when(_ p: Pod) -> Date? {
        let ends = (p.status?.containerStatuses ?? []).compactMap { KubeTime.parse($0.state?.terminated?.finishedAt) }
        return ends.max() ?? KubeTime.parse(p.metadata.deletionTimestamp)
    }

    static func setCondition(_ s: inout JobStatus, _ type: String, _ status: String, reason: String, message: String, now: String) -> Bool {
        var conds = s.conditions ?? []
        if let i = conds.firstIndex(where: { $0.type == type }) {
            if conds[i].status == status && conds[i].reason == reason { return false }
            conds[i] = JobCondition(type: type, status: status, time: now, reason: reason, message: message)
        } else {
            conds.append(JobCondition(type: type, status: status, time: now, reason: reason, message: message))
        }
        s.conditions = conds
        return true
    }

    /// Decides for `job`, given the pods it controls (every phase, deleting ones included).
    public static func decide(_ job: Job, pods: [Pod], now: Date) -> JobDecision {
        let ts = KubeTime.format(now)
        var status = job.status ?? JobStatus()
        var d = JobDecision(status: status)
        guard let spec = job.spec else { return d }
        let indexed = job.indexed
        let completions = spec.completions

        // 1. Move into the counts what was recorded and has lost its finalizer (or is gone).
        let byUID = Dictionary(pods.compactMap { p in p.metadata.uid.map { ($0, p) } }) { a, _ in a }
        var uncounted = status.uncountedTerminatedPods ?? UncountedTerminatedPods()
        var succeeded = status.succeeded ?? 0, failed = status.failed ?? 0
        var completed = IndexRanges.parse(status.completedIndexes)
        func settled(_ uid: String) -> Bool { byUID[uid].map { !hasFinalizer($0) } ?? true }
        let doneS = (uncounted.succeeded ?? []).filter(settled), doneF = (uncounted.failed ?? []).filter(settled)
        if !indexed { succeeded += doneS.count }
        failed += doneF.count
        uncounted.succeeded = (uncounted.succeeded ?? []).filter { !doneS.contains($0) }
        uncounted.failed = (uncounted.failed ?? []).filter { !doneF.contains($0) }

        // 2. Record pods that ended and still hold the finalizer.
        var failJob: (reason: String, message: String)?
        var active: [Pod] = [], terminating = 0
        var lastFailure: Date?
        for p in pods {
            let (ended, ok) = ended(p)
            if p.metadata.deletionTimestamp != nil && !["Succeeded", "Failed"].contains(p.phase) { terminating += 1 }
            guard ended else { active.append(p); continue }
            if !ok, let t = when(p) { lastFailure = max(lastFailure ?? t, t) }
            guard hasFinalizer(p), let uid = p.metadata.uid else { continue }
            d.removeFinalizers.append(p.name)
            if (uncounted.succeeded ?? []).contains(uid) || (uncounted.failed ?? []).contains(uid) { continue }
            if ok {
                uncounted.succeeded = (uncounted.succeeded ?? []) + [uid]
                if indexed, let i = index(of: p), i < (completions ?? 0) { completed.insert(i) }
                continue
            }
            switch matchingRule(job, p)?.action {
            case "Ignore":
                continue   // not counted: the finalizer just goes
            case "FailJob":
                let code = (p.status?.containerStatuses ?? []).compactMap { $0.state?.terminated?.exitCode }.first { $0 != 0 }
                failJob = ("PodFailurePolicy", "Container of pod \(p.name) failed with exit code \(code.map(String.init) ?? "?") matching FailJob rule")
            default: break
            }
            uncounted.failed = (uncounted.failed ?? []).append1(uid)
        }
        if indexed { succeeded = completed.filter { $0 < (completions ?? 0) }.count }
        status.succeeded = succeeded
        status.failed = failed
        status.completedIndexes = indexed ? IndexRanges.format(completed) : nil
        status.uncountedTerminatedPods = uncounted.isEmpty && job.status?.uncountedTerminatedPods == nil ? nil : uncounted
        status.terminating = terminating
        let finishedBefore = status.finished
        let totalSucceeded = succeeded + (indexed ? 0 : (uncounted.succeeded ?? []).count)
        let totalFailed = failed + (uncounted.failed ?? []).count

        // 3. Finished already: only the TTL is left to watch.
        if finishedBefore {
            d.delete = active.map(\.name)
            status.active = active.count
            status.ready = active.filter(\.isReady).count
            d.status = status
            if let ttl = spec.ttlSecondsAfterFinished {
                let end = KubeTime.parse(status.completionTime) ?? KubeTime.parse(status.conditions?.first { $0.type == "Failed" }?.lastTransitionTime) ?? now
                let left = end.addingTimeInterval(Double(ttl)).timeIntervalSince(now)
                if left <= 0 { d.deleteJob = true } else { d.requeueAfter = left }
            }
            return d
        }

        // 4. Suspended: no pods; resumed: the clock starts again.
        if spec.suspend == true {
            d.delete = active.filter { $0.metadata.deletionTimestamp == nil }.map(\.name)
            if setCondition(&status, "Suspended", "True", reason: "JobSuspended", message: "Job suspended", now: ts) {
                d.events.append(JobEvent(type: "Normal", reason: "Suspended", message: "Job suspended"))
            }
            status.active = active.count
            status.ready = active.filter(\.isReady).count
            d.status = status
            return d
        }
        if status.conditions?.contains(where: { $0.type == "Suspended" && $0.status == "True" }) == true {
            _ = setCondition(&status, "Suspended", "False", reason: "JobResumed", message: "Job resumed", now: ts)
            status.startTime = ts
            d.events.append(JobEvent(type: "Normal", reason: "Resumed", message: "Job resumed"))
        }
        if status.startTime == nil { status.startTime = ts }

        // 5. Failing: podFailurePolicy, backoff limit (restarts count with OnFailure), deadline.
        let restarts = spec.template.spec?.restartPolicy == "OnFailure"
            ? active.reduce(0) { $0 + ($1.status?.containerStatuses ?? []).reduce(0) { $0 + $1.restartCount } } : 0
        if failJob == nil, totalFailed + restarts > (spec.backoffLimit ?? 6) {
            failJob = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        }
        var deadlineLeft: Double?
        if failJob == nil, let dl = spec.activeDeadlineSeconds, let start = KubeTime.parse(status.startTime) {
            let left = start.addingTimeInterval(Double(dl)).timeIntervalSince(now)
            if left <= 0 { failJob = ("DeadlineExceeded", "Job was active longer than specified deadline") } else { deadlineLeft = left }
        }
        if let existing = status.conditions?.first(where: { $0.type == "FailureTarget" && $0.status == "True" }), failJob == nil {
            failJob = (existing.reason ?? "BackoffLimitExceeded", existing.message ?? "")
        }

        // 6. Complete when enough have succeeded.
        let done: Bool
        if indexed { done = succeeded >= (completions ?? 0) }
        else if let c = completions { done = totalSucceeded >= c }
        else { done = totalSucceeded > 0 && active.isEmpty }

        if let f = failJob {
            if setCondition(&status, "FailureTarget", "True", reason: f.reason, message: f.message, now: ts) {
                d.events.append(JobEvent(type: "Warning", reason: f.reason, message: f.message))
            }
            d.delete = active.filter { $0.metadata.deletionTimestamp == nil }.map(\.name)
            if active.isEmpty && uncounted.isEmpty {
                _ = setCondition(&status, "Failed", "True", reason: f.reason, message: f.message, now: ts)
            }
        } else if done {
            d.delete = active.filter { $0.metadata.deletionTimestamp == nil }.map(\.name)
            if active.isEmpty && uncounted.isEmpty {
                _ = setCondition(&status, "SuccessCriteriaMet", "True", reason: "CompletionsReached", message: "Reached expected number of succeeded pods", now: ts)
                _ = setCondition(&status, "Complete", "True", reason: "CompletionsReached", message: "Reached expected number of succeeded pods", now: ts)
                status.completionTime = ts
                d.events.append(JobEvent(type: "Normal", reason: "Completed", message: "Job completed"))
            }
        } else {
            // 7. Run pods: up to parallelism, no more than what is left to do.
            let parallelism = spec.parallelism ?? 1
            let running = active.filter { $0.metadata.deletionTimestamp == nil }
            let counted = spec.podReplacementPolicy == "Failed" ? active.count : running.count
            var want: Int
            var pending: [Int] = []
            // The job in the cache can lag behind its pods (a status written, then a finalizer
            // removed, seen before the status): a Succeeded pod still there is done, whatever
            // the status says, so its index never runs again and it is never replaced.
            let succeededPods = pods.filter { $0.phase == "Succeeded" }
            if indexed {
                let busy = Set(running.compactMap(index(of:))).union(succeededPods.compactMap(index(of:)))
                pending = (0..<(completions ?? 0)).filter { !completed.contains($0) && !busy.contains($0) }
                want = min(parallelism, running.count + pending.count)
            } else if let c = completions {
                want = min(parallelism, max(0, c - max(totalSucceeded, succeededPods.count)))
            } else {
                want = totalSucceeded > 0 ? 0 : parallelism
            }
            if counted < want {
                // A failure delays its replacement: 10 s, doubling, at most 6 min.
                var wait = 0.0
                if totalFailed > 0, let last = lastFailure {
                    let backoff = min(backoffMax, backoffBase * pow(2, Double(min(totalFailed, 16) - 1)))
                    wait = last.addingTimeInterval(backoff).timeIntervalSince(now)
                }
                if wait > 0 {
                    d.requeueAfter = wait
                } else if indexed {
                    d.create = pending.prefix(want - counted).map { Optional($0) }
                } else {
                    d.create = Array(repeating: nil, count: want - counted)
                }
            } else if running.count > want {
                // Parallelism went down: the newest (highest index) go first.
                let extra = running.sorted { (index(of: $0) ?? 0, $0.metadata.creationTimestamp ?? "") > (index(of: $1) ?? 0, $1.metadata.creationTimestamp ?? "") }
                d.delete = extra.prefix(running.count - want).map(\.name)
            }
            if let left = deadlineLeft { d.requeueAfter = min(d.requeueAfter ?? left, left) }
        }
        status.active = active.count
        status.ready = active.filter(\.isReady).count
        if status.conditions?.isEmpty == true { status.conditions = nil }
        d.status = status
        return d
    }
}

extension Array where Element == String {
    fileprivate func append1(_ s: String) -> [String] { contains(s) ? self : self + [s] }
}

public final class JobController: Sendable {
    let client: KubeClient
    let informers: SharedInformers
    let queue: WorkQueue
    let expectations = Expectations()
    let events: EventRecorder
    let clock: any ControlClock
    let logger = Logger(label: "job-controller")
    /// Consecutive passes whose pod creations were refused, per job.
    let createFailures = Mutex<[String: Int]>([:])

    public init(client: KubeClient, informers: SharedInformers, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.clock = clock
        queue = WorkQueue(clock: clock)
        events = EventRecorder(client: client, component: "job-controller", clock: clock)
        informers.jobs.addHandler { [weak self] ev in
            guard let self else { return }
            switch ev {
            case .added(let j), .updated(_, let j): self.queue.add(Informer<Job>.key(j))
            case .deleted(let j): self.expectations.forget(Informer<Job>.key(j)); self.queue.add(Informer<Job>.key(j))
            }
        }
        expectations.trackPods(informers.pods, kind: "Job", queue: queue)
    }

    public func run(workers: Int = 4) async {
        await runWorkers(workers, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ key: String) async throws -> ReconcileResult {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return .done }
        let (namespace, name) = (parts[0], parts[1])
        let mine: (Pod) -> Bool
        let job = informers.jobs.get(key)
        if let uid = job?.metadata.uid { mine = { $0.metadata.controllerRef?.uid == uid } } else { mine = { ownerKey($0, kind: "Job") == key } }
        let now = clock.now()
        let (satisfied, pods) = expectations.snapshot(key, now: now) { informers.pods.list(namespace: namespace).filter(mine) }
        guard let job, job.metadata.deletionTimestamp == nil else {
            // The job is gone (or going): its pods' finalizers must not keep them.
            for p in pods where JobLogic.hasFinalizer(p) { try await removeFinalizer(p) }
            expectations.forget(key)
            return .done
        }
        var d = JobLogic.decide(job, pods: pods, now: now)
        if !satisfied { d.create = []; d.delete = [] }

        // Status first: the pods whose finalizers go next are recorded in it.
        if try await !writeStatus(client, job, \.status, d.status) { return .requeue(after: 0) }
        for e in d.events { events.record(job, type: e.type, reason: e.reason, message: e.message) }
        var removed = false
        for n in d.removeFinalizers {
            if let p = pods.first(where: { $0.name == n }) { try await removeFinalizer(p); removed = true }
        }
        if d.deleteJob {
            try? await client.delete(Job.self, name, namespace: namespace, options: DeleteOptions(propagationPolicy: "Background"))
            return .done
        }
        let (failedCreates, _) = await writePods(client, events, expectations, owner: job, key: key, delete: d.delete,
                                            create: d.create.map { newPod(job, index: $0) }, now: now)
        // Pods the apiserver refused are tried again, backing off (10 s, doubling, at most 6 min);
        // only activeDeadlineSeconds ends such a job, as in Kubernetes.
        if failedCreates > 0 {
            let n = createFailures.withLock { f -> Int in f[key, default: 0] += 1; return f[key]! }
            return .requeue(after: min(JobLogic.backoffMax, JobLogic.backoffBase * pow(2, Double(min(n, 16) - 1))))
        }
        createFailures.withLock { _ = $0.removeValue(forKey: key) }
        // Counted pods leave uncountedTerminatedPods on the next pass, once their finalizers are gone.
        if removed { return .requeue(after: 0) }
        if let r = d.requeueAfter { return .requeue(after: r) }
        return .done
    }

    func removeFinalizer(_ p: Pod) async throws {
        let rest = (p.metadata.finalizers ?? []).filter { $0 != JobLabels.trackingFinalizer }
        let patch: JSONValue = .object(["metadata": .object([
            "finalizers": rest.isEmpty ? .null : .array(rest.map { .string($0) }),
            "resourceVersion": .string(p.metadata.resourceVersion ?? ""),
        ])])
        do { _ = try await client.patch(Pod.self, p.name, namespace: p.namespace, mergePatch: patch) }
        catch let s as Status where s.code == 404 {}
    }

    /// A pod for `job`: its template, owned by the job, with the tracking finalizer; Indexed pods
    /// carry their index (annotation, label, JOB_COMPLETION_INDEX, hostname NAME-INDEX).
    public func newPod(_ job: Job, index: Int?) -> Pod {
        let t = job.spec?.template
        var meta = ObjectMeta(name: nil, namespace: job.namespace, labels: t?.metadata?.labels, annotations: t?.metadata?.annotations)
        meta.generateName = index.map { "\(job.name)-\($0)-" } ?? "\(job.name)-"
        meta.ownerReferences = [ownerRef(job)]
        meta.finalizers = [JobLabels.trackingFinalizer]
        var spec = t?.spec ?? PodSpec(containers: [])
        if let index {
            meta.annotations = (meta.annotations ?? [:]).merging([JobLabels.completionIndex: String(index)]) { $1 }
            meta.labels = (meta.labels ?? [:]).merging([JobLabels.completionIndex: String(index)]) { $1 }
            if spec.hostname == nil { spec.hostname = "\(job.name)-\(index)" }
            var env = EnvVar(name: "JOB_COMPLETION_INDEX", value: "")
            env.value = nil
            env.valueFrom = .object(["fieldRef": .object(["fieldPath": .string("metadata.annotations['\(JobLabels.completionIndex)']")])])
            for i in spec.containers.indices where !(spec.containers[i].env ?? []).contains(where: { $0.name == "JOB_COMPLETION_INDEX" }) {
                spec.containers[i].env = (spec.containers[i].env ?? []) + [env]
            }
        }
        return Pod(metadata: meta, spec: spec)
    }
}
