import XCTest
@testable import API

final class ProtobufTests: XCTestCase {
    // MARK: Sample objects built from the schema

    private static let maxDepth = 6

    /// A non-zero sample of every protobuf field of `m`; nil when nothing could be filled.
    private func sampleMessage(_ m: SchemaMessage, depth: Int) -> [String: JSONValue]? {
        var o: [String: JSONValue] = [:]
        for f in m.fields where f.number > 0 {
            if f.inline {
                if let n = f.type.messageName, let sub = Schema.messages[n], let s = sampleMessage(sub, depth: depth) {
                    for (k, v) in s { o[k] = v }
                }
            } else if let v = sampleValue(f.type, depth: depth, seed: f.number) {
                o[f.name] = v
            }
        }
        return o.isEmpty ? nil : o
    }

    private func sampleValue(_ t: SchemaType, depth: Int, seed: Int) -> JSONValue? {
        switch t {
        case .string: return .string("s\(seed)")
        case .bool: return .bool(true)
        case .int32: return .int(seed % 2 == 0 ? -Int64(seed) - 1 : Int64(seed) + 100)
        case .int64: return .int((1 << 40) + Int64(seed))
        case .double: return .double(1.5)
        case .bytes: return .string("aGVsbG8=")
        case .time: return .string("2024-01-02T03:04:05Z")
        case .microTime: return .string("2024-01-02T03:04:05.123456Z")
        case .duration: return .string("1h2m3s")
        case .quantity: return .string("500m")
        case .intOrString: return seed % 2 == 0 ? .int(8080) : .string("http")
        case .raw: return .object(["a": .array([1, "x", true]), "b": .object(["c": .null])])
        case .fieldsV1: return .object(["f:metadata": .object(["f:name": .object([:])])])
        case .message(let n):
            guard depth < Self.maxDepth, let m = Schema.messages[n] else { return nil }
            return sampleMessage(m, depth: depth + 1).map { .object($0) }
        case .list(let e):
            return sampleValue(e, depth: depth, seed: seed + 1).map { .array([$0, $0]) }
        case .wrapped(let inner):
            return sampleValue(inner, depth: depth, seed: seed)
        case .map(let e):
            return sampleValue(e, depth: depth, seed: seed + 1).map { .object(["k1": $0, "k2": $0]) }
        }
    }

    func testEveryKindRoundTrips() throws {
        XCTAssertGreaterThan(Schema.kinds.count, 50)
        for (gvk, m) in Schema.kinds.sorted(by: { $0.key.description < $1.key.description }) {
            let x = JSONValue.object(sampleMessage(m, depth: 0) ?? [:])
            let bytes = try KubeProtobuf.encode(x, message: m.name)
            let back = try KubeProtobuf.decode(bytes, message: m.name)
            XCTAssertEqual(back, x, "\(gvk): decode(encode(x)) differs")
            if back != x { continue }

            var obj = x
            obj["apiVersion"] = .string(gvk.apiVersion)
            obj["kind"] = .string(gvk.kind)
            let body = try KubeProtobuf.encodeObject(obj)
            XCTAssertEqual(Array(body.prefix(4)), [0x6b, 0x38, 0x73, 0x00])
            let decoded = try KubeProtobuf.decodeObject(body)
            XCTAssertEqual(decoded["apiVersion"], .string(gvk.apiVersion), "\(gvk)")
            XCTAssertEqual(decoded["kind"], .string(gvk.kind), "\(gvk)")
            XCTAssertEqual(decoded, obj, "\(gvk): decodeObject(encodeObject(x)) differs")
        }
        // Inline members are reached through Pod (Probe, EnvVarSource, Volume), PersistentVolume, ...
        let pod = try XCTUnwrap(sampleMessage(try XCTUnwrap(Schema.message("core/v1.Pod")), depth: 0))
        XCTAssertNotNil(JSONValue.object(pod).at("spec")?["volumes"]?.arrayValue?.first?["hostPath"])
    }

    func testInlineMessagesRoundTrip() throws {
        let inlined = Schema.messages.values.filter { $0.fields.contains { $0.inline } }
        XCTAssertFalse(inlined.isEmpty)
        for m in inlined {
            let x = JSONValue.object(sampleMessage(m, depth: 0) ?? [:])
            XCTAssertEqual(try KubeProtobuf.decode(try KubeProtobuf.encode(x, message: m.name), message: m.name), x, m.name)
        }
    }

    // MARK: Known encodings (checked with protoc against upstream's generated.proto)

