// Authorization: built-in rules for the admin, scheduler, controller-manager, nodes and bootstrap
// tokens. Identity comes from the client certificate (CN = user, O = groups) or a join token.
import Foundation
import API
import PKI

public struct RequestAttributes: Sendable {
    public var user: CertIdentity
    public var verb: String          // get list watch create update patch delete deletecollection
    public var resource: ResourceInfo
    public var subresource: String?
    public var namespace: String?
    public var name: String?
    /// For node identities listing or watching pods: the spec.nodeName the field selector pins.
    public var fieldNodeName: String?
}

public enum AuthzDecision: Sendable, Equatable {
    case allow
    /// Allowed only if the object is the node's own (pods bound to it); checked once the object is read.
    case allowIfBoundTo(node: String)
    /// Allowed only if the object is a persistent volume pinned to the node by its node affinity.
    case allowIfPinnedTo(node: String)
    /// Allowed only if the created object carries this name; checked once the body is read.
    case allowIfNamed(String)
    case deny(String)
}

public struct Authorizer: Sendable {
    public init() {}

    static let readVerbs: Set<String> = ["get", "list", "watch"]
    static let writeVerbs: Set<String> = ["create", "update", "patch", "delete", "deletecollection"]

    public func authorize(_ a: RequestAttributes) -> AuthzDecision {
        let u = a.user
        if u.groups.contains("system:masters") { return .allow }
        let gr = a.resource.groupResource
        let sub = a.subresource
        let v = a.verb
        let read = Self.readVerbs.contains(v)

        switch u.user {
        case "system:kube-scheduler":
            if read && ["pods", "nodes", "namespaces", "services", "replicasets.apps", "deployments.apps", "leases.coordination.k8s.io",
                        "persistentvolumes", "persistentvolumeclaims", "storageclasses.storage.k8s.io"].contains(gr) && sub == nil { return .allow }
            // Delayed binding: the scheduler names the node a claim's volume is to be made on.
            if gr == "persistentvolumeclaims" && sub == nil && ["update", "patch"].contains(v) { return .allow }
            if gr == "pods" && sub == "binding" && v == "create" { return .allow }
            if gr == "pods" && sub == "status" && ["update", "patch", "get"].contains(v) { return .allow }
            if gr == "events" && ["create", "update", "patch"].contains(v) { return .allow }
            if gr == "leases.coordination.k8s.io" && a.namespace == "kube-system" { return .allow }
            return deny(a)
        case "system:kube-controller-manager":
            let managed: Set<String> = ["pods", "replicasets.apps", "deployments.apps", "horizontalpodautoscalers.autoscaling", "events",
                                        "endpoints", "endpointslices.discovery.k8s.io", "leases.coordination.k8s.io", "certificatesigningrequests.certificates.k8s.io",
                                        "nodes", "namespaces", "poddisruptionbudgets.policy", "jobs.batch", "cronjobs.batch", "daemonsets.apps", "controllerrevisions.apps", "statefulsets.apps",
                                        "persistentvolumes", "persistentvolumeclaims", "serviceaccounts"]
            if managed.contains(gr) { return .allow }
            if read { return .allow }
            return deny(a)
        default: break
        }

        if u.groups.contains("system:nodes"), u.user.hasPrefix("system:node:") {
            let node = String(u.user.dropFirst("system:node:".count))
            switch gr {
            case "nodes":
                if read { return .allow }
                if ["update", "patch"].contains(v) && a.name == node { return .allow }
                if v == "create" && a.name == nil { return .allowIfNamed(node) }
                return deny(a, "node \"\(node)\" may only modify its own Node object")
            case "leases.coordination.k8s.io":
                if a.namespace == "kube-node-lease" && a.name == node { return .allow }
                // Every node reads the others' Leases: a pod is stopped only once every live
                // node's proxy has synced without it (the revision each Lease carries).
                if a.namespace == "kube-node-lease" && read { return .allow }
                if a.namespace == "kube-node-lease" && v == "create" && a.name == nil { return .allowIfNamed(node) }
                return deny(a, "node \"\(node)\" may only touch its own Lease in kube-node-lease")
            case "pods":
                if v == "list" || v == "watch" {
                    return a.fieldNodeName == node ? .allow : deny(a, "node \"\(node)\" may only list or watch pods with fieldSelector spec.nodeName=\(node)")
                }
                if v == "get" && (sub == nil || sub == "status" || sub == "log") { return .allowIfBoundTo(node: node) }
                if (v == "update" || v == "patch") && sub == "status" { return .allowIfBoundTo(node: node) }
                if v == "delete" && sub == nil { return .allowIfBoundTo(node: node) }
                return deny(a, "node \"\(node)\" may only read, update the status of and delete pods bound to it")
            case "events":
                if ["create", "update", "patch"].contains(v) { return .allow }
                return deny(a)
            case "certificatesigningrequests.certificates.k8s.io":
                if v == "create" || read { return .allow }
                return deny(a)
            case "persistentvolumes":
                if read { return .allow }
                // Only to let go of a local volume once its directory on this node is gone.
                if ["update", "patch"].contains(v) && sub == nil { return .allowIfPinnedTo(node: node) }
                return deny(a, "node \"\(node)\" may only read persistent volumes and finish the deletion of those on it")
            case "services", "endpoints", "endpointslices.discovery.k8s.io", "configmaps", "secrets", "namespaces",
                 "persistentvolumeclaims", "storageclasses.storage.k8s.io", "serviceaccounts":
                if read { return .allow }
                return deny(a)
            default:
                return deny(a)
            }
        }

        if u.groups.contains("system:bootstrappers") {
            if gr == "certificatesigningrequests.certificates.k8s.io" && (v == "create" || v == "get" || v == "watch" || v == "list") { return .allow }
            return deny(a)
        }
        return deny(a)
    }

    func deny(_ a: RequestAttributes, _ extra: String? = nil) -> AuthzDecision {
        let res = a.resource.plural + (a.subresource.map { "/\($0)" } ?? "")
        var msg = "\(a.resource.groupResource)\(a.name.map { " \"\($0)\"" } ?? "") is forbidden: User \"\(a.user.user)\" cannot \(a.verb) resource \"\(res)\" in API group \"\(a.resource.group)\""
        if let ns = a.namespace, !ns.isEmpty { msg += " in the namespace \"\(ns)\"" } else if a.resource.namespaced { msg += " at the cluster scope" }
        if let extra { msg += ": \(extra)" }
        return .deny(msg)
    }
}
