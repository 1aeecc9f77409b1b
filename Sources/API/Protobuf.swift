// Kubernetes' protobuf wire format (application/vnd.kubernetes.protobuf), driven by the schema table.
//
// A body is the 4-byte magic "k8s\0" followed by a runtime.Unknown message whose typeMeta names the
// kind and whose raw field holds the object's own message. Watch streams carry length-prefixed
// meta/v1.WatchEvent messages without that envelope; the event's object is a full enveloped body.
// Object JSON is mapped field by field through `Schema`, so every kind in the table is covered.
import Foundation

public struct ProtobufError: Error, CustomStringConvertible {
    /// Where in the object (`spec.template.spec.containers[0].image`); built only when an error
    /// travels up through the fields, so that successful encodes and decodes never build paths.
    var path: String
    var reason: String
    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
    init(_ description: String) {
        // Raised below a field with an empty path: the reason alone; the callers add the path.
        if description.hasPrefix(": ") { path = ""; reason = String(description.dropFirst(2)) } else { path = ""; reason = description }
    }
    /// The same error one level up: `name` is a field name, `[i]` an index, or `.key` a map key.
    func under(_ component: String) -> ProtobufError {
        var e = self
        if path.isEmpty { e.path = component }
        else if path.hasPrefix("[") || path.hasPrefix(".") { e.path = component + path }
        else { e.path = component + "." + path }
        return e
    }
}

public enum KubeProtobuf {
    public static let mediaType = "application/vnd.kubernetes.protobuf"
    /// The 4 bytes every enveloped body starts with.
    static let magic: [UInt8] = [0x6b, 0x38, 0x73, 0x00]

    /// Object JSON -> message bytes (no envelope), by schema message name.
    public static func encode(_ value: JSONValue, message: String) throws -> [UInt8] {
        guard let m = Schema.messages[message] else { throw ProtobufError("unknown message \(message)") }
        guard case .object(let o) = value else { throw ProtobufError("<root>: expected an object for \(message), got \(value.typeName)") }
        var w = PBWriter()
        try encodeMessage(o, m, path: "", into: &w)
        return w.out
    }

    /// Message bytes -> object JSON.
    public static func decode(_ bytes: some Collection<UInt8>, message: String) throws -> JSONValue {
        guard let m = Schema.messages[message] else { throw ProtobufError("unknown message \(message)") }
        let a = Array(bytes)
        return .object(try decodeMessage(a[...], m, path: ""))
    }

    /// The full body: "k8s\0" + runtime.Unknown{typeMeta, raw = encode(object)}.
    public static func encodeObject(_ object: JSONValue) throws -> [UInt8] {
        guard case .object = object else { throw ProtobufError("<root>: expected an object, got \(object.typeName)") }
        guard let apiVersion = object["apiVersion"]?.stringValue, !apiVersion.isEmpty,
              let kind = object["kind"]?.stringValue, !kind.isEmpty else {
            throw ProtobufError("apiVersion and kind must be set to encode an object as protobuf")
        }
        guard let m = Schema.kind(apiVersion: apiVersion, kind: kind) else {
            throw ProtobufError("no protobuf message for \(apiVersion), Kind=\(kind)")
        }
        let raw = try encode(object, message: m.name)
        var tm = PBWriter()
        tm.string(1, apiVersion)
        tm.string(2, kind)
        var w = PBWriter()
        w.out = magic
        w.out.reserveCapacity(raw.count + tm.out.count + 16)
        w.bytes(1, tm.out)
        w.bytes(2, raw)
        w.string(3, "")  // contentEncoding
        w.string(4, "")  // contentType
        return w.out
    }

