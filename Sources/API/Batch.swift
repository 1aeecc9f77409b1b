// batch/v1 Job: pods run to completion, counted once each (through the job-tracking finalizer),
// retried up to backoffLimit, within activeDeadlineSeconds; Indexed jobs give each pod an index.
import Foundation

public struct PodFailurePolicyOnExitCodesRequirement: Codable, Hashable, Sendable {
    public var containerName: String?
    public var `operator`: String
    public var values: [Int]
    public init(containerName: String?, operator op: String, values: [Int]) { self.containerName = containerName; self.operator = op; self.values = values }
}
public struct PodFailurePolicyOnPodConditionsPattern: Codable, Hashable, Sendable {
    public var type: String
    public var status: String?
    public init(type: String, status: String?) { self.type = type; self.status = status }
}
public struct PodFailurePolicyRule: Codable, Hashable, Sendable {
    public var action: String
    public var onExitCodes: PodFailurePolicyOnExitCodesRequirement?
    public var onPodConditions: [PodFailurePolicyOnPodConditionsPattern]?
    public init(action: String, onExitCodes: PodFailurePolicyOnExitCodesRequirement?, onPodConditions: [PodFailurePolicyOnPodConditionsPattern]?) {
        self.action = action; self.onExitCodes = onExitCodes; self.onPodConditions = onPodConditions
    }
}
public struct PodFailurePolicy: Codable, Hashable, Sendable {
    public var rules: [PodFailurePolicyRule]
    public init(rules: [PodFailurePolicyRule]) { self.rules = rules }
}

public struct JobSpec: Codable, Hashable, Sendable {
    public var parallelism: Int?
    public var completions: Int?
    public var activeDeadlineSeconds: Int64?
    public var podFailurePolicy: PodFailurePolicy?
    public var backoffLimit: Int?
    public var selector: LabelSelector?
    public var manualSelector: Bool?
    public var template: PodTemplateSpec
    public var ttlSecondsAfterFinished: Int?
    public var completionMode: String?
    public var suspend: Bool?
    public var podReplacementPolicy: String?
    public init(template: PodTemplateSpec, completions: Int? = nil, parallelism: Int? = nil) {
        self.template = template; self.completions = completions; self.parallelism = parallelism
    }
}

extension JobSpec {
    /// Kubernetes' defaults for a Job's spec (also a CronJob's job template's).
    mutating func applyDefaults() {
        if completions == nil && parallelism == nil { completions = 1 }
        parallelism = parallelism ?? 1
        backoffLimit = backoffLimit ?? 6
        completionMode = completionMode ?? "NonIndexed"
        suspend = suspend ?? false
        podReplacementPolicy = podReplacementPolicy ?? (podFailurePolicy != nil ? "Failed" : "TerminatingOrFailed")
        template.spec?.applyDefaults()
    }
}

public struct JobCondition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var lastProbeTime: String?
    public var lastTransitionTime: String?
    public var reason: String?
    public var message: String?
    public init(type: String, status: String, time: String, reason: String?, message: String?) {
        self.type = type; self.status = status; lastProbeTime = time; lastTransitionTime = time; self.reason = reason; self.message = message
    }
}

/// Pods that finished and are in the job's counts only once their finalizer is gone.
public struct UncountedTerminatedPods: Codable, Hashable, Sendable {
    public var succeeded: [String]?
    public var failed: [String]?
    public init(succeeded: [String]? = nil, failed: [String]? = nil) { self.succeeded = succeeded; self.failed = failed }
    public var isEmpty: Bool { (succeeded ?? []).isEmpty && (failed ?? []).isEmpty }
}

public struct JobStatus: Codable, Hashable, Sendable {
    public var conditions: [JobCondition]?
    public var startTime: String?
    public var completionTime: String?
    public var active: Int?
    public var succeeded: Int?
    public var failed: Int?
    public var terminating: Int?
    public var completedIndexes: String?
    public var uncountedTerminatedPods: UncountedTerminatedPods?
    public var ready: Int?
    public init() {}

    public func condition(_ type: String) -> JobCondition? { conditions?.first { $0.type == type && $0.status == "True" } }
    public var finished: Bool { condition("Complete") != nil || condition("Failed") != nil }
}

public struct Job: KubeObject, Hashable {
    public static let resource = Resources.jobs
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: JobSpec?
    public var status: JobStatus?
    public init(metadata: ObjectMeta, spec: JobSpec?) { apiVersion = "batch/v1"; kind = "Job"; self.metadata = metadata; self.spec = spec }
}

