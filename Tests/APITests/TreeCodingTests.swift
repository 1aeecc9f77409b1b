import Foundation
import Testing
@testable import API

/// TreeDecoder and TreeEncoder must be interchangeable with Foundation's JSONDecoder and
/// JSONEncoder: the same objects, the same stored bytes, the same errors.
struct TreeCodingTests {
    static let pod = """
    {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"default","uid":"0b6f-11","resourceVersion":"42",
     "generation":3,"creationTimestamp":"2026-12-01T10:00:00Z","deletionGracePeriodSeconds":30,
     "labels":{"app":"web","a10":"x","a9":"y","B":"z","_u":"1","é":"2","Zeta":"3","app.kubernetes.io/name":"w"},
     "annotations":{"note":"line\\nbreak \\"quoted\\" back\\\\slash /slash \\u0001 \\u0008 \\u000c \\u007f ünï €","empty":""},
     "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-abc","uid":"u-1","controller":true,"blockOwnerDeletion":true}],
     "finalizers":["a/b"],
     "managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"2026-12-01T10:00:00Z","fieldsType":"FieldsV1",
       "fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"app\\"}":{".":{},"f:image":{}}}}}}]},
     "spec":{"nodeName":"n1","restartPolicy":"Always","terminationGracePeriodSeconds":5,"serviceAccountName":"default",
      "nodeSelector":{"disk":"ssd"},"tolerations":[{"key":"k","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],
      "volumes":[{"name":"cfg","configMap":{"name":"c","items":[{"key":"a","path":"b"}],"defaultMode":420}},{"name":"tmp","emptyDir":{}}],
      "containers":[{"name":"app","image":"127.0.0.1:5000/demo/busybox:1.0","command":["/bin/sh","-c","sleep 3600"],"args":[],
        "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}],
        "env":[{"name":"A","value":"1"},{"name":"POD","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
        "resources":{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{"cpu":0.25,"memory":67108864}},
        "readinessProbe":{"httpGet":{"path":"/","port":"http"},"periodSeconds":1,"failureThreshold":3},
        "livenessProbe":{"tcpSocket":{"port":8080},"initialDelaySeconds":2},
        "volumeMounts":[{"name":"cfg","mountPath":"/etc/cfg","readOnly":true}]}]},
     "status":{"phase":"Running","podIP":"198.19.0.5","hostIP":"198.18.0.2","startTime":"2026-12-01T10:00:01Z",
      "conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-12-01T10:00:02Z"}],
      "containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"busybox","imageID":"sha256:ab","containerID":"runc://x",
        "started":true,"state":{"running":{"startedAt":"2026-12-01T10:00:01Z"}}}]}}
    """

    static let deployment = """
    {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
     "spec":{"replicas":3,"revisionHistoryLimit":10,"selector":{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]},
     "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":0}},
     "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"x"}]}}},
     "status":{"replicas":3,"readyReplicas":3,"observedGeneration":2,"conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"}]}}
    """

    static let hpa = """
    {"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"web","namespace":"default",
      "annotations":{"autoscaling.orchestrator.io/predictive":"true"}},
     "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,"maxReplicas":10,
      "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}},
                 {"type":"Pods","pods":{"metric":{"name":"requests_per_second"},"target":{"type":"AverageValue","averageValue":"10"}}}],
      "behavior":{"scaleDown":{"stabilizationWindowSeconds":30,"policies":[{"type":"Percent","value":100,"periodSeconds":15}]}}}}
    """

    static let service = """
    {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
     "spec":{"type":"NodePort","selector":{"app":"web"},"clusterIP":"198.19.128.10",
      "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080,"protocol":"TCP"},{"port":81,"targetPort":8081}]}}
    """

    static func foundationBytes<T: Encodable>(_ v: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(v)
    }

    func roundTrip<T: Codable>(_ type: T.Type, _ json: String) throws {
        let data = Data(json.utf8)
        let viaFoundation = try JSONDecoder().decode(type, from: data)
        let viaTree = try TreeDecoder.decode(type, from: try JSONValue.parse(data))
        let expected = String(decoding: try Self.foundationBytes(viaFoundation), as: UTF8.self)
        // The object decoded from the tree encodes to the same bytes, by either encoder.
        let fromTree = String(decoding: try Self.foundationBytes(viaTree), as: UTF8.self)
        #expect(fromTree == expected)
        let treeBytes = String(decoding: try TreeEncoder.encode(viaFoundation).encoded(), as: UTF8.self)
        #expect(treeBytes == expected)
        let kube = String(decoding: try KubeJSON.encode(viaFoundation), as: UTF8.self)
        #expect(kube == expected)
        // And the tree encoder's tree is the tree of Foundation's bytes.
        #expect(try TreeEncoder.encode(viaTree) == JSONValue.parse(Data(expected.utf8)))
    }

