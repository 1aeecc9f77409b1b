// Authorization: system:masters, the node restriction, then RBAC (RBACAuthorizer.swift). Identity
// comes from the client certificate (CN = user, O = groups), a ServiceAccount token or a join token.
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
    /// A node asking for a ServiceAccount token: only bound to a pod on that node that runs as it.
    case allowIfTokenForPodOn(node: String)
    case deny(String)
}

public struct Authorizer: Sendable {
    public static let mastersGroup = "system:masters"
    let rbac: RBACCache
    public init(rbac: RBACCache) { self.rbac = rbac }

    static let readVerbs: Set<String> = ["get", "list", "watch"]
    static let writeVerbs: Set<String> = ["create", "update", "patch", "delete", "deletecollection"]

    /// As Kubernetes' chain: system:masters may do anything; a node is held to its node
    /// restriction first (its own Node, Lease and pods) and then to what RBAC grants the
    /// system:nodes group; everyone else gets what their RBAC bindings grant.
    public func authorize(_ a: RequestAttributes) -> AuthzDecision {
        let u = a.user
        if u.groups.contains(Self.mastersGroup) { return .allow }
        var decision = AuthzDecision.allow
        if let node = Self.nodeName(u) {
            decision = nodeRestriction(a, node: node)
            if case .deny = decision { return decision }
        }
        let gr = a.resource
        let allowed = rbac.allows(user: u.user, groups: u.groups, verb: a.verb, group: gr.group, resource: gr.plural, subresource: a.subresource,
                                  namespace: a.namespace, name: a.name)
        return allowed ? decision : deny(a)
    }

    /// A request for a path outside the API's resources (/metrics, /version, discovery).
    public func authorize(user u: CertIdentity, verb: String, path: String) -> AuthzDecision {
        if u.groups.contains(Self.mastersGroup) || rbac.allows(user: u.user, groups: u.groups, verb: verb, url: path) { return .allow }
        return .deny("forbidden: User \"\(u.user)\" cannot \(verb) path \"\(path)\"")
    }

    static func nodeName(_ u: CertIdentity) -> String? {
        guard u.groups.contains("system:nodes"), u.user.hasPrefix("system:node:") else { return nil }
        return String(u.user.dropFirst("system:node:".count))
    }

    /// What a node may touch, whatever RBAC grants: its own Node and Lease, the pods bound to
    /// it, and reads of what its pods need.
    func nodeRestriction(_ a: RequestAttributes, node: String) -> AuthzDecision {
        let gr = a.resource.groupResource
        let sub = a.subresource
        let v = a.verb
        let read = Self.readVerbs.contains(v)
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
        case "serviceaccounts" where sub == "token" && v == "create":
            // Only for a pod bound to this node that runs as the ServiceAccount (checked with the body).
            return .allowIfTokenForPodOn(node: node)
        case "services", "endpoints", "endpointslices.discovery.k8s.io", "configmaps", "secrets", "namespaces",
             "persistentvolumeclaims", "storageclasses.storage.k8s.io", "serviceaccounts":
            if read { return .allow }
            return deny(a)
        default:
            return deny(a)
        }
    }

    func deny(_ a: RequestAttributes, _ extra: String? = nil) -> AuthzDecision {
        let res = a.resource.plural + (a.subresource.map { "/\($0)" } ?? "")
        var msg = "\(a.resource.groupResource)\(a.name.map { " \"\($0)\"" } ?? "") is forbidden: User \"\(a.user.user)\" cannot \(a.verb) resource \"\(res)\" in API group \"\(a.resource.group)\""
        if let ns = a.namespace, !ns.isEmpty { msg += " in the namespace \"\(ns)\"" } else if a.resource.namespaced { msg += " at the cluster scope" }
        if let extra { msg += ": \(extra)" }
        return .deny(msg)
    }
}
