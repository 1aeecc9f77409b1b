// Strategic merge patch, server side: applying a patch document to a stored object.
//
// The rules follow Kubernetes' pkg/util/strategicpatch (v0.32) and are driven by the schema table:
// a field's patch strategies ("merge", "retainKeys", "replace") and merge key decide whether a list is
// merged element by element (by key, or as a set of primitives) or replaced, and whether a map is merged
// or replaced. Directives understood in the patch:
//   "$patch": "replace" | "delete" | "merge"           on a map, or as a list element
//   "$retainKeys": [keys]                              on a map: drop other keys of the original
//   "$setElementOrder/<list>": [elements or keys]      the final order of a merged list
//   "$deleteFromPrimitiveList/<list>": [values]        values to remove from a merged primitive list
// Directives never appear in the result.
import Foundation

public struct StrategicMergeError: Error, CustomStringConvertible {
    public let description: String
    init(_ path: String, _ message: String) {
        description = path.isEmpty ? message : "\(path): \(message)"
    }
}

/// Applies a strategic merge patch to `original`, whose schema message is `message` (nil = unknown schema: plain JSON merge semantics, RFC 7386).
public func strategicMergePatch(_ original: JSONValue, _ patch: JSONValue, message: String?) throws -> JSONValue {
    guard let message else { return jsonMergePatch(original, patch) }
    guard case .object(let p) = patch else {
        throw StrategicMergeError("", "a strategic merge patch must be a JSON object, got \(patch.typeName)")
    }
    let base: [String: JSONValue]
    switch original {
    case .object(let o): base = o
    case .null: base = [:]
    default: throw StrategicMergeError("", "the object to patch must be a JSON object, got \(original.typeName)")
    }
    let merged = try SMP.mergeObject(base, p, shape: .message(message), path: "")
    return .object(merged ?? [:])
}

private enum SMP {
    static let patchKey = "$patch"
    static let retainKeysKey = "$retainKeys"
    static let orderPrefix = "$setElementOrder"
    static let deletePrefix = "$deleteFromPrimitiveList"

    /// What the keys of an object mean.
    enum Shape {
        case message(String)
        /// A map with free keys whose values all have one type.
        case mapOf(SchemaType)
        /// Free JSON (raw fields, fields missing from the schema): maps merge, lists are replaced.
        case free

        init(_ t: SchemaType?) {
            switch t {
            case .message(let m)?: self = .message(m)
            case .map(let v)?: self = .mapOf(v)
            default: self = .free
            }
        }
    }

    /// Patch metadata of one field.
    struct Meta {
        var type: SchemaType?
        var strategies: [String] = []
        var mergeKey: String?

        var merges: Bool { strategies.contains("merge") }
        var replaces: Bool { strategies.contains("replace") }
        var elementType: SchemaType? { type?.element }
        var isList: Bool { type?.element != nil }
    }