    @Test func objectsDecodeAndEncodeAsFoundationDoes() throws {
        try roundTrip(Pod.self, Self.pod)
        try roundTrip(Deployment.self, Self.deployment)
        try roundTrip(HorizontalPodAutoscaler.self, Self.hpa)
        try roundTrip(Service.self, Self.service)
        try roundTrip(JSONValue.self, Self.pod)
        try roundTrip([String: Int].self, #"{"b":1,"a":-2,"c10":3,"c9":4}"#)
        try roundTrip([Double].self, "[0.5,1e-7,12345678.25,2,-0.0,1e300]")
        try roundTrip([String?].self, #"["a",null,"\/"]"#)
    }

    /// Each bad document fails both ways with the same error, as the apiserver reports it.
    @Test func errorsAreFoundationsErrors() throws {
        let bad: [(String, String)] = [
            ("string for an int", #"{"metadata":{"name":"p","generation":"3"}}"#),
            ("int for a string", #"{"metadata":{"name":5}}"#),
            ("object for an array", #"{"metadata":{"name":"p"},"spec":{"containers":{"name":"a"}}}"#),
            ("array for an object", #"{"metadata":[]}"#),
            ("missing required key", #"{"metadata":{"name":"p"},"spec":{"containers":[{"image":"x"}]}}"#),
            ("null for a required value", #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":null,"image":"x"}]}}"#),
            ("fraction for an int", #"{"metadata":{"name":"p"},"spec":{"terminationGracePeriodSeconds":1.5,"containers":[]}}"#),
            ("huge int", #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x","ports":[{"containerPort":99999999999999999999}]}]}}"#),
            ("bad quantity", #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"lots"}}}]}}"#),
            ("bool for a string in a list", #"{"metadata":{"name":"p","finalizers":[true]}}"#),
            ("string for an int deep in lists", #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"x","ports":[{"containerPort":80},{"containerPort":"81"}]}]}}"#),
            ("null in a list of strings", #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x","args":["-v",null]}]}}"#),
            ("number for a label value", #"{"metadata":{"name":"p","labels":{"app":"web","tier":3}}}"#),
            ("string for a bool", #"{"metadata":{"name":"p"},"spec":{"hostNetwork":"yes","containers":[]}}"#),
        ]
        for (what, json) in bad {
            let data = Data(json.utf8)
            var foundation: DecodingError?
            var tree: DecodingError?
            do { _ = try JSONDecoder().decode(Pod.self, from: data) } catch let e as DecodingError { foundation = e }
            do { _ = try TreeDecoder.decode(Pod.self, from: JSONValue.parse(data)) } catch let e as DecodingError { tree = e }
            #expect(foundation != nil, "\(what): Foundation accepted it")
            #expect(tree != nil, "\(what): the tree decoder accepted it")
            guard let foundation, let tree else { continue }
            if case .dataCorrupted(let c) = tree {
                // Foundation names no field for a number that does not fit; this names it.
                guard case .dataCorrupted = foundation else { Issue.record("\(what): \(foundation) but \(tree)"); continue }
                #expect(!c.codingPath.isEmpty, "\(what): no field named")
            } else {
                #expect(Self.describe(tree) == Self.describe(foundation), "\(what)")
            }
        }
    }

    /// A quantity too large for milli-units is an error, not a crash.
    @Test func outOfRangeQuantitiesAreErrors() throws {
        for v in ["9223372036854775807", "1e300"] {
            let json = #"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"# + v + "}}}]}}"
            #expect(throws: DecodingError.self) { try TreeDecoder.decode(Pod.self, from: JSONValue.parse(Data(json.utf8))) }
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(Pod.self, from: Data(json.utf8)) }
        }
    }

    @Test func nonFiniteNumbersAreRefusedLikeFoundation() {
        #expect(throws: EncodingError.self) { try TreeEncoder.encode([Double.nan]) }
        #expect(throws: EncodingError.self) { try JSONEncoder().encode([Double.nan]) }
    }

    /// Case, path and description, as the apiserver's error message uses them.
    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String { p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case .typeMismatch(let t, let c): return "typeMismatch \(t) at \(path(c.codingPath)): \(c.debugDescription)"
        case .valueNotFound(let t, let c): return "valueNotFound \(t) at \(path(c.codingPath))"
        case .keyNotFound(let k, let c): return "keyNotFound \(k.stringValue) at \(path(c.codingPath))"
        case .dataCorrupted(let c): return "dataCorrupted at \(path(c.codingPath))"
        @unknown default: return "\(e)"
        }
    }
}
