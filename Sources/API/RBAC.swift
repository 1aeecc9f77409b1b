// rbac.authorization.k8s.io/v1: Role and ClusterRole (sets of rules), RoleBinding and
// ClusterRoleBinding (who holds a role, in one namespace or everywhere). The apiserver's RBAC
// authorizer evaluates them; the rule matching lives here so ctl and tests share it.
import Foundation

public struct PolicyRule: Codable, Hashable, Sendable {
    public var verbs: [String]
    public var apiGroups: [String]?
    public var resources: [String]?
    public var resourceNames: [String]?
    public var nonResourceURLs: [String]?
    public init(verbs: [String], apiGroups: [String]? = nil, resources: [String]? = nil, resourceNames: [String]? = nil, nonResourceURLs: [String]? = nil) {
        self.verbs = verbs; self.apiGroups = apiGroups; self.resources = resources; self.resourceNames = resourceNames; self.nonResourceURLs = nonResourceURLs
    }
    public init(_ verbs: [String], _ groups: [String], _ resources: [String], names: [String]? = nil) {
        self.init(verbs: verbs, apiGroups: groups, resources: resources, resourceNames: names)
    }
    public init(urls: [String], _ verbs: [String]) { self.init(verbs: verbs, nonResourceURLs: urls) }

    // MARK: matching a request

    public func matchesVerb(_ v: String) -> Bool { verbs.contains("*") || verbs.contains(v) }
    public func matchesGroup(_ g: String) -> Bool { let gs = apiGroups ?? []; return gs.contains("*") || gs.contains(g) }
    /// "pods", "pods/log"; "*" matches everything and "*/log" every resource's log subresource.
    public func matchesResource(_ resource: String, subresource: String?) -> Bool {
        let combined = subresource.map { "\(resource)/\($0)" } ?? resource
        for r in resources ?? [] {
            if r == "*" || r == combined { return true }
            if let sub = subresource, r == "*/\(sub)" { return true }
        }
        return false
    }
    public func matchesName(_ name: String?) -> Bool {
        guard let names = resourceNames, !names.isEmpty else { return true }
        guard let name, !name.isEmpty else { return false }
        return names.contains(name)
    }
    public func matchesURL(_ path: String) -> Bool {
        for u in nonResourceURLs ?? [] {
            if u == "*" || u == path { return true }
            if u.hasSuffix("*"), path.hasPrefix(String(u.dropLast())) { return true }
        }
        return false
    }
    public func allows(verb: String, group: String, resource: String, subresource: String?, name: String?) -> Bool {
        matchesVerb(verb) && matchesGroup(group) && matchesResource(resource, subresource: subresource) && matchesName(name)
    }
    public func allows(verb: String, url: String) -> Bool { matchesVerb(verb) && matchesURL(url) }

    // MARK: coverage (escalation prevention)

    /// The rule split into rules of one verb, group, resource and name (or URL): what must each be
    /// covered by some rule its creator holds.
    public var atoms: [PolicyRule] {
        var out: [PolicyRule] = []
        for v in verbs {
            for u in nonResourceURLs ?? [] { out.append(PolicyRule(verbs: [v], nonResourceURLs: [u])) }
            for g in apiGroups ?? [] {
                for r in resources ?? [] {
                    if let names = resourceNames, !names.isEmpty {
                        for n in names { out.append(PolicyRule(verbs: [v], apiGroups: [g], resources: [r], resourceNames: [n])) }
                    } else {
                        out.append(PolicyRule(verbs: [v], apiGroups: [g], resources: [r]))
                    }
                }
            }
        }
        return out
    }

    /// Whether this rule grants everything an atom (one verb, group, resource, name or URL) grants.
    public func covers(atom a: PolicyRule) -> Bool {
        guard let v = a.verbs.first, verbs.contains("*") || verbs.contains(v) else { return false }
        if let u = a.nonResourceURLs?.first {
            for mine in nonResourceURLs ?? [] {
                if mine == "*" || mine == u { return true }
                if mine.hasSuffix("*"), u.hasPrefix(String(mine.dropLast())) { return true }
            }
            return false
        }
        guard let g = a.apiGroups?.first, let r = a.resources?.first else { return false }
        let gs = apiGroups ?? []
        guard gs.contains("*") || gs.contains(g) else { return false }
        let rs = resources ?? []
        var resourceOK = rs.contains("*") || rs.contains(r)
        if !resourceOK, let slash = r.firstIndex(of: "/") { resourceOK = rs.contains("*" + r[slash...]) }
        guard resourceOK else { return false }
        guard let mine = resourceNames, !mine.isEmpty else { return true }
        guard let n = a.resourceNames?.first else { return false }
        return mine.contains(n)
    }