    /// Parses a body; returns the object JSON with apiVersion and kind set from the envelope.
    public static func decodeObject(_ body: some Collection<UInt8>) throws -> JSONValue {
        let a = Array(body)
        guard a.count >= magic.count, Array(a[0..<magic.count]) == magic else {
            throw ProtobufError("data does not appear to be a protobuf message: expected the prefix k8s\\0")
        }
        var apiVersion = "", kind = "", contentEncoding = ""
        var raw: ArraySlice<UInt8> = []
        var r = PBReader(a[magic.count...], path: "<envelope>")
        while let (num, wt) = try r.next() {
            switch (num, wt) {
            case (1, 2):
                var t = PBReader(try r.lengthDelimited(), path: "<envelope>.typeMeta")
                while let (tn, twt) = try t.next() {
                    switch (tn, twt) {
                    case (1, 2): apiVersion = try t.stringValue()
                    case (2, 2): kind = try t.stringValue()
                    default: try t.skip(twt)
                    }
                }
            case (2, 2): raw = try r.lengthDelimited()
            case (3, 2): contentEncoding = try r.stringValue()
            case (4, 2): _ = try r.lengthDelimited()
            case (1...4, _): throw ProtobufError("<envelope>: wrong wire type \(wt) for field \(num)")
            default: try r.skip(wt)
            }
        }
        guard contentEncoding.isEmpty else { throw ProtobufError("unsupported content encoding \"\(contentEncoding)\"") }
        guard !kind.isEmpty, !apiVersion.isEmpty else { throw ProtobufError("<envelope>: typeMeta is missing apiVersion or kind") }
        guard let m = Schema.kind(apiVersion: apiVersion, kind: kind) else {
            throw ProtobufError("no protobuf message for \(apiVersion), Kind=\(kind)")
        }
        var o = try decodeMessage(raw, m, path: "")
        o["apiVersion"] = .string(apiVersion)
        o["kind"] = .string(kind)
        return .object(o)
    }

    /// One watch frame: a 4-byte big-endian length, then a bare meta/v1.WatchEvent message (the
    /// streaming serializer writes no envelope) whose object.raw is the enveloped object body.
    public static func encodeWatchEvent(type: String, object: JSONValue) throws -> [UInt8] {
        let inner = try encodeObject(object)
        var raw = PBWriter()
        raw.bytes(1, inner)
        var ev = PBWriter()
        ev.string(1, type)
        ev.bytes(2, raw.out)
        let n = UInt32(ev.out.count)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + ev.out
    }
}

// MARK: - Wire primitives

struct PBWriter {
    var out: [UInt8] = []
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }
    mutating func tag(_ number: Int, _ wireType: Int) { varint(UInt64(number) << 3 | UInt64(wireType)) }
    mutating func bytes(_ number: Int, _ b: [UInt8]) { tag(number, 2); varint(UInt64(b.count)); out += b }
    mutating func string(_ number: Int, _ s: String) { bytes(number, Array(s.utf8)) }
    mutating func int(_ number: Int, _ v: Int64) { tag(number, 0); varint(UInt64(bitPattern: v)) }
    mutating func fixed64(_ number: Int, _ v: UInt64) {
        tag(number, 1)
        for i in 0..<8 { out.append(UInt8((v >> (8 * UInt64(i))) & 0xff)) }
    }
}

struct PBReader {
    var data: ArraySlice<UInt8>
    var pos: Int
    let path: String
    init(_ data: ArraySlice<UInt8>, path: String) { self.data = data; pos = data.startIndex; self.path = path }

    var atEnd: Bool { pos >= data.endIndex }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard pos < data.endIndex else { throw ProtobufError("\(path): truncated varint") }
            let b = data[pos]; pos += 1
            if shift == 63 && b > 1 { throw ProtobufError("\(path): varint overflows 64 bits") }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw ProtobufError("\(path): varint overflows 64 bits") }
        }
    }
    mutating func fixed64() throws -> UInt64 {
        guard data.endIndex - pos >= 8 else { throw ProtobufError("\(path): truncated fixed64") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(data[pos + i]) << (8 * UInt64(i)) }
        pos += 8
        return v
    }
    mutating func fixed32() throws -> UInt32 {
        guard data.endIndex - pos >= 4 else { throw ProtobufError("\(path): truncated fixed32") }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(data[pos + i]) << (8 * UInt32(i)) }
        pos += 4
        return v
    }
    mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(data.endIndex - pos) else { throw ProtobufError("\(path): length \(n) runs past the end of the data") }
        let s = data[pos..<(pos + Int(n))]
        pos += Int(n)
        return s
    }
    mutating func stringValue() throws -> String {
        let b = try lengthDelimited()
        guard let s = String(validating: b, as: UTF8.self) else { throw ProtobufError("\(path): invalid UTF-8 in string") }
        return s
    }
    /// The next field's number and wire type, or nil at the end.
    mutating func next() throws -> (Int, Int)? {
        if atEnd { return nil }
        let key = try varint()
        let num = key >> 3, wt = Int(key & 7)
        guard num > 0, num <= 536_870_911 else { throw ProtobufError("\(path): invalid field number \(num)") }
        return (Int(num), wt)
    }
    mutating func skip(_ wireType: Int) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw ProtobufError("\(path): unsupported wire type \(wireType)")
        }
    }
}

