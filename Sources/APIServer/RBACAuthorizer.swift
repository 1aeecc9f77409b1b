// RBAC: the authorizer's view of Roles, ClusterRoles and their bindings, kept in memory from
// store watches; the bootstrap policy the apiserver writes on first start; and the escalation
// check that stops anyone granting a permission they do not hold.
import Foundation
import Synchronization
import Logging
import API
import Store
import PKI

/// The identity making the current request, for the checks deep in the registry that depend on
/// it (RBAC escalation). Internal writes (bootstrap, GC of the apiserver itself) run without one.
enum Requester {
    @TaskLocal static var current: CertIdentity?
}

public final class RBACCache: Sendable {
    struct State {
        var roles: [String: [String: Role]] = [:]          // namespace -> name -> Role
        var clusterRoles: [String: ClusterRole] = [:]
        var bindings: [String: [String: RoleBinding]] = [:] // namespace -> name -> RoleBinding
        var clusterBindings: [String: ClusterRoleBinding] = [:]
        var revision: Int64 = 0
        /// Bindings by subject ("u:NAME" for users and ServiceAccounts, "g:NAME" for groups), made
        /// again on the first lookup after a change: a request reads only its own bindings.
        var index: Index? = nil
    }
    struct Index {
        var cluster: [String: [RoleRef]] = [:]
        var namespaced: [String: [String: [RoleRef]]] = [:]   // namespace -> subject -> refs
    }

    static func subjectKey(_ s: Subject, bindingNamespace: String) -> String? {
        switch s.kind {
        case "User": return "u:\(s.name)"
        case "Group": return "g:\(s.name)"
        case "ServiceAccount":
            let ns = (s.namespace ?? "").isEmpty ? bindingNamespace : s.namespace!
            return "u:system:serviceaccount:\(ns):\(s.name)"
        default: return nil
        }
    }

    static func buildIndex(_ s: State) -> Index {
        var ix = Index()
        for b in s.clusterBindings.values {
            for sub in b.subjects ?? [] { if let k = subjectKey(sub, bindingNamespace: "") { ix.cluster[k, default: []].append(b.roleRef) } }
        }
        for (ns, bs) in s.bindings {
            for b in bs.values {
                for sub in b.subjects ?? [] { if let k = subjectKey(sub, bindingNamespace: ns) { ix.namespaced[ns, default: [:]][k, default: []].append(b.roleRef) } }
            }
        }
        return ix
    }
    private let state = Mutex(State())
    let store: any ObjectStore
    let logger: Logger
    static let kinds = [Resources.roles, Resources.clusterroles, Resources.rolebindings, Resources.clusterrolebindings]

    public init(store: any ObjectStore, logger: Logger) {
        self.store = store; self.logger = logger
        reload()
    }

    /// Reads every RBAC object from the store (on start, and after a watch ends).
    func reload() {
        var s = State()
        for info in Self.kinds {
            let (items, rev) = store.list(resource: info.groupResource, namespace: nil)
            s.revision = max(s.revision, rev)
            for o in items { Self.apply(&s, .added, o) }
        }
        state.withLock { $0 = s }
    }

    static func apply(_ s: inout State, _ type: EventType, _ o: StoredObject) {
        let k = o.key
        let gone = type == .deleted
        s.index = nil
        switch k.resource {
        case Resources.roles.groupResource:
            s.roles[k.namespace, default: [:]][k.name] = gone ? nil : try? KubeJSON.decode(Role.self, from: o.data)
        case Resources.clusterroles.groupResource:
            s.clusterRoles[k.name] = gone ? nil : try? KubeJSON.decode(ClusterRole.self, from: o.data)
        case Resources.rolebindings.groupResource:
            s.bindings[k.namespace, default: [:]][k.name] = gone ? nil : try? KubeJSON.decode(RoleBinding.self, from: o.data)
        case Resources.clusterrolebindings.groupResource:
            s.clusterBindings[k.name] = gone ? nil : try? KubeJSON.decode(ClusterRoleBinding.self, from: o.data)
        default: break
        }
    }