    static func meta(_ shape: Shape, _ key: String) -> Meta {
        switch shape {
        case .message(let m):
            guard let f = Schema.field(m, key) else { return Meta() }
            return Meta(type: f.type, strategies: f.patchStrategies, mergeKey: f.mergeKey)
        case .mapOf(let t): return Meta(type: t)
        case .free: return Meta()
        }
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    static func quoted(_ v: JSONValue) -> String {
        if let d = try? v.encoded(), let s = String(data: d, encoding: .utf8) { return s }
        return "\(v)"
    }

    // MARK: maps

    /// Merges `patch` into `original` (nil when the original has no such map). Returns nil when the map is
    /// to be dropped: a `$patch: delete` map with nothing to delete.
    static func mergeObject(_ original: [String: JSONValue]?, _ patch: [String: JSONValue], shape: Shape, path: String) throws -> [String: JSONValue]? {
        var patch = patch
        if let directive = patch.removeValue(forKey: patchKey) {
            switch directive {
            case .string("replace"):
                // The patch's own content, without anything from the original.
                return try mergeObject([:], patch, shape: shape, path: path) ?? [:]
            case .string("delete"):
                return original == nil ? nil : [:]
            case .string("merge"):
                break
            default:
                throw StrategicMergeError(path, "unknown $patch value \(quoted(directive)) (want replace, delete or merge)")
            }
        }
        var result = original ?? [:]

        // $retainKeys: keys of the original not listed are cleared before the patch is merged in.
        if let retain = patch.removeValue(forKey: retainKeysKey) {
            guard case .array(let list) = retain else {
                throw StrategicMergeError(join(path, retainKeysKey), "must be a list of field names, got \(retain.typeName)")
            }
            let keep = Set(list.compactMap(\.stringValue))
            for (k, v) in patch where !v.isNull && !k.hasPrefix(orderPrefix) && !k.hasPrefix(deletePrefix) && !keep.contains(k) {
                throw StrategicMergeError(path, "field \"\(k)\" is set by the patch but missing from $retainKeys")
            }
            for k in result.keys where !keep.contains(k) { result.removeValue(forKey: k) }
        }

        // Split the remaining keys into ordering directives, deletion lists and plain fields.
        var orders: [(field: String, list: [JSONValue])] = []
        var deletions: [(field: String, list: [JSONValue])] = []
        var fields: [String] = []
        for (k, v) in patch {
            if k.hasPrefix(orderPrefix) || k.hasPrefix(deletePrefix) {
                let isOrder = k.hasPrefix(orderPrefix)
                let prefix = isOrder ? orderPrefix : deletePrefix
                let rest = k.dropFirst(prefix.count)
                guard rest.hasPrefix("/"), rest.count > 1 else {
                    throw StrategicMergeError(path, "bad directive key \"\(k)\" (want \(prefix)/<field>)")
                }
                guard case .array(let list) = v else {
                    throw StrategicMergeError(join(path, k), "must be a list, got \(v.typeName)")
                }
                if isOrder { orders.append((String(rest.dropFirst()), list)) } else { deletions.append((String(rest.dropFirst()), list)) }
            } else {
                fields.append(k)
            }
        }

        // Lists with an explicit order: merge, then reorder.
        var handled = Set<String>()
        for (field, order) in orders.sorted(by: { $0.field < $1.field }) {
            handled.insert(field)
            let m = meta(shape, field)
            let fpath = join(path, field)
            let origList = result[field]?.arrayValue
            let patchValue = patch[field]
            if let pv = patchValue, pv.isNull {
                result.removeValue(forKey: field)
                continue
            }
            var patchList: [JSONValue]?
            if let pv = patchValue {
                guard case .array(let l) = pv else {
                    throw StrategicMergeError(fpath, "expected a list, got \(pv.typeName)")
                }
                patchList = l
            }
            if origList == nil && patchList == nil { continue }
            let mergeKey = objectList(origList ?? [], patchList ?? [], m) ? m.mergeKey : nil
            try checkOrder(patchList ?? [], order: order, mergeKey: mergeKey, field: field, path: path)

            var merged: [JSONValue]
            var server = origList ?? []
            if let pl = patchList, let ol = origList, m.isList, m.merges {
                (merged, server) = try mergeList(ol, pl, meta: m, path: fpath)
            } else if let pl = patchList {
                merged = try mergeValue(result[field], .array(pl), meta: m, path: fpath)?.arrayValue ?? []
            } else {
                merged = origList ?? []
            }
            merged = try reorder(merged, order: order, server: server, mergeKey: mergeKey, path: fpath)
            result[field] = .array(merged)
        }

        // Plain fields.
        for k in fields.sorted() where !handled.contains(k) {
            let v = patch[k]!
            if v.isNull { result.removeValue(forKey: k); continue }
            let m = meta(shape, k)
            if let merged = try mergeValue(result[k], v, meta: m, path: join(path, k)) {
                result[k] = merged
            } else {
                result.removeValue(forKey: k)
            }
        }

        // Values removed from primitive lists.
        for (field, values) in deletions.sorted(by: { $0.field < $1.field }) {
            guard case .array(let current)? = result[field] else { continue }
            let drop = Set(values)
            result[field] = .array(current.filter { !drop.contains($0) })
        }
        return result
    }

    // MARK: values

    /// Merges one patch value into the original value of a field (nil when absent). Returns nil when the
    /// field is to be dropped.
    static func mergeValue(_ original: JSONValue?, _ patch: JSONValue, meta m: Meta, path: String) throws -> JSONValue? {
        if m.isList {
            guard case .array(let pl) = patch else {
                if patch.isNull { return nil }
                throw StrategicMergeError(path, "expected a list, got \(patch.typeName)")
            }
            if m.merges, case .array(let ol)? = original {
                return .array(try mergeList(ol, pl, meta: m, path: path).items)
            }
            return .array(try cleanList(pl, element: m.elementType, path: path))
        }
        switch patch {
        case .object(let po):
            let shape = Shape(m.type)
            if m.replaces { return .object(try mergeObject([:], po, shape: shape, path: path) ?? [:]) }
            return try mergeObject(original?.objectValue, po, shape: shape, path: path).map(JSONValue.object)
        case .array(let pl):
            // A list where the schema has none (free JSON): replaced whole.
            return .array(try cleanList(pl, element: nil, path: path))
        default:
            return patch
        }
    }

    /// A patch list that replaces the original: directives and nulls inside its elements are removed, and
    /// elements that are only directives are dropped.
    static func cleanList(_ list: [JSONValue], element: SchemaType?, path: String) throws -> [JSONValue] {
        var out: [JSONValue] = []
        out.reserveCapacity(list.count)
        for (i, v) in list.enumerated() {
            switch v {
            case .object(let o):
                if o[patchKey] != nil { continue }
                if let c = try mergeObject(nil, o, shape: Shape(element), path: "\(path)[\(i)]") { out.append(.object(c)) }
            case .array(let a):
                out.append(.array(try cleanList(a, element: element?.element, path: "\(path)[\(i)]")))
            default:
                out.append(v)
            }
        }
        return out
    }

    // MARK: lists

    /// Whether the lists hold objects (merged by key) rather than primitives.
    static func objectList(_ a: [JSONValue], _ b: [JSONValue], _ m: Meta) -> Bool {
        if case .message? = m.elementType { return true }
        return a.contains { $0.objectValue != nil } || b.contains { $0.objectValue != nil }
    }

    /// Merges a patch list into an original list. Besides the merged items, returns the list a
    /// `$setElementOrder` pass compares server-only elements against: Kubernetes uses the original list as
    /// edited in place by the merge (deletions close up the list, and as many appended elements as were
    /// deleted take the freed places at its end), and this reproduces the orders it produces.
    static func mergeList(_ original: [JSONValue], _ patch: [JSONValue], meta m: Meta, path: String) throws -> (items: [JSONValue], serverOrder: [JSONValue]) {
        if original.isEmpty && patch.isEmpty { return ([], []) }
        for (i, v) in (original + patch).enumerated() {
            if case .array = v {
                let where_ = i < original.count ? "\(path)[\(i)] (original)" : "\(path)[\(i - original.count)]"
                throw StrategicMergeError(where_, "lists of lists cannot be merged")
            }
        }
        if objectList(original, patch, m) {
            return try mergeObjectList(original, patch, meta: m, path: path)
        }
        return (mergePrimitiveList(original, patch), original)
    }

    /// A set-like union: original values, then new values, in the order Kubernetes produces.
    static func mergePrimitiveList(_ original: [JSONValue], _ patch: [JSONValue]) -> [JSONValue] {
        var seen = Set<JSONValue>()
        var merged: [JSONValue] = []
        for v in original + patch where seen.insert(v).inserted { merged.append(v) }
        var patchIndex: [JSONValue: Int] = [:]
        for (i, v) in patch.enumerated() where patchIndex[v] == nil { patchIndex[v] = i }
        var serverIndex: [JSONValue: Int] = [:]
        for (i, v) in original.enumerated() where serverIndex[v] == nil { serverIndex[v] = i }
        return order(merged, inPatch: { patchIndex[$0] }, serverIndex: { serverIndex[$0] })
    }

    static func key(of v: JSONValue, _ mergeKey: String, path: String) throws -> JSONValue {
        guard case .object(let o) = v else {
            throw StrategicMergeError(path, "expected an object in a list merged by \"\(mergeKey)\", got \(v.typeName)")
        }
        guard let k = o[mergeKey] else { throw StrategicMergeError(path, "missing merge key \"\(mergeKey)\"") }
        return k
    }

    static func mergeObjectList(_ original: [JSONValue], _ patch: [JSONValue], meta m: Meta, path: String) throws -> (items: [JSONValue], serverOrder: [JSONValue]) {
        guard let mergeKey = m.mergeKey else {
            throw StrategicMergeError(path, "cannot merge a list of objects without a merge key")
        }
        let shape = Shape(m.elementType)
        for (i, v) in original.enumerated() { _ = try key(of: v, mergeKey, path: "\(path)[\(i)] (original)") }

        // Element directives first: deletions and whole-list replacement.
        var working = original
        var regular: [(index: Int, key: JSONValue, value: [String: JSONValue])] = []
        var replace = false
        for (i, v) in patch.enumerated() {
            let ipath = "\(path)[\(i)]"
            guard case .object(let o) = v else {
                throw StrategicMergeError(ipath, "expected an object in a list merged by \"\(mergeKey)\", got \(v.typeName)")
            }
            if let directive = o[patchKey] {
                switch directive {
                case .string("delete"):
                    let k = try key(of: v, mergeKey, path: ipath)
                    working.removeAll { $0.objectValue?[mergeKey] == k }
                case .string("replace"):
                    replace = true
                case .string("merge"):
                    throw StrategicMergeError(ipath, "$patch: merge is not supported on list elements")
                default:
                    throw StrategicMergeError(ipath, "unknown $patch value \(quoted(directive)) (want replace or delete)")
                }
                continue
            }
            regular.append((i, try key(of: v, mergeKey, path: ipath), o))
        }
        if replace {
            let items = try regular.map { r in
                JSONValue.object(try mergeObject(nil, r.value, shape: shape, path: "\(path)[\(r.index)]") ?? [:])
            }
            return (items, working)
        }

        let server = working
        let removed = original.count - working.count
        var appended: [JSONValue] = []
        for r in regular {
            let ipath = "\(path)[\(r.index)]"
            if let at = working.firstIndex(where: { $0.objectValue?[mergeKey] == r.key }) {
                working[at] = .object(try mergeObject(working[at].objectValue, r.value, shape: shape, path: ipath) ?? [:])
            } else if let added = try mergeObject(nil, r.value, shape: shape, path: ipath) {
                working.append(.object(added))
                appended.append(.object(added))
            }
        }

        var patchIndex: [JSONValue: Int] = [:]
        for (n, r) in regular.enumerated() where patchIndex[r.key] == nil { patchIndex[r.key] = n }
        var serverIndex: [JSONValue: Int] = [:]
        for (i, v) in server.enumerated() {
            if let k = v.objectValue?[mergeKey], serverIndex[k] == nil { serverIndex[k] = i }
        }
        let items = order(working,
                          inPatch: { $0.objectValue?[mergeKey].flatMap { patchIndex[$0] } },
                          serverIndex: { $0.objectValue?[mergeKey].flatMap { serverIndex[$0] } })
        return (items, server + appended.prefix(removed))
    }

    /// Kubernetes' ordering of a merged list: the elements named by the patch keep the patch's order; each
    /// element only the server has is placed before the next patch element when it came before that element
    /// in the original list, otherwise after it.
    static func order(_ merged: [JSONValue], inPatch: (JSONValue) -> Int?, serverIndex: (JSONValue) -> Int?) -> [JSONValue] {
        var fromPatch: [(rank: Int, seq: Int, value: JSONValue)] = []
        var serverOnly: [JSONValue] = []
        for (seq, v) in merged.enumerated() {
            if let r = inPatch(v) { fromPatch.append((r, seq, v)) } else { serverOnly.append(v) }
        }
        fromPatch.sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.seq < $1.seq }
        // Server-only elements keep their original relative order.
        serverOnly = serverOnly.enumerated().sorted { a, b in
            let ia = serverIndex(a.element) ?? Int.max, ib = serverIndex(b.element) ?? Int.max
            return ia != ib ? ia < ib : a.offset < b.offset
        }.map(\.element)

        var out: [JSONValue] = []
        out.reserveCapacity(merged.count)
        var i = 0, j = 0
        while i < serverOnly.count || j < fromPatch.count {
            if j >= fromPatch.count { out.append(serverOnly[i]); i += 1; continue }
            if i >= serverOnly.count { out.append(fromPatch[j].value); j += 1; continue }
            if let l = serverIndex(serverOnly[i]), let r = serverIndex(fromPatch[j].value), l < r {
                out.append(serverOnly[i]); i += 1
            } else {
                out.append(fromPatch[j].value); j += 1
            }
        }
        return out
    }