/// One field occurrence read off the wire.
private enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes(ArraySlice<UInt8>)

    var wireType: Int {
        switch self {
        case .varint: return 0
        case .fixed64: return 1
        case .bytes: return 2
        case .fixed32: return 5
        }
    }
}

// MARK: - Encoding


/// A message as the codec walks it: fields by JSON name (inline members point at their inline
/// field), by number, and the inline fields Go always writes. Built once per message.
/// The part of a schema field the codec needs, cheap to copy (two references instead of seven).
struct PBField: Sendable {
    let name: String
    let number: Int
    let type: SchemaType
    let pointer: Bool
    let omitEmpty: Bool
    let inline: Bool
    init(_ f: SchemaField) {
        name = f.name; number = f.number; type = f.type; pointer = f.pointer; omitEmpty = f.omitEmpty; inline = f.inline
    }
}

final class PBInfo: Sendable {
    let message: SchemaMessage
    /// JSON name -> (field, or the inline field that holds it).
    let byJSON: [String: (number: Int, inlineOwner: Int?)]
    /// Fields with a protobuf number, in number order.
    let ordered: [PBField]
    /// Field number -> index in `ordered` (-1: unknown), for numbers up to the largest.
    let indexByNumber: [Int]
    let inlineNumbers: [Int]

    init(_ m: SchemaMessage) {
        message = m
        ordered = m.fields.filter { $0.number > 0 }.sorted { $0.number < $1.number }.map(PBField.init)
        var idx = [Int](repeating: -1, count: (ordered.last?.number ?? 0) + 1)
        for (i, f) in ordered.enumerated() { idx[f.number] = i }
        indexByNumber = idx
        var by: [String: (number: Int, inlineOwner: Int?)] = [:]
        var inl: [Int] = []
        for f in ordered {
            if f.inline, let sub = f.type.messageName {
                inl.append(f.number)
                for (k, sf) in Schema.jsonFields[sub] ?? [:] { by[k] = (sf.number, f.number) }
            } else if !f.name.isEmpty {
                by[f.name] = (f.number, nil)
            }
        }
        byJSON = by
        inlineNumbers = inl
    }

    static let all: [String: PBInfo] = Schema.messages.mapValues { PBInfo($0) }
    static func of(_ name: String) -> PBInfo? { all[name] }
}

private func encodeMessage(_ o: [String: JSONValue], _ m: SchemaMessage, path: String, into w: inout PBWriter) throws {
    guard let info = PBInfo.of(m.name) else { throw ProtobufError("unknown message \(m.name)") }
    try encodeMessage(o, info, into: &w)
}

/// Looks up only the keys the object has (usually far fewer than the schema's fields), then writes
/// them in field-number order.
private func encodeMessage(_ o: [String: JSONValue], _ info: PBInfo, into w: inout PBWriter) throws {
    var present: [(number: Int, name: String, value: JSONValue)] = []
    present.reserveCapacity(o.count)
    var inlineMembers: [Int: [String: JSONValue]] = [:]
    for (k, v) in o {
        guard let loc = info.byJSON[k] else { continue }   // unknown keys: strict decoding's business
        if let owner = loc.inlineOwner { inlineMembers[owner, default: [:]][k] = v; continue }
        if v.isNull { continue }
        present.append((loc.number, k, v))
    }
    // Go writes an inline (embedded) message even when it has no members.
    for n in info.inlineNumbers { present.append((n, "", .null)) }
    present.sort { $0.number < $1.number }
    for p in present {
        let f = info.ordered[info.indexByNumber[p.number]]
        if f.inline {
            guard let subName = f.type.messageName, let sub = PBInfo.of(subName) else {
                throw ProtobufError("inline field of unknown type in \(info.message.name)")
            }
            var sw = PBWriter()
            try encodeMessage(inlineMembers[p.number] ?? [:], sub, into: &sw)
            w.bytes(f.number, sw.out)
            continue
        }
        do { try encodeField(p.value, f.type, number: f.number, path: "", into: &w) }
        catch let e as ProtobufError { throw e.under(p.name) }
    }
}

