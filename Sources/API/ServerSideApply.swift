// Server-side apply: field ownership (metadata.managedFields), apply merges, conflicts and the
// bookkeeping of ordinary writes, modelled on Kubernetes' structured-merge-diff and the apiserver
// field manager. Types come from the schema table (Schema.swift): list types ("atomic", "set",
// "map" with keys; a merge key alone means a map list), map types and atomic structs.
import Foundation

// MARK: - Paths

/// One step of a field path.
public enum PathElement: Hashable, Sendable, CustomStringConvertible {
    /// A struct field or a map key.
    case field(String)
    /// A map-list element, by its key fields (sorted by name).
    case key([KeyField])
    /// A set element, by value.
    case value(JSONValue)
    /// A list element by position (atomic lists only; read for completeness).
    case index(Int)

    public struct KeyField: Hashable, Sendable {
        public var name: String
        public var value: JSONValue
        public init(name: String, value: JSONValue) { self.name = name; self.value = value }
    }

    /// As Kubernetes prints it: `.name`, `[name="web"]`, `[=value]`, `[3]`.
    public var description: String {
        switch self {
        case .field(let n): return "." + n
        case .key(let ks): return "[" + ks.map { "\($0.name)=\(ssaCompactJSON($0.value))" }.joined(separator: ",") + "]"
        case .value(let v): return "[=\(ssaCompactJSON(v))]"
        case .index(let i): return "[\(i)]"
        }
    }

    /// The fieldsV1 key: `f:name`, `k:{"name":"web"}`, `v:"x"`, `i:0`.
    public var fieldsV1Key: String {
        switch self {
        case .field(let n): return "f:" + n
        case .key(let ks):
            var o: [String: JSONValue] = [:]
            for k in ks { o[k.name] = k.value }
            return "k:" + ssaCompactJSON(.object(o))
        case .value(let v): return "v:" + ssaCompactJSON(v)
        case .index(let i): return "i:\(i)"
        }
    }

    public init(fieldsV1Key s: String) throws {
        guard s.count >= 2, s.dropFirst().first == ":" else { throw FieldSetError("invalid fieldsV1 key \(s)") }
        let body = String(s.dropFirst(2))
        switch s.first {
        case "f": self = .field(body)
        case "k":
            guard case .object(let o)? = try? JSONValue.parse(Data(body.utf8)) else { throw FieldSetError("invalid key \(s)") }
            self = .key(o.keys.sorted().map { KeyField(name: $0, value: o[$0]!) })
        case "v":
            guard let v = try? JSONValue.parse(Data(body.utf8)) else { throw FieldSetError("invalid value \(s)") }
            self = .value(v)
        case "i":
            guard let i = Int(body) else { throw FieldSetError("invalid index \(s)") }
            self = .index(i)
        default: throw FieldSetError("invalid fieldsV1 key \(s)")
        }
    }

    /// Kubernetes' order: fields, then keys, then values, then indexes.
    static func less(_ a: PathElement, _ b: PathElement) -> Bool {
        func rank(_ e: PathElement) -> Int {
            switch e { case .field: return 0; case .key: return 1; case .value: return 2; case .index: return 3 }
        }
        switch (a, b) {
        case (.field(let x), .field(let y)): return x < y
        case (.index(let x), .index(let y)): return x < y
        case (.key, .key), (.value, .value): return a.description < b.description
        default: return rank(a) < rank(b)
        }
    }
}

struct FieldSetError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func ssaCompactJSON(_ v: JSONValue) -> String {
    String(decoding: (try? v.encoded()) ?? Data("null".utf8), as: UTF8.self)
}

/// A path from the object root, such as `.spec.template.spec.containers[name="web"].image`.
public struct FieldPath: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var elements: [PathElement]
    public init(_ elements: [PathElement]) { self.elements = elements }
    /// A path of field names: `FieldPath("spec", "replicas")`.
    public init(_ names: String...) { elements = names.map { .field($0) } }

    public var description: String { elements.map(\.description).joined() }
    public func appending(_ e: PathElement) -> FieldPath { FieldPath(elements + [e]) }
    public func hasPrefix(_ p: FieldPath) -> Bool { elements.starts(with: p.elements) }

    public static func < (a: FieldPath, b: FieldPath) -> Bool {
        for (x, y) in zip(a.elements, b.elements) where x != y { return PathElement.less(x, y) }
        return a.elements.count < b.elements.count
    }
}

