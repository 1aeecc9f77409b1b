// RBAC, ServiceAccount tokens and user certificates against a real apiserver: the table of
// authorization attempts that docs/security.md shows, escalation prevention, token checks,
// impersonation and access reviews.
import Testing
import Foundation
import API
import APIServer
import Client
import Controllers
import PKI

/// One authorization attempt: who asks for what, and the HTTP status it must get.
struct Attempt {
    var who: String
    var request: String
    var expect: Int
    var run: () async throws -> Int
}

func code(_ f: () async throws -> Void) async -> Int {
    do { try await f(); return 200 } catch let s as Status { return s.code ?? 500 } catch { return -1 }
}

func rawCode(_ k: KubeClient, _ method: KubeHTTPMethod, _ path: String, _ body: JSONValue? = nil, headers: [(String, String)] = []) async throws -> Int {
    try await k.request(method, path, body: try body?.encoded(), headers: headers).status
}

func tokenClient(_ c: TestCluster, _ token: String) throws -> KubeClient {
    try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: nil, keyPEM: nil, token: token, namespace: "default", tlsServerName: nil))
}

func ns(_ name: String) -> Namespace { Namespace(name: name) }

@Suite(.serialized) struct RBACTests {
    static let docPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/security.md").path

    /// Sets up two team namespaces, roles and bindings, and tries 29 requests as users, groups,
    /// ServiceAccounts, a node and the control plane. docs/security.md carries the same table.
    @Test func authorizationTable() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        for n in ["team-a", "team-b"] { _ = try await admin.create(ns(n)) }
        _ = try await admin.create(Role(name: "pod-reader", namespace: "team-a", rules: [PolicyRule(["get", "list", "watch"], [""], ["pods"])]))
        _ = try await admin.create(RoleBinding(name: "alice-reads", namespace: "team-a", roleRef: RoleRef(kind: "Role", name: "pod-reader"), subjects: [.user("alice")]))
        _ = try await admin.create(ClusterRoleBinding(name: "auditors-view", roleRef: RoleRef(kind: "ClusterRole", name: "view"), subjects: [.group("auditors")]))
        _ = try await admin.create(RoleBinding(name: "devs-edit", namespace: "team-a", roleRef: RoleRef(kind: "ClusterRole", name: "edit"), subjects: [.group("devs")]))
        _ = try await admin.create(RoleBinding(name: "erin-admin", namespace: "team-a", roleRef: RoleRef(kind: "ClusterRole", name: "admin"), subjects: [.user("erin")]))
        _ = try await admin.create(Role(name: "one-config", namespace: "team-a", rules: [PolicyRule(["get"], [""], ["configmaps"], names: ["app-config"])]))
        _ = try await admin.create(RoleBinding(name: "bob-one-config", namespace: "team-a", roleRef: RoleRef(kind: "Role", name: "one-config"), subjects: [.user("bob")]))
        for n in ["app-config", "other"] { _ = try await admin.create(ConfigMap(name: n, namespace: "team-a")) }
        for sa in ["ci", "nobody"] { _ = try await admin.create(ServiceAccount(name: sa, namespace: "team-a")) }
        _ = try await admin.create(RoleBinding(name: "ci-edit", namespace: "team-a", roleRef: RoleRef(kind: "ClusterRole", name: "edit"),
                                               subjects: [.serviceAccount("ci", namespace: "team-a")]))
        var runner = pod("runner", node: "n1", ns: "team-a"); runner.spec?.serviceAccountName = "ci"
        runner = try await admin.create(runner)
        var idle = pod("idle", node: "n1", ns: "team-a"); idle.spec?.serviceAccountName = "nobody"
        idle = try await admin.create(idle)
        _ = try await admin.create(pod("elsewhere", node: "n2", ns: "team-a"))
        _ = try await admin.create(Node(name: "n2"))
        let ciToken = try await admin.requestToken(serviceAccount: "ci", namespace: "team-a", expirationSeconds: 3600, boundPod: ("runner", runner.metadata.uid!)).token
        let nobodyToken = try await admin.requestToken(serviceAccount: "nobody", namespace: "team-a", expirationSeconds: 3600, boundPod: ("idle", idle.metadata.uid!)).token

