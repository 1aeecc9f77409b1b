// A JSON document tree: the apiserver's view of an object before and after typing, used for
// strict-field checks, merge/JSON patches and YAML conversion.
import Foundation

public enum JSONValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        get { if case .object(let o) = self { return o[key] } else { return nil } }
        set {
            if case .object(var o) = self { o[key] = newValue; self = .object(o) }
        }
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e18: return Int64(d)
        default: return nil
        }
    }
    public var isNull: Bool { if case .null = self { return true }; return false }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Value at a dotted path such as `metadata.name` or `spec.nodeName`.
    public func at(_ path: String) -> JSONValue? {
        var cur: JSONValue? = self
        for part in path.split(separator: ".") { cur = cur?[String(part)] }
        return cur
    }
}

extension JSONValue {
    /// Numbers compare by value: JSON does not tell 2000 from 2000.0.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        default: return false
        }
    }
    public func hash(into h: inout Hasher) {
        switch self {
        case .null: h.combine(0)
        case .bool(let b): h.combine(b)
        case .int(let i): h.combine(Double(i))
        case .double(let d): h.combine(d)
        case .string(let s): h.combine(s)
        case .array(let a): h.combine(a)
        case .object(let o): h.combine(o)
        }
    }
}

/// Any key of a JSON object.
struct AnyJSONKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        // Objects first: free-form parts (managedFields above all) are mostly objects, and every
        // failed attempt costs a thrown error.
        if let o = try? decoder.container(keyedBy: AnyJSONKey.self) {
            var out: [String: JSONValue] = [:]
            out.reserveCapacity(o.allKeys.count)
            for k in o.allKeys { out[k.stringValue] = try o.decode(JSONValue.self, forKey: k) }
            self = .object(out)
            return
        }
        if var a = try? decoder.unkeyedContainer() {
            var out: [JSONValue] = []
            if let n = a.count { out.reserveCapacity(n) }
            while !a.isAtEnd { out.append(try a.decode(JSONValue.self)) }
            self = .array(out)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "unsupported JSON value")
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

extension JSONValue {
    /// Parses JSON bytes. Uses JSONSerialization-free decoding so numbers keep their integer-ness.
    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { raw in
            var p = FastJSONParser(raw.bindMemory(to: UInt8.self))
            return try p.parseDocument()
        }
    }
    /// Sorted keys, no escaped slashes: the same bytes JSONEncoder writes with .sortedKeys.
    public func encoded(pretty: Bool = false) throws -> Data {
        var w = FastJSONWriter()
        w.out.reserveCapacity(512)
        w.write(self, pretty: pretty, indent: 0)
        return Data(w.out)
    }
    /// Converts any Encodable into a tree (the tree of the bytes KubeJSON.encode writes).
    public static func from<T: Encodable>(_ value: T) throws -> JSONValue {
        try TreeEncoder.encode(value)
    }
    /// Decodes a typed value from this tree, as JSONDecoder would from its bytes.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try TreeDecoder.decode(type, from: self)
    }
}

/// The JSON coders every component uses, so that bytes are stable (sorted keys) across them.
public enum KubeJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        // The same bytes JSONEncoder writes (TreeCodingTests), without its Codable containers.
        if !pretty { return try TreeEncoder.encode(value).encoded() }
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(value)
    }
    /// Parses the bytes into a tree (FastJSONParser) and decodes from it (TreeDecoder): 0.7 of
    /// JSONDecoder's time in `bench codec`, with its errors for values of the wrong type.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try TreeDecoder.decode(type, from: JSONValue.parse(data))
    }
}

/// RFC 7386 JSON merge patch.
public func jsonMergePatch(_ target: JSONValue, _ patch: JSONValue) -> JSONValue {
    guard case .object(let p) = patch else { return patch }
    var t: [String: JSONValue] = target.objectValue ?? [:]
    for (k, v) in p {
        if v.isNull { t.removeValue(forKey: k) } else { t[k] = jsonMergePatch(t[k] ?? .null, v) }
    }
    return .object(t)
}