// MARK: - Field sets

/// A set of owned field paths; a path is owned whole (leaf, atomic value, list element or map entry).
public struct FieldSet: Sendable, Equatable, CustomStringConvertible {
    public var paths: Set<FieldPath>

    public init(_ paths: Set<FieldPath> = []) { self.paths = paths }

    /// Reads the fieldsV1 form: `{"f:spec":{"f:replicas":{}}}`; `"."` marks a node that is itself owned.
    public init(fieldsV1: JSONValue) throws {
        guard case .object(let root) = fieldsV1 else { throw FieldSetError("fieldsV1 must be an object") }
        var out = Set<FieldPath>()
        func walk(_ o: [String: JSONValue], _ prefix: [PathElement]) throws {
            for (k, v) in o {
                if k == "." {
                    if !prefix.isEmpty { out.insert(FieldPath(prefix)) }
                    continue
                }
                let p = prefix + [try PathElement(fieldsV1Key: k)]
                guard case .object(let child) = v else { throw FieldSetError("fieldsV1 entry \(k) must be an object") }
                if child.isEmpty { out.insert(FieldPath(p)) } else { try walk(child, p) }
            }
        }
        try walk(root, [])
        paths = out
    }

    /// The fieldsV1 form of the set.
    public var fieldsV1: JSONValue {
        func build(_ tails: [ArraySlice<PathElement>]) -> JSONValue {
            var member = false
            var groups: [String: [ArraySlice<PathElement>]] = [:]
            for t in tails {
                guard let first = t.first else { member = true; continue }
                groups[first.fieldsV1Key, default: []].append(t.dropFirst())
            }
            var o: [String: JSONValue] = [:]
            for (k, g) in groups { o[k] = build(g) }
            if member && !o.isEmpty { o["."] = .object([:]) }
            return .object(o)
        }
        return build(paths.filter { !$0.elements.isEmpty }.map { $0.elements[...] })
    }

    public var isEmpty: Bool { paths.isEmpty }
    public var count: Int { paths.count }
    public var sorted: [FieldPath] { paths.sorted() }
    public func contains(_ p: FieldPath) -> Bool { paths.contains(p) }
    public mutating func insert(_ p: FieldPath) { paths.insert(p) }
    public func union(_ o: FieldSet) -> FieldSet { FieldSet(paths.union(o.paths)) }
    public func subtracting(_ o: FieldSet) -> FieldSet { FieldSet(paths.subtracting(o.paths)) }
    public func intersection(_ o: FieldSet) -> FieldSet { FieldSet(paths.intersection(o.paths)) }
    /// Paths that are not under any of `prefixes` (a prefix excludes itself and everything below).
    public func excludingPrefixes(_ prefixes: [FieldPath]) -> FieldSet {
        FieldSet(paths.filter { p in !prefixes.contains { p.hasPrefix($0) } })
    }
    public var description: String { sorted.map(\.description).joined(separator: "\n") }
}

// MARK: - Conflicts

/// An apply that would change fields other managers own (HTTP 409, reason Conflict).
public struct ApplyConflict: Error, Sendable, CustomStringConvertible {
    /// Each conflicting field with the manager that owns it.
    public let conflicts: [(manager: String, path: String)]
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    public let message: String
    /// Status causes as Kubernetes reports them: type FieldManagerConflict, `conflict with "x"`, field path.
    public let causes: [(field: String, message: String)]
    public var description: String { message }

