// Codable straight between typed objects and JSONValue trees, without Foundation's JSONEncoder and
// JSONDecoder. The apiserver used to turn a request's tree into bytes to hand them to JSONDecoder,
// and a typed object into bytes with JSONEncoder to parse them back into a tree; both coders were
// most of a create's CPU. TreeDecoder reads a tree directly; TreeEncoder builds one, which
// FastJSONWriter turns into the bytes JSONEncoder would write (sorted keys, unescaped slashes).
// JSONValue members are taken and given as they are, with no walk through containers.
// Errors are the DecodingErrors JSONDecoder throws, with the same coding paths and descriptions.
import Foundation

// MARK: decoding

/// A coding path as a linked list: nested containers share their parent's.
final class TreePath: @unchecked Sendable {
    let parent: TreePath?
    let key: (any CodingKey)?
    init(parent: TreePath?, key: (any CodingKey)?) { self.parent = parent; self.key = key }
    static let root = TreePath(parent: nil, key: nil)
    func appending(_ k: any CodingKey) -> TreePath { TreePath(parent: self, key: k) }
    var keys: [any CodingKey] {
        var out: [any CodingKey] = []
        var p: TreePath? = self
        while let n = p { if let k = n.key { out.append(k) }; p = n.parent }
        return out.reversed()
    }
}

struct TreeIndexKey: CodingKey {
    let index: Int
    var intValue: Int? { index }
    var stringValue: String { "Index \(index)" }
    init(_ i: Int) { index = i }
    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { return nil }
}

struct TreeStringKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// What JSONDecoder calls a value of each kind in its type-mismatch descriptions.
func treeKindDescription(_ v: JSONValue) -> String {
    switch v {
    case .null: return "null"
    case .bool: return "bool"
    case .int, .double: return "number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "a dictionary"
    }
}

func treeTypeMismatch(_ type: Any.Type, _ v: JSONValue, _ path: TreePath) -> DecodingError {
    .typeMismatch(type, .init(codingPath: path.keys, debugDescription: "Expected to decode \(type) but found \(treeKindDescription(v)) instead."))
}

func treeValueNotFound(_ type: Any.Type, _ path: TreePath) -> DecodingError {
    .valueNotFound(type, .init(codingPath: path.keys, debugDescription: "Cannot get value of type \(type) -- found null value instead"))
}

/// Reads typed values out of a JSONValue tree.
public struct TreeDecoder: Decoder {
    let value: JSONValue
    let path: TreePath
    public var codingPath: [any CodingKey] { path.keys }
    public var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, path: TreePath) { self.value = value; self.path = path }

    /// Decodes `type` from `value`.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try TreeDecoder.unbox(type, value, TreePath.root)
    }

    static func unbox<T: Decodable>(_ type: T.Type, _ v: JSONValue, _ path: TreePath) throws -> T {
        try unbox(type, v, path, nil)
    }

    /// `unbox` at `parent` + `key`. The path's node is made only for a value that needs it (a
    /// nested container, or an error): most values are strings and numbers, and a node per
    /// field was a heap allocation per field.
    static func unbox<T: Decodable>(_ type: T.Type, _ v: JSONValue, _ parent: TreePath, _ key: (any CodingKey)?) throws -> T {
        if T.self == JSONValue.self { return unsafeBitCast(v, to: T.self) }
        if T.self == String.self {
            guard case .string(let s) = v else { throw mismatch(type, v, parent, key) }
            return unsafeBitCast(s, to: T.self)
        }
        if T.self == Int.self { return unsafeBitCast(try integer(Int.self, v, parent, key), to: T.self) }
        if T.self == Int32.self { return unsafeBitCast(try integer(Int32.self, v, parent, key), to: T.self) }
        if T.self == Int64.self { return unsafeBitCast(try integer(Int64.self, v, parent, key), to: T.self) }
        if T.self == Bool.self {
            guard case .bool(let b) = v else { throw mismatch(type, v, parent, key) }
            return unsafeBitCast(b, to: T.self)
        }
        if T.self == Double.self { return unsafeBitCast(try double(v, key.map { parent.appending($0) } ?? parent), to: T.self) }
        return try T(from: TreeDecoder(v, path: key.map { parent.appending($0) } ?? parent))
    }

    static func mismatch(_ type: Any.Type, _ v: JSONValue, _ parent: TreePath, _ key: (any CodingKey)?) -> DecodingError {
        let path = key.map { parent.appending($0) } ?? parent
        return v.isNull ? treeValueNotFound(type, path) : treeTypeMismatch(type, v, path)
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ v: JSONValue, _ parent: TreePath, _ key: (any CodingKey)?) throws -> I {
        if case .int(let i) = v, let x = I(exactly: i) { return x }
        return try integer(type, v, key.map { parent.appending($0) } ?? parent)
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ v: JSONValue, _ path: TreePath) throws -> I {
        switch v {
        case .int(let i):
            if let x = I(exactly: i) { return x }
            throw DecodingError.dataCorrupted(.init(codingPath: path.keys, debugDescription: "Number \(i) is not representable in Swift."))
        case .double(let d):
            if let x = I(exactly: d) { return x }
            throw DecodingError.dataCorrupted(.init(codingPath: path.keys, debugDescription: "Number \(d) is not representable in Swift."))
        case .null: throw treeValueNotFound(type, path)
        default: throw treeTypeMismatch(type, v, path)
        }
    }

    static func double(_ v: JSONValue, _ path: TreePath) throws -> Double {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .null: throw treeValueNotFound(Double.self, path)
        default: throw treeTypeMismatch(Double.self, v, path)
        }
    }

    public func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        switch value {
        case .object(let o): return KeyedDecodingContainer(TreeKeyedDecoding<Key>(object: o, path: path))
        case .null: throw DecodingError.valueNotFound([String: Any].self, .init(codingPath: codingPath, debugDescription: "Cannot get keyed decoding container -- found null value instead"))
        default: throw treeTypeMismatch([String: Any].self, value, path)
        }
    }

    public func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        switch value {
        case .array(let a): return TreeUnkeyedDecoding(array: a, path: path)
        case .null: throw DecodingError.valueNotFound([Any].self, .init(codingPath: codingPath, debugDescription: "Cannot get unkeyed decoding container -- found null value instead"))
        default: throw treeTypeMismatch([Any].self, value, path)
        }
    }

    public func singleValueContainer() throws -> any SingleValueDecodingContainer { TreeSingleDecoding(value: value, path: path) }
}

