// authorization.k8s.io/v1 SelfSubjectAccessReview and SelfSubjectRulesReview: "may I?" answered
// from the same authorizer that guards every request (kubectl auth can-i, with --as through
// impersonation, and --list from the caller's RBAC rules).
import Foundation
import Hummingbird
import API
import PKI

enum Reviews {
    static let accessReviews = ResourceInfo(group: "authorization.k8s.io", version: "v1", kind: "SelfSubjectAccessReview",
                                            plural: "selfsubjectaccessreviews", namespaced: false)
    static let rulesReviews = ResourceInfo(group: "authorization.k8s.io", version: "v1", kind: "SelfSubjectRulesReview",
                                           plural: "selfsubjectrulesreviews", namespaced: false)
    static let all = [accessReviews, rulesReviews]
    static let verbs = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
}

extension APIHandler {
    /// POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews or selfsubjectrulesreviews.
    func review(_ request: Request, identity: CertIdentity, plural: String) async throws -> Response {
        var body = try await readJSON(request)
        guard case .object = body else { throw Status.badRequest("the body must be a JSON object") }
        let info = plural == Reviews.accessReviews.plural ? Reviews.accessReviews : Reviews.rulesReviews
        if let k = body["kind"]?.stringValue, k != info.kind {
            throw Status.badRequest("the kind \"\(k)\" in the body does not match the resource \"\(info.groupResource)\" (kind \"\(info.kind)\")")
        }
        if let m = Schema.kind(apiVersion: info.apiVersion, kind: info.kind) {
            let unknown = Schema.unknownFields(body, message: m.name)
            if !unknown.isEmpty { throw Status.strictDecoding(unknown) }
        }
        body["apiVersion"] = .string(info.apiVersion)
        body["kind"] = .string(info.kind)
        if body["metadata"] == nil { body["metadata"] = .object([:]) }
        body["metadata"]?["creationTimestamp"] = .null
        let status: JSONValue = info == Reviews.accessReviews ? try accessStatus(body["spec"] ?? .null, identity)
                                                              : rulesStatus(namespace: body["spec"]?["namespace"]?.stringValue ?? "", identity)
        body["status"] = status
        return Self.encoded(201, try body.encoded(), protobuf: Self.prefersProtobuf(request.headers[.accept] ?? ""))
    }

    func accessStatus(_ spec: JSONValue, _ identity: CertIdentity) throws -> JSONValue {
        func answer(_ allowed: Bool, _ reason: String) -> JSONValue {
            var o: [String: JSONValue] = ["allowed": .bool(allowed)]
            if !reason.isEmpty { o["reason"] = .string(reason) }
            return .object(o)
        }
        let admin = identity.groups.contains(Authorizer.mastersGroup)
        if let nr = spec["nonResourceAttributes"], case .object = nr {
            let path = nr["path"]?.stringValue ?? "", verb = nr["verb"]?.stringValue ?? ""
            if case .deny(let msg) = authz.authorize(user: identity, verb: verb, path: path) { return answer(false, msg) }
            return answer(true, "")
        }
        guard let ra = spec["resourceAttributes"], case .object = ra else {
            throw Status.invalid(Reviews.accessReviews, "", [FieldError(.required, "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
        }
        let verb = ra["verb"]?.stringValue ?? "", resource = ra["resource"]?.stringValue ?? "", group = ra["group"]?.stringValue ?? ""
        let sub = ra["subresource"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let ns = ra["namespace"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let name = ra["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        if admin { return answer(true, "") }
        // A resource this server does not serve (users, for impersonation, or another cluster's
        // kinds) is still answered by RBAC, as Kubernetes does.
        let info = Resources.all.first(where: { $0.plural == resource && (group == "*" || $0.group == group) })
            ?? ResourceInfo(group: group, version: "v1", kind: resource, plural: resource, namespaced: ns != nil)
        let verbs = verb == "*" ? Reviews.verbs : [verb]
        for v in verbs {
            let attrs = RequestAttributes(user: identity, verb: v, resource: info, subresource: sub, namespace: info.namespaced ? ns : nil,
                                          name: name, fieldNodeName: nil)
            switch authz.authorize(attrs) {
            case .allow: continue
            case .allowIfNamed(let n):
                if name == n { continue }
                return answer(false, "only the object named \"\(n)\" may be created")
            case .allowIfBoundTo(let node):
                if let name, let o = store.get(Objects.key(info, ns, name)), o.fields["spec.nodeName"] == node { continue }
                return answer(false, "node \"\(node)\" may only reach pods bound to it")
            case .allowIfPinnedTo(let node):
                if let name, let o = store.get(Objects.key(info, ns, name)), (try? KubeJSON.decode(PersistentVolume.self, from: o.data))?.pinnedNode == node { continue }
                return answer(false, "node \"\(node)\" may only finish the deletion of volumes on it")
            case .allowIfTokenForPodOn(let node):
                return answer(false, "node \"\(node)\" may only ask for tokens bound to pods on it")
            case .deny(let msg): return answer(false, msg)
            }
        }
        return answer(true, "")
    }

    /// What the caller may do in a namespace, as RBAC grants it (kubectl auth can-i --list). For
    /// nodes the node restriction narrows these further, so their answer is marked incomplete.
    func rulesStatus(namespace: String, _ identity: CertIdentity) -> JSONValue {
        if identity.groups.contains(Authorizer.mastersGroup) {
            let all: JSONValue = .array([.string("*")])
            return .object(["resourceRules": .array([.object(["verbs": all, "apiGroups": all, "resources": all])]),
                            "nonResourceRules": .array([.object(["verbs": all, "nonResourceURLs": all])]), "incomplete": false])
        }
        let rules = registry.rbac.rules(user: identity.user, groups: identity.groups, namespace: namespace.isEmpty ? nil : namespace)
        func strings(_ xs: [String]?) -> JSONValue { .array((xs ?? []).map { .string($0) }) }
        var resourceRules: [JSONValue] = [], nonResourceRules: [JSONValue] = []
        for r in rules {
            if let urls = r.nonResourceURLs, !urls.isEmpty {
                nonResourceRules.append(.object(["verbs": strings(r.verbs), "nonResourceURLs": strings(urls)]))
            } else {
                var o: [String: JSONValue] = ["verbs": strings(r.verbs), "apiGroups": strings(r.apiGroups), "resources": strings(r.resources)]
                if let n = r.resourceNames, !n.isEmpty { o["resourceNames"] = strings(n) }
                resourceRules.append(.object(o))
            }
        }
        return .object(["resourceRules": .array(resourceRules), "nonResourceRules": .array(nonResourceRules),
                        "incomplete": .bool(Authorizer.nodeName(identity) != nil)])
    }
}
