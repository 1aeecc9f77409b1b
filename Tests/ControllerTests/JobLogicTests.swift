// The Job controller's decisions, pass by pass, with a manual clock (times are given, never read).
import Testing
import Foundation
import API
@testable import Controllers

private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

private func job(_ yaml: String = "", completions: Int? = 3, parallelism: Int = 2, indexed: Bool = false, restart: String = "Never") throws -> Job {
    var j = Job(metadata: ObjectMeta(name: "work", namespace: "default"), spec: JobSpec(
        template: PodTemplateSpec(metadata: nil, spec: PodSpec(containers: [Container(name: "c", image: "busybox")])),
        completions: completions, parallelism: parallelism))
    j.metadata.uid = "job-uid"
    j.spec?.template.spec?.restartPolicy = restart
    if indexed { j.spec?.completionMode = "Indexed" }
    j.applyDefaults()
    return j
}

private func pod(_ name: String, phase: String = "Running", index: Int? = nil, finalizer: Bool = true, exitCode: Int32? = nil,
                 deleted: Date? = nil, restarts: Int = 0, finished: Date = t0) -> Pod {
    var p = Pod(metadata: ObjectMeta(name: name, namespace: "default"), spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))
    p.metadata.uid = "uid-\(name)"
    p.metadata.finalizers = finalizer ? [JobLabels.trackingFinalizer] : nil
    if let index { p.metadata.annotations = [JobLabels.completionIndex: String(index)] }
    if let deleted { p.metadata.deletionTimestamp = KubeTime.format(deleted) }
    p.status = PodStatus()
    p.status?.phase = phase
    var cs = ContainerStatus(name: "c", image: "busybox")
    cs.ready = phase == "Running"
    cs.restartCount = restarts
    if let exitCode {
        cs.state = ContainerState(terminated: ContainerStateTerminated(exitCode: exitCode, reason: exitCode == 0 ? "Completed" : "Error", finishedAt: KubeTime.format(finished)))
    }
    p.status?.containerStatuses = [cs]
    return p
}

@Suite struct JobLogicTests {
    @Test func startsUpToParallelismAndNoMoreThanIsLeft() throws {
        var d = JobLogic.decide(try job(completions: 3, parallelism: 2), pods: [], now: t0)
        #expect(d.create == [nil, nil])
        #expect(d.status.startTime == KubeTime.format(t0))
        // Two already succeeded and counted: one more is needed.
        var j = try job(completions: 3, parallelism: 2)
        j.status = JobStatus(); j.status?.succeeded = 2; j.status?.startTime = KubeTime.format(t0)
        d = JobLogic.decide(j, pods: [], now: t0)
        #expect(d.create == [nil])
        // A work queue (no completions): parallelism pods; once one succeeded, no new ones.
        d = JobLogic.decide(try job(completions: nil, parallelism: 3), pods: [], now: t0)
        #expect(d.create.count == 3)
    }

    @Test func indexedRunsTheLowestIndexesNotRunningOrDone() throws {
        var j = try job(completions: 6, parallelism: 3, indexed: true)
        j.status = JobStatus(); j.status?.completedIndexes = "0,2"; j.status?.succeeded = 2
        let d = JobLogic.decide(j, pods: [pod("a", index: 1)], now: t0)
        #expect(d.create == [3, 4])
        #expect(d.status.active == 1)
    }

    @Test func aSucceededPodIsCountedOnceThroughTheFinalizer() throws {
        let j = try job(completions: 2, parallelism: 2)
        // Pass 1: recorded as uncounted, finalizer to go; not yet in succeeded.
        let done = pod("a", phase: "Succeeded", exitCode: 0)
        let d1 = JobLogic.decide(j, pods: [done, pod("b")], now: t0)
        #expect(d1.status.uncountedTerminatedPods?.succeeded == ["uid-a"])
        #expect(d1.status.succeeded == 0)
        #expect(d1.removeFinalizers == ["a"])
        #expect(d1.create.isEmpty)   // a finished and b runs: nothing more to start
        // The controller restarted before removing the finalizer: same decision, no double count.
        var j2 = j; j2.status = d1.status
        let again = JobLogic.decide(j2, pods: [done, pod("b")], now: t0)
        #expect(again.status.uncountedTerminatedPods?.succeeded == ["uid-a"] && again.status.succeeded == 0)
        // Pass 2: the finalizer is gone: moved into the count, exactly once.
        let d2 = JobLogic.decide(j2, pods: [pod("a", phase: "Succeeded", finalizer: false, exitCode: 0), pod("b")], now: t0)
        #expect(d2.status.succeeded == 1)
        #expect(d2.status.uncountedTerminatedPods?.succeeded == [])
        var j3 = j; j3.status = d2.status
        let d3 = JobLogic.decide(j3, pods: [pod("b")], now: t0)
        #expect(d3.status.succeeded == 1)
    }

