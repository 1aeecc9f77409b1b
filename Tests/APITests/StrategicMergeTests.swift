import Foundation
import XCTest
@testable import API

final class StrategicMergeTests: XCTestCase {
    private struct Case {
        let name: String
        let message: String?
        let original: String
        let patch: String
        /// Expected result, or nil when `error` is set.
        let result: String?
        /// Expected error description (exact when it starts with "=", otherwise a substring).
        let error: String?
        init(_ name: String, _ message: String?, _ original: String, _ patch: String, result: String) {
            self.name = name; self.message = message; self.original = original; self.patch = patch; self.result = result; self.error = nil
        }
        init(_ name: String, _ message: String?, _ original: String, _ patch: String, error: String) {
            self.name = name; self.message = message; self.original = original; self.patch = patch; self.result = nil; self.error = error
        }
    }

    private static func json(_ s: String, _ what: String, _ name: String) -> JSONValue {
        do { return try JSONValue.parse(Data(s.utf8)) } catch { XCTFail("\(name): bad \(what) JSON: \(error)"); return .null }
    }

    private static func directiveKeys(_ v: JSONValue, _ path: String = "") -> [String] {
        switch v {
        case .object(let o):
            return o.keys.sorted().flatMap { k -> [String] in
                (k.hasPrefix("$") ? ["\(path).\(k)"] : []) + directiveKeys(o[k]!, "\(path).\(k)")
            }
        case .array(let a): return a.enumerated().flatMap { directiveKeys($0.element, "\(path)[\($0.offset)]") }
        default: return []
        }
    }

    private static func text(_ v: JSONValue) -> String {
        (try? v.encoded()).flatMap { String(data: $0, encoding: .utf8) } ?? "\(v)"
    }

    private static let deploy = "apps/v1.Deployment"
    private static let pod = "core/v1.Pod"
    private static let service = "core/v1.Service"

    /// A two-container Deployment as stored.
    private static let storedDeployment = """
    {"apiVersion":"apps/v1","kind":"Deployment",
     "metadata":{"name":"web","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"old","team":"a"}},
     "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
       "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
       "template":{"metadata":{"labels":{"app":"web"}},"spec":{
         "containers":[
           {"name":"web","image":"old","ports":[{"containerPort":80,"protocol":"TCP"}],
            "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"resources":{"limits":{"cpu":"1"}}},
           {"name":"sidecar","image":"proxy:1","args":["--port","9000"]}],
         "volumes":[{"name":"data","emptyDir":{}}]}}}}
    """

    private static let storedPod = """
    {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a","b"],
      "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs1","uid":"u1"},
                         {"apiVersion":"v1","kind":"Thing","name":"t","uid":"u2"}]},
     "spec":{"containers":[{"name":"app","image":"app:1","command":["run","--x"]},{"name":"sidecar","image":"side:1"}]}}
    """

    private static let storedService = """
    {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
     "spec":{"selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},
                                               {"name":"https","port":443,"targetPort":8443,"protocol":"TCP"}]}}
    """