    /// The `$setElementOrder` list must name every patch element, in the patch's relative order.
    static func checkOrder(_ patch: [JSONValue], order: [JSONValue], mergeKey: String?, field: String, path: String) throws {
        let opath = join(path, "\(orderPrefix)/\(field)")
        var orderKeys: [JSONValue] = []
        for (i, v) in order.enumerated() {
            if let mk = mergeKey { orderKeys.append(try key(of: v, mk, path: "\(opath)[\(i)]")) } else { orderKeys.append(v) }
        }
        if patch.isEmpty || order.isEmpty { return }
        var o = 0
        for (i, v) in patch.enumerated() {
            if v.objectValue?[patchKey] != nil { continue }
            let k = try mergeKey.map { try key(of: v, $0, path: "\(join(path, field))[\(i)]") } ?? v
            while o < orderKeys.count && orderKeys[o] != k { o += 1 }
            guard o < orderKeys.count else {
                throw StrategicMergeError(opath, "does not list element \(quoted(k)) of the patch, or lists it out of the patch's order")
            }
            o += 1
        }
    }

    /// Applies a `$setElementOrder` list to a merged list: elements it names come in its order, the others
    /// are placed by their position in the original list.
    static func reorder(_ merged: [JSONValue], order: [JSONValue], server: [JSONValue], mergeKey: String?, path: String) throws -> [JSONValue] {
        func k(_ v: JSONValue) -> JSONValue? { mergeKey.map { v.objectValue?[$0] ?? .null } ?? v }
        var orderIndex: [JSONValue: Int] = [:]
        for (i, v) in order.enumerated() { if let key = k(v), orderIndex[key] == nil { orderIndex[key] = i } }
        var serverIndex: [JSONValue: Int] = [:]
        for (i, v) in server.enumerated() { if let key = k(v), serverIndex[key] == nil { serverIndex[key] = i } }
        if let mk = mergeKey {
            for (i, v) in merged.enumerated() { _ = try key(of: v, mk, path: "\(path)[\(i)]") }
        }
        return SMP.order(merged, inPatch: { k($0).flatMap { orderIndex[$0] } }, serverIndex: { k($0).flatMap { serverIndex[$0] } })
    }
}

