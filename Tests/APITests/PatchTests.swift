import Testing
import Foundation
@testable import API

@Suite struct PatchTests {
    func j(_ s: String) throws -> JSONValue { try JSONValue.parse(Data(s.utf8)) }

    @Test func mergePatchReplacesAddsAndRemoves() throws {
        let doc = try j(#"{"a":1,"b":{"c":2,"d":3},"list":[1,2]}"#)
        let out = jsonMergePatch(doc, try j(#"{"b":{"c":null,"e":4},"list":[9],"z":"new"}"#))
        #expect(out == (try j(#"{"a":1,"b":{"d":3,"e":4},"list":[9],"z":"new"}"#)))
    }

    @Test func jsonPatchOperations() throws {
        let doc = try j(#"{"spec":{"replicas":1,"list":["a","b"]}}"#)
        let ops = try j(#"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/spec/list/1","value":"x"},{"op":"remove","path":"/spec/list/0"},{"op":"add","path":"/spec/list/-","value":"z"},{"op":"test","path":"/spec/replicas","value":5}]"#)
        #expect(try jsonPatch(doc, ops) == (try j(#"{"spec":{"replicas":5,"list":["x","b","z"]}}"#)))
    }

    @Test func jsonPatchErrors() throws {
        let doc = try j(#"{"a":1}"#)
        #expect(throws: PatchError.self) { try jsonPatch(doc, try j(#"[{"op":"replace","path":"/missing","value":1}]"#)) }
        #expect(throws: PatchError.self) { try jsonPatch(doc, try j(#"[{"op":"test","path":"/a","value":2}]"#)) }
        #expect(throws: PatchError.self) { try jsonPatch(doc, try j(#"{"op":"add"}"#)) }
    }

    @Test func unknownFieldsArePathed() throws {
        let input = try j(#"{"spec":{"replicas":1,"bogus":true,"template":{"spec":{"containers":[{"name":"c","imagee":"x"}]}}}}"#)
        let typed = try j(#"{"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"c"}]}}}}"#)
        #expect(unknownFields(input: input, typed: typed) == ["spec.bogus", "spec.template.spec.containers[0].imagee"])
    }
}

@Suite struct FastJSONTests {
    @Test func roundTripsEscapesUnicodeAndNumbers() throws {
        let text = #"{"s":"a\"b\\c\n\u00e9\ud83d\ude00/","i":-42,"big":9007199254740993,"d":1.5,"e":2e3,"t":true,"n":null,"a":[1,[],{}]}"#
        let v = try JSONValue.parse(Data(text.utf8))
        #expect(v["s"]?.stringValue == "a\"b\\c\né😀/")
        #expect(v["i"] == .int(-42))
        #expect(v["big"] == .int(9007199254740993))
        #expect(v["d"] == .double(1.5))
        #expect(v["e"] == .double(2000))
        #expect(v["n"] == .null && v["t"] == .bool(true))
        let again = try JSONValue.parse(try v.encoded())
        #expect(again == v)
        // Same bytes as JSONEncoder with sorted keys for plain documents.
        let plain: JSONValue = .object(["b": .int(1), "a": .array([.string("x/y"), .bool(false)])])
        #expect(try plain.encoded() == KubeJSON.encode(plain))
    }

    @Test(arguments: ["", "{", "{\"a\":}", "[1,]", "{\"a\":1,\"a\":2}", "tru", "\"unterminated", "{\"a\":1} x", "01x", "\"\\x\""])
    func rejectsMalformed(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data(text.utf8)) }
    }
}