private func encodeField(_ v: JSONValue, _ t: SchemaType, number: Int, path: String, into w: inout PBWriter) throws {
    switch t {
    case .list(let e):
        guard case .array(let items) = v else { throw ProtobufError("\(path): expected an array, got \(v.typeName)") }
        for (i, item) in items.enumerated() {
            do { try encodeSingle(item, e, number: number, path: "", into: &w) } catch let err as ProtobufError { throw err.under("[\(i)]") }
        }
    case .map(let e):
        guard case .object(let entries) = v else { throw ProtobufError("\(path): expected an object, got \(v.typeName)") }
        for k in entries.keys.sorted() {
            var ew = PBWriter()
            ew.string(1, k)
            do { try encodeSingle(entries[k]!, e, number: 2, path: "", into: &ew) } catch let err as ProtobufError { throw err.under(".\(k)") }
            w.bytes(number, ew.out)
        }
    default:
        try encodeSingle(v, t, number: number, path: path, into: &w)
    }
}

/// One value of a non-repeated type (a wrapper counts as one message). JSON null is the zero value.
private func encodeSingle(_ v: JSONValue, _ t: SchemaType, number: Int, path: String, into w: inout PBWriter) throws {
    func mismatch(_ want: String) -> ProtobufError { ProtobufError("\(path): expected \(want), got \(v.typeName)") }
    func integer(_ lo: Int64, _ hi: Int64, _ name: String) throws -> Int64 {
        if v.isNull { return 0 }
        guard case .int = v else {
            if case .double = v, let i = v.intValue, i >= lo, i <= hi { return i }
            throw mismatch(name)
        }
        let i = v.intValue!
        guard i >= lo, i <= hi else { throw ProtobufError("\(path): \(i) is out of range for \(name)") }
        return i
    }
    func str(_ name: String) throws -> String {
        if v.isNull { return "" }
        guard case .string(let s) = v else { throw mismatch(name) }
        return s
    }
    switch t {
    case .string:
        w.string(number, try str("string"))
    case .bool:
        var b = false
        if case .bool(let x) = v { b = x } else if !v.isNull { throw mismatch("boolean") }
        w.int(number, b ? 1 : 0)
    case .int32:
        w.int(number, try integer(Int64(Int32.min), Int64(Int32.max), "int32"))
    case .int64:
        w.int(number, try integer(Int64.min, Int64.max, "int64"))
    case .double:
        var d = 0.0
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        case .null: break
        default: throw mismatch("number")
        }
        w.fixed64(number, d.bitPattern)
    case .bytes:
        let s = try str("base64 string")
        guard let d = Data(base64Encoded: s) else { throw ProtobufError("\(path): invalid base64 data") }
        w.bytes(number, Array(d))
    case .time, .microTime:
        var sw = PBWriter()
        if !v.isNull {
            let s = try str("RFC 3339 time string")
            guard let (secs, nanos) = pbParseRFC3339(s) else { throw ProtobufError("\(path): invalid RFC 3339 time \"\(s)\"") }
            sw.int(1, secs)
            // Time carries whole seconds only; MicroTime keeps microseconds.
            let n: Int64 = t == .time ? 0 : Int64(nanos / 1000 * 1000)
            sw.int(2, n)
        }
        w.bytes(number, sw.out)
    case .duration:
        let s = try str("duration string")
        guard let ns = pbParseDuration(s) else { throw ProtobufError("\(path): invalid duration \"\(s)\"") }
        var sw = PBWriter()
        sw.int(1, ns)
        w.bytes(number, sw.out)
    case .quantity:
        var s: String
        switch v {
        case .string(let x): s = x
        case .int(let i): s = String(i)
        case .double(let d):
            if let i = v.intValue { s = String(i) } else { s = String(d) }
        case .null: s = "0"
        default: throw mismatch("quantity string or number")
        }
        if s.isEmpty { s = "0" }
        var sw = PBWriter()
        sw.string(1, s)
        w.bytes(number, sw.out)
    case .intOrString:
        var sw = PBWriter()
        switch v {
        case .string(let s):
            sw.int(1, 1); sw.int(2, 0); sw.string(3, s)
        case .int, .double, .null:
            let i = try integer(Int64(Int32.min), Int64(Int32.max), "integer or string")
            sw.int(1, 0); sw.int(2, i); sw.string(3, "")
        default: throw mismatch("integer or string")
        }
        w.bytes(number, sw.out)
    case .raw:
        var sw = PBWriter()
        if !v.isNull {
            let data = try jsonBytes(v, path: path)
            sw.bytes(1, data)
        }
        w.bytes(number, sw.out)
    case .fieldsV1:
        var sw = PBWriter()
        if !v.isNull {
            guard case .object = v else { throw mismatch("object") }
            sw.bytes(1, try jsonBytes(v, path: path))
        }
        w.bytes(number, sw.out)
    case .message(let name):
        guard let m = PBInfo.of(name) else { throw ProtobufError("\(path): unknown message \(name)") }
        var sw = PBWriter()
        if case .object(let o) = v { try encodeMessage(o, m, into: &sw) } else if !v.isNull { throw mismatch("object") }
        w.bytes(number, sw.out)
    case .wrapped(let inner):
        var sw = PBWriter()
        if !v.isNull {
            guard case .array = v else { throw mismatch("array") }
            try encodeField(v, inner, number: 1, path: path, into: &sw)
        }
        w.bytes(number, sw.out)
    case .list, .map:
        throw ProtobufError("\(path): nested lists and maps have no protobuf form")
    }
}