/// RFC 6902 JSON patch.
public func jsonPatch(_ doc: JSONValue, _ ops: JSONValue) throws -> JSONValue {
    guard case .array(let list) = ops else { throw PatchError("a JSON patch must be an array of operations") }
    var doc = doc
    for (i, opv) in list.enumerated() {
        guard let op = opv["op"]?.stringValue, let path = opv["path"]?.stringValue else {
            throw PatchError("operation \(i): needs \"op\" and \"path\"")
        }
        let tokens = try pointerTokens(path)
        switch op {
        case "add": doc = try pointerSet(doc, tokens[...], opv["value"] ?? .null, insert: true)
        case "replace":
            _ = try pointerGet(doc, tokens[...])
            doc = try pointerSet(doc, tokens[...], opv["value"] ?? .null, insert: false)
        case "remove": doc = try pointerRemove(doc, tokens[...])
        case "test":
            guard try pointerGet(doc, tokens[...]) == (opv["value"] ?? .null) else { throw PatchError("operation \(i): test failed at \(path)") }
        case "move", "copy":
            guard let from = opv["from"]?.stringValue else { throw PatchError("operation \(i): \(op) needs \"from\"") }
            let ft = try pointerTokens(from)
            let v = try pointerGet(doc, ft[...])
            if op == "move" { doc = try pointerRemove(doc, ft[...]) }
            doc = try pointerSet(doc, tokens[...], v, insert: true)
        default: throw PatchError("operation \(i): unknown op \"\(op)\"")
        }
    }
    return doc
}

public struct PatchError: Error, CustomStringConvertible {
    public var description: String
    init(_ s: String) { description = s }
}

private func pointerTokens(_ path: String) throws -> [String] {
    if path.isEmpty { return [] }
    guard path.hasPrefix("/") else { throw PatchError("invalid JSON pointer \"\(path)\"") }
    return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
        $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
    }
}

private func pointerGet(_ doc: JSONValue, _ t: ArraySlice<String>) throws -> JSONValue {
    guard let first = t.first else { return doc }
    switch doc {
    case .object(let o):
        guard let v = o[first] else { throw PatchError("path not found: \(first)") }
        return try pointerGet(v, t.dropFirst())
    case .array(let a):
        guard let i = Int(first), i >= 0, i < a.count else { throw PatchError("array index out of range: \(first)") }
        return try pointerGet(a[i], t.dropFirst())
    default: throw PatchError("path not found: \(first)")
    }
}

private func pointerSet(_ doc: JSONValue, _ t: ArraySlice<String>, _ value: JSONValue, insert: Bool) throws -> JSONValue {
    guard let first = t.first else { return value }
    let rest = t.dropFirst()
    switch doc {
    case .object(var o):
        if rest.isEmpty { o[first] = value } else {
            guard let child = o[first] else { throw PatchError("path not found: \(first)") }
            o[first] = try pointerSet(child, rest, value, insert: insert)
        }
        return .object(o)
    case .array(var a):
        if rest.isEmpty {
            if first == "-" && insert { a.append(value); return .array(a) }
            guard let i = Int(first), i >= 0, i <= a.count else { throw PatchError("array index out of range: \(first)") }
            if insert { a.insert(value, at: i) } else {
                guard i < a.count else { throw PatchError("array index out of range: \(first)") }
                a[i] = value
            }
            return .array(a)
        }
        guard let i = Int(first), i >= 0, i < a.count else { throw PatchError("array index out of range: \(first)") }
        a[i] = try pointerSet(a[i], rest, value, insert: insert)
        return .array(a)
    default: throw PatchError("path not found: \(first)")
    }
}

private func pointerRemove(_ doc: JSONValue, _ t: ArraySlice<String>) throws -> JSONValue {
    guard let first = t.first else { throw PatchError("cannot remove the whole document") }
    let rest = t.dropFirst()
    switch doc {
    case .object(var o):
        guard let child = o[first] else { throw PatchError("path not found: \(first)") }
        if rest.isEmpty { o.removeValue(forKey: first) } else { o[first] = try pointerRemove(child, rest) }
        return .object(o)
    case .array(var a):
        guard let i = Int(first), i >= 0, i < a.count else { throw PatchError("array index out of range: \(first)") }
        if rest.isEmpty { a.remove(at: i) } else { a[i] = try pointerRemove(a[i], rest) }
        return .array(a)
    default: throw PatchError("path not found: \(first)")
    }
}

/// Field paths in input that the typed re-encoding lost: the unknown fields strict decoding rejects.
public func unknownFields(input: JSONValue, typed: JSONValue, path: String = "") -> [String] {
    switch (input, typed) {
    case (.object(let a), .object(let b)):
        var out: [String] = []
        for k in a.keys.sorted() {
            let v = a[k]!
            let p = path.isEmpty ? k : "\(path).\(k)"
            if let tv = b[k] { out += unknownFields(input: v, typed: tv, path: p) }
            else if !v.isNull && !(v.objectValue?.isEmpty ?? false) && !(v.arrayValue?.isEmpty ?? false) { out.append(p) }
        }
        return out
    case (.array(let a), .array(let b)) where a.count == b.count:
        var out: [String] = []
        for i in a.indices { out += unknownFields(input: a[i], typed: b[i], path: "\(path)[\(i)]") }
        return out
    default: return []
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral {
    public init(stringLiteral s: String) { self = .string(s) }
    public init(booleanLiteral b: Bool) { self = .bool(b) }
    public init(integerLiteral i: Int64) { self = .int(i) }
}