public enum JobLabels {
    public static let controllerUID = "batch.kubernetes.io/controller-uid"
    public static let jobName = "batch.kubernetes.io/job-name"
    public static let legacyControllerUID = "controller-uid"
    public static let legacyJobName = "job-name"
    public static let completionIndex = "batch.kubernetes.io/job-completion-index"
    public static let trackingFinalizer = "batch.kubernetes.io/job-tracking"
    public static let maxIndexed = 100_000
}

/// "1,3-5,7": the compact form of a set of indexes that status.completedIndexes uses.
public enum IndexRanges {
    public static func format(_ set: Set<Int>) -> String {
        var parts: [String] = []
        var it = set.sorted().makeIterator()
        guard var start = it.next() else { return "" }
        var end = start
        while let x = it.next() {
            if x == end + 1 { end = x; continue }
            parts.append(start == end ? "\(start)" : "\(start)-\(end)")
            start = x; end = x
        }
        parts.append(start == end ? "\(start)" : "\(start)-\(end)")
        return parts.joined(separator: ",")
    }

    public static func parse(_ s: String?) -> Set<Int> {
        var out = Set<Int>()
        for part in (s ?? "").split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            if ends.count == 1 { out.insert(ends[0]) } else if ends.count == 2, ends[0] <= ends[1] { out.formUnion(ends[0]...ends[1]) }
        }
        return out
    }
}