    init(_ items: [(entry: ManagerEntry, path: FieldPath)]) {
        // Managers sorted by their identity, each manager's paths in path order.
        let sortedItems = items.sorted { a, b in
            a.entry.identity != b.entry.identity ? a.entry.identity < b.entry.identity : a.path < b.path
        }
        conflicts = sortedItems.map { ($0.entry.manager, $0.path.description) }
        causes = sortedItems.map { ($0.path.description, "conflict with \($0.entry.displayName)") }
        if sortedItems.count == 1 {
            message = "Apply failed with 1 conflict: conflict with \(sortedItems[0].entry.displayName): \(sortedItems[0].path)"
        } else {
            var lines: [String] = []
            var last: String?
            for it in sortedItems {
                if it.entry.identity != last {
                    lines.append("conflicts with \(it.entry.displayName):")
                    last = it.entry.identity
                }
                lines.append("- \(it.path)")
            }
            message = "Apply failed with \(sortedItems.count) conflicts: " + lines.joined(separator: "\n")
        }
    }
}

// MARK: - Managed fields entries

struct ManagerEntry: Sendable {
    var manager: String
    var operation: String
    var apiVersion: String
    var time: String?
    var subresource: String
    var set: FieldSet

    /// Apply entries are one per manager (and subresource) whatever the version; Update entries per version.
    var identity: String {
        let q = { (s: String) in ssaCompactJSON(.string(s)) }
        var s = "{\"manager\":\(q(manager)),\"operation\":\(q(operation))"
        if operation != "Apply" { s += ",\"apiVersion\":\(q(apiVersion))" }
        if !subresource.isEmpty { s += ",\"subresource\":\(q(subresource))" }
        return s + "}"
    }

    var displayName: String {
        var s = ssaCompactJSON(.string(manager))
        if !subresource.isEmpty { s += " with subresource \(ssaCompactJSON(.string(subresource)))" }
        if operation == "Update" { s += " using \(apiVersion)" }
        return s
    }

    init(manager: String, operation: String, apiVersion: String, time: String?, subresource: String, set: FieldSet) {
        self.manager = manager; self.operation = operation; self.apiVersion = apiVersion
        self.time = time; self.subresource = subresource; self.set = set
    }

    init?(_ v: JSONValue) {
        guard let op = v["operation"]?.stringValue else { return nil }
        manager = v["manager"]?.stringValue ?? ""; operation = op
        apiVersion = v["apiVersion"]?.stringValue ?? ""
        time = v["time"]?.stringValue
        subresource = v["subresource"]?.stringValue ?? ""
        if let f = v["fieldsV1"], let s = try? FieldSet(fieldsV1: f) { set = s } else { set = FieldSet() }
    }

    var json: JSONValue {
        var o: [String: JSONValue] = [
            "manager": .string(manager), "operation": .string(operation), "apiVersion": .string(apiVersion),
            "fieldsType": .string("FieldsV1"), "fieldsV1": set.fieldsV1,
        ]
        if let t = time { o["time"] = .string(t) }
        if !subresource.isEmpty { o["subresource"] = .string(subresource) }
        return .object(o)
    }
}

/// Entries keyed by identity, kept in first-seen order.
struct ManagerTable {
    var entries: [String: ManagerEntry] = [:]

    init(_ managedFields: JSONValue?) {
        for v in managedFields?.arrayValue ?? [] {
            guard let e = ManagerEntry(v) else { continue }
            if var existing = entries[e.identity] {
                existing.set = existing.set.union(e.set)
                entries[e.identity] = existing
            } else {
                entries[e.identity] = e
            }
        }
    }

    var isEmpty: Bool { entries.isEmpty }

    /// Kubernetes' order: by operation (Apply before Update), time, manager, apiVersion, subresource.
    var json: JSONValue {
        let sorted = entries.values.filter { !$0.set.isEmpty }.sorted { p, q in
            if p.operation != q.operation { return p.operation < q.operation }
            let pt = seconds(p.time), qt = seconds(q.time)
            if pt != qt { return pt < qt }
            if p.manager != q.manager { return p.manager < q.manager }
            if p.apiVersion != q.apiVersion { return p.apiVersion < q.apiVersion }
            return p.subresource < q.subresource
        }
        return .array(sorted.map(\.json))
    }

    private func seconds(_ t: String?) -> Double {
        guard let t else { return 0 }
        if let d = try? Date(t, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d.timeIntervalSince1970.rounded(.down) }
        if let d = try? Date(t, strategy: Date.ISO8601FormatStyle()) { return d.timeIntervalSince1970 }
        return 0
    }
}

