import Testing
import Foundation
import API

/// The patch ctl apply sends for kinds with a schema: what the manifest dropped since the last
/// apply goes, what the server added stays.
@Suite struct ThreeWayPatchTests {
    func j(_ s: String) -> JSONValue { try! JSONValue.parse(Data(s.utf8)) }

    @Test func serverAddedElementsStayAndDroppedOnesGo() throws {
        let manifest = j(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"}},"spec":{"containers":[{"name":"c","image":"busybox:2"}]}}"#)
        let previous = j(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1","b":"2"}},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#)
        let live = j(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1","b":"2","other":"x"}},"spec":{"containers":[{"name":"c","image":"busybox:1","imagePullPolicy":"IfNotPresent","volumeMounts":[{"name":"kube-api-access-x","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]}],"volumes":[{"name":"kube-api-access-x","projected":{}}]}}"#)
        let patch = try #require(strategicThreeWayPatch(previous: previous, desired: manifest, live: live, message: "core/v1.Pod"))
        #expect(patch == j(#"{"metadata":{"labels":{"b":null}},"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","image":"busybox:2"}]}}"#))
        let result = try strategicMergePatch(live, patch, message: "core/v1.Pod")
        #expect(result["spec"]?["containers"]?.arrayValue?.first?["volumeMounts"]?.arrayValue?.count == 1)
        #expect(result["spec"]?["volumes"]?.arrayValue?.count == 1)
        #expect(result["spec"]?["containers"]?.arrayValue?.first?["image"] == .string("busybox:2"))
        #expect(result["metadata"]?["labels"] == j(#"{"a":"1","other":"x"}"#))
        // Applying the same manifest again changes nothing.
        #expect(strategicThreeWayPatch(previous: manifest, desired: manifest, live: result, message: "core/v1.Pod") == nil)
    }

    @Test func listElementsRemovedFromTheManifestAreDeleted() throws {
        let previous = j(#"{"spec":{"ports":[{"port":80,"name":"http"},{"port":443,"name":"https"}]}}"#)
        let manifest = j(#"{"spec":{"ports":[{"port":80,"name":"http"}]}}"#)
        let live = j(#"{"spec":{"ports":[{"port":80,"name":"http","protocol":"TCP"},{"port":443,"name":"https","protocol":"TCP"}],"clusterIP":"10.0.0.1"}}"#)
        let patch = try #require(strategicThreeWayPatch(previous: previous, desired: manifest, live: live, message: "core/v1.Service"))
        let result = try strategicMergePatch(live, patch, message: "core/v1.Service")
        #expect(result == j(#"{"spec":{"ports":[{"port":80,"name":"http","protocol":"TCP"}],"clusterIP":"10.0.0.1"}}"#))
    }
}
