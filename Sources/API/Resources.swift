// The table of served resources: group, version, kind, plural, scope and subresources.
import Foundation

public struct ResourceInfo: Hashable, Sendable {
    public var group: String
    public var version: String
    public var kind: String
    public var plural: String
    public var singular: String
    public var shortNames: [String]
    public var namespaced: Bool
    public var subresources: [String]
    public var categories: [String]

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// "deployments.apps", or "pods" for the core group: the key used in storage and authorization.
    public var groupResource: String { group.isEmpty ? plural : "\(plural).\(group)" }
    public var hasStatus: Bool { subresources.contains("status") }

    public init(group: String, version: String, kind: String, plural: String, shortNames: [String] = [], namespaced: Bool = true, subresources: [String] = [], categories: [String] = []) {
        self.group = group; self.version = version; self.kind = kind; self.plural = plural
        self.singular = kind.lowercased(); self.shortNames = shortNames; self.namespaced = namespaced
        self.subresources = subresources; self.categories = categories
    }

    /// The URL path of the collection (namespace nil: all namespaces or cluster scope).
    public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let ns = namespace, !ns.isEmpty { p += "/namespaces/\(ns)" }
        p += "/\(plural)"
        if let name { p += "/\(name)" }
        if let subresource { p += "/\(subresource)" }
        return p
    }
}

public enum Resources {
    public static let namespaces = ResourceInfo(group: "", version: "v1", kind: "Namespace", plural: "namespaces", shortNames: ["ns"], namespaced: false, subresources: ["status"])
    public static let pods = ResourceInfo(group: "", version: "v1", kind: "Pod", plural: "pods", shortNames: ["po"], subresources: ["status", "binding", "log", "eviction", "exec", "attach", "portforward"], categories: ["all"])
    public static let nodes = ResourceInfo(group: "", version: "v1", kind: "Node", plural: "nodes", shortNames: ["no"], namespaced: false, subresources: ["status"])
    public static let services = ResourceInfo(group: "", version: "v1", kind: "Service", plural: "services", shortNames: ["svc"], subresources: ["status"], categories: ["all"])
    public static let endpoints = ResourceInfo(group: "", version: "v1", kind: "Endpoints", plural: "endpoints", shortNames: ["ep"])
    public static let events = ResourceInfo(group: "", version: "v1", kind: "Event", plural: "events", shortNames: ["ev"])
    public static let configmaps = ResourceInfo(group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", shortNames: ["cm"])
    public static let secrets = ResourceInfo(group: "", version: "v1", kind: "Secret", plural: "secrets")
    public static let deployments = ResourceInfo(group: "apps", version: "v1", kind: "Deployment", plural: "deployments", shortNames: ["deploy"], subresources: ["status", "scale"], categories: ["all"])
    public static let replicasets = ResourceInfo(group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", shortNames: ["rs"], subresources: ["status", "scale"], categories: ["all"])
    public static let hpas = ResourceInfo(group: "autoscaling", version: "v2", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", shortNames: ["hpa"], subresources: ["status"], categories: ["all"])
    public static let leases = ResourceInfo(group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases")
    public static let csrs = ResourceInfo(group: "certificates.k8s.io", version: "v1", kind: "CertificateSigningRequest", plural: "certificatesigningrequests", shortNames: ["csr"], namespaced: false, subresources: ["status", "approval"])

    public static let endpointslices = ResourceInfo(group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices")

    public static let pdbs = ResourceInfo(group: "policy", version: "v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", shortNames: ["pdb"], subresources: ["status"])
    public static let jobs = ResourceInfo(group: "batch", version: "v1", kind: "Job", plural: "jobs", subresources: ["status"], categories: ["all"])
    public static let daemonsets = ResourceInfo(group: "apps", version: "v1", kind: "DaemonSet", plural: "daemonsets", shortNames: ["ds"], subresources: ["status"], categories: ["all"])
    public static let controllerrevisions = ResourceInfo(group: "apps", version: "v1", kind: "ControllerRevision", plural: "controllerrevisions")
    public static let statefulsets = ResourceInfo(group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets", shortNames: ["sts"], subresources: ["status", "scale"], categories: ["all"])
    public static let cronjobs = ResourceInfo(group: "batch", version: "v1", kind: "CronJob", plural: "cronjobs", shortNames: ["cj"], subresources: ["status"], categories: ["all"])
    public static let persistentvolumes = ResourceInfo(group: "", version: "v1", kind: "PersistentVolume", plural: "persistentvolumes", shortNames: ["pv"], namespaced: false, subresources: ["status"])
    public static let persistentvolumeclaims = ResourceInfo(group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims", shortNames: ["pvc"], subresources: ["status"])
    public static let storageclasses = ResourceInfo(group: "storage.k8s.io", version: "v1", kind: "StorageClass", plural: "storageclasses", shortNames: ["sc"], namespaced: false)
    public static let serviceaccounts = ResourceInfo(group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", shortNames: ["sa"], subresources: ["token"])
    public static let roles = ResourceInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles")
    public static let clusterroles = ResourceInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", plural: "clusterroles", namespaced: false)
    public static let rolebindings = ResourceInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", plural: "rolebindings")
    public static let clusterrolebindings = ResourceInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRoleBinding", plural: "clusterrolebindings", namespaced: false)
    public static let all: [ResourceInfo] = [namespaces, pods, nodes, services, endpoints, events, configmaps, secrets, deployments, replicasets, hpas, leases, csrs, endpointslices, pdbs, jobs, cronjobs, daemonsets, controllerrevisions, statefulsets, persistentvolumes, persistentvolumeclaims, storageclasses, serviceaccounts, roles, clusterroles, rolebindings, clusterrolebindings]

    /// Finds a resource by plural, singular, short name or kind, optionally qualified with a group ("deployments.apps").
    public static func lookup(_ name: String) -> ResourceInfo? {
        let lower = name.lowercased()
        let (base, group): (String, String?) = {
            if let dot = lower.firstIndex(of: ".") { return (String(lower[..<dot]), String(lower[lower.index(after: dot)...])) }
            return (lower, nil)
        }()
        return all.first { r in
            (group == nil || r.group == group || r.group.hasPrefix(group! + ".")) &&
            (r.plural == base || r.singular == base || r.shortNames.contains(base) || r.kind.lowercased() == base)
        }
    }
    public static func byKind(apiVersion: String, kind: String) -> ResourceInfo? {
        all.first { $0.apiVersion == apiVersion && $0.kind == kind }
    }
    public static func byPath(group: String, version: String, plural: String) -> ResourceInfo? {
        all.first { $0.group == group && $0.version == version && $0.plural == plural }
    }
}