    private static let cases: [Case] = [
        // kubectl apply: image change of one container, the server keeps the rest.
        Case("kubectl apply image change keeps other fields and containers", deploy, storedDeployment, """
        {"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"new"}},
         "spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"new","name":"web"}]}}}}
        """, result: """
        {"apiVersion":"apps/v1","kind":"Deployment",
         "metadata":{"name":"web","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"new","team":"a"}},
         "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
           "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
           "template":{"metadata":{"labels":{"app":"web"}},"spec":{
             "containers":[
               {"name":"web","image":"new","ports":[{"containerPort":80,"protocol":"TCP"}],
                "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"resources":{"limits":{"cpu":"1"}}},
               {"name":"sidecar","image":"proxy:1","args":["--port","9000"]}],
             "volumes":[{"name":"data","emptyDir":{}}]}}}}
        """),
        // Data-loss case: naming one container of two keeps the sidecar.
        Case("patch naming one container keeps the sidecar", pod, storedPod,
             #"{"spec":{"containers":[{"name":"app","image":"app:2"}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a","b"],"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs1","uid":"u1"},{"apiVersion":"v1","kind":"Thing","name":"t","uid":"u2"}]},"spec":{"containers":[{"name":"app","image":"app:2","command":["run","--x"]},{"name":"sidecar","image":"side:1"}]}}"#),
        Case("patch naming the second container keeps the first in place", pod,
             #"{"spec":{"containers":[{"name":"app","image":"app:1"},{"name":"sidecar","image":"side:1"}]}}"#,
             #"{"spec":{"containers":[{"name":"sidecar","image":"side:2"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"app","image":"app:1"},{"name":"sidecar","image":"side:2"}]}}"#),
        Case("new element without $setElementOrder goes before server-only elements (as in Kubernetes)", pod,
             #"{"spec":{"containers":[{"name":"a","image":"a"}]}}"#,
             #"{"spec":{"containers":[{"name":"b","image":"b"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"b","image":"b"},{"name":"a","image":"a"}]}}"#),
        Case("new element with $setElementOrder (kubectl apply) goes where the order says", pod,
             #"{"spec":{"containers":[{"name":"a","image":"a"}]}}"#,
             #"{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b","image":"b"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"a","image":"a"},{"name":"b","image":"b"}]}}"#),
        Case("$setElementOrder with a replaced element: the server-only element keeps its place before the new one", pod,
             #"{"spec":{"containers":[{"name":"a"},{"name":"b","image":"b"},{"name":"c"}]}}"#,
             #"{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"d"}],"containers":[{"name":"d"},{"$patch":"delete","name":"a"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"b","image":"b"},{"name":"c"},{"name":"d"}]}}"#),
        Case("ordering without $setElementOrder: patch order first, server-only items by original position", pod,
             #"{"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}}"#,
             #"{"spec":{"containers":[{"name":"d"},{"name":"a","image":"x"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"d"},{"name":"a","image":"x"},{"name":"b"},{"name":"c"}]}}"#),
        Case("ordering: a patched later element keeps earlier server-only elements before it", pod,
             #"{"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}}"#,
             #"{"spec":{"containers":[{"name":"c","image":"x"},{"name":"d"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c","image":"x"},{"name":"d"}]}}"#),
        Case("$setElementOrder alone reorders a merged list", pod,
             #"{"spec":{"containers":[{"name":"a","image":"a"},{"name":"b","image":"b"}]}}"#,
             #"{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"b","image":"b"},{"name":"a","image":"a"}]}}"#),
        Case("$setElementOrder places a new element in the middle", pod,
             #"{"spec":{"containers":[{"name":"a"},{"name":"b"}]}}"#,
             #"{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"c"},{"name":"b"}],"containers":[{"name":"c","image":"c"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"a"},{"name":"c","image":"c"},{"name":"b"}]}}"#),
        Case("$setElementOrder with a deleted element (kubectl removes a container)", pod,
             #"{"spec":{"containers":[{"name":"a","image":"a"},{"name":"b","image":"b"}]}}"#,
             #"{"spec":{"$setElementOrder/containers":[{"name":"b"}],"containers":[{"$patch":"delete","name":"a"}]}}"#,
             result: #"{"spec":{"containers":[{"name":"b","image":"b"}]}}"#),
        Case("$patch: delete element removes it by merge key", pod, storedPod,
             #"{"spec":{"containers":[{"$patch":"delete","name":"sidecar"}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a","b"],"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs1","uid":"u1"},{"apiVersion":"v1","kind":"Thing","name":"t","uid":"u2"}]},"spec":{"containers":[{"name":"app","image":"app:1","command":["run","--x"]}]}}"#),
        Case("$patch: replace element replaces the whole list", service, storedService,
             #"{"spec":{"ports":[{"$patch":"replace"},{"name":"grpc","port":9090,"protocol":"TCP"}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"app":"web"},"ports":[{"name":"grpc","port":9090,"protocol":"TCP"}]}}"#),
        Case("service ports merge by port", service, storedService,
             #"{"spec":{"ports":[{"port":80,"targetPort":9080}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":9080,"protocol":"TCP"},{"name":"https","port":443,"targetPort":8443,"protocol":"TCP"}]}}"#),
        Case("service port added by a new port number (placed first, as Kubernetes does without $setElementOrder)", service, storedService,
             #"{"spec":{"ports":[{"name":"metrics","port":9100}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"app":"web"},"ports":[{"name":"metrics","port":9100},{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},{"name":"https","port":443,"targetPort":8443,"protocol":"TCP"}]}}"#),
        Case("env merges by name inside a merged container; null removes a field", deploy,
             #"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]}}}}"#,
             #"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"3"},{"name":"A","value":null,"valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}]}}}}"#,
             result: #"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"3"},{"name":"A","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}]}}}}"#),
        Case("env element deleted with $patch: delete and $setElementOrder", deploy,
             #"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]}}}}"#,
             #"{"spec":{"template":{"spec":{"containers":[{"name":"web","$setElementOrder/env":[{"name":"B"}],"env":[{"$patch":"delete","name":"A"}]}]}}}}"#,
             result: #"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}"#),
        Case("finalizers: union of primitives", pod,
             #"{"metadata":{"finalizers":["a","b"]}}"#, #"{"metadata":{"finalizers":["b","c"]}}"#,
             result: #"{"metadata":{"finalizers":["a","b","c"]}}"#),
        Case("finalizers: patch order before later server-only values", pod,
             #"{"metadata":{"finalizers":["a","b"]}}"#, #"{"metadata":{"finalizers":["c","a"]}}"#,
             result: #"{"metadata":{"finalizers":["c","a","b"]}}"#),
        Case("finalizers: $deleteFromPrimitiveList removes values", pod,
             #"{"metadata":{"finalizers":["a","b","c"]}}"#, #"{"metadata":{"$deleteFromPrimitiveList/finalizers":["b","zz"]}}"#,
             result: #"{"metadata":{"finalizers":["a","c"]}}"#),
        Case("finalizers: kubectl-style $setElementOrder with addition and deletion", pod,
             #"{"metadata":{"finalizers":["a","b"]}}"#,
             #"{"metadata":{"$setElementOrder/finalizers":["c","a"],"finalizers":["c"],"$deleteFromPrimitiveList/finalizers":["b"]}}"#,
             result: #"{"metadata":{"finalizers":["c","a"]}}"#),
        Case("finalizers: $setElementOrder reorders primitives", pod,
             #"{"metadata":{"finalizers":["a","b","c"]}}"#, #"{"metadata":{"$setElementOrder/finalizers":["c","b","a"]}}"#,
             result: #"{"metadata":{"finalizers":["c","b","a"]}}"#),
        Case("ownerReferences merge by uid", pod, storedPod,
             #"{"metadata":{"ownerReferences":[{"uid":"u2","controller":true}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a","b"],"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs1","uid":"u1"},{"apiVersion":"v1","kind":"Thing","name":"t","uid":"u2","controller":true}]},"spec":{"containers":[{"name":"app","image":"app:1","command":["run","--x"]},{"name":"sidecar","image":"side:1"}]}}"#),
        Case("ownerReferences removed by uid", pod,
             #"{"metadata":{"ownerReferences":[{"name":"rs1","uid":"u1"},{"name":"t","uid":"u2"}]}}"#,
             #"{"metadata":{"ownerReferences":[{"$patch":"delete","uid":"u1"}]}}"#,
             result: #"{"metadata":{"ownerReferences":[{"name":"t","uid":"u2"}]}}"#),
        Case("list without merge strategy is replaced whole (container command)", pod, storedPod,
             #"{"spec":{"containers":[{"name":"app","command":["serve"]}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":["a","b"],"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs1","uid":"u1"},{"apiVersion":"v1","kind":"Thing","name":"t","uid":"u2"}]},"spec":{"containers":[{"name":"app","image":"app:1","command":["serve"]},{"name":"sidecar","image":"side:1"}]}}"#),
        Case("raw field: maps merge, lists replaced", "apps/v1.ControllerRevision",
             #"{"revision":1,"data":{"spec":{"items":[{"name":"a"},{"name":"b"}],"keep":"x"}}}"#,
             #"{"data":{"spec":{"items":[{"name":"c"}],"drop":null}}}"#,
             result: #"{"revision":1,"data":{"spec":{"items":[{"name":"c"}],"keep":"x"}}}"#),
        Case("unknown schema: plain JSON merge patch", nil,
             #"{"spec":{"containers":[{"name":"a"},{"name":"b"}],"x":1,"y":2}}"#,
             #"{"spec":{"containers":[{"name":"c"}],"y":null}}"#,
             result: #"{"spec":{"containers":[{"name":"c"}],"x":1}}"#),
        Case("maps merge recursively; null deletes a key", pod,
             #"{"metadata":{"labels":{"a":"1","b":"2"},"annotations":{"k":"v"}}}"#,
             #"{"metadata":{"labels":{"b":null,"c":"3"}}}"#,
             result: #"{"metadata":{"labels":{"a":"1","c":"3"},"annotations":{"k":"v"}}}"#),
        Case("$patch: replace on a map replaces it", pod,
             #"{"metadata":{"labels":{"a":"1","b":"2"}}}"#, #"{"metadata":{"labels":{"$patch":"replace","x":"y"}}}"#,
             result: #"{"metadata":{"labels":{"x":"y"}}}"#),
        Case("$patch: delete on a map empties it (as Kubernetes does)", deploy,
             #"{"spec":{"replicas":1,"strategy":{"type":"Recreate"}}}"#, #"{"spec":{"strategy":{"$patch":"delete"}}}"#,
             result: #"{"spec":{"replicas":1,"strategy":{}}}"#),
        Case("$patch: delete on an absent map adds nothing", deploy,
             #"{"spec":{"replicas":1}}"#, #"{"spec":{"strategy":{"$patch":"delete"}}}"#,
             result: #"{"spec":{"replicas":1}}"#),
        Case("$patch: merge is the default", pod,
             #"{"metadata":{"labels":{"a":"1"}}}"#, #"{"metadata":{"labels":{"$patch":"merge","b":"2"}}}"#,
             result: #"{"metadata":{"labels":{"a":"1","b":"2"}}}"#),
        Case("$retainKeys: RollingUpdate to Recreate clears rollingUpdate", deploy, storedDeployment,
             #"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}}"#,
             result: """
        {"apiVersion":"apps/v1","kind":"Deployment",
         "metadata":{"name":"web","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"old","team":"a"}},
         "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
           "strategy":{"type":"Recreate"},
           "template":{"metadata":{"labels":{"app":"web"}},"spec":{
             "containers":[
               {"name":"web","image":"old","ports":[{"containerPort":80,"protocol":"TCP"}],
                "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"resources":{"limits":{"cpu":"1"}}},
               {"name":"sidecar","image":"proxy:1","args":["--port","9000"]}],
             "volumes":[{"name":"data","emptyDir":{}}]}}}}
        """),
        Case("$retainKeys: Recreate back to RollingUpdate", deploy,
             #"{"spec":{"strategy":{"type":"Recreate"}}}"#,
             #"{"spec":{"strategy":{"$retainKeys":["rollingUpdate","type"],"type":"RollingUpdate","rollingUpdate":{"maxSurge":2}}}}"#,
             result: #"{"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":2}}}}"#),
        Case("$retainKeys: volume source type change", pod,
             #"{"spec":{"volumes":[{"name":"data","emptyDir":{}},{"name":"other","secret":{"secretName":"s"}}]}}"#,
             #"{"spec":{"volumes":[{"$retainKeys":["configMap","name"],"name":"data","configMap":{"name":"cm"}}]}}"#,
             result: #"{"spec":{"volumes":[{"name":"data","configMap":{"name":"cm"}},{"name":"other","secret":{"secretName":"s"}}]}}"#),
        Case("directives in new elements and new maps are stripped", pod,
             #"{"spec":{"containers":[{"name":"a"}]}}"#,
             #"{"spec":{"containers":[{"name":"b","$setElementOrder/env":[{"name":"X"}],"env":[{"name":"X","value":"1","valueFrom":null}],"resources":{"$patch":"merge","limits":{"cpu":"1"}}}],"volumes":[{"$retainKeys":["name","emptyDir"],"name":"v","emptyDir":{}}]}}"#,
             result: #"{"spec":{"containers":[{"name":"b","env":[{"name":"X","value":"1"}],"resources":{"limits":{"cpu":"1"}}},{"name":"a"}],"volumes":[{"name":"v","emptyDir":{}}]}}"#),
        Case("null removes a whole list", pod,
             #"{"spec":{"containers":[{"name":"a"}],"volumes":[{"name":"v"}]}}"#, #"{"spec":{"volumes":null}}"#,
             result: #"{"spec":{"containers":[{"name":"a"}]}}"#),
        Case("status conditions merge by type", deploy,
             #"{"status":{"conditions":[{"type":"Available","status":"False"},{"type":"Progressing","status":"True"}]}}"#,
             #"{"status":{"conditions":[{"type":"Available","status":"True"}]}}"#,
             result: #"{"status":{"conditions":[{"type":"Available","status":"True"},{"type":"Progressing","status":"True"}]}}"#),
        Case("field unknown to the schema merges as free JSON", pod,
             #"{"spec":{"extra":{"a":[1,2],"b":1}}}"#, #"{"spec":{"extra":{"a":[3]}}}"#,
             result: #"{"spec":{"extra":{"a":[3],"b":1}}}"#),

        Case("field with replace strategy is replaced, not merged (PodDisruptionBudget selector)", "policy/v1.PodDisruptionBudget",
             #"{"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"a"}}}}"#,
             #"{"spec":{"selector":{"matchExpressions":[{"key":"tier","operator":"Exists"}]}}}"#,
             result: #"{"spec":{"minAvailable":1,"selector":{"matchExpressions":[{"key":"tier","operator":"Exists"}]}}}"#),
        Case("$patch: replace on a map the original lacks sets its content", pod,
             #"{"metadata":{"name":"p"}}"#, #"{"metadata":{"labels":{"$patch":"replace","x":"y"}}}"#,
             result: #"{"metadata":{"name":"p","labels":{"x":"y"}}}"#),
        Case("container ports merge by containerPort inside a merged container", pod,
             #"{"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"http"},{"containerPort":9090,"name":"metrics"}]}]}}"#,
             #"{"spec":{"containers":[{"name":"a","ports":[{"containerPort":9090,"name":"prom"}]}]}}"#,
             result: #"{"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"http"},{"containerPort":9090,"name":"prom"}]}]}}"#),
        Case("message unknown to the schema: maps merge, lists replaced, directives honoured", "example.com/v1.Widget",
             #"{"spec":{"items":[{"name":"a"}],"size":1,"opts":{"x":1,"y":2}}}"#,
             #"{"spec":{"items":[{"name":"b"}],"opts":{"$patch":"replace","z":3}}}"#,
             result: #"{"spec":{"items":[{"name":"b"}],"size":1,"opts":{"z":3}}}"#),
        Case("numbers match merge keys by value (80 and 80.0)", service, storedService,
             #"{"spec":{"ports":[{"port":80.0,"name":"web"}]}}"#,
             result: #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"app":"web"},"ports":[{"name":"web","port":80,"targetPort":8080,"protocol":"TCP"},{"name":"https","port":443,"targetPort":8443,"protocol":"TCP"}]}}"#),

        // Errors.
        Case("error: element missing its merge key", deploy, storedDeployment,
             #"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"x"},{"image":"y"}]}}}}"#,
             error: #"=spec.template.spec.containers[1]: missing merge key "name""#),
        Case("error: $patch delete element missing its merge key", service, storedService,
             #"{"spec":{"ports":[{"$patch":"delete"}]}}"#, error: #"=spec.ports[0]: missing merge key "port""#),
        Case("error: $setElementOrder is not a list", pod, storedPod,
             #"{"spec":{"$setElementOrder/containers":{"name":"app"}}}"#, error: "=spec.$setElementOrder/containers: must be a list, got object"),
        Case("error: $setElementOrder does not match the patch list", pod, storedPod,
             #"{"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"name":"new"}]}}"#, error: "spec.$setElementOrder/containers: does not list"),
        Case("error: unknown $patch value on a map", pod, storedPod,
             #"{"metadata":{"labels":{"$patch":"frobnicate"}}}"#, error: #"=metadata.labels: unknown $patch value "frobnicate" (want replace, delete or merge)"#),
        Case("error: unknown $patch value on a list element", pod, storedPod,
             #"{"spec":{"containers":[{"$patch":"remove","name":"app"}]}}"#, error: #"spec.containers[0]: unknown $patch value "remove""#),
        Case("error: object where a list is expected", pod, storedPod,
             #"{"spec":{"containers":{"name":"app"}}}"#, error: "=spec.containers: expected a list, got object"),
        Case("error: string where a merged list of objects expects objects", pod, storedPod,
             #"{"spec":{"containers":["app"]}}"#, error: "spec.containers[0]: expected an object"),
        Case("error: $deleteFromPrimitiveList is not a list", pod, storedPod,
             #"{"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}"#, error: "metadata.$deleteFromPrimitiveList/finalizers: must be a list"),
        Case("error: patch field missing from $retainKeys", deploy, storedDeployment,
             #"{"spec":{"strategy":{"$retainKeys":["type"],"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}}"#,
             error: #"spec.strategy: field "rollingUpdate" is set by the patch but missing from $retainKeys"#),
        Case("error: patch is not an object", pod, storedPod, #"[1,2]"#, error: "must be a JSON object"),
    ]

    func testTable() throws {
        XCTAssertGreaterThanOrEqual(Self.cases.count, 25)
        for c in Self.cases {
            let original = Self.json(c.original, "original", c.name)
            let patch = Self.json(c.patch, "patch", c.name)
            do {
                let got = try strategicMergePatch(original, patch, message: c.message)
                if let want = c.error {
                    XCTFail("\(c.name): expected error \(want), got \(Self.text(got))"); continue
                }
                let want = Self.json(c.result!, "result", c.name)
                XCTAssertEqual(got, want, "\(c.name):\n got  \(Self.text(got))\n want \(Self.text(want))")
                if c.message != nil {
                    XCTAssertEqual(Self.directiveKeys(got), [], "\(c.name): directives left in the result")
                }
            } catch let e as StrategicMergeError {
                guard let want = c.error else { XCTFail("\(c.name): unexpected error \(e)"); continue }
                if want.hasPrefix("=") {
                    XCTAssertEqual(e.description, String(want.dropFirst()), c.name)
                } else {
                    XCTAssertTrue(e.description.contains(want), "\(c.name): error \(e.description) does not contain \(want)")
                }
            }
        }
    }

    func testSchemaMessagesExist() {
        // The table above relies on these schema facts.
        XCTAssertEqual(Schema.field("core/v1.ServiceSpec", "ports")?.mergeKey, "port")
        XCTAssertEqual(Schema.field("core/v1.Container", "env")?.mergeKey, "name")
        XCTAssertEqual(Schema.field("core/v1.PodSpec", "volumes")?.patchStrategies, ["merge", "retainKeys"])
        XCTAssertEqual(Schema.field("meta/v1.ObjectMeta", "ownerReferences")?.mergeKey, "uid")
        XCTAssertEqual(Schema.field("apps/v1.DeploymentSpec", "strategy")?.patchStrategies, ["retainKeys"])
        XCTAssertEqual(Schema.kind(apiVersion: "apps/v1", kind: "Deployment")?.name, "apps/v1.Deployment")
    }

    func testPatchIsNotMutatedAndIsIdempotent() throws {
        let original = Self.json(Self.storedPod, "original", "idempotent")
        let patch = Self.json(#"{"spec":{"containers":[{"name":"app","image":"app:2"}]},"metadata":{"finalizers":["z"]}}"#, "patch", "idempotent")
        let once = try strategicMergePatch(original, patch, message: "core/v1.Pod")
        let twice = try strategicMergePatch(once, patch, message: "core/v1.Pod")
        XCTAssertEqual(once, twice)
        XCTAssertEqual(once.at("metadata.finalizers"), .array(["z", "a", "b"]))
    }
}