private func jsonBytes(_ v: JSONValue, path: String) throws -> [UInt8] {
    do { return Array(try v.encoded()) } catch { throw ProtobufError("\(path): cannot encode JSON: \(error)") }
}

// MARK: - Decoding

private func decodeMessage(_ bytes: ArraySlice<UInt8>, _ m: SchemaMessage, path: String) throws -> [String: JSONValue] {
    guard let info = PBInfo.of(m.name) else { throw ProtobufError("unknown message \(m.name)") }
    return try decodeMessage(bytes, info)
}

private func decodeMessage(_ bytes: ArraySlice<UInt8>, _ info: PBInfo) throws -> [String: JSONValue] {
    var r = PBReader(bytes, path: "")
    // Occurrences per field, by position in `ordered` (most fields occur once; lists repeat).
    var byField = [[WireValue]](repeating: [], count: info.ordered.count)
    while let (num, wt) = try r.next() {
        guard num < info.indexByNumber.count, case let i = info.indexByNumber[num], i >= 0 else { try r.skip(wt); continue }
        let v: WireValue
        switch wt {
        case 0: v = .varint(try r.varint())
        case 1: v = .fixed64(try r.fixed64())
        case 2: v = .bytes(try r.lengthDelimited())
        case 5: v = .fixed32(try r.fixed32())
        default: throw ProtobufError("unsupported wire type \(wt) for field \(num)")
        }
        byField[i].append(v)
    }
    var out: [String: JSONValue] = [:]
    for (i, f) in info.ordered.enumerated() {
        let values = byField[i]
        if values.isEmpty { continue }
        if f.inline {
            guard let subName = f.type.messageName, let sub = PBInfo.of(subName) else { continue }
            let sliced = try concatenated(values, path: "")
            for (k, v) in try decodeMessage(sliced, sub) { out[k] = v }
            continue
        }
        do {
            if let v = try decodeField(values, f.type, path: ""), keep(v, f) { out[f.name] = v }
        } catch let e as ProtobufError { throw e.under(f.name) }
    }
    return out
}

/// Whether a decoded value is worth showing: the zero values Go would hide (or print as noise) are dropped.
private func keep(_ v: JSONValue, _ f: PBField) -> Bool {
    switch v {
    case .null: return false
    case .object(let o) where o.isEmpty:
        if case .message = f.type { return !f.omitEmpty || f.pointer }
        if case .map = f.type { return false }
        return true
    case .array(let a) where a.isEmpty: return false
    default: break
    }
    guard f.omitEmpty, !f.pointer else { return true }
    switch (f.type, v) {
    case (.string, .string(let s)), (.bytes, .string(let s)): return !s.isEmpty
    case (.int32, .int(let i)), (.int64, .int(let i)): return i != 0
    case (.double, .double(let d)): return d != 0
    case (.bool, .bool(let b)): return b
    default: return true
    }
}

/// All occurrences of a length-delimited field joined: protobuf merges repeated occurrences of a message.
private func concatenated(_ values: [WireValue], path: String) throws -> ArraySlice<UInt8> {
    if values.count == 1, case .bytes(let b) = values[0] { return b }
    var all: [UInt8] = []
    for v in values {
        guard case .bytes(let b) = v else { throw ProtobufError("\(path): wrong wire type \(v.wireType), expected 2") }
        all += b
    }
    return all[...]
}