    private func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    private func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    static let samplePod: JSONValue = .object([
        "apiVersion": "v1", "kind": "Pod",
        "metadata": .object([
            "name": "web",
            "labels": .object(["app": "web", "tier": "front"]),
            "creationTimestamp": "2024-01-02T03:04:05Z",
        ]),
        "spec": .object([
            "containers": .array([.object([
                "name": "c", "image": "nginx",
                "ports": .array([.object(["containerPort": 80, "protocol": "TCP"])]),
                "resources": .object(["limits": .object(["cpu": "500m", "memory": 1024])]),
                "livenessProbe": .object(["httpGet": .object(["port": "http", "path": "/healthz"]), "periodSeconds": -1]),
                "readinessProbe": .object(["tcpSocket": .object(["port": 8080])]),
            ])]),
        ]),
    ])

    // The Pod message (no envelope). protoc --decode=k8s.io.api.core.v1.Pod with upstream's
    // generated.proto prints exactly the fields above (inline ProbeHandler as `handler`, Quantity as
    // {string}, IntOrString as {type,intVal,strVal}, Time as {seconds,nanos}), and protoc --encode of
    // that text gives these same bytes back.
    static let podHex = ""
        + "0a2a0a03776562420808a5facdac0610005a0a0a0361707012037765625a0d0a0474696572120566726f6e74126e126c"
        + "0a016312056e67696e7832071850220354435042210a0d0a0363707512060a043530306d0a100a066d656d6f72791206"
        + "0a043130323452250a1812160a082f6865616c74687a120a080110001a046874747020ffffffffffffffffff015a0d0a"
        + "0b1a090a07080010903f1a00"

    func testPodBytes() throws {
        let bytes = try KubeProtobuf.encode(Self.samplePod, message: "core/v1.Pod")
        XCTAssertEqual(hex(bytes), Self.podHex)
        // The body: "k8s\0", Unknown{typeMeta{"v1","Pod"}, raw, contentEncoding "", contentType ""},
        // as protoc --decode=k8s.io.apimachinery.pkg.runtime.Unknown shows after the 4-byte magic.
        let body = try KubeProtobuf.encodeObject(Self.samplePod)
        XCTAssertEqual(hex(body), "6b387300" + "0a090a0276311203506f64" + "129c01" + Self.podHex + "1a002200")
        var expected = Self.samplePod
        expected["apiVersion"] = nil
        expected["kind"] = nil
        // The JSON number 1024 for a quantity comes back as its string.
        let back = try KubeProtobuf.decode(bytes, message: "core/v1.Pod")
        XCTAssertEqual(back.at("spec")?["containers"]?.arrayValue?.first?["resources"]?["limits"]?["memory"], "1024")
        XCTAssertEqual(back.at("metadata.labels"), expected.at("metadata.labels"))
        XCTAssertEqual(back.at("metadata.creationTimestamp"), "2024-01-02T03:04:05Z")
        let c = back.at("spec")?["containers"]?.arrayValue?.first
        XCTAssertEqual(c?["livenessProbe"]?["httpGet"]?["port"], "http")
        XCTAssertEqual(c?["livenessProbe"]?["periodSeconds"], -1)
        XCTAssertEqual(c?["readinessProbe"]?["tcpSocket"]?["port"], 8080)
        XCTAssertEqual(c?["ports"], .array([.object(["containerPort": 80, "protocol": "TCP"])]))
    }

    func testScalarEncodings() throws {
        // IntOrString: {type 1, intVal 2, strVal 3}, all written as Go does.
        let intPort = try KubeProtobuf.encode(.object(["port": 8080]), message: "core/v1.TCPSocketAction")
        XCTAssertEqual(hex(intPort), "0a07080010903f1a00")
        let strPort = try KubeProtobuf.encode(.object(["port": "http"]), message: "core/v1.TCPSocketAction")
        XCTAssertEqual(hex(strPort), "0a0a080110001a0468747470")
        // Quantity: {string 1}.
        let q = try KubeProtobuf.encode(.object(["limits": .object(["cpu": "500m"])]), message: "core/v1.ResourceRequirements")
        XCTAssertEqual(hex(q), "0a0d0a0363707512060a043530306d")
        // Time: {seconds 1, nanos 2}; 2024-01-02T03:04:05Z is 1704164645.
        let t = try KubeProtobuf.encode(.object(["creationTimestamp": "2024-01-02T03:04:05Z"]), message: "meta/v1.ObjectMeta")
        XCTAssertEqual(hex(t), "420808a5facdac061000")
        // A negative int32 is a ten-byte varint, like Go.
        let neg = try KubeProtobuf.encode(.object(["periodSeconds": -1]), message: "core/v1.Probe")
        XCTAssertEqual(hex(neg), "0a00" + "20ffffffffffffffffff01")
        XCTAssertEqual(try KubeProtobuf.decode(neg, message: "core/v1.Probe"), .object(["periodSeconds": -1]))
    }