/// The strategic merge patch `kubectl apply` sends: it takes `live` to what `desired` asks for,
/// removes what `previous` (the last applied configuration) had and `desired` no longer has, and
/// leaves alone what only the server or other writers set (defaults, a ServiceAccount token
/// volume, another manager's labels). Lists with a merge key are merged element by element, so
/// a container without `volumeMounts` in the manifest keeps the mounts the server added. nil: no
/// change. `message` nil (a kind without schema): nil, and the caller sends a merge patch.
public func strategicThreeWayPatch(previous: JSONValue?, desired: JSONValue, live: JSONValue, message: String?) -> JSONValue? {
    guard let message, case .object(let d) = desired else { return nil }
    return SMP.threeWay(previous?.objectValue, d, live.objectValue, shape: .message(message)).map { .object($0) }
}

extension SMP {
    static func threeWay(_ prev: [String: JSONValue]?, _ desired: [String: JSONValue], _ live: [String: JSONValue]?, shape: Shape) -> [String: JSONValue]? {
        var out: [String: JSONValue] = [:]
        for (k, d) in desired {
            let m = meta(shape, k)
            let l = live?[k], p = prev?[k]
            switch d {
            case .object(let dObj) where !m.replaces:
                if case .object(let lObj)? = l {
                    if let sub = threeWay(p?.objectValue, dObj, lObj, shape: Shape(m.type)) { out[k] = .object(sub) }
                } else if l != d {
                    out[k] = d
                }
            case .array(let dList) where m.merges && m.isList:
                if let change = threeWayList(p?.arrayValue, dList, l?.arrayValue, meta: m, field: k, into: &out) { out[k] = change }
            default:
                if l != d { out[k] = d }
            }
        }
        for k in (prev ?? [:]).keys where desired[k] == nil && live?[k] != nil { out[k] = .null }
        return out.isEmpty ? nil : out
    }