private func decodeField(_ values: [WireValue], _ t: SchemaType, path: String) throws -> JSONValue? {
    switch t {
    case .list(let e):
        var items: [JSONValue] = []
        for (i, v) in values.enumerated() {
            if case .bytes(let b) = v, isPackable(e) {
                var r = PBReader(b, path: path)
                while !r.atEnd {
                    let one: WireValue = e == .double ? .fixed64(try r.fixed64()) : .varint(try r.varint())
                    do { items.append(try decodeSingle([one], e, path: "")) } catch let err as ProtobufError { throw err.under("[\(items.count)]") }
                }
            } else {
                do { items.append(try decodeSingle([v], e, path: "")) } catch let err as ProtobufError { throw err.under("[\(i)]") }
            }
        }
        return .array(items)
    case .map(let e):
        var entries: [String: JSONValue] = [:]
        for v in values {
            guard case .bytes(let b) = v else { throw ProtobufError("\(path): wrong wire type \(v.wireType) for a map entry") }
            var r = PBReader(b, path: path)
            var key = ""
            var vals: [WireValue] = []
            while let (num, wt) = try r.next() {
                switch (num, wt) {
                case (1, 2): key = try r.stringValue()
                case (1, _): throw ProtobufError("\(path): wrong wire type \(wt) for a map key")
                case (2, 0): vals.append(.varint(try r.varint()))
                case (2, 1): vals.append(.fixed64(try r.fixed64()))
                case (2, 2): vals.append(.bytes(try r.lengthDelimited()))
                case (2, 5): vals.append(.fixed32(try r.fixed32()))
                default: try r.skip(wt)
                }
            }
            do { entries[key] = vals.isEmpty ? zeroValue(e) : try decodeSingle(vals, e, path: "") }
            catch let err as ProtobufError { throw err.under(".\(key)") }
        }
        return .object(entries)
    default:
        return try decodeSingle(values, t, path: path)
    }
}

private func isPackable(_ t: SchemaType) -> Bool {
    switch t {
    case .bool, .int32, .int64, .double: return true
    default: return false
    }
}

/// The JSON Go prints for a type's zero value (used for map entries without a value).
private func zeroValue(_ t: SchemaType) -> JSONValue {
    switch t {
    case .string, .bytes: return .string("")
    case .bool: return .bool(false)
    case .int32, .int64: return .int(0)
    case .double: return .double(0)
    case .quantity: return .string("0")
    case .intOrString: return .int(0)
    case .message: return .object([:])
    case .wrapped, .list: return .array([])
    case .map: return .object([:])
    case .time, .microTime, .duration, .raw, .fieldsV1: return t == .duration ? .string("0s") : .null
    }
}