    func testDecodeRulesAndPackedLists() throws {
        // Pointer zero kept, omitempty zeros dropped, empty non-pointer omitempty messages dropped.
        let d: JSONValue = .object(["spec": .object(["replicas": 0, "minReadySeconds": 0, "paused": false,
                                                     "template": .object([:]), "strategy": .object([:])])])
        let back = try KubeProtobuf.decode(try KubeProtobuf.encode(d, message: "apps/v1.Deployment"), message: "apps/v1.Deployment")
        XCTAssertEqual(back, .object(["spec": .object(["replicas": 0, "template": .object([:])])]))
        // Integral doubles are accepted for ints; bad types name the path.
        XCTAssertEqual(try KubeProtobuf.decode(try KubeProtobuf.encode(.object(["spec": .object(["replicas": .double(3)])]), message: "apps/v1.Deployment"), message: "apps/v1.Deployment"),
                       .object(["spec": .object(["replicas": 3])]))
        XCTAssertThrowsError(try KubeProtobuf.encode(.object(["spec": .object(["replicas": "3"])]), message: "apps/v1.Deployment")) { e in
            XCTAssertTrue("\(e)".contains("spec.replicas"), "\(e)")
        }
        XCTAssertThrowsError(try KubeProtobuf.encode(.object(["spec": .object(["replicas": .double(1.5)])]), message: "apps/v1.Deployment"))
        XCTAssertThrowsError(try KubeProtobuf.encode(.object(["spec": .object(["replicas": .int(1 << 40)])]), message: "apps/v1.Deployment"))
        // A repeated int list written packed is accepted.
        if let (mname, f) = Schema.messages.values.lazy.compactMap({ m -> (String, SchemaField)? in
            guard let f = m.fields.first(where: { $0.type == .list(.int32) && $0.number > 0 }) else { return nil }
            return (m.name, f)
        }).first {
            let packed: [UInt8] = [UInt8(f.number << 3 | 2), 13, 1, 0x96, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
            XCTAssertEqual(try KubeProtobuf.decode(packed, message: mname), .object([f.name: .array([1, 150, -1])]))
        }
        // Unknown fields are skipped.
        let withUnknown: [UInt8] = [0xf8, 0x07, 0x05] + (try KubeProtobuf.encode(.object(["name": "x"]), message: "meta/v1.ObjectMeta"))
        XCTAssertEqual(try KubeProtobuf.decode(withUnknown, message: "meta/v1.ObjectMeta"), .object(["name": "x"]))
        // Durations and micro times.
        XCTAssertEqual(pbFormatDuration(3_723_000_000_000), "1h2m3s")
        XCTAssertEqual(pbFormatDuration(500_000_000), "500ms")
        XCTAssertEqual(pbFormatDuration(60_000_000_000), "1m0s")
        XCTAssertEqual(pbFormatDuration(1_500), "1.5µs")
        XCTAssertEqual(pbParseDuration("1h2m3s"), 3_723_000_000_000)
        XCTAssertEqual(pbParseDuration("1.5s"), 1_500_000_000)
        XCTAssertEqual(pbParseDuration("500ms"), 500_000_000)
        XCTAssertNil(pbParseDuration("5"))
        XCTAssertEqual(pbParseRFC3339("2024-01-02T04:04:05.5+01:00")?.0, 1704164645)
        XCTAssertEqual(pbFormatRFC3339(1704164645, nanos: 123456000), "2024-01-02T03:04:05.123456Z")
    }

    func testStatusEnvelope() throws {
        let status: JSONValue = .object(["apiVersion": "v1", "kind": "Status", "status": "Failure", "message": "nope",
                                         "reason": "NotFound", "code": 404, "details": .object(["name": "x", "kind": "pods"])])
        let body = try KubeProtobuf.encodeObject(status)
        XCTAssertEqual(try KubeProtobuf.decodeObject(body), status)
        // The envelope: typeMeta{apiVersion, kind}, raw, empty contentEncoding and contentType.
        XCTAssertEqual(hex(Array(body.prefix(18))), "6b3873000a0c0a0276311206537461747573")
        XCTAssertEqual(hex(Array(body.suffix(4))), "1a002200")
    }

    // MARK: Watch frames

    func testWatchFrame() throws {
        let pod: JSONValue = .object(["apiVersion": "v1", "kind": "Pod", "metadata": .object(["name": "a", "resourceVersion": "7"])])
        let frame = try KubeProtobuf.encodeWatchEvent(type: "ADDED", object: pod)
        let n = Int(frame[0]) << 24 | Int(frame[1]) << 16 | Int(frame[2]) << 8 | Int(frame[3])
        XCTAssertEqual(n, frame.count - 4)
        let event = Array(frame[4...])
        // A bare WatchEvent message: no "k8s\0" envelope on the event itself.
        XCTAssertEqual(Array(event.prefix(7)), [0x0a, 0x05] + Array("ADDED".utf8))
        let decoded = try KubeProtobuf.decode(event, message: "meta/v1.WatchEvent")
        XCTAssertEqual(decoded["type"], "ADDED")
        XCTAssertEqual(decoded["object"], pod)
        // object is RawExtension{raw = the enveloped object body}.
        XCTAssertEqual(event[7], 0x12)
        let body = try KubeProtobuf.encodeObject(pod)
        XCTAssertTrue(hex(event).hasSuffix(hex(body)))
        XCTAssertEqual(try KubeProtobuf.decodeObject(body), pod)
    }

    // MARK: Malformed input

    func testMalformedInputThrows() throws {
        let good = try KubeProtobuf.encodeObject(Self.samplePod)
        XCTAssertThrowsError(try KubeProtobuf.decodeObject(Array("k8x\0".utf8) + good.dropFirst(4)))
        XCTAssertThrowsError(try KubeProtobuf.decodeObject([UInt8]()))
        XCTAssertThrowsError(try KubeProtobuf.decodeObject(Array("{\"kind\":\"Pod\"}".utf8)))
        XCTAssertThrowsError(try KubeProtobuf.decodeObject(Array("k8s\0".utf8)))
        // Every truncation of a valid body throws or decodes, never crashes.
        for i in 4..<good.count { _ = try? KubeProtobuf.decodeObject(good.prefix(i)) }
        // Every single-byte corruption likewise.
        for i in 4..<min(good.count, 400) {
            for b: UInt8 in [0x00, 0x7f, 0x80, 0xff, 0x0b, 0x0f] {
                var bad = good; bad[i] = b
                _ = try? KubeProtobuf.decodeObject(bad)
            }
        }
        // Truncated varint.
        XCTAssertThrowsError(try KubeProtobuf.decode([0x08, 0x80, 0x80], message: "apps/v1.DeploymentSpec")) { e in
            XCTAssertTrue("\(e)".contains("truncated varint"), "\(e)")
        }
        // Wrong wire type: replicas (field 1, int32) sent length-delimited; name (string) sent as a varint.
        XCTAssertThrowsError(try KubeProtobuf.decode([0x0a, 0x01, 0x05], message: "apps/v1.DeploymentSpec"))
        XCTAssertThrowsError(try KubeProtobuf.decode([0x08, 0x05], message: "meta/v1.ObjectMeta"))
        // Length past the end, group wire types, field number 0.
        XCTAssertThrowsError(try KubeProtobuf.decode([0x0a, 0x09, 0x61], message: "meta/v1.ObjectMeta"))
        XCTAssertThrowsError(try KubeProtobuf.decode([0x0b, 0x0c], message: "meta/v1.ObjectMeta"))
        XCTAssertThrowsError(try KubeProtobuf.decode([0x00, 0x01], message: "meta/v1.ObjectMeta"))
        // Extreme timestamps and durations format without trapping.
        var ts = PBWriter(); ts.int(1, Int64.max); ts.int(2, -1)
        var lease = PBWriter(); lease.bytes(4, ts.out)
        var top = PBWriter(); top.bytes(2, lease.out)
        _ = try KubeProtobuf.decode(top.out, message: "coordination/v1.Lease")
        XCTAssertEqual(pbFormatDuration(Int64.min).hasPrefix("-"), true)
        // Unknown kinds and messages.
        XCTAssertThrowsError(try KubeProtobuf.encodeObject(.object(["apiVersion": "v9", "kind": "Nope"])))
        XCTAssertThrowsError(try KubeProtobuf.encodeObject(.object(["kind": "Pod"])))
        XCTAssertThrowsError(try KubeProtobuf.encode(.object([:]), message: "no/v1.Such"))
        XCTAssertThrowsError(try KubeProtobuf.encode(.array([]), message: "core/v1.Pod"))
    }
}