        let alice = try c.client(user: "alice", groups: [])
        let bob = try c.client(user: "bob", groups: [])
        let carol = try c.client(user: "carol", groups: ["auditors"])
        let dave = try c.client(user: "dave", groups: ["devs"])
        let erin = try c.client(user: "erin", groups: [])
        let ci = try tokenClient(c, ciToken)
        let nobody = try tokenClient(c, nobodyToken)
        let node = try c.client(user: "system:node:n1", groups: ["system:nodes"])
        let sched = try c.client(user: "system:kube-scheduler", groups: [])
        let cm = try c.client(user: "system:kube-controller-manager", groups: [])
        let anon = try c.anonymous()
        let deploy = try JSONValue.parse(Data("""
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},
             "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}
            """.utf8))
        let secretsRole = Role(name: "secret-reader", namespace: "team-a", rules: [PolicyRule(["get", "list"], [""], ["secrets"])])
        let nodesRole = Role(name: "node-lister", namespace: "team-a", rules: [PolicyRule(["list"], [""], ["nodes"])])
        func rb(_ name: String, _ kind: String, _ role: String) -> RoleBinding {
            RoleBinding(name: name, namespace: "team-a", roleRef: RoleRef(kind: kind, name: role), subjects: [.user("mallory")])
        }

        let table: [Attempt] = [
            Attempt(who: "alice", request: "list pods in team-a", expect: 200) { try await rawCode(alice, .GET, "/api/v1/namespaces/team-a/pods") },
            Attempt(who: "alice", request: "list pods in team-b", expect: 403) { try await rawCode(alice, .GET, "/api/v1/namespaces/team-b/pods") },
            Attempt(who: "alice", request: "delete pod runner in team-a", expect: 403) { try await rawCode(alice, .DELETE, "/api/v1/namespaces/team-a/pods/runner") },
            Attempt(who: "alice", request: "list secrets in team-a", expect: 403) { try await rawCode(alice, .GET, "/api/v1/namespaces/team-a/secrets") },
            Attempt(who: "bob", request: "get configmap app-config in team-a (resourceNames)", expect: 200) {
                try await rawCode(bob, .GET, "/api/v1/namespaces/team-a/configmaps/app-config") },
            Attempt(who: "bob", request: "get configmap other in team-a", expect: 403) { try await rawCode(bob, .GET, "/api/v1/namespaces/team-a/configmaps/other") },
            Attempt(who: "bob", request: "list configmaps in team-a", expect: 403) { try await rawCode(bob, .GET, "/api/v1/namespaces/team-a/configmaps") },
            Attempt(who: "carol (group auditors: view everywhere)", request: "list deployments in team-b", expect: 200) {
                try await rawCode(carol, .GET, "/apis/apps/v1/namespaces/team-b/deployments") },
            Attempt(who: "carol (group auditors)", request: "list secrets in team-b", expect: 403) { try await rawCode(carol, .GET, "/api/v1/namespaces/team-b/secrets") },
            Attempt(who: "carol (group auditors)", request: "create deployment in team-b", expect: 403) {
                try await rawCode(carol, .POST, "/apis/apps/v1/namespaces/team-b/deployments", deploy) },
            Attempt(who: "dave (group devs: edit in team-a)", request: "create deployment in team-a", expect: 201) {
                try await rawCode(dave, .POST, "/apis/apps/v1/namespaces/team-a/deployments", deploy) },
            Attempt(who: "dave (group devs)", request: "create deployment in team-b", expect: 403) {
                try await rawCode(dave, .POST, "/apis/apps/v1/namespaces/team-b/deployments", deploy) },
            Attempt(who: "dave (group devs)", request: "create rolebinding in team-a", expect: 403) {
                try await rawCode(dave, .POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings", try JSONValue.from(rb("x", "ClusterRole", "view"))) },
            Attempt(who: "erin (admin in team-a)", request: "create role granting secrets in team-a", expect: 201) {
                try await rawCode(erin, .POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles", try JSONValue.from(secretsRole)) },
            Attempt(who: "erin (admin in team-a)", request: "create role granting list nodes (escalation)", expect: 403) {
                try await rawCode(erin, .POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles", try JSONValue.from(nodesRole)) },
            Attempt(who: "erin (admin in team-a)", request: "bind ClusterRole view in team-a", expect: 201) {
                try await rawCode(erin, .POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings", try JSONValue.from(rb("m-view", "ClusterRole", "view"))) },
            Attempt(who: "erin (admin in team-a)", request: "bind ClusterRole cluster-admin in team-a (escalation)", expect: 403) {
                try await rawCode(erin, .POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings", try JSONValue.from(rb("m-all", "ClusterRole", "cluster-admin"))) },
            Attempt(who: "ServiceAccount team-a/ci (edit in team-a)", request: "create configmap in team-a", expect: 201) {
                try await rawCode(ci, .POST, "/api/v1/namespaces/team-a/configmaps", try JSONValue.from(ConfigMap(name: "from-ci", namespace: "team-a"))) },
            Attempt(who: "ServiceAccount team-a/ci", request: "list pods in team-b", expect: 403) { try await rawCode(ci, .GET, "/api/v1/namespaces/team-b/pods") },
            Attempt(who: "ServiceAccount team-a/nobody (no binding)", request: "list pods in team-a", expect: 403) {
                try await rawCode(nobody, .GET, "/api/v1/namespaces/team-a/pods") },
            Attempt(who: "node n1", request: "get pod runner (bound to n1)", expect: 200) { try await rawCode(node, .GET, "/api/v1/namespaces/team-a/pods/runner") },
            Attempt(who: "node n1", request: "get pod elsewhere (bound to n2)", expect: 403) { try await rawCode(node, .GET, "/api/v1/namespaces/team-a/pods/elsewhere") },
            Attempt(who: "node n1", request: "patch node n2", expect: 403) {
                await code { _ = try await node.patch(Node.self, "n2", mergePatch: .object(["metadata": .object(["labels": .object(["x": "y"])])])) } },
            Attempt(who: "node n1", request: "token for ServiceAccount ci bound to pod runner (on n1)", expect: 200) {
                await code { _ = try await node.requestToken(serviceAccount: "ci", namespace: "team-a", expirationSeconds: 3600, boundPod: ("runner", runner.metadata.uid!)) } },
            Attempt(who: "node n1", request: "token for ServiceAccount default, unbound", expect: 403) {
                await code { _ = try await node.requestToken(serviceAccount: "default", namespace: "team-a", expirationSeconds: 3600) } },
            Attempt(who: "system:kube-scheduler", request: "delete pod elsewhere in team-a", expect: 403) {
                await code { try await sched.delete(Pod.self, "elsewhere", namespace: "team-a") } },
            Attempt(who: "system:kube-controller-manager", request: "create secret in team-a", expect: 403) {
                await code { _ = try await cm.create(Secret(name: "s", namespace: "team-a")) } },
            Attempt(who: "admin (group system:masters)", request: "delete namespace team-b (finalized later)", expect: 202) {
                try await rawCode(admin, .DELETE, "/api/v1/namespaces/team-b") },
            Attempt(who: "no credentials", request: "list pods in team-a", expect: 401) { try await rawCode(anon, .GET, "/api/v1/namespaces/team-a/pods") },
        ]
        // RBAC changes reach the authorizer through a watch: wait until the last binding counts.
        _ = try await eventually(10, "bindings seen") { try await rawCode(bob, .GET, "/api/v1/namespaces/team-a/configmaps/app-config") == 200 ? true : nil }
        _ = try await eventually(10, "bindings seen") { try await rawCode(ci, .GET, "/api/v1/namespaces/team-a/pods") == 200 ? true : nil }
        var rows: [String] = []
        for (i, a) in table.enumerated() {
            let got = try await a.run()
            #expect(got == a.expect, "\(i + 1). \(a.who): \(a.request): got \(got), want \(a.expect)")
            rows.append("| \(i + 1) | \(a.who) | \(a.request) | \(a.expect) | \(got) |")
        }
        #expect(table.count >= 20)
        // The document shows exactly this table.
        let doc = (try? String(contentsOfFile: Self.docPath, encoding: .utf8)) ?? ""
        let shown = doc.components(separatedBy: "\n").filter { $0.hasPrefix("| ") && Int($0.dropFirst(2).prefix { $0.isNumber }) != nil }
        #expect(shown == rows, "docs/security.md's table differs; it should read:\n\(rows.joined(separator: "\n"))")
    }

    @Test func forbiddenMessagesNameUserVerbAndResource() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(ServiceAccount(name: "robot", namespace: "default"))
        var p = pod("r"); p.spec?.serviceAccountName = "robot"
        p = try await admin.create(p)
        let tok = try await admin.requestToken(serviceAccount: "robot", namespace: "default", expirationSeconds: 600, boundPod: ("r", p.metadata.uid!)).token
        let robot = try tokenClient(c, tok)
        await #expect { _ = try await robot.list(Pod.self) } throws: {
            status($0)?.code == 403 && status($0)?.message == "pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        }
        // Bound by a RoleBinding: allowed once the binding reaches the authorizer.
        _ = try await admin.create(RoleBinding(name: "robot-view", namespace: "default", roleRef: RoleRef(kind: "ClusterRole", name: "view"),
                                               subjects: [.serviceAccount("robot", namespace: "default")]))
        _ = try await eventually(10, "robot may list pods") { try? await robot.list(Pod.self).items.count }
    }

    @Test func tokensAreRefusedWhenForgedForeignExpiredOrOrphaned() async throws {
        let c = try await TestCluster.start()
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(RoleBinding(name: "all-view", namespace: "default", roleRef: RoleRef(kind: "ClusterRole", name: "view"),
                                               subjects: [Subject(kind: "Group", name: "system:serviceaccounts")]))
        let p = try await admin.create(pod("holder"))
        let good = try await admin.requestToken(serviceAccount: "default", namespace: "default", expirationSeconds: 600, boundPod: ("holder", p.metadata.uid!)).token
        _ = try await eventually(10, "a good token lists pods") { try? await tokenClient(c, good).list(Pod.self).items.count }
        func refused(_ token: String, _ why: String) async throws {
            let r = try await tokenClient(c, token).request(.GET, "/api/v1/namespaces/default/pods")
            #expect(r.status == 401, "\(why): \(r.status)")
            #expect(String(decoding: r.body, as: UTF8.self).contains(why), "\(why): \(String(decoding: r.body, as: UTF8.self))")
        }
        // A changed signature; a token signed by another key.
        var parts = good.split(separator: ".").map(String.init)
        parts[2] = String(parts[2].reversed())
        try await refused(parts.joined(separator: "."), "signature")
        let key = try TokenIssuer.loadOrCreateKey(c.dir + "/pki/sa.key")
        let sa = try await admin.get(ServiceAccount.self, "default")
        let binding = TokenIssuer.Binding(namespace: "default", serviceAccount: "default", serviceAccountUID: sa.metadata.uid!, podName: "holder", podUID: p.metadata.uid)
        try await refused(try TokenIssuer(key: .init()).issue(binding, audiences: [TokenIssuer.defaultIssuer], seconds: 600).token, "signature")
        // Another audience; expired (issued by the same key under a clock two hours back).
        let issuer = TokenIssuer(key: key)
        try await refused(try issuer.issue(binding, audiences: ["vault"], seconds: 600).token, "audience")
        let past = TokenIssuer(key: key, clock: { Date().addingTimeInterval(-7200) })
        try await refused(try past.issue(binding, audiences: [TokenIssuer.defaultIssuer], seconds: 3600).token, "expired")
        // A TokenRequest for another audience is issued but not accepted here.
        let vault = try await admin.requestToken(serviceAccount: "default", namespace: "default", audiences: ["vault"], expirationSeconds: 600).token
        try await refused(vault, "audience")
        // The pod is deleted: its token dies with it.
        try await admin.delete(Pod.self, "holder", options: DeleteOptions(gracePeriodSeconds: 0))
        _ = try await eventually(10, "pod gone") { (try? await admin.get(Pod.self, "holder")) == nil ? true : nil }
        try await refused(good, "no longer exists")
        // Bad requests: too short a lifetime, a pod that runs as another account.
        await #expect { _ = try await admin.requestToken(serviceAccount: "default", namespace: "default", expirationSeconds: 60) } throws: {
            status($0)?.code == 422 && (status($0)?.message ?? "").contains("spec.expirationSeconds")
        }
    }

    @Test func rbacObjectsAreValidated() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        func invalid(_ path: String, _ body: JSONValue, _ field: String) async throws {
            let r = try await admin.request(.POST, path, body: try body.encoded())
            let text = String(decoding: r.body, as: UTF8.self)
            #expect(r.status == 422 && text.contains(field), "\(field): \(r.status) \(text)")
        }
        let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
        try await invalid(roles, try JSONValue.from(Role(name: "r", namespace: "default", rules: [PolicyRule(verbs: ["get"], nonResourceURLs: ["/metrics"])])),
                          "rules[0].nonResourceURLs")
        try await invalid(roles, try JSONValue.from(Role(name: "r", namespace: "default", rules: [PolicyRule(verbs: [], apiGroups: [""], resources: ["pods"])])), "rules[0].verbs")
        try await invalid(roles, try JSONValue.from(Role(name: "r", namespace: "default", rules: [PolicyRule(verbs: ["get"], resources: ["pods"])])), "rules[0].apiGroups")
        var bad = RoleBinding(name: "b", namespace: "default", roleRef: RoleRef(kind: "Secret", name: "x"), subjects: [.user("u")])
        try await invalid("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", try JSONValue.from(bad), "roleRef.kind")
        bad.roleRef = RoleRef(kind: "ClusterRole", name: "view")
        bad.subjects = [Subject(kind: "Robot", name: "x")]
        try await invalid("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", try JSONValue.from(bad), "subjects[0].kind")
        // roleRef cannot change.
        let ok = try await admin.create(RoleBinding(name: "b", namespace: "default", roleRef: RoleRef(kind: "ClusterRole", name: "view"), subjects: [.user("u")]))
        var changed = ok
        changed.roleRef = RoleRef(kind: "ClusterRole", name: "edit")
        await #expect { _ = try await admin.update(changed) } throws: { status($0)?.code == 422 && (status($0)?.message ?? "").contains("cannot change roleRef") }
        // The bootstrap roles exist, with colons in their names, and come back after an edit.
        let node = try await admin.get(ClusterRole.self, "system:node")
        #expect(!(node.rules ?? []).isEmpty)
        #expect(try await admin.list(ClusterRoleBinding.self).items.contains { $0.name == "cluster-admin" })
    }

    @Test func impersonationAndAccessReviews() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        _ = try await admin.create(RoleBinding(name: "alice-edit", namespace: "default", roleRef: RoleRef(kind: "ClusterRole", name: "edit"), subjects: [.user("alice")]))
        let ssar: JSONValue = .object(["apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                       "spec": .object(["resourceAttributes": .object(["verb": "create", "resource": "deployments", "group": "apps", "namespace": "default"])])])
        func allowed(_ k: KubeClient, _ headers: [(String, String)]) async throws -> Bool? {
            let r = try await k.request(.POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body: try ssar.encoded(), headers: headers)
            return try JSONValue.parse(r.body)["status"]?["allowed"]?.boolValue
        }
        // As kubectl auth can-i --as: the admin asks on alice's behalf.
        _ = try await eventually(10, "alice may create deployments") { try await allowed(admin, [("Impersonate-User", "alice")]) == true ? true : nil }
        #expect(try await allowed(admin, [("Impersonate-User", "bob")]) == false)
        // Impersonating needs the impersonate verb.
        let alice = try c.client(user: "alice", groups: [])
        #expect(try await alice.request(.GET, "/api/v1/namespaces/default/pods", headers: [("Impersonate-User", "bob")]).status == 403)
        // --list: the rules alice holds in the namespace.
        let ssrr: JSONValue = .object(["apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": .object(["namespace": "default"])])
        let r = try await alice.request(.POST, "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", body: try ssrr.encoded())
        let rules = try JSONValue.parse(r.body)["status"]?["resourceRules"]?.arrayValue ?? []
        #expect(rules.contains { ($0["resources"]?.arrayValue ?? []).contains(.string("deployments")) && ($0["verbs"]?.arrayValue ?? []).contains(.string("create")) })
        #expect(!rules.contains { ($0["resources"]?.arrayValue ?? []).contains(.string("rolebindings")) })
    }

    @Test func podsGetAServiceAccountAndATokenVolume() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let admin = try c.admin()
        let p = try await admin.create(pod("plain"))
        #expect(p.spec?.serviceAccountName == "default")
        let v = try #require(p.spec?.volumes?.first { $0.name.hasPrefix("kube-api-access-") })
        #expect(v.projected?["sources"]?.arrayValue?.count == 3)
        #expect(p.spec?.containers.first?.volumeMounts?.contains { $0.name == v.name && $0.mountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && $0.readOnly == true } == true)
        var off = pod("off"); off.spec?.automountServiceAccountToken = false
        #expect(try await admin.create(off).spec?.volumes?.contains { $0.name.hasPrefix("kube-api-access-") } != true)
        var sa = ServiceAccount(name: "quiet", namespace: "default"); sa.automountServiceAccountToken = false
        _ = try await admin.create(sa)
        var q = pod("quiet"); q.spec?.serviceAccountName = "quiet"
        #expect(try await admin.create(q).spec?.volumes?.contains { $0.name.hasPrefix("kube-api-access-") } != true)
        var missing = pod("lost"); missing.spec?.serviceAccountName = "ghost"
        await #expect { _ = try await admin.create(missing) } throws: {
            status($0)?.code == 403 && (status($0)?.message ?? "").contains("serviceaccount \"ghost\" not found")
        }
        // The apiserver's own namespaces have their default account and CA from the start.
        #expect(try await admin.get(ConfigMap.self, "kube-root-ca.crt").data?["ca.crt"] == c.caPEM)
    }

    @Test func userCertificatesThroughTheCSRFlow() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        var cfg = ControllerManagerConfig()
        cfg.ca = c.server.pki.ca
        let cm = ControllerManager(client: try c.client(user: "system:kube-controller-manager", groups: []), config: cfg)
        let task = Task { await cm.run() }
        defer { task.cancel() }
        let admin = try c.admin()
        let (csrPEM, keyPEM) = try makeCSR(commonName: "jane", organizations: ["qa"])
        var csr = try await admin.create(CertificateSigningRequest(name: "jane", spec: CSRSpec(request: Data(csrPEM.utf8).base64EncodedString(),
                                                                                                signerName: "kubernetes.io/kube-apiserver-client", usages: ["client auth"])))
        // Not signed before approval.
        try await holds(for: 1, "unsigned until approved") { (try await admin.get(CertificateSigningRequest.self, "jane")).status?.certificate == nil }
        csr.status = CSRStatus()
        csr.status?.conditions = [CSRCondition(type: "Approved", status: "True", reason: "Test")]
        _ = try await admin.update(csr, subresource: "approval")
        let cert = try await eventually(15, "signed") { try await admin.get(CertificateSigningRequest.self, "jane").status?.certificate }
        let jane = try KubeClient(config: .init(server: c.url, caPEM: c.caPEM, certPEM: String(decoding: Data(base64Encoded: cert)!, as: UTF8.self),
                                                keyPEM: keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        _ = try await admin.create(RoleBinding(name: "qa-view", namespace: "default", roleRef: RoleRef(kind: "ClusterRole", name: "view"), subjects: [.group("qa")]))
        _ = try await eventually(10, "jane (group qa) lists pods") { try? await jane.list(Pod.self).items.count }
        await #expect { _ = try await jane.create(ConfigMap(name: "x", namespace: "default")) } throws: {
            (status($0)?.message ?? "").contains("User \"jane\" cannot create resource \"configmaps\"")
        }
    }
}