    /// Kubernetes' compact rendering, as its escalation errors list the rules not held.
    public var compactString: String {
        func list(_ xs: [String]?) -> String { "[" + (xs ?? []).map { "\"\($0)\"" }.joined(separator: " ") + "]" }
        var parts: [String] = []
        if let g = apiGroups, !g.isEmpty { parts.append("APIGroups:\(list(g))") }
        if let r = resources, !r.isEmpty { parts.append("Resources:\(list(r))") }
        if let n = resourceNames, !n.isEmpty { parts.append("ResourceNames:\(list(n))") }
        if let u = nonResourceURLs, !u.isEmpty { parts.append("NonResourceURLs:\(list(u))") }
        parts.append("Verbs:\(list(verbs))")
        return "{" + parts.joined(separator: ", ") + "}"
    }
}

public struct AggregationRule: Codable, Hashable, Sendable {
    public var clusterRoleSelectors: [LabelSelector]?
}

public struct Subject: Codable, Hashable, Sendable {
    public var kind: String
    public var apiGroup: String?
    public var name: String
    public var namespace: String?
    public init(kind: String, name: String, namespace: String? = nil) {
        self.kind = kind; self.name = name; self.namespace = namespace
        apiGroup = kind == "ServiceAccount" ? "" : RBAC.group
    }
    public static func user(_ n: String) -> Subject { Subject(kind: "User", name: n) }
    public static func group(_ n: String) -> Subject { Subject(kind: "Group", name: n) }
    public static func serviceAccount(_ n: String, namespace: String) -> Subject { Subject(kind: "ServiceAccount", name: n, namespace: namespace) }

    /// Whether a user with these groups is this subject (a ServiceAccount subject without a
    /// namespace, in a RoleBinding, means the binding's).
    public func matches(user: String, groups: [String], bindingNamespace: String) -> Bool {
        switch kind {
        case "User": return user == name
        case "Group": return groups.contains(name)
        case "ServiceAccount":
            let ns = (namespace ?? "").isEmpty ? bindingNamespace : namespace!
            return user == "system:serviceaccount:\(ns):\(name)"
        default: return false
        }
    }

    func validate(_ path: String, namespaced: Bool) -> [FieldError] {
        var errs: [FieldError] = []
        switch kind {
        case "ServiceAccount":
            if let e = Validation.dns1123Subdomain(name), !name.isEmpty { errs.append(.init(.invalid, "\(path).name", "\"\(name)\": \(e)")) }
            if let g = apiGroup, !g.isEmpty { errs.append(.init(.notSupported, "\(path).apiGroup", "\"\(g)\": supported values: \"\"")) }
            if !namespaced && (namespace ?? "").isEmpty { errs.append(.init(.required, "\(path).namespace", "")) }
        case "User", "Group":
            if apiGroup != RBAC.group { errs.append(.init(.notSupported, "\(path).apiGroup", "\"\(apiGroup ?? "")\": supported values: \"\(RBAC.group)\"")) }
        default:
            errs.append(.init(.notSupported, "\(path).kind", "\"\(kind)\": supported values: \"ServiceAccount\", \"User\", \"Group\""))
        }
        if name.isEmpty { errs.append(.init(.required, "\(path).name", "")) }
        return errs
    }
}

public struct RoleRef: Codable, Hashable, Sendable {
    public var apiGroup: String
    public var kind: String
    public var name: String
    public init(kind: String, name: String) { apiGroup = RBAC.group; self.kind = kind; self.name = name }
}

public enum RBAC {
    public static let group = "rbac.authorization.k8s.io"

    static func validate(rules: [PolicyRule]?, namespaced: Bool) -> [FieldError] {
        var errs: [FieldError] = []
        for (i, r) in (rules ?? []).enumerated() {
            let p = "rules[\(i)]"
            if r.verbs.isEmpty { errs.append(.init(.required, "\(p).verbs", "verbs must contain at least one value")) }
            let urls = r.nonResourceURLs ?? []
            if !urls.isEmpty {
                if namespaced { errs.append(.init(.invalid, "\(p).nonResourceURLs", "\(urls): namespaced rules cannot apply to non-resource URLs")) }
                if !(r.apiGroups ?? []).isEmpty || !(r.resources ?? []).isEmpty {
                    errs.append(.init(.invalid, "\(p).nonResourceURLs", "\(urls): rules cannot apply to both regular resources and non-resource URLs"))
                }
                for u in urls where !u.hasPrefix("/") && u != "*" {
                    errs.append(.init(.invalid, "\(p).nonResourceURLs", "\"\(u)\": must start with '/' or be '*'"))
                }
                continue
            }
            if (r.apiGroups ?? []).isEmpty { errs.append(.init(.required, "\(p).apiGroups", "resource rules must supply at least one api group")) }
            if (r.resources ?? []).isEmpty { errs.append(.init(.required, "\(p).resources", "resource rules must supply at least one resource")) }
        }
        return errs
    }

