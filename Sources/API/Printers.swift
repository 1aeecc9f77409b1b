// Server-side table printing (meta.k8s.io/v1 Table): the same columns kubectl shows, used by
// the apiserver for kubectl and by ctl.
import Foundation

public struct TableColumn: Codable, Hashable, Sendable {
    public var name: String
    public var type: String
    public var format: String
    public var description: String
    public var priority: Int
    public init(_ name: String, _ type: String = "string", format: String = "", priority: Int = 0, description: String = "") {
        self.name = name; self.type = type; self.format = format; self.priority = priority
        self.description = description.isEmpty ? name : description
    }
}

public struct TableRow: Codable, Sendable {
    public var cells: [JSONValue]
    public var object: JSONValue?
    public init(cells: [JSONValue], object: JSONValue?) { self.cells = cells; self.object = object }
}

public struct Table: Codable, Sendable {
    public var kind: String? = "Table"
    public var apiVersion: String? = "meta.k8s.io/v1"
    public var metadata: ListMeta
    public var columnDefinitions: [TableColumn]?
    public var rows: [TableRow]
    public init(metadata: ListMeta, columnDefinitions: [TableColumn]?, rows: [TableRow]) {
        self.metadata = metadata; self.columnDefinitions = columnDefinitions; self.rows = rows
    }
}

public protocol TablePrintable {
    static var columns: [TableColumn] { get }
    func cells(now: Date) -> [JSONValue]
}

let nameCol = TableColumn("Name", format: "name", description: "The object's name, unique in its namespace.")
let ageCol = TableColumn("Age", description: "How long ago the object was created.")

extension KubeObject {
    var age: JSONValue { .string(KubeTime.age(since: metadata.creationTimestamp)) }
}

extension Pod: TablePrintable {
    public static let columns = [nameCol, TableColumn("Ready"), TableColumn("Status"), TableColumn("Restarts", "string"), ageCol,
                                 TableColumn("IP", priority: 1), TableColumn("Node", priority: 1), TableColumn("Nominated Node", priority: 1), TableColumn("Readiness Gates", priority: 1)]
    /// The STATUS column as kubectl computes it.
    public var displayStatus: String {
        var reason = status?.reason ?? phase
        for cs in status?.initContainerStatuses ?? [] {
            if let t = cs.state?.terminated, t.exitCode != 0 { reason = "Init:" + (t.reason ?? "Error"); break }
            if let w = cs.state?.waiting?.reason, w != "PodInitializing" { reason = "Init:" + w; break }
        }
        var hasRunning = false
        for cs in (status?.containerStatuses ?? []).reversed() {
            if let w = cs.state?.waiting?.reason, !w.isEmpty { reason = w }
            else if let t = cs.state?.terminated { reason = t.reason ?? (t.signal != nil ? "Signal:\(t.signal!)" : "ExitCode:\(t.exitCode)") }
            else if cs.ready && cs.state?.running != nil { hasRunning = true }
        }
        if reason == "Completed" && hasRunning { reason = isReady ? "Running" : "NotReady" }
        if metadata.deletionTimestamp != nil { reason = status?.reason == "NodeLost" ? "Unknown" : "Terminating" }
        return reason
    }
    public func cells(now: Date) -> [JSONValue] {
        let statuses = status?.containerStatuses ?? []
        let ready = statuses.filter(\.ready).count
        let restarts = statuses.reduce(0) { $0 + $1.restartCount }
        var restartText = "\(restarts)"
        if restarts > 0, let last = statuses.compactMap({ $0.lastState?.terminated?.finishedAt }).compactMap({ KubeTime.parse($0) }).max() {
            restartText += " (\(KubeTime.shortDuration(now.timeIntervalSince(last))) ago)"
        }
        return [.string(name), .string("\(ready)/\(spec?.containers.count ?? 0)"), .string(displayStatus), .string(restartText), age,
                .string(status?.podIP ?? "<none>"), .string((spec?.nodeName ?? "").isEmpty ? "<none>" : spec!.nodeName!),
                .string(status?.nominatedNodeName ?? "<none>"), .string("<none>")]
    }
}

