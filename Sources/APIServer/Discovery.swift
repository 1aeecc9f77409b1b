// Discovery documents (/api, /apis, /api/v1, /apis/GROUP/VERSION), /version, and the OpenAPI v3
// index kubectl reads to learn that the server validates fields itself (fieldValidation).
import Foundation
import API

enum Discovery {
    static let verbsFull = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    static var groupVersions: [(group: String, version: String)] {
        var seen = Set<String>()
        var out: [(String, String)] = []
        for r in Resources.all where seen.insert(r.apiVersion).inserted { out.append((r.group, r.version)) }
        for v in Versions.views where seen.insert(v.apiVersion).inserted { out.append((v.group, v.version)) }
        for r in Reviews.all where seen.insert(r.apiVersion).inserted { out.append((r.group, r.version)) }
        return out
    }

    static func json(_ v: JSONValue) -> Data { (try? v.encoded()) ?? Data("{}".utf8) }

    static func apiVersions(serverAddress: String) -> Data {
        json(.object(["kind": .string("APIVersions"), "versions": .array([.string("v1")]),
                      "serverAddressByClientCIDRs": .array([.object(["clientCIDR": .string("0.0.0.0/0"), "serverAddress": .string(serverAddress)])])]))
    }

    /// metrics.k8s.io, served by the collector rather than the store: listed when it runs, so
    /// that kubectl top finds it (it looks for the group in /apis before asking for metrics).
    static let metricsGroupVersion = (group: MetricsGroup.name, version: MetricsGroup.version)

    static func group(_ name: String, metrics: Bool = false) -> JSONValue? {
        var versions = groupVersions.filter { $0.group == name }
        if metrics && name == metricsGroupVersion.group { versions = [metricsGroupVersion] }
        if metrics && name == CustomMetricsGroup.name { versions = CustomMetricsGroup.versions.map { (group: name, version: $0) } }
        guard let first = versions.first else { return nil }
        let vs: [JSONValue] = versions.map { .object(["groupVersion": .string("\(name)/\($0.version)"), "version": .string($0.version)]) }
        return .object(["name": .string(name), "versions": .array(vs),
                        "preferredVersion": .object(["groupVersion": .string("\(name)/\(first.version)"), "version": .string(first.version)])])
    }

    static func apiGroupList(metrics: Bool = false) -> Data {
        var names: [String] = []
        for gv in groupVersions where !gv.group.isEmpty && !names.contains(gv.group) { names.append(gv.group) }
        if metrics { names += [metricsGroupVersion.group, CustomMetricsGroup.name] }
        return json(.object(["kind": .string("APIGroupList"), "apiVersion": .string("v1"), "groups": .array(names.compactMap { group($0, metrics: metrics) })]))
    }

    static func apiGroup(_ name: String, metrics: Bool = false) -> Data? {
        guard case .object(var g)? = group(name, metrics: metrics) else { return nil }
        g["kind"] = .string("APIGroup"); g["apiVersion"] = .string("v1")
        return json(.object(g))
    }