// MARK: - Schema shapes

/// How server-side apply sees a value.
indirect enum SSAShape: Sendable {
    /// Scalars, raw JSON, atomic lists, maps and structs: owned and replaced whole.
    case leaf
    /// A struct (message) merged field by field.
    case structure(String)
    /// A granular map with string keys.
    case map(SSAShape)
    /// A list of unique scalars.
    case set
    /// A list of objects identified by key fields.
    case keyed([String], SSAShape)
}


extension SSAShape {
    static func of(_ f: SchemaField) -> SSAShape {
        switch f.type {
        case .message(let m):
            // Atomic by the field's marker or by its type's (+structType=atomic: LabelSelector, OwnerReference, ...).
            if f.structType == "atomic" || f.mapType == "atomic" || Schema.messages[m]?.structType == "atomic" { return .leaf }
            return .structure(m)
        case .list, .wrapped:
            guard let elem = f.type.element else { return .leaf }
            switch f.listType {
            case "set": return .set
            case "map": return .keyed(f.listMapKeys.isEmpty ? (f.mergeKey.map { [$0] } ?? []) : f.listMapKeys, element(elem))
            case "atomic": return .leaf
            default:
                if let k = f.mergeKey { return elem.messageName != nil ? .keyed([k], element(elem)) : .set }
                return .leaf
            }
        case .map(let elem):
            if f.mapType == "atomic" { return .leaf }
            return .map(element(elem))
        default:
            return .leaf
        }
    }

    static func element(_ t: SchemaType) -> SSAShape {
        switch t {
        case .message(let m): return Schema.messages[m]?.structType == "atomic" ? .leaf : .structure(m)
        case .map(let e): return .map(element(e))
        default: return .leaf
        }
    }

    /// The shape of member `key` of an object of this shape, and whether the member's own path is
    /// recorded when it appears or disappears (map entries, pointer and omitempty fields: the ones
    /// absent from a Go zero value; plain structs always exist there).
    func child(_ key: String) -> (SSAShape, tracked: Bool) {
        switch self {
        case .structure(let m):
            guard let f = Schema.field(m, key) else { return (.leaf, true) }
            if case .message = f.type { return (SSAShape.of(f), f.pointer) }
            return (SSAShape.of(f), f.pointer || f.omitEmpty)
        case .map(let e): return (e, true)
        default: return (.leaf, true)
        }
    }

    var isStructure: Bool { if case .structure = self { return true }; return false }

    /// The element identifying a list item of a keyed list or set.
    func itemElement(_ item: JSONValue) -> PathElement {
        switch self {
        case .keyed(let keys, _):
            var ks: [PathElement.KeyField] = []
            for k in keys.sorted() {
                if let v = item[k], !v.isNull { ks.append(.init(name: k, value: v)) }
                else if k == "protocol" { ks.append(.init(name: k, value: .string("TCP"))) }  // Kubernetes' default
            }
            return ks.isEmpty ? .value(item) : .key(ks)
        default:
            return .value(item)
        }
    }
}

// MARK: - Walks over values

enum SSAWalk {
    /// Owned paths of a value (structured-merge-diff's ToFieldSet).
    static func fieldSet(_ v: JSONValue, _ shape: SSAShape, _ path: [PathElement], into out: inout Set<FieldPath>) {
        switch shape {
        case .leaf:
            out.insert(FieldPath(path))
        case .structure, .map:
            guard case .object(let o) = v else { out.insert(FieldPath(path)); return }
            for (k, cv) in o {
                let (cs, _) = shape.child(k)
                let cp = path + [.field(k)]
                if cv.isNull { out.insert(FieldPath(cp)); continue }
                fieldSet(cv, cs, cp, into: &out)
                if case .object(let co) = cv, co.isEmpty { out.insert(FieldPath(cp)) }
                else if !shape.isStructure || Schema.fieldExists(shape, k) == false { out.insert(FieldPath(cp)) }
            }
        case .set:
            guard case .array(let a) = v else { out.insert(FieldPath(path)); return }
            for item in a { out.insert(FieldPath(path + [.value(item)])) }
        case .keyed(_, let elem):
            guard case .array(let a) = v else { out.insert(FieldPath(path)); return }
            for item in a {
                let p = path + [shape.itemElement(item)]
                fieldSet(item, elem, p, into: &out)
                out.insert(FieldPath(p))
            }
        }
    }