struct TreeKeyedDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    let path: TreePath
    var codingPath: [any CodingKey] { path.keys }
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    func value(_ key: Key) throws -> JSONValue {
        guard let v = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."))
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key).isNull }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try TreeDecoder.unbox(type, try value(key), path, key)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let v = object[key.stringValue], !v.isNull else { return nil }
        return try TreeDecoder.unbox(type, v, path, key)
    }

    // The concrete overloads the standard library's types call; all go the generic way.
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decode(type as Bool.Type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decode(type as String.Type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decode(type as Double.Type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decode(type as Int.Type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decode(type as Int32.Type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decode(type as Int64.Type, key) }
    private func decode<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T { try TreeDecoder.unbox(type, try value(key), path, key) }
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try present(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try present(type, key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try present(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try present(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try present(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try present(type, key) }
    private func present<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        guard let v = object[key.stringValue], !v.isNull else { return nil }
        return try TreeDecoder.unbox(type, v, path, key)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(try value(key), path: path.appending(key)).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TreeDecoder(try value(key), path: path.appending(key)).unkeyedContainer()
    }
    func superDecoder() throws -> any Decoder { TreeDecoder(object["super"] ?? .null, path: path.appending(TreeStringKey("super"))) }
    func superDecoder(forKey key: Key) throws -> any Decoder { TreeDecoder(object[key.stringValue] ?? .null, path: path.appending(key)) }
}

struct TreeUnkeyedDecoding: UnkeyedDecodingContainer {
    let array: [JSONValue]
    let path: TreePath
    var currentIndex = 0
    var codingPath: [any CodingKey] { path.keys }
    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    init(array: [JSONValue], path: TreePath) { self.array = array; self.path = path }

    mutating func next<T>(_ type: T.Type) throws -> (JSONValue, TreePath) {
        let (v, k) = try nextLazy(type)
        return (v, path.appending(k))
    }

    /// The next value and its index key, the path's node not made yet.
    mutating func nextLazy<T>(_ type: T.Type) throws -> (JSONValue, TreeIndexKey) {
        guard currentIndex < array.count else {
            throw DecodingError.valueNotFound(type, .init(codingPath: path.appending(TreeIndexKey(currentIndex)).keys, debugDescription: "Unkeyed container is at end."))
        }
        defer { currentIndex += 1 }
        return (array[currentIndex], TreeIndexKey(currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < array.count else {
            throw DecodingError.valueNotFound(Any?.self, .init(codingPath: path.appending(TreeIndexKey(currentIndex)).keys, debugDescription: "Unkeyed container is at end."))
        }
        if array[currentIndex].isNull { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, k) = try nextLazy(type)
        return try TreeDecoder.unbox(type, v, path, k)
    }
    mutating func decode(_ type: String.Type) throws -> String { try decode1(type) }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try decode1(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try decode1(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try decode1(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try decode1(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try decode1(type) }
    private mutating func decode1<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, k) = try nextLazy(type)
        return try TreeDecoder.unbox(type, v, path, k)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next(type)
        return try TreeDecoder(v, path: p).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next([Any].self)
        return try TreeDecoder(v, path: p).unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next(Any.self)
        return TreeDecoder(v, path: p)
    }
}

struct TreeSingleDecoding: SingleValueDecodingContainer {
    let value: JSONValue
    let path: TreePath
    var codingPath: [any CodingKey] { path.keys }
    func decodeNil() -> Bool { value.isNull }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: String.Type) throws -> String { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Bool.Type) throws -> Bool { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Int.Type) throws -> Int { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Int32.Type) throws -> Int32 { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Int64.Type) throws -> Int64 { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Double.Type) throws -> Double { try TreeDecoder.unbox(type, value, path) }
    func decode(_ type: Float.Type) throws -> Float { Float(try TreeDecoder.double(value, path)) }
    func decode(_ type: UInt.Type) throws -> UInt { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: Int8.Type) throws -> Int8 { try TreeDecoder.integer(type, value, path) }
    func decode(_ type: Int16.Type) throws -> Int16 { try TreeDecoder.integer(type, value, path) }
}

// MARK: encoding

/// Where an encoder's containers write. A class, so that nested containers can fill their
/// parent's slot after the parent has handed them out.
final class TreeNode {
    enum Kind { case empty, value(JSONValue), object([String: JSONValue], [(String, TreeNode)]), array([JSONValue], [(Int, TreeNode)]) }
    var kind: Kind = .empty

    /// The finished tree; nested containers' nodes are folded in here.
    var value: JSONValue {
        switch kind {
        case .empty: return .object([:])
        case .value(let v): return v
        case .object(var o, let nested):
            for (k, n) in nested { o[k] = n.value }
            return .object(o)
        case .array(var a, let nested):
            for (i, n) in nested where i < a.count { a[i] = n.value }
            return .array(a)
        }
    }
}

/// Builds a JSONValue tree from an Encodable, as JSONEncoder would build its JSON.
public struct TreeEncoder: Encoder {
    let node: TreeNode
    let path: TreePath
    public var codingPath: [any CodingKey] { path.keys }
    public var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// The tree `value` encodes to.
    public static func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        try box(value, TreePath.root)
    }

    static func box<T: Encodable>(_ value: T, _ path: TreePath) throws -> JSONValue {
        try box(value, path, nil)
    }

    /// `box` at `parent` + `key`, the path's node made only for a value that needs it.
    static func box<T: Encodable>(_ value: T, _ parent: TreePath, _ key: (any CodingKey)?) throws -> JSONValue {
        // Type comparisons first: a failed `as?` of every value to each type costs more.
        if T.self == JSONValue.self { return unsafeBitCast(value, to: JSONValue.self) }
        if T.self == String.self { return .string(unsafeBitCast(value, to: String.self)) }
        if T.self == Int.self { return .int(Int64(unsafeBitCast(value, to: Int.self))) }
        if T.self == Bool.self { return .bool(unsafeBitCast(value, to: Bool.self)) }
        if T.self == Int32.self { return .int(Int64(unsafeBitCast(value, to: Int32.self))) }
        if T.self == Int64.self { return .int(unsafeBitCast(value, to: Int64.self)) }
        let path = key.map { parent.appending($0) } ?? parent
        if T.self == Double.self { return try double(unsafeBitCast(value, to: Double.self), path) }
        if T.self == Data.self { return .string(unsafeBitCast(value, to: Data.self).base64EncodedString()) }
        if T.self == URL.self { return .string(unsafeBitCast(value, to: URL.self).absoluteString) }
        let n = TreeNode()
        try value.encode(to: TreeEncoder(node: n, path: path))
        return n.value
    }

    static func double(_ d: Double, _ path: TreePath) throws -> JSONValue {
        guard d.isFinite else {
            throw EncodingError.invalidValue(d, .init(codingPath: path.keys, debugDescription: "Unable to encode Double.\(d) directly in JSON."))
        }
        return .double(d)
    }

    public func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.kind {} else { node.kind = .object([:], []) }
        return KeyedEncodingContainer(TreeKeyedEncoding<Key>(node: node, path: path))
    }
    public func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = node.kind {} else { node.kind = .array([], []) }
        return TreeUnkeyedEncoding(node: node, path: path)
    }
    public func singleValueContainer() -> any SingleValueEncodingContainer { TreeSingleEncoding(node: node, path: path) }
}

struct TreeKeyedEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: TreeNode
    let path: TreePath
    var codingPath: [any CodingKey] { path.keys }

    func put(_ v: JSONValue, _ key: Key) {
        guard case .object(var o, let nested) = node.kind else { return }
        node.kind = .empty   // o is the only reference while it changes
        o[key.stringValue] = v
        node.kind = .object(o, nested)
    }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(try TreeEncoder.double(value, path.appending(key)), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { put(try TreeEncoder.box(value, path, key), key) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = TreeNode(); child.kind = .object([:], [])
        adopt(child, key.stringValue)
        return KeyedEncodingContainer(TreeKeyedEncoding<NestedKey>(node: child, path: path.appending(key)))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = TreeNode(); child.kind = .array([], [])
        adopt(child, key.stringValue)
        return TreeUnkeyedEncoding(node: child, path: path.appending(key))
    }
    func adopt(_ child: TreeNode, _ key: String) {
        guard case .object(var o, var nested) = node.kind else { return }
        node.kind = .empty
        o[key] = .null
        nested.append((key, child))
        node.kind = .object(o, nested)
    }
    mutating func superEncoder() -> any Encoder {
        let child = TreeNode()
        adopt(child, "super")
        return TreeEncoder(node: child, path: path.appending(TreeStringKey("super")))
    }
    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = TreeNode()
        adopt(child, key.stringValue)
        return TreeEncoder(node: child, path: path.appending(key))
    }
}

struct TreeUnkeyedEncoding: UnkeyedEncodingContainer {
    let node: TreeNode
    let path: TreePath
    var codingPath: [any CodingKey] { path.keys }
    var count: Int { if case .array(let a, _) = node.kind { return a.count }; return 0 }

    func put(_ v: JSONValue) {
        guard case .array(var a, let nested) = node.kind else { return }
        node.kind = .empty
        a.append(v)
        node.kind = .array(a, nested)
    }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Int) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { put(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { put(.int(value)) }
    mutating func encode(_ value: Double) throws { put(try TreeEncoder.double(value, path.appending(TreeIndexKey(count)))) }
    mutating func encode<T: Encodable>(_ value: T) throws { put(try TreeEncoder.box(value, path, TreeIndexKey(count))) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = TreeNode(); child.kind = .object([:], [])
        let p = path.appending(TreeIndexKey(count))
        adopt(child)
        return KeyedEncodingContainer(TreeKeyedEncoding<NestedKey>(node: child, path: p))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = TreeNode(); child.kind = .array([], [])
        let p = path.appending(TreeIndexKey(count))
        adopt(child)
        return TreeUnkeyedEncoding(node: child, path: p)
    }
    func adopt(_ child: TreeNode) {
        guard case .array(var a, var nested) = node.kind else { return }
        node.kind = .empty
        nested.append((a.count, child))
        a.append(.null)
        node.kind = .array(a, nested)
    }
    mutating func superEncoder() -> any Encoder {
        let child = TreeNode()
        let p = path.appending(TreeIndexKey(count))
        adopt(child)
        return TreeEncoder(node: child, path: p)
    }
}

struct TreeSingleEncoding: SingleValueEncodingContainer {
    let node: TreeNode
    let path: TreePath
    var codingPath: [any CodingKey] { path.keys }
    mutating func encodeNil() throws { node.kind = .value(.null) }
    mutating func encode(_ value: Bool) throws { node.kind = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { node.kind = .value(.string(value)) }
    mutating func encode(_ value: Int) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { node.kind = .value(.int(value)) }
    mutating func encode(_ value: Int8) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: UInt) throws { node.kind = .value(value <= UInt(Int64.max) ? .int(Int64(value)) : .double(Double(value))) }
    mutating func encode(_ value: UInt8) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: UInt16) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: UInt32) throws { node.kind = .value(.int(Int64(value))) }
    mutating func encode(_ value: UInt64) throws { node.kind = .value(value <= UInt64(Int64.max) ? .int(Int64(value)) : .double(Double(value))) }
    mutating func encode(_ value: Double) throws { node.kind = .value(try TreeEncoder.double(value, path)) }
    mutating func encode(_ value: Float) throws { node.kind = .value(try TreeEncoder.double(Double(value), path)) }
    mutating func encode<T: Encodable>(_ value: T) throws { node.kind = .value(try TreeEncoder.box(value, path)) }
}