    static func resourceList(group: String, version: String, metrics: Bool = false) -> Data? {
        if metrics && group == metricsGroupVersion.group && version == metricsGroupVersion.version {
            // As metrics-server registers them: read-only, no short names or subresources.
            let items: [JSONValue] = [MetricsGroup.nodes, MetricsGroup.pods].map { r in
                .object(["name": .string(r.plural), "singularName": .string(""), "namespaced": .bool(r.namespaced), "kind": .string(r.kind),
                         "verbs": .array([.string("get"), .string("list")])])
            }
            return json(.object(["kind": .string("APIResourceList"), "apiVersion": .string("v1"), "groupVersion": .string(MetricsGroup.apiVersion),
                                 "resources": .array(items)]))
        }
        if metrics && group == CustomMetricsGroup.name && CustomMetricsGroup.versions.contains(version) {
            // As custom-metrics adapters list them: one "pods/METRIC" per metric, get only.
            let items: [JSONValue] = CustomMetricsGroup.metricNames.map { m in
                .object(["name": .string("pods/\(m)"), "singularName": .string(""), "namespaced": .bool(true), "kind": .string("MetricValueList"),
                         "verbs": .array([.string("get")])])
            }
            return json(.object(["kind": .string("APIResourceList"), "apiVersion": .string("v1"), "groupVersion": .string("\(group)/\(version)"),
                                 "resources": .array(items)]))
        }
        var rs = Resources.all.filter { $0.group == group && $0.version == version }
        // Kinds this version serves by conversion, listed under this version's name.
        for v in Versions.views(group: group, version: version) {
            rs.append(ResourceInfo(group: group, version: version, kind: v.info.kind, plural: v.info.plural, shortNames: v.info.shortNames,
                                   namespaced: v.info.namespaced, subresources: v.info.subresources, categories: v.info.categories))
        }
        let reviews = Reviews.all.filter { $0.group == group && $0.version == version }
        rs += reviews
        guard !rs.isEmpty else { return nil }
        var items: [JSONValue] = []
        for r in rs {
            let verbs = reviews.contains(r) ? ["create"] : verbsFull
            var o: [String: JSONValue] = ["name": .string(r.plural), "singularName": .string(r.singular), "namespaced": .bool(r.namespaced),
                                          "kind": .string(r.kind), "verbs": .array(verbs.map { .string($0) })]
            if !r.shortNames.isEmpty { o["shortNames"] = .array(r.shortNames.map { .string($0) }) }
            if !r.categories.isEmpty { o["categories"] = .array(r.categories.map { .string($0) }) }
            items.append(.object(o))
            for sub in r.subresources {
                var s: [String: JSONValue] = ["name": .string("\(r.plural)/\(sub)"), "singularName": .string(""), "namespaced": .bool(r.namespaced)]
                switch sub {
                case "scale": s["group"] = .string("autoscaling"); s["version"] = .string("v1"); s["kind"] = .string("Scale"); s["verbs"] = .array(["get", "patch", "update"].map { .string($0) })
                case "binding": s["kind"] = .string("Binding"); s["verbs"] = .array([.string("create")])
                case "log": s["kind"] = .string("Pod"); s["verbs"] = .array([.string("get")])
                case "exec": s["kind"] = .string("PodExecOptions"); s["verbs"] = .array([.string("create"), .string("get")])
                case "attach": s["kind"] = .string("PodAttachOptions"); s["verbs"] = .array([.string("create"), .string("get")])
                case "portforward": s["kind"] = .string("PodPortForwardOptions"); s["verbs"] = .array([.string("create"), .string("get")])
                case "eviction": s["group"] = .string("policy"); s["version"] = .string("v1"); s["kind"] = .string("Eviction"); s["verbs"] = .array([.string("create")])
                default: s["kind"] = .string(r.kind); s["verbs"] = .array(["get", "patch", "update"].map { .string($0) })
                }
                items.append(.object(s))
            }
        }
        let gv = group.isEmpty ? version : "\(group)/\(version)"
        return json(.object(["kind": .string("APIResourceList"), "apiVersion": .string("v1"), "groupVersion": .string(gv), "resources": .array(items)]))
    }

    static func version() -> Data {
        json(.object(["major": .string("1"), "minor": .string("32"), "gitVersion": .string(BuildInfo.kubernetesGitVersion),
                      "gitCommit": .string(""), "gitTreeState": .string("clean"), "buildDate": .string("2026-11-24T00:00:00Z"),
                      "goVersion": .string("swift6"), "compiler": .string("swiftc"), "platform": .string("linux/amd64")]))
    }

    static func openAPIPathKey(group: String, version: String) -> String { group.isEmpty ? "api/\(version)" : "apis/\(group)/\(version)" }

    /// The served kinds, as /openapi/v3 describes them (schemas from the API schema table).
    static let openAPIKinds: [(apiVersion: String, kind: String)] = Resources.all.map { ($0.apiVersion, $0.kind) } + Versions.views.map { ($0.apiVersion, $0.info.kind) }
        + Reviews.all.map { ($0.apiVersion, $0.kind) }
    /// Built once: the documents only change with the binary.
    static let openAPIRootData: Data = json(OpenAPIV3.discovery(kinds: openAPIKinds))
    static let openAPIDocuments: [String: Data] = {
        var d: [String: Data] = [:]
        for key in Set(openAPIKinds.map { OpenAPIV3.pathKey(apiVersion: $0.apiVersion) }) {
            if let doc = OpenAPIV3.document(path: key, kinds: openAPIKinds) { d[key] = json(doc) }
        }
        return d
    }()

    static func openAPIRoot() -> Data { openAPIRootData }

    /// Per group-version document: schemas, with x-kubernetes-group-version-kind, and every path
    /// with the query parameters kubectl checks (fieldValidation on PATCH).
    static func openAPIGroupVersion(_ key: String) -> Data? { openAPIDocuments[key] }
}
