// HTTP for the metrics the collector gathers: metrics.k8s.io/v1beta1 (nodes, pods; get and list
// with label and field selectors, as metrics-server serves them to kubectl top and the HPA) and
// metrics.orchestrator.io/v1 workloadmetrics (the persisted per-workload history, JSON or CSV).
// Both are read-only and authorized like reads of pods and nodes.
import Foundation
import Hummingbird
import NIOCore
import API
import PKI

/// PodMetricsList / NodeMetricsList, encoded in one pass.
struct MetricsList<T: Encodable>: Encodable {
    var kind: String
    var apiVersion = MetricsGroup.apiVersion
    var metadata: [String: String] = [:]
    var items: [T]
}

extension APIHandler {
    /// Routes /apis/metrics.k8s.io/... and /apis/metrics.orchestrator.io/... below the version.
    func routeMetrics(_ request: Request, identity: CertIdentity, group: String, version: String, rest: [String],
                      _ verbLabel: inout String, _ resourceLabel: inout String) async throws -> Response {
        guard let collector = metricsCollector else {
            throw Status.serviceUnavailable("the metrics collector is disabled on this apiserver (--metrics-interval 0)")
        }
        let q = request.uri.queryParameters
        func param(_ k: String) -> String? { q[Substring(k)].map(String.init) }
        let importing = request.method == .post && group == WorkloadMetricsGroup.name && version == WorkloadMetricsGroup.version
        guard request.method == .get || importing else { throw Status.methodNotAllowed() }
        if APIHandler.goBool(param("watch")) {
            throw Status.methodNotAllowed("the metrics APIs do not support watch; poll instead")
        }

        if group == MetricsGroup.name && version == MetricsGroup.version {
            let info: ResourceInfo, namespace: String?, name: String?
            switch rest.count {
            case 1 where rest[0] == "nodes": (info, namespace, name) = (MetricsGroup.nodes, nil, nil)
            case 2 where rest[0] == "nodes": (info, namespace, name) = (MetricsGroup.nodes, nil, rest[1])
            case 1 where rest[0] == "pods": (info, namespace, name) = (MetricsGroup.pods, nil, nil)
            case 3 where rest[0] == "namespaces" && rest[2] == "pods": (info, namespace, name) = (MetricsGroup.pods, rest[1], nil)
            case 4 where rest[0] == "namespaces" && rest[2] == "pods": (info, namespace, name) = (MetricsGroup.pods, rest[1], rest[3])
            default: throw Status.notFoundPath()
            }
            resourceLabel = "\(info.plural).\(info.group)"
            verbLabel = name == nil ? "LIST" : "GET"
            try authorizeMetrics(identity, info, verb: name == nil ? "list" : "get", namespace: namespace, name: name)
            let labelSel: Selector, fieldSel: Selector
            do {
                labelSel = try Selector.parse(param("labelSelector") ?? "")
                fieldSel = try Selector.parse(param("fieldSelector") ?? "", fieldSelector: true)
            } catch { throw Status.badRequest("\(error)") }
            for r in fieldSel.requirements where !["metadata.name", "metadata.namespace"].contains(r.key) {
                throw Status.badRequest("field label not supported: \(r.key) (the metrics API selects on metadata.name and metadata.namespace)")
            }
            let now = registry.clock()
            if info == MetricsGroup.nodes {
                if let name {
                    guard let u = collector.nodeUsage(name) else { throw Status.notFound(info, name) }
                    return Self.json(200, try KubeJSON.encode(u.object(now: now)))
                }
                let items = collector.nodeUsages().filter { labelSel.matches($0.labels) && fieldSel.matches(["metadata.name": $0.name]) }
                return Self.json(200, try KubeJSON.encode(MetricsList(kind: "NodeMetricsList", items: items.map { $0.object(now: now) })))
            }
            if let name, let namespace {
                guard let u = collector.podUsage(namespace: namespace, name: name) else { throw Status.notFound(info, name) }
                return Self.json(200, try KubeJSON.encode(u.object(now: now)))
            }
            let items = collector.podUsages(namespace: namespace).filter {
                labelSel.matches($0.facts.labels) && fieldSel.matches(["metadata.name": $0.facts.name, "metadata.namespace": $0.facts.namespace])
            }
            return Self.json(200, try KubeJSON.encode(MetricsList(kind: "PodMetricsList", items: items.map { $0.object(now: now) })))
        }

        if group == CustomMetricsGroup.name && CustomMetricsGroup.versions.contains(version) {
            return try customMetrics(identity: identity, version: version, rest: rest, selector: param("labelSelector"),
                                     metricSelector: param("metricLabelSelector"), collector: collector, &verbLabel, &resourceLabel)
        }

        if group == WorkloadMetricsGroup.name && version == WorkloadMetricsGroup.version {
            let info = WorkloadMetricsGroup.resource
            guard rest.count == 5, rest[0] == "namespaces", rest[2] == info.plural else {
                throw Status.notFoundPath("the workload history is at /apis/\(info.apiVersion)/namespaces/NAMESPACE/workloadmetrics/KIND/NAME")
            }
            resourceLabel = "\(info.plural).\(info.group)"
            verbLabel = importing ? "POST" : "GET"
            let namespace = rest[1], name = rest[4]
            try authorizeMetrics(identity, info, verb: importing ? "create" : "get", namespace: namespace, name: name)
            guard let kind = WorkloadMetricsGroup.canonicalKind(rest[3]) else {
                throw Status.badRequest("unknown workload kind \"\(rest[3])\": use deployment, replicaset or pod (or an owner kind such as StatefulSet)")
            }
            if importing { return try await importHistory(request, WorkloadRef(namespace: namespace, kind: kind, name: name), collector: collector) }
            let since = try Self.seconds(param("since"), name: "since") ?? 3600
            let step = try Self.seconds(param("step"), name: "step")
            let ref = WorkloadRef(namespace: namespace, kind: kind, name: name)
            let samples = try await collector.history.query(ref, since: registry.clock().addingTimeInterval(-since), step: step)
            if samples.isEmpty, try await !collector.history.hasHistory(ref), !workloadExists(ref) {
                throw Status(status: "Failure", message: "no history for \(ref): it has no samples and no such \(kind) exists", reason: "NotFound",
                             code: 404, details: StatusDetails(name: name, group: info.group, kind: info.plural))
            }
            if param("format") == "csv" || (request.headers[.accept] ?? "").hasPrefix("text/csv") {
                return Self.text(200, WorkloadMetricsSample.csv(samples), type: "text/csv; charset=utf-8")
            }
            return Self.json(200, try KubeJSON.encode(WorkloadMetricsList(workload: ref, items: samples)))
        }
        throw Status.notFoundPath()
    }

