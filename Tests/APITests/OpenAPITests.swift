import XCTest
import Foundation
@testable import API

final class OpenAPITests: XCTestCase {
    static let kinds: [(apiVersion: String, kind: String)] = [
        ("v1", "Pod"), ("v1", "Service"), ("v1", "Node"), ("v1", "Namespace"), ("v1", "ConfigMap"),
        ("v1", "Secret"), ("v1", "Event"), ("v1", "Endpoints"),
        ("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"), ("coordination.k8s.io/v1", "Lease"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"), ("discovery.k8s.io/v1", "EndpointSlice"),
    ]

    func schemas(_ path: String) throws -> [String: JSONValue] {
        let doc = try XCTUnwrap(OpenAPIV3.document(path: path, kinds: Self.kinds))
        XCTAssertEqual(doc["openapi"], "3.0.0")
        XCTAssertNotNil(doc["info"]?["title"]?.stringValue)
        XCTAssertNotNil(doc["paths"]?.objectValue)
        return try XCTUnwrap(doc["components"]?["schemas"]?.objectValue)
    }

    func resolve(_ ref: JSONValue?, in schemas: [String: JSONValue]) -> JSONValue? {
        guard let r = ref?.stringValue, r.hasPrefix("#/components/schemas/") else { return nil }
        return schemas[String(r.dropFirst("#/components/schemas/".count))]
    }

    /// The `$ref` of a property: direct, or the single allOf member.
    func refOf(_ p: JSONValue?) -> JSONValue? {
        if let r = p?["$ref"] { return r }
        return p?["allOf"]?.arrayValue?.first?["$ref"]
    }

    func testDiscoveryListsGroupVersionsWithStableHash() throws {
        let d = OpenAPIV3.discovery(kinds: Self.kinds)
        let paths = try XCTUnwrap(d["paths"]?.objectValue)
        XCTAssertEqual(Set(paths.keys), ["api/v1", "apis/apps/v1", "apis/autoscaling/v2", "apis/coordination.k8s.io/v1",
                                         "apis/certificates.k8s.io/v1", "apis/discovery.k8s.io/v1"])
        let url = try XCTUnwrap(paths["apis/apps/v1"]?["serverRelativeURL"]?.stringValue)
        XCTAssertTrue(url.hasPrefix("/openapi/v3/apis/apps/v1?hash="), url)
        XCTAssertEqual(url.count, "/openapi/v3/apis/apps/v1?hash=".count + 16)
        XCTAssertEqual(OpenAPIV3.discovery(kinds: Self.kinds), d, "hash must be stable")
        // A different document gives a different hash.
        let other = OpenAPIV3.discovery(kinds: [("apps/v1", "Deployment")])
        XCTAssertNotEqual(other["paths"]?["apis/apps/v1"], paths["apis/apps/v1"])
        XCTAssertNil(OpenAPIV3.document(path: "apis/nope/v1", kinds: Self.kinds))
    }

    func testDeploymentSchema() throws {
        let s = try schemas("apis/apps/v1")
        let dep = try XCTUnwrap(s["io.k8s.api.apps.v1.Deployment"])
        XCTAssertEqual(dep["type"], "object")
        XCTAssertEqual(dep["x-kubernetes-group-version-kind"], .array([.object(["group": "apps", "kind": "Deployment", "version": "v1"])]))
        XCTAssertEqual(dep["properties"]?["apiVersion"]?["type"], "string")
        XCTAssertEqual(dep["properties"]?["kind"]?["type"], "string")
        let spec = try XCTUnwrap(resolve(refOf(dep["properties"]?["spec"]), in: s))
        XCTAssertNotNil(dep["properties"]?["spec"]?["allOf"], "described refs use allOf")
        XCTAssertNotNil(dep["properties"]?["spec"]?["description"]?.stringValue)
        XCTAssertEqual(spec["properties"]?["replicas"]?["type"], "integer")
        XCTAssertEqual(spec["properties"]?["replicas"]?["format"], "int32")
        XCTAssertEqual(spec["properties"]?["strategy"]?["x-kubernetes-patch-strategy"], "retainKeys")
        // required: not omitempty (a pointer without omitempty counts, as upstream's selector does).
        XCTAssertEqual(spec["required"], .array(["selector", "template"]))
        XCTAssertNotNil(s["io.k8s.api.apps.v1.DeploymentList"]?["x-kubernetes-group-version-kind"])
        let status = try XCTUnwrap(s["io.k8s.api.apps.v1.DeploymentStatus"])
        let conds = try XCTUnwrap(status["properties"]?["conditions"])
        XCTAssertEqual(conds["type"], "array")
        XCTAssertEqual(conds["x-kubernetes-list-type"], "map")
        XCTAssertEqual(conds["x-kubernetes-list-map-keys"], .array(["type"]))
        XCTAssertEqual(conds["x-kubernetes-patch-merge-key"], "type")
        XCTAssertEqual(conds["x-kubernetes-patch-strategy"], "merge")
        XCTAssertNil(status["required"])
    }

    /// kubectl explain finds a resource's kind through its REST paths' x-kubernetes-group-version-kind, and
    /// kubectl's field-validation check reads the PATCH operation's query parameters.
    func testPathsCarryKindsForKubectl() throws {
        let apps = try XCTUnwrap(OpenAPIV3.document(path: "apis/apps/v1", kinds: Self.kinds))
        let paths = try XCTUnwrap(apps["paths"]?.objectValue)
        let gvk: JSONValue = .object(["group": "apps", "kind": "Deployment", "version": "v1"])
        XCTAssertEqual(paths["/apis/apps/v1/deployments"]?["get"]?["x-kubernetes-group-version-kind"], gvk)
        XCTAssertEqual(paths["/apis/apps/v1/namespaces/{namespace}/deployments"]?["post"]?["x-kubernetes-group-version-kind"], gvk)
        let patch = try XCTUnwrap(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]?["patch"])
        XCTAssertEqual(patch["x-kubernetes-group-version-kind"], gvk)
        let names = (patch["parameters"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        XCTAssertTrue(names.contains("fieldValidation"), "\(names)")
        XCTAssertNil(paths["/apis/apps/v1/deploymentlists"])
        let core = try XCTUnwrap(OpenAPIV3.document(path: "api/v1", kinds: Self.kinds)?["paths"]?.objectValue)
        XCTAssertEqual(core["/api/v1/nodes/{name}"]?["get"]?["x-kubernetes-group-version-kind"],
                       .object(["group": "", "kind": "Node", "version": "v1"]))
        XCTAssertNil(core["/api/v1/namespaces/{namespace}/nodes"], "nodes are cluster-scoped")
        XCTAssertNotNil(core["/api/v1/namespaces/{namespace}/pods/{name}"]?["get"])
        XCTAssertEqual(OpenAPIV3.guessPlural("NetworkPolicy"), "networkpolicies")
        XCTAssertEqual(OpenAPIV3.guessPlural("Ingress"), "ingresses")
    }

    func testContainersMergeKeyAndPodSpec() throws {
        let s = try schemas("api/v1")
        let pod = try XCTUnwrap(s["io.k8s.api.core.v1.Pod"])
        XCTAssertEqual(pod["x-kubernetes-group-version-kind"], .array([.object(["group": "", "kind": "Pod", "version": "v1"])]))
        let podSpec = try XCTUnwrap(resolve(refOf(pod["properties"]?["spec"]), in: s))
        let containers = try XCTUnwrap(podSpec["properties"]?["containers"])
        XCTAssertEqual(containers["type"], "array")
        XCTAssertEqual(containers["x-kubernetes-patch-merge-key"], "name")
        XCTAssertEqual(containers["x-kubernetes-patch-strategy"], "merge")
        XCTAssertEqual(containers["items"]?["$ref"], "#/components/schemas/io.k8s.api.core.v1.Container")
        XCTAssertTrue(containers["description"]?.stringValue?.contains("merged by \"name\"") ?? false)
        XCTAssertEqual(podSpec["properties"]?["nodeSelector"]?["additionalProperties"]?["type"], "string")
        XCTAssertEqual(podSpec["properties"]?["nodeSelector"]?["x-kubernetes-map-type"], "atomic")
        XCTAssertTrue((podSpec["required"]?.arrayValue ?? []).contains("containers"))
        // Inline members are flattened: ImagePullSecrets' LocalObjectReference exposes "name".
        XCTAssertNotNil(s["io.k8s.api.core.v1.LocalObjectReference"]?["properties"]?["name"])
        // ObjectMeta is reachable and reached through allOf.
        XCTAssertEqual(refOf(pod["properties"]?["metadata"]), "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        XCTAssertNotNil(s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]?["properties"]?["labels"])
        XCTAssertNotNil(s["io.k8s.api.core.v1.PodList"])
    }

    func testScalarShapes() throws {
        let s = try schemas("api/v1")
        XCTAssertEqual(s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]?["type"], "string")
        XCTAssertEqual(s["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]?["format"], "date-time")
        let q = try XCTUnwrap(s["io.k8s.apimachinery.pkg.api.resource.Quantity"])
        XCTAssertEqual(q["oneOf"], .array([.object(["type": "string"]), .object(["type": "number"])]))
        let ios = try XCTUnwrap(s["io.k8s.apimachinery.pkg.util.intstr.IntOrString"])
        XCTAssertEqual(ios["format"], "int-or-string")
        XCTAssertEqual(ios["oneOf"], .array([.object(["type": "integer"]), .object(["type": "string"])]))
        XCTAssertEqual(s["io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"]?["type"], "object")
        // Fields that use them.
        let rr = try XCTUnwrap(s["io.k8s.api.core.v1.ResourceRequirements"])
        XCTAssertEqual(rr["properties"]?["limits"]?["additionalProperties"]?["$ref"], "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity")
        let tcp = try XCTUnwrap(s["io.k8s.api.core.v1.TCPSocketAction"])
        XCTAssertEqual(refOf(tcp["properties"]?["port"]), "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString")
        let meta = try XCTUnwrap(s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"])
        XCTAssertEqual(refOf(meta["properties"]?["creationTimestamp"]), "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time")
        XCTAssertEqual(meta["properties"]?["generation"]?["format"], "int64")
        let secret = try XCTUnwrap(s["io.k8s.api.core.v1.Secret"])
        XCTAssertEqual(secret["properties"]?["data"]?["additionalProperties"]?["format"], "byte")
        let apps = try schemas("apis/apps/v1")
        XCTAssertEqual(refOf(apps["io.k8s.api.apps.v1.RollingUpdateDeployment"]?["properties"]?["maxSurge"]),
                       "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    }

    /// Every $ref of every document resolves within that document, and every schema is reachable.
    func testEveryRefResolves() throws {
        let d = OpenAPIV3.discovery(kinds: Self.kinds)
        for path in d["paths"]?.objectValue?.keys.sorted() ?? [] {
            let s = try schemas(path)
            var refs = Set<String>()
            func walk(_ v: JSONValue) {
                switch v {
                case .object(let o):
                    if let r = o["$ref"]?.stringValue { refs.insert(r) }
                    o.values.forEach(walk)
                case .array(let a): a.forEach(walk)
                default: break
                }
            }
            s.values.forEach(walk)
            let doc = try XCTUnwrap(OpenAPIV3.document(path: path, kinds: Self.kinds))
            walk(doc["paths"] ?? .null)
            XCTAssertFalse(refs.isEmpty, path)
            for r in refs {
                XCTAssertTrue(r.hasPrefix("#/components/schemas/"), r)
                XCTAssertNotNil(s[String(r.dropFirst("#/components/schemas/".count))], "\(path): \(r) does not resolve")
            }
            let referenced = Set(refs.map { String($0.dropFirst("#/components/schemas/".count)) })
            for (name, schema) in s where schema["x-kubernetes-group-version-kind"] == nil {
                XCTAssertTrue(referenced.contains(name), "\(path): \(name) unreachable")
            }
            // Descriptions are present on every schema and property.
            for (name, schema) in s {
                XCTAssertNotNil(schema["description"]?.stringValue, name)
                for (p, ps) in schema["properties"]?.objectValue ?? [:] {
                    XCTAssertNotNil(ps["description"]?.stringValue, "\(name).\(p)")
                }
            }
        }
    }

    /// Writes the documents under $OAPI_OUT (for serving to a real kubectl); does nothing otherwise.
    func testDumpWhenAsked() throws {
        guard let out = ProcessInfo.processInfo.environment["OAPI_OUT"] else { return }
        let fm = FileManager.default
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let d = OpenAPIV3.discovery(kinds: Self.kinds)
        try d.encoded(pretty: true).write(to: URL(fileURLWithPath: out + "/root.json"))
        for path in d["paths"]?.objectValue?.keys ?? [:].keys {
            let doc = try XCTUnwrap(OpenAPIV3.document(path: path, kinds: Self.kinds))
            try doc.encoded(pretty: true).write(to: URL(fileURLWithPath: out + "/" + path.replacingOccurrences(of: "/", with: "__") + ".json"))
        }
    }
}