    struct Comparison {
        var added = Set<FieldPath>(), modified = Set<FieldPath>(), removed = Set<FieldPath>()
    }

    /// Differences between two values (structured-merge-diff's Compare); null counts as absent.
    static func compare(_ lhs: JSONValue?, _ rhs: JSONValue?, _ shape: SSAShape, _ path: [PathElement], tracked: Bool, into c: inout Comparison) {
        let l = lhs.flatMap { $0.isNull ? nil : $0 }, r = rhs.flatMap { $0.isNull ? nil : $0 }
        if l == nil && r == nil { return }
        func leaf() {
            let p = FieldPath(path)
            if l == nil { c.added.insert(p) } else if r == nil { c.removed.insert(p) } else if l! != r! { c.modified.insert(p) }
        }
        func own() {
            guard tracked, !path.isEmpty else { return }
            if l == nil { c.added.insert(FieldPath(path)) } else if r == nil { c.removed.insert(FieldPath(path)) }
        }
        switch shape {
        case .leaf:
            leaf()
        case .structure, .map:
            let lo = l?.objectValue, ro = r?.objectValue
            if (l != nil && lo == nil) || (r != nil && ro == nil) { leaf(); return }
            if (lo ?? [:]).isEmpty && (ro ?? [:]).isEmpty { leaf(); return }
            var keys = Set(lo?.keys ?? [:].keys)
            keys.formUnion(ro?.keys ?? [:].keys)
            for k in keys {
                let (cs, ct) = shape.child(k)
                compare(lo?[k], ro?[k], cs, path + [.field(k)], tracked: ct, into: &c)
            }
            own()
        case .set, .keyed:
            let la = l?.arrayValue, ra = r?.arrayValue
            if (l != nil && la == nil) || (r != nil && ra == nil) { leaf(); return }
            var li: [PathElement: JSONValue] = [:], ri: [PathElement: JSONValue] = [:]
            for x in la ?? [] { let e = shape.itemElement(x); if li[e] == nil { li[e] = x } }
            for x in ra ?? [] { let e = shape.itemElement(x); if ri[e] == nil { ri[e] = x } }
            let elem: SSAShape
            if case .keyed(_, let e) = shape { elem = e } else { elem = .leaf }
            for e in Set(li.keys).union(ri.keys) {
                compare(li[e], ri[e], elem, path + [e], tracked: true, into: &c)
            }
            own()
        }
    }

    /// Applies `rhs` over `lhs` (structured-merge-diff's Merge); a null in `rhs` clears the member.
    static func merge(_ lhs: JSONValue?, _ rhs: JSONValue, _ shape: SSAShape) -> JSONValue {
        guard let lhs, !lhs.isNull else { return dropNulls(rhs) }
        switch shape {
        case .leaf:
            return rhs
        case .structure, .map:
            guard case .object(var out) = lhs, case .object(let ro) = rhs else { return rhs }
            for (k, v) in ro {
                if v.isNull { out[k] = nil; continue }
                out[k] = merge(out[k], v, shape.child(k).0)
            }
            return .object(out)
        case .set, .keyed:
            guard case .array(let la) = lhs, case .array(let ra) = rhs else { return rhs }
            let elem: SSAShape
            if case .keyed(_, let e) = shape { elem = e } else { elem = .leaf }
            return .array(mergeLists(la, ra, key: shape.itemElement) { merge($0, $1, elem) })
        }
    }

    private static func dropNulls(_ v: JSONValue) -> JSONValue {
        guard case .object(let o) = v else { return v }
        return .object(o.filter { !$0.value.isNull })
    }