extension Node: TablePrintable {
    public static let columns = [nameCol, TableColumn("Status"), TableColumn("Roles"), ageCol, TableColumn("Version"),
                                 TableColumn("Internal-IP", priority: 1), TableColumn("External-IP", priority: 1), TableColumn("OS-Image", priority: 1),
                                 TableColumn("Kernel-Version", priority: 1), TableColumn("Container-Runtime", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        var st: [String] = []
        switch status?.condition("Ready")?.status { case "True": st.append("Ready"); case "False": st.append("NotReady"); default: st.append("Unknown") }
        if spec?.unschedulable == true { st.append("SchedulingDisabled") }
        let roles = labels.keys.compactMap { k -> String? in
            k.hasPrefix("node-role.kubernetes.io/") ? String(k.dropFirst("node-role.kubernetes.io/".count)) : nil
        }.sorted()
        let addr = { (t: String) in status?.addresses?.first { $0.type == t }?.address ?? "<none>" }
        return [.string(name), .string(st.joined(separator: ",")), .string(roles.isEmpty ? "<none>" : roles.joined(separator: ",")), age,
                .string(status?.nodeInfo?.kubeletVersion ?? ""), .string(addr("InternalIP")), .string(addr("ExternalIP")),
                .string(status?.nodeInfo?.osImage ?? "<unknown>"), .string(status?.nodeInfo?.kernelVersion ?? "<unknown>"),
                .string(status?.nodeInfo?.containerRuntimeVersion ?? "<unknown>")]
    }
}

func containersAndImages(_ spec: PodSpec?) -> (JSONValue, JSONValue) {
    let cs = spec?.containers ?? []
    return (.string(cs.map(\.name).joined(separator: ",")), .string(cs.map { $0.image ?? "" }.joined(separator: ",")))
}

extension Deployment: TablePrintable {
    public static let columns = [nameCol, TableColumn("Ready"), TableColumn("Up-to-date", "integer"), TableColumn("Available", "integer"), ageCol,
                                 TableColumn("Containers", priority: 1), TableColumn("Images", priority: 1), TableColumn("Selector", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let (c, i) = containersAndImages(spec?.template.spec)
        return [.string(name), .string("\(status?.readyReplicas ?? 0)/\(spec?.replicas ?? 0)"), .int(Int64(status?.updatedReplicas ?? 0)),
                .int(Int64(status?.availableReplicas ?? 0)), age, c, i, .string(spec?.selector?.stringForm ?? "")]
    }
}

extension ReplicaSet: TablePrintable {
    public static let columns = [nameCol, TableColumn("Desired", "integer"), TableColumn("Current", "integer"), TableColumn("Ready", "integer"), ageCol,
                                 TableColumn("Containers", priority: 1), TableColumn("Images", priority: 1), TableColumn("Selector", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let (c, i) = containersAndImages(spec?.template?.spec)
        return [.string(name), .int(Int64(spec?.replicas ?? 0)), .int(Int64(status?.replicas ?? 0)), .int(Int64(status?.readyReplicas ?? 0)),
                age, c, i, .string(spec?.selector?.stringForm ?? "")]
    }
}

extension HorizontalPodAutoscaler: TablePrintable {
    public static let columns = [nameCol, TableColumn("Reference"), TableColumn("Targets"), TableColumn("MinPods", "string"), TableColumn("MaxPods", "integer"), TableColumn("Replicas", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        var targets: [String] = []
        for (i, m) in (spec?.metrics ?? []).enumerated() {
            guard let r = m.resource else { targets.append("<unknown>"); continue }
            let cur = status?.currentMetrics?.indices.contains(i) == true ? status!.currentMetrics![i].resource?.current : nil
            if r.target.type == "Utilization" {
                targets.append("\(r.name): \(cur?.averageUtilization.map { "\($0)%" } ?? "<unknown>")/\(r.target.averageUtilization ?? 0)%")
            } else {
                targets.append("\(r.name): \(cur?.averageValue?.description ?? "<unknown>")/\(r.target.averageValue?.description ?? "")")
            }
        }
        let ref = spec.map { "\($0.scaleTargetRef.kind)/\($0.scaleTargetRef.name)" } ?? ""
        return [.string(name), .string(ref), .string(targets.isEmpty ? "<none>" : targets.joined(separator: ", ")),
                .string("\(spec?.minReplicas ?? 1)"), .int(Int64(spec?.maxReplicas ?? 0)), .int(Int64(status?.currentReplicas ?? 0)), age]
    }
}

extension Service: TablePrintable {
    public static let columns = [nameCol, TableColumn("Type"), TableColumn("Cluster-IP"), TableColumn("External-IP"), TableColumn("Port(s)"), ageCol, TableColumn("Selector", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let ports = (spec?.ports ?? []).map { "\($0.port)\($0.nodePort.map { ":\($0)" } ?? "")/\($0.protocol ?? "TCP")" }.joined(separator: ",")
        let sel = (spec?.selector ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        return [.string(name), .string(spec?.type ?? "ClusterIP"), .string(spec?.clusterIP ?? "<none>"),
                .string((spec?.externalIPs ?? []).isEmpty ? "<none>" : spec!.externalIPs!.joined(separator: ",")),
                .string(ports.isEmpty ? "<none>" : ports), age, .string(sel.isEmpty ? "<none>" : sel)]
    }
}

extension Namespace: TablePrintable {
    public static let columns = [nameCol, TableColumn("Status"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string(status?.phase ?? "Active"), age] }
}

extension Lease: TablePrintable {
    public static let columns = [nameCol, TableColumn("Holder"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string(spec?.holderIdentity ?? ""), age] }
}

extension Event: TablePrintable {
    public static let columns = [TableColumn("Last Seen"), TableColumn("Type"), TableColumn("Reason"), TableColumn("Object"), TableColumn("Message"),
                                 TableColumn("Source", priority: 1), TableColumn("Count", "integer", priority: 1), TableColumn("Name", format: "name", priority: 1)]
    public func cells(now: Date) -> [JSONValue] {
        let last = lastTimestamp ?? eventTime ?? metadata.creationTimestamp
        return [.string(KubeTime.age(since: last, now: now)), .string(type ?? ""), .string(reason ?? ""),
                .string("\((involvedObject.kind ?? "").lowercased())/\(involvedObject.name ?? "")"), .string(message ?? ""),
                .string(source?.component ?? reportingComponent ?? ""), .int(Int64(count ?? 1)), .string(name)]
    }
}

extension Endpoints: TablePrintable {
    public static let columns = [nameCol, TableColumn("Endpoints"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        var eps: [String] = []
        for s in subsets ?? [] { for a in s.addresses ?? [] { for p in s.ports ?? [] { eps.append("\(a.ip):\(p.port)") } } }
        return [.string(name), .string(eps.isEmpty ? "<none>" : eps.prefix(3).joined(separator: ",") + (eps.count > 3 ? " + \(eps.count - 3) more..." : "")), age]
    }
}

extension EndpointSlice: TablePrintable {
    public static let columns = [nameCol, TableColumn("AddressType"), TableColumn("Ports"), TableColumn("Endpoints"), ageCol]
    public func cells(now: Date) -> [JSONValue] {
        let ps = (ports ?? []).compactMap { $0.port.map(String.init) }
        let ips = endpoints.flatMap(\.addresses)
        func short(_ xs: [String]) -> String { xs.isEmpty ? "<unset>" : xs.prefix(3).joined(separator: ",") + (xs.count > 3 ? " + \(xs.count - 3) more..." : "") }
        return [.string(name), .string(addressType), .string(short(ps)), .string(short(ips)), age]
    }
}

extension ConfigMap: TablePrintable {
    public static let columns = [nameCol, TableColumn("Data", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .int(Int64((data?.count ?? 0) + (binaryData?.count ?? 0))), age] }
}

extension Secret: TablePrintable {
    public static let columns = [nameCol, TableColumn("Type"), TableColumn("Data", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string(type ?? "Opaque"), .int(Int64(data?.count ?? 0)), age] }
}

extension CertificateSigningRequest: TablePrintable {
    public static let columns = [nameCol, ageCol, TableColumn("SignerName"), TableColumn("Requestor"), TableColumn("RequestedDuration"), TableColumn("Condition")]
    public func cells(now: Date) -> [JSONValue] {
        let conds = (status?.conditions ?? []).map(\.type)
        var cond = conds.isEmpty ? "Pending" : conds.joined(separator: ",")
        if status?.certificate != nil && !conds.isEmpty { cond += ",Issued" }
        return [.string(name), age, .string(spec?.signerName ?? ""), .string(spec?.username ?? ""),
                .string(spec?.expirationSeconds.map { KubeTime.shortDuration(TimeInterval($0)) } ?? "<none>"), .string(cond)]
    }
}

/// Every served kind, by group-resource ("pods", "deployments.apps").
public enum Kinds {
    public typealias Served = any (ServedKind & TablePrintable).Type
    public static let byResource: [String: Served] = {
        let types: [Served] = [Namespace.self, Pod.self, Node.self, Service.self, Endpoints.self, Event.self, ConfigMap.self, Secret.self,
                               Deployment.self, ReplicaSet.self, HorizontalPodAutoscaler.self, Lease.self, CertificateSigningRequest.self,
                               EndpointSlice.self, PodDisruptionBudget.self, Job.self, CronJob.self, DaemonSet.self, ControllerRevision.self, StatefulSet.self,
                               PersistentVolume.self, PersistentVolumeClaim.self, StorageClass.self, ServiceAccount.self,
                               Role.self, ClusterRole.self, RoleBinding.self, ClusterRoleBinding.self]
        return Dictionary(uniqueKeysWithValues: types.map { ($0.resource.groupResource, $0) })
    }()
}