    @Test func aJobSeenBeforeItsStatusNeverRunsAnIndexOrAPodTwice() throws {
        // The cache shows the pod without its finalizer (removed after the status was written)
        // but the job as it was before that write: index 3 is done, not pending.
        var j = try job(completions: 6, parallelism: 3, indexed: true)
        j.status = JobStatus(); j.status?.completedIndexes = "0-2"; j.status?.succeeded = 3; j.status?.startTime = KubeTime.format(t0)
        let stale = JobLogic.decide(j, pods: [pod("i3", phase: "Succeeded", index: 3, finalizer: false, exitCode: 0), pod("i4", index: 4)], now: t0)
        #expect(stale.create == [5])
        // NonIndexed: two Succeeded pods seen, the status says none yet: no third is started.
        var w = try job(completions: 2, parallelism: 2)
        w.status = JobStatus(); w.status?.startTime = KubeTime.format(t0)
        let d = JobLogic.decide(w, pods: [pod("a", phase: "Succeeded", finalizer: false, exitCode: 0), pod("b", phase: "Succeeded", finalizer: false, exitCode: 0)], now: t0)
        #expect(d.create.isEmpty)
    }

    @Test func aPodDeletedByHandCountsAsFailedAndIsReplacedAfterBackoff() throws {
        var j = try job(completions: 1, parallelism: 1)
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0)
        let deleted = pod("a", deleted: t0)
        let d1 = JobLogic.decide(j, pods: [deleted], now: t0.addingTimeInterval(1))
        #expect(d1.status.uncountedTerminatedPods?.failed == ["uid-a"])
        #expect(d1.removeFinalizers == ["a"])
        #expect(d1.create.isEmpty && d1.requeueAfter == 9)   // 10 s backoff from the failure
        j.status = d1.status
        let d2 = JobLogic.decide(j, pods: [], now: t0.addingTimeInterval(10))
        #expect(d2.status.failed == 1)
        #expect(d2.create == [nil])
    }

    @Test func backoffLimitFailsTheJobAndStopsItsPods() throws {
        var j = try job(completions: 2, parallelism: 2)
        j.spec?.backoffLimit = 1
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0); j.status?.failed = 1
        let d = JobLogic.decide(j, pods: [pod("x", phase: "Failed", exitCode: 1), pod("y")], now: t0)
        #expect(d.status.conditions?.contains { $0.type == "FailureTarget" && $0.reason == "BackoffLimitExceeded" } == true)
        #expect(d.status.finished == false)   // y still runs
        #expect(d.delete == ["y"])
        #expect(d.create.isEmpty)
        // Once nothing runs and the failure is counted: Failed.
        j.status = d.status
        let d2 = JobLogic.decide(j, pods: [pod("x", phase: "Failed", finalizer: false, exitCode: 1)], now: t0.addingTimeInterval(1))
        #expect(d2.status.condition("Failed")?.reason == "BackoffLimitExceeded")
        #expect(d2.status.failed == 2)
    }

    @Test func restartsCountTowardTheBackoffLimitWithOnFailure() throws {
        var j = try job(completions: 1, parallelism: 1, restart: "OnFailure")
        j.spec?.backoffLimit = 2
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0)
        #expect(JobLogic.decide(j, pods: [pod("a", restarts: 2)], now: t0).status.condition("FailureTarget") == nil)
        #expect(JobLogic.decide(j, pods: [pod("a", restarts: 3)], now: t0).status.condition("FailureTarget")?.reason == "BackoffLimitExceeded")
    }

    @Test func activeDeadline() throws {
        var j = try job(completions: 1, parallelism: 1)
        j.spec?.activeDeadlineSeconds = 30
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0)
        let before = JobLogic.decide(j, pods: [pod("a")], now: t0.addingTimeInterval(20))
        #expect(before.requeueAfter == 10)
        let after = JobLogic.decide(j, pods: [pod("a")], now: t0.addingTimeInterval(30))
        #expect(after.status.condition("FailureTarget")?.reason == "DeadlineExceeded")
        #expect(after.delete == ["a"])
    }

    @Test func suspendStopsPodsAndResumeRestartsTheClock() throws {
        var j = try job(completions: 2, parallelism: 2)
        j.spec?.suspend = true
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0)
        let s = JobLogic.decide(j, pods: [pod("a"), pod("b")], now: t0.addingTimeInterval(5))
        #expect(Set(s.delete) == ["a", "b"] && s.create.isEmpty)
        #expect(s.status.conditions?.first { $0.type == "Suspended" }?.status == "True")
        j.status = s.status
        j.spec?.suspend = false
        let r = JobLogic.decide(j, pods: [], now: t0.addingTimeInterval(60))
        #expect(r.status.conditions?.first { $0.type == "Suspended" }?.reason == "JobResumed")
        #expect(r.status.startTime == KubeTime.format(t0.addingTimeInterval(60)))
        #expect(r.create.count == 2)
    }

    @Test func podFailurePolicyFailJobAndIgnore() throws {
        var j = try job(completions: 2, parallelism: 2)
        j.spec?.podFailurePolicy = PodFailurePolicy(rules: [
            PodFailurePolicyRule(action: "FailJob", onExitCodes: PodFailurePolicyOnExitCodesRequirement(containerName: nil, operator: "In", values: [42]), onPodConditions: nil),
            PodFailurePolicyRule(action: "Ignore", onExitCodes: PodFailurePolicyOnExitCodesRequirement(containerName: "c", operator: "In", values: [3]), onPodConditions: nil),
        ])
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0)
        let ignored = JobLogic.decide(j, pods: [pod("a", phase: "Failed", exitCode: 3), pod("b")], now: t0)
        #expect(ignored.status.uncountedTerminatedPods?.failed ?? [] == [] && ignored.removeFinalizers == ["a"])
        #expect(ignored.create == [nil])   // replaced at once: an ignored failure has no backoff
        let fatal = JobLogic.decide(j, pods: [pod("a", phase: "Failed", exitCode: 42), pod("b")], now: t0)
        #expect(fatal.status.condition("FailureTarget")?.reason == "PodFailurePolicy")
        #expect(fatal.delete == ["b"])
    }

    @Test func completesOnceEverythingIsCountedAndNothingRuns() throws {
        var j = try job(completions: 2, parallelism: 2)
        j.status = JobStatus(); j.status?.startTime = KubeTime.format(t0); j.status?.succeeded = 2
        let d = JobLogic.decide(j, pods: [], now: t0.addingTimeInterval(7))
        #expect(d.status.condition("Complete") != nil)
        #expect(d.status.completionTime == KubeTime.format(t0.addingTimeInterval(7)))
        #expect(d.events.contains { $0.reason == "Completed" })
        // Indexed: every index once, whatever number of pods succeeded.
        var ij = try job(completions: 3, parallelism: 3, indexed: true)
        ij.status = JobStatus(); ij.status?.startTime = KubeTime.format(t0)
        let pods = [pod("p0", phase: "Succeeded", index: 0, exitCode: 0), pod("p1", phase: "Succeeded", index: 1, exitCode: 0),
                    pod("p1b", phase: "Succeeded", index: 1, exitCode: 0), pod("p2", phase: "Succeeded", index: 2, exitCode: 0)]
        let i1 = JobLogic.decide(ij, pods: pods, now: t0)
        #expect(i1.status.completedIndexes == "0-2" && i1.status.succeeded == 3)
        ij.status = i1.status
        let i2 = JobLogic.decide(ij, pods: pods.map { var p = $0; p.metadata.finalizers = nil; return p }, now: t0)
        #expect(i2.status.condition("Complete") != nil && i2.status.succeeded == 3)
    }

    @Test func ttlAfterFinished() throws {
        var j = try job(completions: 1, parallelism: 1)
        j.spec?.ttlSecondsAfterFinished = 10
        j.status = JobStatus(); j.status?.succeeded = 1; j.status?.completionTime = KubeTime.format(t0)
        j.status?.conditions = [JobCondition(type: "Complete", status: "True", time: KubeTime.format(t0), reason: nil, message: nil)]
        #expect(JobLogic.decide(j, pods: [], now: t0.addingTimeInterval(4)).requeueAfter == 6)
        #expect(JobLogic.decide(j, pods: [], now: t0.addingTimeInterval(10)).deleteJob)
    }

    @Test func validationNamesTheField() throws {
        var j = try job()
        j.spec?.template.spec?.restartPolicy = "Always"
        j.spec?.completions = -1
        j.spec?.completionMode = "Sometimes"
        let errs = j.validate().map { "\($0.field): \($0.message)" }
        #expect(errs.contains { $0.hasPrefix("spec.template.spec.restartPolicy") && $0.contains("OnFailure") })
        #expect(errs.contains { $0.hasPrefix("spec.completions") && $0.contains("-1") })
        #expect(errs.contains { $0.hasPrefix("spec.completionMode") })
        var ix = try job(completions: nil, indexed: true)
        ix.spec?.completions = nil
        #expect(ix.validate().contains { $0.field == "spec.completions" })
        var changed = try job()
        changed.spec?.completions = 9
        #expect(changed.validateUpdate(old: try job()).contains { $0.field == "spec.completions" && $0.message.contains("immutable") })
    }
}