    /// GET /apis/custom.metrics.k8s.io/VERSION/namespaces/NS/pods/(NAME|*)/METRIC: the
    /// requests_per_second of the pods, as a MetricValueList (what a custom-metrics adapter
    /// serves the HPA). `*` with a labelSelector is the HPA's query; a named pod without a
    /// figure yet is 404.
    func customMetrics(identity: CertIdentity, version: String, rest: [String], selector: String?, metricSelector: String?,
                       collector: MetricsCollector, _ verbLabel: inout String, _ resourceLabel: inout String) throws -> Response {
        let info = CustomMetricsGroup.pods(version)
        guard rest.count == 5, rest[0] == "namespaces", rest[2] == "pods" else {
            throw Status.notFoundPath("the custom metrics are at /apis/\(CustomMetricsGroup.name)/\(version)/namespaces/NAMESPACE/pods/(NAME|*)/METRIC; this server has \(CustomMetricsGroup.metricNames.joined(separator: ", "))")
        }
        let namespace = rest[1], pod = rest[3], metric = rest[4]
        resourceLabel = "pods.\(CustomMetricsGroup.name)"
        verbLabel = pod == "*" ? "LIST" : "GET"
        try authorizeMetrics(identity, info, verb: "get", namespace: namespace, name: pod == "*" ? nil : pod)
        guard CustomMetricsGroup.metricNames.contains(metric) else {
            throw Status(status: "Failure", message: "the server could not find the metric \(metric) for pods (this server has \(CustomMetricsGroup.metricNames.joined(separator: ", ")))",
                         reason: "NotFound", code: 404, details: StatusDetails(name: metric, group: CustomMetricsGroup.name, kind: "pods"))
        }
        if let metricSelector, !metricSelector.isEmpty {
            throw Status.badRequest("metricLabelSelector: \(metric) has no labels to select on")
        }
        let labelSel: Selector
        do { labelSel = try Selector.parse(selector ?? "") } catch { throw Status.badRequest("labelSelector: \(error)") }
        var rates = collector.requestRates(namespace: namespace).filter { labelSel.matches($0.facts.labels) }
        if pod != "*" {
            rates = rates.filter { $0.facts.name == pod }
            if rates.isEmpty {
                throw Status(status: "Failure", message: "the server could not find the metric \(metric) for pods \(pod) (no Service has sent it traffic that this server measured yet)",
                             reason: "NotFound", code: 404, details: StatusDetails(name: pod, group: CustomMetricsGroup.name, kind: "pods"))
            }
        }
        let items = rates.map { r in
            MetricValue(describedObject: ObjectReference(kind: "Pod", namespace: r.facts.namespace, name: r.facts.name, apiVersion: "/v1"),
                        metric: version == "v1beta2" ? .init(name: metric) : nil, metricName: version == "v1beta1" ? metric : nil,
                        timestamp: KubeTime.format(r.timestamp), windowSeconds: Int64(max(1, r.window.rounded())),
                        value: Quantity(milli: Int64((r.perSecond * 1000).rounded()), format: .decimalSI))
        }
        return Self.json(200, try KubeJSON.encode(MetricValueList(apiVersion: "\(CustomMetricsGroup.name)/\(version)", items: items)))
    }