    /// Merges two identified lists keeping the live order and placing new items where the applied order puts them.
    static func mergeLists(_ la: [JSONValue], _ ra: [JSONValue], key: (JSONValue) -> PathElement,
                           item: (JSONValue, JSONValue) -> JSONValue) -> [JSONValue] {
        let lk = la.map(key), rk = ra.map(key)
        var lIndex: [PathElement: Int] = [:], rIndex: [PathElement: Int] = [:]
        for (i, k) in lk.enumerated() where lIndex[k] == nil { lIndex[k] = i }
        for (i, k) in rk.enumerated() where rIndex[k] == nil { rIndex[k] = i }
        var emitted = Set<PathElement>(), out: [JSONValue] = []
        var i = 0, j = 0
        func takeRight() {
            let k = rk[j]
            out.append(lIndex[k].map { item(la[$0], ra[j]) } ?? ra[j])
            emitted.insert(k); j += 1
        }
        while i < la.count || j < ra.count {
            if i < la.count, emitted.contains(lk[i]) { i += 1; continue }
            if j < ra.count, emitted.contains(rk[j]) { j += 1; continue }
            if i < la.count && j < ra.count {
                if lk[i] == rk[j] {
                    out.append(item(la[i], ra[j])); emitted.insert(lk[i]); i += 1; j += 1
                } else if rIndex[lk[i]] == nil {
                    out.append(la[i]); emitted.insert(lk[i]); i += 1
                } else {
                    takeRight()
                }
            } else if i < la.count {
                out.append(la[i]); emitted.insert(lk[i]); i += 1
            } else {
                takeRight()
            }
        }
        return out
    }

    /// Removes the members at `paths` (with everything under them); `prefixes` are all their ancestors.
    static func remove(_ v: JSONValue, _ shape: SSAShape, _ path: [PathElement], _ paths: Set<FieldPath>, _ prefixes: Set<FieldPath>) -> JSONValue {
        switch shape {
        case .leaf:
            return v
        case .structure, .map:
            guard case .object(let o) = v else { return v }
            var out: [String: JSONValue] = [:]
            for (k, cv) in o {
                let cp = path + [.field(k)]
                let fp = FieldPath(cp)
                if paths.contains(fp) { continue }
                out[k] = prefixes.contains(fp) ? remove(cv, shape.child(k).0, cp, paths, prefixes) : cv
            }
            return .object(out)
        case .set, .keyed:
            guard case .array(let a) = v else { return v }
            let elem: SSAShape
            if case .keyed(_, let e) = shape { elem = e } else { elem = .leaf }
            var out: [JSONValue] = []
            for item in a {
                let cp = path + [shape.itemElement(item)]
                let fp = FieldPath(cp)
                if paths.contains(fp) { continue }
                out.append(prefixes.contains(fp) ? remove(item, elem, cp, paths, prefixes) : item)
            }
            return .array(out)
        }
    }

    /// Adds the struct fields above each path (structured-merge-diff's EnsureNamedFieldsAreMembers).
    static func withNamedAncestors(_ s: Set<FieldPath>, root: SSAShape) -> Set<FieldPath> {
        var out = s
        for p in s {
            var shape = root
            for (n, e) in p.elements.enumerated().dropLast() {
                let next: SSAShape
                switch (shape, e) {
                case (.structure, .field(let k)):
                    next = shape.child(k).0
                    out.insert(FieldPath(Array(p.elements[...n])))
                case (.map, .field(let k)): next = shape.child(k).0
                case (.keyed(_, let el), _): next = el
                default: next = .leaf
                }
                shape = next
            }
        }
        return out
    }
}

extension Schema {
    /// Whether `key` is a declared field of a struct shape.
    static func fieldExists(_ shape: SSAShape, _ key: String) -> Bool {
        if case .structure(let m) = shape { return field(m, key) != nil }
        return false
    }
}

// MARK: - Apply and update

public enum ServerSideApply {
    /// Paths Kubernetes never records as owned.
    static let strippedPaths: Set<FieldPath> = [
        FieldPath("apiVersion"), FieldPath("kind"), FieldPath("metadata"),
        FieldPath("metadata", "name"), FieldPath("metadata", "namespace"), FieldPath("metadata", "creationTimestamp"),
        FieldPath("metadata", "selfLink"), FieldPath("metadata", "uid"), FieldPath("metadata", "clusterName"),
        FieldPath("metadata", "generation"), FieldPath("metadata", "managedFields"), FieldPath("metadata", "resourceVersion"),
    ]