extension Job: ServedKind {
    public var indexed: Bool { spec?.completionMode == "Indexed" }

    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.applyDefaults()
        // The selector: this job's own uid (set by the apiserver on create), unless chosen by hand.
        if spec!.manualSelector != true, let uid = metadata.uid {
            let own = [JobLabels.controllerUID: uid]
            if spec!.selector == nil { spec!.selector = LabelSelector(matchLabels: own) }
            var labels = spec!.template.metadata?.labels ?? [:]
            labels[JobLabels.controllerUID] = uid
            labels[JobLabels.jobName] = name
            labels[JobLabels.legacyControllerUID] = uid
            labels[JobLabels.legacyJobName] = name
            if spec!.template.metadata == nil { spec!.template.metadata = ObjectMeta() }
            spec!.template.metadata!.labels = labels
        }
    }

    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        func nonNegative(_ v: Int?, _ f: String) {
            if let v, v < 0 { errs.append(.init(.invalid, f, "\(v): must be greater than or equal to 0")) }
        }
        nonNegative(spec.parallelism, "spec.parallelism")
        nonNegative(spec.completions, "spec.completions")
        nonNegative(spec.backoffLimit, "spec.backoffLimit")
        nonNegative(spec.ttlSecondsAfterFinished, "spec.ttlSecondsAfterFinished")
        if let d = spec.activeDeadlineSeconds, d <= 0 { errs.append(.init(.invalid, "spec.activeDeadlineSeconds", "\(d): must be greater than 0")) }
        if let m = spec.completionMode, !["NonIndexed", "Indexed"].contains(m) {
            errs.append(.init(.notSupported, "spec.completionMode", "\"\(m)\": supported values: \"NonIndexed\", \"Indexed\""))
        }
        if spec.completionMode == "Indexed" {
            if spec.completions == nil { errs.append(.init(.required, "spec.completions", "when completion mode is Indexed")) }
            if let c = spec.completions, c > JobLabels.maxIndexed { errs.append(.init(.invalid, "spec.completions", "\(c): must be less than or equal to \(JobLabels.maxIndexed) when completion mode is Indexed")) }
            if let p = spec.parallelism, p > JobLabels.maxIndexed { errs.append(.init(.invalid, "spec.parallelism", "\(p): must be less than or equal to \(JobLabels.maxIndexed) when completion mode is Indexed")) }
        }
        if let p = spec.podReplacementPolicy, !["TerminatingOrFailed", "Failed"].contains(p) {
            errs.append(.init(.notSupported, "spec.podReplacementPolicy", "\"\(p)\": supported values: \"Failed\", \"TerminatingOrFailed\""))
        }
        if spec.podReplacementPolicy == "TerminatingOrFailed" && spec.podFailurePolicy != nil {
            errs.append(.init(.notSupported, "spec.podReplacementPolicy", "\"TerminatingOrFailed\": supported values: \"Failed\" (when podFailurePolicy is set)"))
        }
        // The template: pods that end.
        if let ps = spec.template.spec {
            errs += ps.validate("spec.template.spec")
            let r = ps.restartPolicy ?? "Always"
            if !["OnFailure", "Never"].contains(r) {
                errs.append(.init(.notSupported, "spec.template.spec.restartPolicy", "\"\(r)\": supported values: \"OnFailure\", \"Never\""))
            }
        } else {
            errs.append(.init(.required, "spec.template.spec", ""))
        }
        if let sel = spec.selector {
            do {
                let s = try sel.toSelector()
                if s.isEmpty { errs.append(.init(.required, "spec.selector", "")) }
                else if !s.matches(spec.template.metadata?.labels ?? [:]) {
                    errs.append(.init(.invalid, "spec.template.metadata.labels", "\(spec.template.metadata?.labels ?? [:]): `selector` does not match template `labels`"))
                }
            } catch { errs.append(.init(.invalid, "spec.selector", "\(error)")) }
        } else if spec.manualSelector == true {
            errs.append(.init(.required, "spec.selector", "when manualSelector is true"))
        }
        if spec.manualSelector != true, let uid = metadata.uid, let sel = spec.selector, sel != LabelSelector(matchLabels: [JobLabels.controllerUID: uid]) {
            errs.append(.init(.invalid, "spec.selector", "`selector` not auto-generated (set manualSelector: true to choose your own)"))
        }
        if let pfp = spec.podFailurePolicy {
            if spec.template.spec?.restartPolicy != "Never" {
                errs.append(.init(.invalid, "spec.template.spec.restartPolicy", "\"\(spec.template.spec?.restartPolicy ?? "")\": only \"Never\" is supported when podFailurePolicy is specified"))
            }
            for (i, rule) in pfp.rules.enumerated() {
                let f = "spec.podFailurePolicy.rules[\(i)]"
                if !["FailJob", "Ignore", "Count", "FailIndex"].contains(rule.action) {
                    errs.append(.init(.notSupported, "\(f).action", "\"\(rule.action)\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""))
                }
                if rule.action == "FailIndex" {
                    errs.append(.init(.invalid, "\(f).action", "\"FailIndex\": must be used together with backoffLimitPerIndex, which this cluster does not serve"))
                }
                if (rule.onExitCodes == nil) == (rule.onPodConditions == nil) {
                    errs.append(.init(.invalid, f, "specifying one of onExitCodes and onPodConditions is required"))
                }
                if let ec = rule.onExitCodes {
                    if !["In", "NotIn"].contains(ec.operator) {
                        errs.append(.init(.notSupported, "\(f).onExitCodes.operator", "\"\(ec.operator)\": supported values: \"In\", \"NotIn\""))
                    }
                    if ec.values.isEmpty { errs.append(.init(.required, "\(f).onExitCodes.values", "at least one value is required")) }
                    if ec.operator == "In" && ec.values.contains(0) {
                        errs.append(.init(.invalid, "\(f).onExitCodes.values", "0: must not be 0 for the In operator"))
                    }
                    if Set(ec.values).count != ec.values.count { errs.append(.init(.duplicate, "\(f).onExitCodes.values", "duplicate values")) }
                }
            }
        }
        return errs
    }

    public func validateUpdate(old: Job) -> [FieldError] {
        var errs: [FieldError] = []
        guard let spec, let o = old.spec else { return errs }
        if spec.selector != o.selector { errs.append(.init(.invalid, "spec.selector", "field is immutable")) }
        if spec.completionMode != o.completionMode { errs.append(.init(.invalid, "spec.completionMode", "field is immutable")) }
        if spec.completions != o.completions { errs.append(.init(.invalid, "spec.completions", "field is immutable")) }
        if spec.podFailurePolicy != o.podFailurePolicy { errs.append(.init(.invalid, "spec.podFailurePolicy", "field is immutable")) }
        if spec.template != o.template { errs.append(.init(.invalid, "spec.template", "field is immutable")) }
        return errs
    }

    public var selectableFields: [String: String] { baseFields.merging(["status.successful": String(status?.succeeded ?? 0)]) { $1 } }
}

