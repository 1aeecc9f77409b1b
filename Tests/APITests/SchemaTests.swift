import Testing
import Foundation
@testable import API

/// The schema table itself and the checks read straight from it.
@Suite struct SchemaTests {
    @Test func tableHoldsEveryServedKind() {
        for r in Resources.all {
            #expect(Schema.kind(apiVersion: r.apiVersion, kind: r.kind) != nil, "\(r.apiVersion) \(r.kind)")
        }
        let containers = Schema.field("core/v1.PodSpec", "containers")
        #expect(containers?.number == 2 && containers?.mergeKey == "name" && containers?.listType == "map")
        #expect(Schema.field("apps/v1.DeploymentSpec", "replicas")?.pointer == true)
        // Inline members (VolumeSource in Volume) are JSON fields of the parent.
        #expect(Schema.field("core/v1.Volume", "configMap")?.type == .message("core/v1.ConfigMapVolumeSource"))
        // Type-level markers: LabelSelector is atomic, PodSpec is not.
        #expect(Schema.messages["meta/v1.LabelSelector"]?.structType == "atomic")
        #expect(Schema.messages["core/v1.PodSpec"]?.structType == nil)
    }

    @Test func unknownFieldsWhateverTheirValue() throws {
        let d = try JSONValue.parse(Data("""
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","bogus":null},
         "spec":{"empty":{},"list":[],"template":{"spec":{"containers":[{"name":"c","image":"i",
           "env":[{"name":"A","valueFrom":{"fieldRef":{"fieldPath":"metadata.name","typo":1}}}]}]}}}}
        """.utf8))
        #expect(Schema.unknownFields(d, message: "apps/v1.Deployment") == [
            "metadata.bogus", "spec.empty", "spec.list", "spec.template.spec.containers[0].env[0].valueFrom.fieldRef.typo",
        ])
        // Free JSON (a RawExtension) is not looked into.
        let cr = try JSONValue.parse(Data(#"{"metadata":{"name":"r"},"data":{"anything":{"goes":[1]}},"revision":1}"#.utf8))
        #expect(Schema.unknownFields(cr, message: "apps/v1.ControllerRevision").isEmpty)
    }

    @Test func atomicTypesAreOwnedWhole() throws {
        let d = try JSONValue.parse(Data(#"{"spec":{"selector":{"matchLabels":{"app":"web","tier":"x"}},"replicas":1}}"#.utf8))
        let paths = ServerSideApply.fieldSet(of: d, message: "apps/v1.Deployment").sorted.map(\.description)
        #expect(paths.contains(".spec.selector") && !paths.contains { $0.hasPrefix(".spec.selector.") }, "\(paths)")
        #expect(paths.contains(".spec.replicas"))
    }
}