/// A non-repeated value from all its occurrences (the last scalar wins; messages merge).
private func decodeSingle(_ values: [WireValue], _ t: SchemaType, path: String) throws -> JSONValue {
    func lastVarint() throws -> UInt64 {
        guard case .varint(let x) = values.last! else { throw ProtobufError("\(path): wrong wire type \(values.last!.wireType), expected 0") }
        return x
    }
    func payload() throws -> ArraySlice<UInt8> { try concatenated(values, path: path) }
    func lastBytes() throws -> ArraySlice<UInt8> {
        guard case .bytes(let b) = values.last! else { throw ProtobufError("\(path): wrong wire type \(values.last!.wireType), expected 2") }
        return b
    }
    switch t {
    case .string:
        let b = try lastBytes()
        guard let s = String(validating: b, as: UTF8.self) else { throw ProtobufError("\(path): invalid UTF-8 in string") }
        return .string(s)
    case .bool: return .bool(try lastVarint() != 0)
    case .int32: return .int(Int64(Int32(truncatingIfNeeded: try lastVarint())))
    case .int64: return .int(Int64(bitPattern: try lastVarint()))
    case .double:
        guard case .fixed64(let x) = values.last! else { throw ProtobufError("\(path): wrong wire type \(values.last!.wireType), expected 1") }
        return .double(Double(bitPattern: x))
    case .bytes:
        return .string(Data(try lastBytes()).base64EncodedString())
    case .time, .microTime:
        let b = try payload()
        if b.isEmpty { return .null }  // Go's zero time
        var r = PBReader(b, path: path)
        var secs: Int64 = 0, nanos: Int64 = 0
        while let (num, wt) = try r.next() {
            switch (num, wt) {
            case (1, 0): secs = Int64(bitPattern: try r.varint())
            case (2, 0): nanos = Int64(Int32(truncatingIfNeeded: try r.varint()))
            case (1, _), (2, _): throw ProtobufError("\(path): wrong wire type \(wt) in a timestamp")
            default: try r.skip(wt)
            }
        }
        if t == .time { return .string(pbFormatRFC3339(secs, nanos: nil)) }
        // Normalize out-of-range nanos the way time.Unix does, then keep microseconds.
        secs = secs &+ nanos / 1_000_000_000
        nanos %= 1_000_000_000
        if nanos < 0 { nanos += 1_000_000_000; secs = secs &- 1 }
        return .string(pbFormatRFC3339(secs, nanos: nanos / 1000 * 1000))
    case .duration:
        var r = PBReader(try payload(), path: path)
        var ns: Int64 = 0
        while let (num, wt) = try r.next() {
            if num == 1 {
                guard wt == 0 else { throw ProtobufError("\(path): wrong wire type \(wt) in a duration") }
                ns = Int64(bitPattern: try r.varint())
            } else { try r.skip(wt) }
        }
        return .string(pbFormatDuration(ns))
    case .quantity:
        var r = PBReader(try payload(), path: path)
        var s = ""
        while let (num, wt) = try r.next() {
            if num == 1 {
                guard wt == 2 else { throw ProtobufError("\(path): wrong wire type \(wt) in a quantity") }
                s = try r.stringValue()
            } else { try r.skip(wt) }
        }
        return .string(s.isEmpty ? "0" : s)
    case .intOrString:
        var r = PBReader(try payload(), path: path)
        var kind: Int64 = 0, iv: Int64 = 0
        var sv = ""
        while let (num, wt) = try r.next() {
            switch (num, wt) {
            case (1, 0): kind = Int64(bitPattern: try r.varint())
            case (2, 0): iv = Int64(Int32(truncatingIfNeeded: try r.varint()))
            case (3, 2): sv = try r.stringValue()
            case (1...3, _): throw ProtobufError("\(path): wrong wire type \(wt) in an IntOrString")
            default: try r.skip(wt)
            }
        }
        return kind == 1 ? .string(sv) : .int(iv)
    case .raw, .fieldsV1:
        var r = PBReader(try payload(), path: path)
        var raw: ArraySlice<UInt8> = []
        while let (num, wt) = try r.next() {
            if num == 1 {
                guard wt == 2 else { throw ProtobufError("\(path): wrong wire type \(wt) in raw data") }
                raw = try r.lengthDelimited()
            } else { try r.skip(wt) }
        }
        if raw.isEmpty { return .null }
        if t == .raw, raw.count >= 4, Array(raw.prefix(4)) == KubeProtobuf.magic {
            do { return try KubeProtobuf.decodeObject(raw) } catch let e as ProtobufError {
                throw ProtobufError("\(path): embedded object: \(e.description)")
            }
        }
        do { return try JSONValue.parse(Data(raw)) } catch { throw ProtobufError("\(path): raw data is neither JSON nor an enveloped protobuf object") }
    case .message(let name):
        guard let m = PBInfo.of(name) else { throw ProtobufError("\(path): unknown message \(name)") }
        return .object(try decodeMessage(try payload(), m))
    case .wrapped(let inner):
        var r = PBReader(try payload(), path: path)
        var items: [WireValue] = []
        while let (num, wt) = try r.next() {
            guard num == 1 else { try r.skip(wt); continue }
            switch wt {
            case 0: items.append(.varint(try r.varint()))
            case 1: items.append(.fixed64(try r.fixed64()))
            case 2: items.append(.bytes(try r.lengthDelimited()))
            case 5: items.append(.fixed32(try r.fixed32()))
            default: throw ProtobufError("\(path): unsupported wire type \(wt)")
            }
        }
        return try decodeField(items, inner, path: path) ?? .array([])
    case .list, .map:
        throw ProtobufError("\(path): nested lists and maps have no protobuf form")
    }
}

// MARK: - Time and duration text

private func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146097 + doe - 719468
}

private func civilFromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
    let z = z0 + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
}

/// "2006-01-02T15:04:05(.999999999)(Z|+07:00)" -> Unix seconds and nanoseconds.
func pbParseRFC3339(_ s: String) -> (Int64, Int32)? {
    let b = Array(s.utf8)
    func num(_ from: Int, _ n: Int) -> Int64? {
        guard from + n <= b.count else { return nil }
        var v: Int64 = 0
        for c in b[from..<(from + n)] {
            guard c >= 48, c <= 57 else { return nil }
            v = v * 10 + Int64(c - 48)
        }
        return v
    }
    guard b.count >= 20, let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
          b[10] == 84 || b[10] == 116, let h = num(11, 2), b[13] == 58, let mi = num(14, 2), b[16] == 58,
          let sec = num(17, 2) else { return nil }
    guard (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec < 61 else { return nil }
    var i = 19
    var nanos: Int64 = 0
    if i < b.count, b[i] == 46 {
        i += 1
        var digits = 0
        while i < b.count, b[i] >= 48, b[i] <= 57 {
            if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 48) }
            digits += 1; i += 1
        }
        guard digits > 0 else { return nil }
        for _ in digits..<max(digits, 9) { nanos *= 10 }
    }
    guard i < b.count else { return nil }
    var offset: Int64 = 0
    if b[i] == 90 || b[i] == 122 {
        i += 1
    } else if b[i] == 43 || b[i] == 45 {
        guard let oh = num(i + 1, 2), b.count > i + 3, b[i + 3] == 58, let om = num(i + 4, 2) else { return nil }
        offset = (oh * 3600 + om * 60) * (b[i] == 45 ? -1 : 1)
        i += 6
    } else { return nil }
    guard i == b.count else { return nil }
    let secs = daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
    return (secs, Int32(nanos))
}