    /// Fields an object sets, per the schema (leaves; map-list elements as k:; set elements as v:;
    /// atomic lists/maps/structs and raw JSON as leaves). Identity and system metadata are left out.
    public static func fieldSet(of object: JSONValue, message: String) -> FieldSet {
        FieldSet(rawFieldSet(object, message).subtracting(strippedPaths))
    }

    static func rawFieldSet(_ object: JSONValue, _ message: String) -> Set<FieldPath> {
        var out = Set<FieldPath>()
        SSAWalk.fieldSet(withoutManagedFields(object), .structure(message), [], into: &out)
        return out
    }

    /// Prefixes a write ignores: status on the main resource, spec on the status subresource.
    static func ignoredPrefixes(_ message: String, subresource: String?) -> [FieldPath] {
        switch subresource {
        case nil, "": return Schema.field(message, "status") != nil ? [FieldPath("status")] : []
        case "status": return [FieldPath("spec")]
        default: return []
        }
    }

    static func withoutManagedFields(_ v: JSONValue) -> JSONValue {
        guard case .object(var o) = v, case .object(var m)? = o["metadata"], m["managedFields"] != nil else { return v }
        m["managedFields"] = nil
        o["metadata"] = .object(m)
        return .object(o)
    }

    static func withManagedFields(_ v: JSONValue, _ table: ManagerTable) -> JSONValue {
        guard case .object(var o) = v else { return v }
        var m = o["metadata"]?.objectValue ?? [:]
        let mf = table.json
        if case .array(let a) = mf, a.isEmpty { m["managedFields"] = nil } else { m["managedFields"] = mf }
        o["metadata"] = .object(m)
        return .object(o)
    }

    private static func filtered(_ s: Set<FieldPath>, _ prefixes: [FieldPath]) -> Set<FieldPath> {
        prefixes.isEmpty ? s : s.filter { p in !prefixes.contains { p.hasPrefix($0) } }
    }

    /// Apply: merges `applied` (a partial manifest) into `live` (nil = create) for `manager`; returns
    /// the new object with metadata.managedFields updated. The manager's Apply entry becomes the
    /// fields of `applied`; fields it applied before and no longer sets are removed unless another
    /// manager owns them; changing fields other managers own throws ApplyConflict unless `force`,
    /// which moves them to this manager. Setting a field to the value it already has is no conflict.
    public static func apply(live: JSONValue?, applied: JSONValue, manager: String, force: Bool, message: String,
                             apiVersion: String, now: String) throws -> JSONValue {
        let root = SSAShape.structure(message)
        let ignored = ignoredPrefixes(message, subresource: nil)
        let liveObject = live.map(withoutManagedFields) ?? .object([:])
        var table = ManagerTable(live?["metadata"]?["managedFields"])

        // An object nobody tracked yet: everything in it belongs to "before-first-apply".
        if live != nil && table.isEmpty {
            let s = filtered(rawFieldSet(liveObject, message), ignored).subtracting(strippedPaths)
            if !s.isEmpty {
                let e = ManagerEntry(manager: "before-first-apply", operation: "Update", apiVersion: apiVersion,
                                     time: now, subresource: "", set: FieldSet(s))
                table.entries[e.identity] = e
            }
        }

        // The applied configuration, without managed fields and without the status it may not set.
        var config = withoutManagedFields(applied)
        if case .object(var o) = config {
            for p in ignored { if case .field(let k)? = p.elements.first, p.elements.count == 1 { o[k] = nil } }
            config = .object(o)
        }

        let merged = SSAWalk.merge(liveObject, config, root)
        let me = ManagerEntry(manager: manager, operation: "Apply", apiVersion: apiVersion, time: nil, subresource: "", set: FieldSet())
        let previous = table.entries[me.identity]
        let lastSet = previous?.set.paths ?? []
        let newSet = filtered(rawFieldSet(config, message), ignored)
        var mine = me
        mine.time = previous?.time
        mine.set = FieldSet(newSet)
        table.entries[me.identity] = mine

        // Prune what this manager applied before, no longer applies, and nobody else owns.
        var result = merged
        if !lastSet.isEmpty {
            var owned = Set<FieldPath>()
            for e in table.entries.values { owned.formUnion(e.set.paths) }
            owned = SSAWalk.withNamedAncestors(owned, root: root)
            let last = SSAWalk.withNamedAncestors(lastSet, root: root)
            let protected: Set<FieldPath> = [FieldPath("apiVersion"), FieldPath("kind"), FieldPath("metadata"),
                                             FieldPath("metadata", "name"), FieldPath("metadata", "namespace")]
            let toRemove = filtered(last.subtracting(owned).subtracting(protected), ignored)
            if !toRemove.isEmpty {
                var prefixes = Set<FieldPath>()
                for p in toRemove { for n in 1..<max(p.elements.count, 1) { prefixes.insert(FieldPath(Array(p.elements[..<n]))) } }
                result = SSAWalk.remove(merged, root, [], toRemove, prefixes)
            }
        }

        // Ownership changes: fields this apply changes move away from other managers (or conflict).
        var cmp = SSAWalk.Comparison()
        SSAWalk.compare(liveObject, result, root, [], tracked: false, into: &cmp)
        let changed = filtered(cmp.added.union(cmp.modified), ignored)
        let removed = filtered(cmp.removed, ignored)
        var conflicts: [(entry: ManagerEntry, path: FieldPath)] = []
        for (id, e) in table.entries where id != me.identity {
            for p in e.set.paths.intersection(changed) { conflicts.append((e, p)) }
        }
        if !force && !conflicts.isEmpty { throw ApplyConflict(conflicts) }
        for (id, var e) in table.entries where id != me.identity {
            e.set = FieldSet(e.set.paths.subtracting(changed).subtracting(removed))
            table.entries[id] = e.set.isEmpty ? nil : e
        }
        if var e = table.entries[me.identity] {
            e.set = FieldSet(e.set.paths.subtracting(strippedPaths))
            // A no-op apply keeps the entry's time (Kubernetes only stamps applies that change the object).
            if e.time == nil || live == nil || result != liveObject { e.time = now }
            table.entries[me.identity] = e.set.isEmpty ? nil : e
        }
        return withManagedFields(result, table)
    }