    static func validate(roleRef: RoleRef, kinds: [String]) -> [FieldError] {
        var errs: [FieldError] = []
        if roleRef.apiGroup != group { errs.append(.init(.notSupported, "roleRef.apiGroup", "\"\(roleRef.apiGroup)\": supported values: \"\(group)\"")) }
        if !kinds.contains(roleRef.kind) {
            errs.append(.init(.notSupported, "roleRef.kind", "\"\(roleRef.kind)\": supported values: " + kinds.map { "\"\($0)\"" }.joined(separator: ", ")))
        }
        if roleRef.name.isEmpty { errs.append(.init(.required, "roleRef.name", "")) }
        else if let e = Validation.pathSegmentName(roleRef.name) { errs.append(.init(.invalid, "roleRef.name", "\"\(roleRef.name)\": \(e)")) }
        return errs
    }
}

public struct Role: KubeObject, Hashable {
    public static let resource = Resources.roles
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var rules: [PolicyRule]?
    public init(name: String, namespace: String, rules: [PolicyRule]) {
        apiVersion = "\(RBAC.group)/v1"; kind = "Role"; metadata = ObjectMeta(name: name, namespace: namespace); self.rules = rules
    }
}

public struct ClusterRole: KubeObject, Hashable {
    public static let resource = Resources.clusterroles
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var rules: [PolicyRule]?
    public var aggregationRule: AggregationRule?
    public init(name: String, rules: [PolicyRule]) {
        apiVersion = "\(RBAC.group)/v1"; kind = "ClusterRole"; metadata = ObjectMeta(name: name); self.rules = rules
    }
}

public struct RoleBinding: KubeObject, Hashable {
    public static let resource = Resources.rolebindings
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var subjects: [Subject]?
    public var roleRef: RoleRef
    public init(name: String, namespace: String, roleRef: RoleRef, subjects: [Subject]) {
        apiVersion = "\(RBAC.group)/v1"; kind = "RoleBinding"; metadata = ObjectMeta(name: name, namespace: namespace)
        self.roleRef = roleRef; self.subjects = subjects
    }
}

public struct ClusterRoleBinding: KubeObject, Hashable {
    public static let resource = Resources.clusterrolebindings
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var subjects: [Subject]?
    public var roleRef: RoleRef
    public init(name: String, roleRef: RoleRef, subjects: [Subject]) {
        apiVersion = "\(RBAC.group)/v1"; kind = "ClusterRoleBinding"; metadata = ObjectMeta(name: name)
        self.roleRef = roleRef; self.subjects = subjects
    }
}

extension Role: ServedKind {
    public func validate() -> [FieldError] {
        Validation.metadata(metadata, namespaced: true, name: Validation.pathSegmentName) + RBAC.validate(rules: rules, namespaced: true)
    }
}

extension ClusterRole: ServedKind {
    public func validate() -> [FieldError] {
        Validation.metadata(metadata, namespaced: false, name: Validation.pathSegmentName) + RBAC.validate(rules: rules, namespaced: false)
    }
}

extension RBAC {
    /// A RoleBinding (namespaced) or ClusterRoleBinding: its name, role reference and subjects.
    static func validateBinding(_ m: ObjectMeta, roleRef: RoleRef, subjects: [Subject]?, namespaced: Bool) -> [FieldError] {
        var errs = Validation.metadata(m, namespaced: namespaced, name: Validation.pathSegmentName)
        errs += validate(roleRef: roleRef, kinds: namespaced ? ["Role", "ClusterRole"] : ["ClusterRole"])
        for (i, s) in (subjects ?? []).enumerated() { errs += s.validate("subjects[\(i)]", namespaced: namespaced) }
        return errs
    }
    /// A binding's role reference is fixed once made.
    static func sameRoleRef(_ old: RoleRef, _ new: RoleRef) -> [FieldError] {
        old == new ? [] : [.init(.invalid, "roleRef", "\(new.kind)/\(new.name): cannot change roleRef")]
    }
}

extension RoleBinding: ServedKind {
    public func validate() -> [FieldError] { RBAC.validateBinding(metadata, roleRef: roleRef, subjects: subjects, namespaced: true) }
    public func validateUpdate(old: RoleBinding) -> [FieldError] { RBAC.sameRoleRef(old.roleRef, roleRef) }
}

extension ClusterRoleBinding: ServedKind {
    public func validate() -> [FieldError] { RBAC.validateBinding(metadata, roleRef: roleRef, subjects: subjects, namespaced: false) }
    public func validateUpdate(old: ClusterRoleBinding) -> [FieldError] { RBAC.sameRoleRef(old.roleRef, roleRef) }
}

extension Role: TablePrintable {
    public static let columns = [nameCol, TableColumn("Created At", "date")]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string(metadata.creationTimestamp ?? "")] }
}

extension ClusterRole: TablePrintable {
    public static let columns = [nameCol, TableColumn("Created At", "date")]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string(metadata.creationTimestamp ?? "")] }
}

extension RoleBinding: TablePrintable {
    public static let columns = [nameCol, TableColumn("Role"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string("\(roleRef.kind)/\(roleRef.name)"), age] }
}

extension ClusterRoleBinding: TablePrintable {
    public static let columns = [nameCol, TableColumn("Role"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .string("\(roleRef.kind)/\(roleRef.name)"), age] }
}
