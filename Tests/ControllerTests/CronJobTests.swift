// Cron schedules, and the CronJob controller's decisions with a manual clock.
import Testing
import Foundation
import API
@testable import Controllers

private func utc(_ s: String) -> Date { KubeTime.parse(s)! }

private func cronJob(_ schedule: String, policy: String = "Allow", deadline: Int64? = nil, last: String? = nil,
                     created: String = "2026-01-01T00:00:00Z") -> CronJob {
    var cj = CronJob(metadata: ObjectMeta(name: "nightly", namespace: "default"), spec: CronJobSpec(
        schedule: schedule, jobTemplate: JobTemplateSpec(spec: JobSpec(template: PodTemplateSpec(metadata: nil, spec: PodSpec(containers: [Container(name: "c", image: "busybox")]))))))
    cj.metadata.uid = "cj-uid"
    cj.metadata.creationTimestamp = created
    cj.spec?.concurrencyPolicy = policy
    cj.spec?.startingDeadlineSeconds = deadline
    cj.applyDefaults()
    if let last { cj.status = CronJobStatus(); cj.status?.lastScheduleTime = last }
    return cj
}

private func job(_ name: String, finished: String? = nil, start: String = "2026-01-01T00:00:00Z") -> Job {
    var j = Job(metadata: ObjectMeta(name: name, namespace: "default"), spec: nil)
    j.metadata.uid = "uid-\(name)"
    j.status = JobStatus()
    j.status?.startTime = start
    if let finished {
        j.status?.conditions = [JobCondition(type: finished, status: "True", time: start, reason: nil, message: nil)]
        if finished == "Complete" { j.status?.completionTime = start }
    }
    return j
}

@Suite struct CronScheduleTests {
    struct Case: Sendable, CustomStringConvertible {
        var schedule: String, after: String, next: String, zone = "UTC"
        var description: String { "\(schedule) after \(after)" }
    }
    static let cases: [Case] = [
        Case(schedule: "* * * * *", after: "2026-03-01T10:00:30Z", next: "2026-03-01T10:01:00Z"),
        Case(schedule: "*/15 * * * *", after: "2026-03-01T10:16:00Z", next: "2026-03-01T10:30:00Z"),
        Case(schedule: "0 9 * * 1-5", after: "2026-03-06T09:00:00Z", next: "2026-03-09T09:00:00Z"),   // Friday → Monday
        Case(schedule: "30 2 1 JAN,jul *", after: "2026-03-01T00:00:00Z", next: "2026-07-01T02:30:00Z"),
        Case(schedule: "@hourly", after: "2026-03-01T10:00:00Z", next: "2026-03-01T11:00:00Z"),
        Case(schedule: "@weekly", after: "2026-03-02T00:00:00Z", next: "2026-03-08T00:00:00Z"),     // Sunday midnight
        Case(schedule: "@yearly", after: "2026-03-01T00:00:00Z", next: "2027-01-01T00:00:00Z"),
        Case(schedule: "0 0 13 * 5", after: "2026-03-01T00:00:00Z", next: "2026-03-06T00:00:00Z"),  // day 13 OR Friday
        Case(schedule: "0 0 29 2 *", after: "2026-03-01T00:00:00Z", next: "2028-02-29T00:00:00Z"),
        Case(schedule: "0 9 * * *", after: "2026-03-01T00:00:00Z", next: "2026-03-01T08:00:00Z", zone: "Europe/Berlin"),   // 09:00 CET
        Case(schedule: "0 9 * * *", after: "2026-07-01T00:00:00Z", next: "2026-07-01T07:00:00Z", zone: "Europe/Berlin"),   // 09:00 CEST
        Case(schedule: "30 2 * * *", after: "2026-03-29T00:00:00Z", next: "2026-03-29T01:30:00Z", zone: "Europe/Berlin"), // 02:30 skipped by DST: at 03:30
    ]
    @Test(arguments: cases) func nextTime(_ c: Case) throws {
        let s = try CronSchedule(c.schedule)
        #expect(s.next(after: utc(c.after), in: TimeZone(identifier: c.zone)!) == utc(c.next))
    }