extension Job: TablePrintable {
    public static let columns = [nameCol, TableColumn("Status"), TableColumn("Completions"), TableColumn("Duration"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        let st: String
        if status?.condition("Failed") != nil { st = "Failed" }
        else if status?.condition("Complete") != nil { st = "Complete" }
        else if spec?.suspend == true { st = "Suspended" }
        else if status?.condition("FailureTarget") != nil { st = "FailureTarget" }
        else { st = "Running" }
        let completions = spec?.completions.map { "\(status?.succeeded ?? 0)/\($0)" } ?? "\(status?.succeeded ?? 0)/1 of \(spec?.parallelism ?? 1)"
        var duration = ""
        if let s = KubeTime.parse(status?.startTime) {
            let end = KubeTime.parse(status?.completionTime) ?? now
            duration = KubeTime.shortDuration(end.timeIntervalSince(s))
        }
        return [.string(name), .string(st), .string(completions), .string(duration), age]
    }
}

// batch/v1 CronJob: Jobs made from a template on a cron schedule.
public struct JobTemplateSpec: Codable, Hashable, Sendable {
    public var metadata: ObjectMeta?
    public var spec: JobSpec?
    public init(metadata: ObjectMeta? = nil, spec: JobSpec?) { self.metadata = metadata; self.spec = spec }
}

public struct CronJobSpec: Codable, Hashable, Sendable {
    public var schedule: String
    public var timeZone: String?
    public var startingDeadlineSeconds: Int64?
    public var concurrencyPolicy: String?
    public var suspend: Bool?
    public var jobTemplate: JobTemplateSpec
    public var successfulJobsHistoryLimit: Int?
    public var failedJobsHistoryLimit: Int?
    public init(schedule: String, jobTemplate: JobTemplateSpec) { self.schedule = schedule; self.jobTemplate = jobTemplate }
}

public struct CronJobStatus: Codable, Hashable, Sendable {
    public var active: [ObjectReference]?
    public var lastScheduleTime: String?
    public var lastSuccessfulTime: String?
    public init() {}
}

public struct CronJob: KubeObject, Hashable {
    public static let resource = Resources.cronjobs
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: CronJobSpec?
    public var status: CronJobStatus?
    public init(metadata: ObjectMeta, spec: CronJobSpec?) { apiVersion = "batch/v1"; kind = "CronJob"; self.metadata = metadata; self.spec = spec }
}

public enum CronJobLabels {
    public static let scheduledTimestamp = "batch.kubernetes.io/cronjob-scheduled-timestamp"
    public static let instantiate = "cronjob.kubernetes.io/instantiate"
}

extension CronJob: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.concurrencyPolicy = spec!.concurrencyPolicy ?? "Allow"
        spec!.suspend = spec!.suspend ?? false
        spec!.successfulJobsHistoryLimit = spec!.successfulJobsHistoryLimit ?? 3
        spec!.failedJobsHistoryLimit = spec!.failedJobsHistoryLimit ?? 1
        spec!.jobTemplate.spec?.applyDefaults()
    }

    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        // Job names are NAME-<minutes>: 11 more characters, and a Job's name must fit in a label (63).
        if name.count > 52 { errs.append(.init(.invalid, "metadata.name", "\"\(name)\": must be no more than 52 characters")) }
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        if spec.schedule.isEmpty { errs.append(.init(.required, "spec.schedule", "")) }
        else {
            do { _ = try CronSchedule(spec.schedule) } catch { errs.append(.init(.invalid, "spec.schedule", "\"\(spec.schedule)\": \(error)")) }
        }
        if let tz = spec.timeZone {
            if TimeZone(identifier: tz) == nil || tz.isEmpty { errs.append(.init(.invalid, "spec.timeZone", "\"\(tz)\": unknown time zone \(tz)")) }
        }
        if let p = spec.concurrencyPolicy, !["Allow", "Forbid", "Replace"].contains(p) {
            errs.append(.init(.notSupported, "spec.concurrencyPolicy", "\"\(p)\": supported values: \"Allow\", \"Forbid\", \"Replace\""))
        }
        if let d = spec.startingDeadlineSeconds, d < 0 { errs.append(.init(.invalid, "spec.startingDeadlineSeconds", "\(d): must be greater than or equal to 0")) }
        for (f, v) in [("spec.successfulJobsHistoryLimit", spec.successfulJobsHistoryLimit), ("spec.failedJobsHistoryLimit", spec.failedJobsHistoryLimit)] {
            if let v, v < 0 { errs.append(.init(.invalid, f, "\(v): must be greater than or equal to 0")) }
        }
        // The job template: what a Job of it would be told (its selector is made per Job).
        if let js = spec.jobTemplate.spec {
            var j = Job(metadata: ObjectMeta(name: name, namespace: namespace), spec: js)
            j.spec?.selector = nil
            j.spec?.manualSelector = nil
            for e in j.validate() where e.field.hasPrefix("spec.") {
                errs.append(.init(e.kind, "spec.jobTemplate." + e.field, e.message))
            }
        } else {
            errs.append(.init(.required, "spec.jobTemplate.spec", ""))
        }
        return errs
    }

    public func validateUpdate(old: CronJob) -> [FieldError] { [] }
}

extension CronJob: TablePrintable {
    public static let columns = [nameCol, TableColumn("Schedule"), TableColumn("Timezone"), TableColumn("Suspend"), TableColumn("Active", "integer"),
                                 TableColumn("Last Schedule"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        [.string(name), .string(spec?.schedule ?? ""), .string(spec?.timeZone ?? "<none>"), .string(spec?.suspend == true ? "True" : "False"),
         .int(Int64(status?.active?.count ?? 0)), .string(status?.lastScheduleTime.map { KubeTime.age(since: $0, now: now) } ?? "<none>"), age]
    }
}