    /// Ordinary writes (create/update/patch): the manager (operation Update) takes the fields whose
    /// value changed or appeared; other managers lose those fields and any removed fields; empty
    /// entries are dropped. Returns `new` with managedFields set. Managed fields the client sent in
    /// `new` replace the stored ones; an existing object that was never tracked stays untracked.
    public static func recordUpdate(old: JSONValue?, new: JSONValue, manager: String, message: String,
                                    apiVersion: String, now: String, subresource: String?) -> JSONValue {
        let sub = subresource ?? ""
        let sent = new["metadata"]?["managedFields"]
        var table = ManagerTable(sent)
        if table.isEmpty {
            if let old, (old["metadata"]?["managedFields"]?.arrayValue ?? []).isEmpty {
                // Kubernetes starts tracking an existing object only with its first apply.
                return withoutManagedFields(new)
            }
            table = ManagerTable(old?["metadata"]?["managedFields"])
        }
        let root = SSAShape.structure(message)
        let ignored = ignoredPrefixes(message, subresource: sub)
        var cmp = SSAWalk.Comparison()
        SSAWalk.compare(old.map(withoutManagedFields) ?? .object([:]), withoutManagedFields(new), root, [], tracked: false, into: &cmp)
        let taken = filtered(cmp.added.union(cmp.modified), ignored)
        let removed = filtered(cmp.removed, ignored)
        for (id, var e) in table.entries {
            e.set = FieldSet(e.set.paths.subtracting(taken).subtracting(removed))
            table.entries[id] = e.set.isEmpty ? nil : e
        }
        let mine = taken.subtracting(strippedPaths)
        if !mine.isEmpty {
            var e = ManagerEntry(manager: manager, operation: "Update", apiVersion: apiVersion, time: now, subresource: sub, set: FieldSet(mine))
            if let prev = table.entries[e.identity] { e.set = e.set.union(prev.set) }
            table.entries[e.identity] = e
        }
        return withManagedFields(withoutManagedFields(new), table)
    }
}