    @Test func badSchedulesSayWhy() {
        for (bad, why) in [("* * * *", "exactly 5 fields"), ("61 * * * *", "out of range"), ("* * * FOO *", "failed to parse month"),
                           ("5-2 * * * *", "beyond end of range"), ("*/0 * * * *", "bad step"), ("TZ=UTC * * * * *", "timeZone field"), ("@often", "unrecognized")] {
            do { _ = try CronSchedule(bad); Issue.record("\(bad) parsed") } catch { #expect("\(error)".contains(why), "\(bad): \(error)") }
        }
    }

    @Test func validationNamesTheField() {
        var cj = cronJob("61 * * * *")
        cj.spec?.timeZone = "Mars/Olympus"
        cj.spec?.jobTemplate.spec?.template.spec?.restartPolicy = "Always"
        let fields = cj.validate().map(\.field)
        #expect(fields.contains("spec.schedule") && fields.contains("spec.timeZone") && fields.contains("spec.jobTemplate.spec.template.spec.restartPolicy"))
    }
}

@Suite struct CronJobLogicTests {
    @Test func runsAtTheScheduledTimeAndWaitsForTheNext() {
        var cj = cronJob("*/5 * * * *", last: "2026-03-01T10:00:00Z")
        cj.spec?.jobTemplate.spec?.template.spec?.restartPolicy = "Never"
        let early = CronJobLogic.decide(cj, jobs: [], now: utc("2026-03-01T10:03:00Z"))
        #expect(early.create == nil && early.requeueAfter == 120)
        let due = CronJobLogic.decide(cj, jobs: [], now: utc("2026-03-01T10:05:01Z"))
        #expect(due.create == utc("2026-03-01T10:05:00Z"))
        #expect(due.status.lastScheduleTime == "2026-03-01T10:05:00Z")
        #expect(CronJobLogic.jobName(cj, due.create!) == "nightly-\(Int(utc("2026-03-01T10:05:00Z").timeIntervalSince1970) / 60)")
        let job = CronJobLogic.newJob(cj, scheduled: due.create!)
        #expect(job.metadata.controllerRef?.kind == "CronJob" && job.metadata.annotations?[CronJobLabels.scheduledTimestamp] == "2026-03-01T10:05:00Z")
    }

    @Test func afterDowntimeOnlyTheMostRecentMissedTimeRuns() {
        // The controller-manager was down from 10:00 to 10:07:30: five runs were missed; one, 10:07, runs.
        let cj = cronJob("* * * * *", last: "2026-03-01T10:02:00Z")
        let d = CronJobLogic.decide(cj, jobs: [], now: utc("2026-03-01T10:07:30Z"))
        #expect(d.create == utc("2026-03-01T10:07:00Z"))
        #expect(d.status.lastScheduleTime == "2026-03-01T10:07:00Z")
        // With startingDeadlineSeconds 20, 10:07 is 30 s late: nothing runs; 10:08 will.
        let strict = CronJobLogic.decide(cronJob("* * * * *", deadline: 20, last: "2026-03-01T10:02:00Z"), jobs: [], now: utc("2026-03-01T10:07:30Z"))
        #expect(strict.create == nil && strict.requeueAfter == 30)
        // Down for days: more than 100 missed times are reported, and the last one still runs.
        let long = CronJobLogic.decide(cronJob("* * * * *", last: "2026-03-01T10:00:00Z"), jobs: [], now: utc("2026-03-03T10:00:30Z"))
        #expect(long.events.contains { $0.reason == "TooManyMissedTimes" })
        #expect(long.create != nil)
    }

    @Test func concurrencyPolicies() {
        let now = utc("2026-03-01T10:05:10Z")
        let running = job("nightly-1")
        let forbid = CronJobLogic.decide(cronJob("*/5 * * * *", policy: "Forbid", last: "2026-03-01T10:00:00Z"), jobs: [running], now: now)
        #expect(forbid.create == nil && forbid.status.active?.map(\.name) == ["nightly-1"])
        let replace = CronJobLogic.decide(cronJob("*/5 * * * *", policy: "Replace", last: "2026-03-01T10:00:00Z"), jobs: [running], now: now)
        #expect(replace.create != nil && replace.deleteJobs == ["nightly-1"])
        let allow = CronJobLogic.decide(cronJob("*/5 * * * *", last: "2026-03-01T10:00:00Z"), jobs: [running], now: now)
        #expect(allow.create != nil && allow.deleteJobs.isEmpty)
        // A time already run (its Job exists) is not run again.
        let cj = cronJob("*/5 * * * *", last: "2026-03-01T10:00:00Z")
        let made = job(CronJobLogic.jobName(cj, utc("2026-03-01T10:05:00Z")))
        #expect(CronJobLogic.decide(cj, jobs: [made], now: now).create == nil)
    }

    @Test func historyLimitsDeleteTheOldestFinished() {
        var cj = cronJob("0 * * * *", last: "2026-03-01T10:00:00Z")
        cj.spec?.successfulJobsHistoryLimit = 2
        cj.spec?.failedJobsHistoryLimit = 1
        let jobs = [job("s1", finished: "Complete", start: "2026-03-01T07:00:00Z"), job("s2", finished: "Complete", start: "2026-03-01T08:00:00Z"),
                    job("s3", finished: "Complete", start: "2026-03-01T09:00:00Z"), job("f1", finished: "Failed", start: "2026-03-01T05:00:00Z"),
                    job("f2", finished: "Failed", start: "2026-03-01T06:00:00Z")]
        let d = CronJobLogic.decide(cj, jobs: jobs, now: utc("2026-03-01T10:30:00Z"))
        #expect(Set(d.deleteJobs) == ["s1", "f1"])
        #expect(d.status.lastSuccessfulTime == "2026-03-01T09:00:00Z")
    }

    @Test func suspendedRunsNothing() {
        var cj = cronJob("* * * * *", last: "2026-03-01T10:00:00Z")
        cj.spec?.suspend = true
        #expect(CronJobLogic.decide(cj, jobs: [], now: utc("2026-03-01T10:05:00Z")).create == nil)
    }
}