    /// A merged list's part of the patch (nil: unchanged); ordering and deletion directives for
    /// primitive lists go into `out` beside it.
    static func threeWayList(_ prev: [JSONValue]?, _ desired: [JSONValue], _ live: [JSONValue]?, meta m: Meta, field: String,
                             into out: inout [String: JSONValue]) -> JSONValue? {
        let live = live ?? []
        guard let mk = m.mergeKey, desired.allSatisfy({ $0.objectValue != nil }) else {
            // A set of primitives: add what is missing, delete what the last apply had and this one drops.
            let add = desired.filter { !live.contains($0) }
            let drop = (prev ?? []).filter { !desired.contains($0) && live.contains($0) }
            if !drop.isEmpty { out["\(deletePrefix)/\(field)"] = .array(drop) }
            return add.isEmpty ? nil : .array(add)
        }
        func key(_ v: JSONValue) -> JSONValue? { v[mk] }
        var items: [JSONValue] = []
        for de in desired {
            guard let kv = key(de), case .object(let dObj) = de else { continue }
            let le = live.first { key($0) == kv }
            let pe = prev?.first { key($0) == kv }
            if case .object(let lObj)? = le {
                if var sub = threeWay(pe?.objectValue, dObj, lObj, shape: Shape(m.elementType)) {
                    sub[mk] = kv
                    items.append(.object(sub))
                }
            } else {
                items.append(de)
            }
        }
        for pe in prev ?? [] {
            guard let kv = key(pe), !desired.contains(where: { key($0) == kv }), live.contains(where: { key($0) == kv }) else { continue }
            items.append(.object([mk: kv, patchKey: .string("delete")]))
        }
        if items.isEmpty { return nil }
        // The manifest's order for its own elements, as kubectl asks.
        out["\(orderPrefix)/\(field)"] = .array(desired.compactMap { key($0).map { .object([mk: $0]) } })
        return .array(items)
    }
}
