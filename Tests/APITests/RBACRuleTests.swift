import Testing
import API

@Suite struct RBACRuleTests {
    @Test func matchingRequests() {
        let r = PolicyRule(["get", "list"], ["", "apps"], ["pods", "deployments/scale", "*/status"])
        #expect(r.allows(verb: "get", group: "", resource: "pods", subresource: nil, name: "x"))
        #expect(!r.allows(verb: "delete", group: "", resource: "pods", subresource: nil, name: "x"))
        #expect(!r.allows(verb: "get", group: "", resource: "pods", subresource: "log", name: "x"))      // subresources are named
        #expect(r.allows(verb: "get", group: "apps", resource: "deployments", subresource: "scale", name: nil))
        #expect(!r.allows(verb: "get", group: "apps", resource: "deployments", subresource: nil, name: nil))
        #expect(r.allows(verb: "get", group: "apps", resource: "statefulsets", subresource: "status", name: nil))
        #expect(!r.allows(verb: "get", group: "batch", resource: "pods", subresource: nil, name: nil))
        let named = PolicyRule(["get", "update"], [""], ["configmaps"], names: ["app"])
        #expect(named.allows(verb: "get", group: "", resource: "configmaps", subresource: nil, name: "app"))
        #expect(!named.allows(verb: "get", group: "", resource: "configmaps", subresource: nil, name: "other"))
        #expect(!named.allows(verb: "list", group: "", resource: "configmaps", subresource: nil, name: nil))
        let star = PolicyRule(["*"], ["*"], ["*"])
        #expect(star.allows(verb: "escalate", group: "rbac.authorization.k8s.io", resource: "roles", subresource: nil, name: "r"))
        let urls = PolicyRule(urls: ["/healthz", "/logs/*"], ["get"])
        #expect(urls.allows(verb: "get", url: "/healthz"))
        #expect(urls.allows(verb: "get", url: "/logs/kube.log"))
        #expect(!urls.allows(verb: "get", url: "/metrics"))
        #expect(!urls.allows(verb: "post", url: "/healthz"))
    }

    @Test func coverageForEscalationChecks() {
        let mine = [PolicyRule(["get", "list", "watch"], [""], ["pods", "*/log"]), PolicyRule(["get"], [""], ["configmaps"], names: ["a", "b"])]
        func covered(_ r: PolicyRule) -> Bool { r.atoms.allSatisfy { a in mine.contains { $0.covers(atom: a) } } }
        #expect(covered(PolicyRule(["get", "list"], [""], ["pods"])))
        #expect(covered(PolicyRule(["get"], [""], ["pods/log"])))
        #expect(!covered(PolicyRule(["delete"], [""], ["pods"])))
        #expect(!covered(PolicyRule(["*"], [""], ["pods"])))                         // a wildcard needs a wildcard
        #expect(covered(PolicyRule(["get"], [""], ["configmaps"], names: ["a"])))
        #expect(!covered(PolicyRule(["get"], [""], ["configmaps"])))               // all names needs all names
        #expect(!covered(PolicyRule(["get"], ["apps"], ["pods"])))
        #expect(!covered(PolicyRule(urls: ["/metrics"], ["get"])))
        #expect(PolicyRule(["delete"], [""], ["pods"]).atoms.first?.compactString == "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}")
    }

    @Test func subjectsMatchUsersGroupsAndServiceAccounts() {
        #expect(Subject.user("alice").matches(user: "alice", groups: [], bindingNamespace: "a"))
        #expect(!Subject.user("alice").matches(user: "bob", groups: ["alice"], bindingNamespace: "a"))
        #expect(Subject.group("devs").matches(user: "bob", groups: ["devs"], bindingNamespace: "a"))
        #expect(Subject.serviceAccount("ci", namespace: "a").matches(user: "system:serviceaccount:a:ci", groups: [], bindingNamespace: "b"))
        #expect(!Subject.serviceAccount("ci", namespace: "a").matches(user: "system:serviceaccount:b:ci", groups: [], bindingNamespace: "b"))
        var noNS = Subject.serviceAccount("ci", namespace: "")
        noNS.namespace = nil
        #expect(noNS.matches(user: "system:serviceaccount:b:ci", groups: [], bindingNamespace: "b"))
    }
}