/// UTC RFC 3339; with `nanos`, six fractional digits (RFC3339Micro).
func pbFormatRFC3339(_ secs: Int64, nanos: Int64?) -> String {
    let (days, rem) = secs.quotientAndRemainder(dividingBy: 86400)
    var dd = days, r = rem
    if r < 0 { r += 86400; dd -= 1 }
    let (y, m, d) = civilFromDays(dd)
    func p(_ v: Int64, _ w: Int) -> String {
        let s = String(v)
        return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
    }
    var out = "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(r / 3600, 2)):\(p(r / 60 % 60, 2)):\(p(r % 60, 2))"
    if let n = nanos { out += "." + p(n / 1000, 6) }
    return out + "Z"
}

/// Go's time.ParseDuration.
func pbParseDuration(_ s: String) -> Int64? {
    var b = Array(s.utf8)[...]
    var neg = false
    if let c = b.first, c == 43 || c == 45 { neg = c == 45; b = b.dropFirst() }
    if b.elementsEqual("0".utf8) { return 0 }
    if b.isEmpty { return nil }
    var total: Double = 0
    while !b.isEmpty {
        var numText = ""
        while let c = b.first, (c >= 48 && c <= 57) || c == 46 { numText.append(Character(UnicodeScalar(c))); b = b.dropFirst() }
        guard !numText.isEmpty, numText != ".", let v = Double(numText.hasPrefix(".") ? "0" + numText : numText) else { return nil }
        var unitText = ""
        while let c = b.first, !((c >= 48 && c <= 57) || c == 46) { unitText.unicodeScalars.append(UnicodeScalar(c)); b = b.dropFirst() }
        // µ is two UTF-8 bytes; rebuild the unit from the raw bytes.
        let unitBytes = Array(unitText.unicodeScalars.map { UInt8($0.value) })
        let unit = String(decoding: unitBytes, as: UTF8.self)
        let scale: Double
        switch unit {
        case "ns": scale = 1
        case "us", "µs", "μs": scale = 1e3
        case "ms": scale = 1e6
        case "s": scale = 1e9
        case "m": scale = 60e9
        case "h": scale = 3600e9
        default: return nil
        }
        total += v * scale
    }
    guard total < 9.223372036854775e18 else { return nil }
    let ns = Int64(total.rounded())
    return neg ? -ns : ns
}

/// Go's time.Duration.String.
func pbFormatDuration(_ d: Int64) -> String {
    if d == 0 { return "0s" }
    let neg = d < 0
    let u = d.magnitude
    func frac(_ v: UInt64, _ prec: Int) -> String {
        // v in units of 10^-prec; print integer part and trimmed fraction.
        var p: UInt64 = 1
        for _ in 0..<prec { p *= 10 }
        let whole = v / p, f = v % p
        if f == 0 { return String(whole) }
        var fs = String(f)
        fs = String(repeating: "0", count: prec - fs.count) + fs
        while fs.hasSuffix("0") { fs.removeLast() }
        return "\(whole).\(fs)"
    }
    var out: String
    if u < 1_000 {
        out = "\(u)ns"
    } else if u < 1_000_000 {
        out = frac(u, 3) + "µs"
    } else if u < 1_000_000_000 {
        out = frac(u, 6) + "ms"
    } else {
        let h = u / 3_600_000_000_000
        let m = (u / 60_000_000_000) % 60
        let s = u % 60_000_000_000
        out = ""
        if h > 0 { out += "\(h)h" }
        if h > 0 || m > 0 { out += "\(m)m" }
        out += frac(s, 9) + "s"
    }
    return neg ? "-" + out : out
}