    /// POST of a CSV history ("back data"): parsed and checked whole (WorkloadMetricsImport),
    /// then stored as raw samples, which the history folds into minutes like its own. The
    /// workload must exist: a history nobody reads is a typo's.
    func importHistory(_ request: Request, _ ref: WorkloadRef, collector: MetricsCollector) async throws -> Response {
        let ct = (request.headers[.contentType] ?? "").lowercased()
        guard ct.hasPrefix("text/csv") || ct.hasPrefix("text/plain") else {
            throw Status(status: "Failure", message: "a history import is text/csv (got \"\(ct)\")", reason: "UnsupportedMediaType", code: 415)
        }
        guard workloadExists(ref) else {
            throw Status(status: "Failure", message: "\(ref.kind.lowercased()) \"\(ref.name)\" does not exist in namespace \(ref.namespace): create it before importing its history",
                         reason: "NotFound", code: 404, details: StatusDetails(name: ref.name, group: nil, kind: ref.kind.lowercased() + "s"))
        }
        var req = request
        let body: Data
        do { body = Data(buffer: try await req.collectBody(upTo: 128 << 20)) } catch { throw Status.tooLarge() }
        let now = registry.clock()
        let samples: [WorkloadMetricsSample]
        do { samples = try WorkloadMetricsImport.parse(String(decoding: body, as: UTF8.self), now: now) }
        catch { throw Status.badRequest("\(error)") }
        let cutoff = now.addingTimeInterval(-collector.history.minuteRetention)
        let kept = samples.filter { $0.time >= cutoff }
        collector.history.append(kept.map { (ref, $0) })
        // On disk before the answer; the collector's own maintenance folds the old ones into minutes.
        try await collector.history.flush()
        let result = WorkloadMetricsImportResult(workload: ref, imported: kept.count, olderThanRetention: samples.count - kept.count,
                                                 first: kept.first.map { KubeTime.format($0.time) }, last: kept.last.map { KubeTime.format($0.time) },
                                                 retentionSeconds: collector.history.minuteRetention)
        return Self.json(201, try KubeJSON.encode(result))
    }

    /// Same rules as reading pods or nodes: admins and the controller-manager may; nodes,
    /// the scheduler and bootstrap tokens may not.
    func authorizeMetrics(_ identity: CertIdentity, _ info: ResourceInfo, verb: String, namespace: String?, name: String?) throws {
        let attrs = RequestAttributes(user: identity, verb: verb, resource: info, subresource: nil, namespace: namespace, name: name, fieldNodeName: nil)
        switch authz.authorize(attrs) {
        case .allow: return
        case .deny(let msg): throw Status.forbidden(msg, info, name)
        case .allowIfBoundTo, .allowIfNamed, .allowIfPinnedTo, .allowIfTokenForPodOn:
            throw Status.forbidden("\(info.groupResource) is forbidden: User \"\(identity.user)\" cannot \(verb) resource \"\(info.plural)\" in API group \"\(info.group)\"", info, name)
        }
    }

    func workloadExists(_ w: WorkloadRef) -> Bool {
        let info: ResourceInfo
        switch w.kind {
        case "Deployment": info = Resources.deployments
        case "ReplicaSet": info = Resources.replicasets
        case "Pod": info = Resources.pods
        default:
            guard let r = Resources.lookup(w.kind), r.kind == w.kind else { return false }
            info = r
        }
        return store.get(Objects.key(info, w.namespace, w.name)) != nil
    }


    /// "3600", "90s", "15m", "1h", "7d" → seconds; nil when absent.
    static func seconds(_ s: String?, name: String) throws -> Double? {
        guard let s, !s.isEmpty else { return nil }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let v = Double(s), v >= 0 { return v }
        if let u = s.last.flatMap({ units[$0] }), let v = Double(s.dropLast()), v >= 0 { return v * u }
        throw Status.badRequest("\(name): invalid value \"\(s)\": want seconds (3600) or a duration (90s, 15m, 1h, 7d)")
    }
}