    /// Follows the store until it shuts down: one watch per kind, from the revision last read.
    func run() async {
        await withTaskGroup(of: Void.self) { g in
            for info in Self.kinds {
                g.addTask { [self] in
                    var from: Int64 = state.withLock { $0.revision }
                    while !Task.isCancelled {
                        let sub: StoreSubscription
                        do { sub = try store.watch(resource: info.groupResource, namespace: nil, fromRevision: from) }
                        catch StoreError.gone { reload(); from = state.withLock { $0.revision }; continue }   // compacted past us
                        catch { return }                                                                       // closing
                        for await e in sub.events where e.type != .bookmark {
                            state.withLock { Self.apply(&$0, e.type, e.object); $0.revision = max($0.revision, e.revision) }
                            from = e.revision
                        }
                        sub.cancel()
                        if Task.isCancelled { return }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
        }
    }

    // MARK: evaluation

    /// Rules of a role a binding refers to (an aggregated ClusterRole holds its own rules and
    /// those of every ClusterRole its selectors match).
    private func rules(_ s: State, _ ref: RoleRef, namespace: String) -> [PolicyRule] {
        if ref.kind == "Role" { return s.roles[namespace]?[ref.name]?.rules ?? [] }
        guard let cr = s.clusterRoles[ref.name] else { return [] }
        var out = cr.rules ?? []
        if let sels = cr.aggregationRule?.clusterRoleSelectors, !sels.isEmpty {
            for other in s.clusterRoles.values where other.name != cr.name {
                if sels.contains(where: { $0.matches(other.metadata.labels ?? [:]) }) { out += other.rules ?? [] }
            }
        }
        return out
    }

    /// Every rule that applies to the user in a namespace (nil: cluster-wide rules only).
    public func rules(user: String, groups: [String], namespace: String?) -> [PolicyRule] {
        state.withLock { s in
            if s.index == nil { s.index = Self.buildIndex(s) }
            let ix = s.index!
            let keys = ["u:\(user)"] + groups.map { "g:\($0)" }
            var out: [PolicyRule] = []
            for k in keys { for ref in ix.cluster[k] ?? [] { out += rules(s, ref, namespace: "") } }
            if let ns = namespace, !ns.isEmpty, let byKey = ix.namespaced[ns] {
                for k in keys { for ref in byKey[k] ?? [] { out += rules(s, ref, namespace: ns) } }
            }
            return out
        }
    }

    public func allows(user: String, groups: [String], verb: String, group: String, resource: String, subresource: String?,
                       namespace: String?, name: String?) -> Bool {
        rules(user: user, groups: groups, namespace: namespace).contains {
            $0.allows(verb: verb, group: group, resource: resource, subresource: subresource, name: name)
        }
    }

    public func allows(user: String, groups: [String], verb: String, url: String) -> Bool {
        rules(user: user, groups: groups, namespace: nil).contains { $0.allows(verb: verb, url: url) }
    }

    // MARK: escalation prevention

    /// A Role or ClusterRole may be written only by someone who holds every rule in it (or holds
    /// "escalate" on it); a binding only by someone who holds every rule of the role it refers
    /// to (or "bind" on that role). As Kubernetes, the check runs in the object's namespace.
    func admit(_ obj: any KubeObject, requester u: CertIdentity) throws {
        if u.groups.contains(Authorizer.mastersGroup) { return }
        let ns = obj.metadata.namespace.flatMap { $0.isEmpty ? nil : $0 }
        func holds(_ verb: String, _ resource: String, _ name: String) -> Bool {
            allows(user: u.user, groups: u.groups, verb: verb, group: RBAC.group, resource: resource, subresource: nil, namespace: ns, name: name)
        }
        let wanted: [PolicyRule]
        let info: ResourceInfo
        switch obj {
        case let r as Role:
            if holds("escalate", "roles", r.name) { return }
            wanted = r.rules ?? []; info = Resources.roles
        case let r as ClusterRole:
            if holds("escalate", "clusterroles", r.name) { return }
            wanted = (r.rules ?? []) + (r.aggregationRule == nil ? [] : state.withLock { s in rules(s, RoleRef(kind: "ClusterRole", name: r.name), namespace: "") })
            info = Resources.clusterroles
        case let b as RoleBinding:
            if holds("bind", b.roleRef.kind == "Role" ? "roles" : "clusterroles", b.roleRef.name) { return }
            wanted = state.withLock { s in rules(s, b.roleRef, namespace: ns ?? "") }; info = Resources.rolebindings
        case let b as ClusterRoleBinding:
            if holds("bind", "clusterroles", b.roleRef.name) { return }
            wanted = state.withLock { s in rules(s, b.roleRef, namespace: "") }; info = Resources.clusterrolebindings
        default: return
        }
        let mine = rules(user: u.user, groups: u.groups, namespace: ns)
        var missing: [PolicyRule] = []
        for rule in wanted {
            for atom in rule.atoms where !mine.contains(where: { $0.covers(atom: atom) }) { missing.append(atom) }
        }
        guard !missing.isEmpty else { return }
        let groups = u.groups.map { "\"\($0)\"" }.joined(separator: " ")
        var msg = "\(info.groupResource) \"\(obj.metadata.name ?? "")\" is forbidden: user \"\(u.user)\" (groups=[\(groups)]) is attempting to grant RBAC permissions not currently held:"
        for m in missing.prefix(20) { msg += "\n" + m.compactString }
        if missing.count > 20 { msg += "\n(and \(missing.count - 20) more)" }
        throw Status.forbidden(msg, info, obj.metadata.name)
    }
}

/// The roles and bindings every cluster starts with. Written on first start and brought back to
/// these rules on each start unless annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`.
enum BootstrapPolicy {
    static let read = ["get", "list", "watch"]
    static let write = ["create", "update", "patch", "delete", "deletecollection"]
    static let all = read + write

    /// Rules for these kinds (and each one's subresources), grouped by API group.
    static func rules(_ verbs: [String], _ infos: [ResourceInfo], subresources: Bool = true) -> [PolicyRule] {
        var byGroup: [String: [String]] = [:]
        var order: [String] = []
        for i in infos {
            if byGroup[i.group] == nil { order.append(i.group) }
            byGroup[i.group, default: []].append(i.plural)
            if subresources { byGroup[i.group]! += i.subresources.map { "\(i.plural)/\($0)" } }
        }
        return order.map { PolicyRule(verbs, [$0], byGroup[$0]!) }
    }

    static let R = Resources.self
    static let workloads: [ResourceInfo] = [R.pods, R.services, R.endpoints, R.endpointslices, R.configmaps, R.persistentvolumeclaims,
                                            R.serviceaccounts, R.deployments, R.replicasets, R.statefulsets, R.daemonsets, R.jobs, R.cronjobs,
                                            R.hpas, R.pdbs, R.controllerrevisions, R.leases]

    static var clusterRoles: [ClusterRole] {
        var out: [ClusterRole] = []
        func role(_ name: String, _ rules: [PolicyRule], aggregateTo: String? = nil) {
            var r = ClusterRole(name: name, rules: rules)
            var labels = ["kubernetes.io/bootstrapping": "rbac-defaults"]
            if let a = aggregateTo { labels["rbac.authorization.k8s.io/aggregate-to-\(a)"] = "true" }
            r.metadata.labels = labels
            r.metadata.annotations = ["rbac.authorization.kubernetes.io/autoupdate": "true"]
            out.append(r)
        }
        role("cluster-admin", [PolicyRule(["*"], ["*"], ["*"]), PolicyRule(urls: ["*"], ["*"])])
        // view: read what runs in a namespace, but not its Secrets (as Kubernetes).
        let viewRules = rules(read, workloads.filter { $0 != R.pods } + [R.events]) + [PolicyRule(read, [""], ["pods", "pods/log", "pods/status"]),
                                                                                    PolicyRule(read, [""], ["namespaces", "namespaces/status"])]
        role("view", viewRules)
        // edit: change them, Secrets included, and reach into pods; no roles or bindings.
        let editRules = viewRules + rules(all, workloads) + [
            PolicyRule(all, [""], ["secrets"]),
            PolicyRule(["create"], [""], ["pods/exec", "pods/attach", "pods/portforward", "pods/eviction", "serviceaccounts/token"]),
            PolicyRule(["get"], [""], ["pods/exec", "pods/attach", "pods/portforward"]),
            PolicyRule(["impersonate"], [""], ["serviceaccounts"]),
            PolicyRule(read + ["create", "update", "patch", "delete"], [""], ["events"]),
        ]
        role("edit", editRules)
        // admin: edit plus the namespace's own roles and bindings.
        role("admin", editRules + [PolicyRule(all, [RBAC.group], ["roles", "rolebindings"]),
                                   PolicyRule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"])])
        role("system:basic-user", [PolicyRule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                                   PolicyRule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"])])
        role("system:discovery", [PolicyRule(urls: ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/",
                                                    "/healthz", "/livez", "/readyz"], ["get"])])
        role("system:kube-scheduler", rules(read, [R.pods, R.nodes, R.namespaces, R.services, R.replicasets, R.deployments, R.statefulsets,
                                                   R.leases, R.persistentvolumes, R.persistentvolumeclaims, R.storageclasses], subresources: false) + [
            PolicyRule(["update", "patch"], [""], ["persistentvolumeclaims"]),
            PolicyRule(["create"], [""], ["pods/binding", "bindings"]),
            PolicyRule(["get", "update", "patch"], [""], ["pods/status"]),
            PolicyRule(["create", "update", "patch"], ["", "events.k8s.io"], ["events"]),
            PolicyRule(["create"], ["coordination.k8s.io"], ["leases"]),
            PolicyRule(["update", "patch", "delete"], ["coordination.k8s.io"], ["leases"], names: ["kube-scheduler"]),
        ])
        role("system:kube-controller-manager", [PolicyRule(read, ["*"], ["*"])] + rules(all, workloads + [
            R.events, R.nodes, R.namespaces, R.csrs, R.persistentvolumes, R.persistentvolumeclaims]) + [
            PolicyRule(["create"], [""], ["serviceaccounts/token"]),
        ])
        // What a node may do at most; the node restriction narrows it to the node's own objects.
        role("system:node", rules(read, [R.nodes, R.pods, R.services, R.endpoints, R.endpointslices, R.configmaps, R.secrets, R.namespaces,
                                          R.persistentvolumes, R.persistentvolumeclaims, R.storageclasses, R.csrs, R.leases, R.serviceaccounts], subresources: false) + [
            PolicyRule(["create", "update", "patch"], [""], ["nodes", "nodes/status"]),
            PolicyRule(["create", "update", "patch", "delete"], ["coordination.k8s.io"], ["leases"]),
            PolicyRule(["get", "update", "patch"], [""], ["pods/status"]),
            PolicyRule(["get"], [""], ["pods/log"]),
            PolicyRule(["delete"], [""], ["pods"]),
            PolicyRule(["create", "update", "patch"], ["", "events.k8s.io"], ["events"]),
            PolicyRule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
            PolicyRule(["update", "patch"], [""], ["persistentvolumes"]),
            PolicyRule(["create"], [""], ["serviceaccounts/token"]),
        ])
        role("system:node-bootstrapper", [PolicyRule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"])])
        return out
    }

    static var clusterRoleBindings: [ClusterRoleBinding] {
        func b(_ name: String, _ role: String, _ subjects: [Subject]) -> ClusterRoleBinding {
            var x = ClusterRoleBinding(name: name, roleRef: RoleRef(kind: "ClusterRole", name: role), subjects: subjects)
            x.metadata.labels = ["kubernetes.io/bootstrapping": "rbac-defaults"]
            x.metadata.annotations = ["rbac.authorization.kubernetes.io/autoupdate": "true"]
            return x
        }
        return [
            b("cluster-admin", "cluster-admin", [.group(Authorizer.mastersGroup)]),
            b("system:basic-user", "system:basic-user", [.group("system:authenticated")]),
            b("system:discovery", "system:discovery", [.group("system:authenticated")]),
            b("system:kube-scheduler", "system:kube-scheduler", [.user("system:kube-scheduler")]),
            b("system:kube-controller-manager", "system:kube-controller-manager", [.user("system:kube-controller-manager")]),
            b("system:node", "system:node", [.group("system:nodes")]),
            b("system:node-bootstrapper", "system:node-bootstrapper", [.group("system:bootstrappers")]),
        ]
    }
}

extension Registry {
    /// Writes the bootstrap ClusterRoles and bindings: missing ones are created, and those still
    /// marked for auto-update get the current rules (and subjects) back.
    func bootstrapRBAC() async throws {
        func ensure<T: ServedKind>(_ obj: T, same: (T, T) -> Bool, refresh: (inout T, T) -> Void) async throws {
            let key = Objects.key(T.resource, nil, obj.name)
            if let cur = store.get(key), var old = try? KubeJSON.decode(T.self, from: cur.data) {
                if old.metadata.annotations?["rbac.authorization.kubernetes.io/autoupdate"] == "false" || same(old, obj) { return }
                refresh(&old, obj)
                _ = try await update(T.self, namespace: nil, name: obj.name, body: try JSONValue.from(old), subresource: nil, validation: .strict)
                return
            }
            do { _ = try await create(T.self, namespace: nil, body: try JSONValue.from(obj), validation: .strict) }
            catch let s as Status where s.code == 409 {}
        }
        for r in BootstrapPolicy.clusterRoles {
            try await ensure(r, same: { $0.rules == $1.rules }, refresh: { $0.rules = $1.rules })
        }
        for b in BootstrapPolicy.clusterRoleBindings {
            try await ensure(b, same: { Set($0.subjects ?? []).isSuperset(of: $1.subjects ?? []) }, refresh: { old, new in
                old.subjects = (old.subjects ?? []) + (new.subjects ?? []).filter { !(old.subjects ?? []).contains($0) }
            })
        }
    }
}
