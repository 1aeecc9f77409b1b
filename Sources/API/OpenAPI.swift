// /openapi/v3: Kubernetes-shaped OpenAPI v3 documents derived from the schema table, enough for
// `kubectl explain` (which reads the discovery document, then the group-version document, takes the
// resource's kind from its REST paths' operations, and finds the component schema whose
// x-kubernetes-group-version-kind matches that kind).
// The shape follows the published Kubernetes documents (component names, $ref/allOf for described
// references, int-or-string and quantity as oneOf, the x-kubernetes-* extensions); the descriptions
// are generated here from the table's facts.
import Foundation

public enum OpenAPIV3 {
    /// The discovery document: {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=HEX"}, ...}},
    /// one entry per group-version among `kinds` that has at least one kind in the schema table.
    /// The hash is FNV-1a 64 over the group-version document's bytes, so it changes when the document does.
    public static func discovery(kinds: [(apiVersion: String, kind: String)]) -> JSONValue {
        var paths: [String: JSONValue] = [:]
        for key in Set(kinds.map { pathKey(apiVersion: $0.apiVersion) }) {
            guard let doc = document(path: key, kinds: kinds) else { continue }
            let bytes = (try? doc.encoded()) ?? Data()
            let hex = String(fnv64(bytes), radix: 16, uppercase: true)
            let padded = String(repeating: "0", count: max(0, 16 - hex.count)) + hex
            paths[key] = .object(["serverRelativeURL": .string("/openapi/v3/\(key)?hash=\(padded)")])
        }
        return .object(["paths": .object(paths)])
    }

    /// The document of one group-version path ("api/v1", "apis/apps/v1"): every served kind of that
    /// group-version (and its List kind), tagged with x-kubernetes-group-version-kind, plus every message
    /// and named scalar type they reach, and the served kinds' REST paths (see `paths(for:schemas:)`).
    /// Nil when no served kind belongs to `path`.
    public static func document(path: String, kinds: [(apiVersion: String, kind: String)]) -> JSONValue? {
        let trimmed = path.hasPrefix("/") ? String(path.dropFirst()) : path
        var roots: [(SchemaMessage, GroupVersionKind)] = []
        var served: [GroupVersionKind] = []
        var seenRoots = Set<String>()
        for k in kinds where pathKey(apiVersion: k.apiVersion) == trimmed {
            let gv = splitAPIVersion(k.apiVersion)
            for name in [k.kind, k.kind + "List"] {
                guard let m = Schema.kind(apiVersion: k.apiVersion, kind: name), !seenRoots.contains(m.name) else { continue }
                // The List of a kind only counts when it is the table's own kind of this group-version.
                if name != k.kind, m.gvk?.kind != name { continue }
                seenRoots.insert(m.name)
                let g = GroupVersionKind(group: gv.group, version: gv.version, kind: name)
                roots.append((m, g))
                if name == k.kind { served.append(g) }
            }
        }
        guard !roots.isEmpty else { return nil }

        var gvks: [String: [GroupVersionKind]] = [:]
        for (m, g) in roots { gvks[m.name, default: []].append(g) }

        // Every message reachable from the roots, and the named scalar types they use.
        var messages: [String] = []
        var seen = Set<String>()
        var scalars = Set<String>()
        var queue = roots.map { $0.0.name }
        while let name = queue.popLast() {
            guard !seen.contains(name), let m = Schema.messages[name] else { continue }
            seen.insert(name)
            messages.append(name)
            for f in orderedFields(m) {
                collect(f.type, messages: &queue, scalars: &scalars)
            }
        }

        var schemas: [String: JSONValue] = [:]
        for name in messages {
            guard let m = Schema.messages[name] else { continue }
            schemas[m.openAPIName] = messageSchema(m, gvks: gvks[name] ?? [])
        }
        for s in scalars {
            if let def = namedScalars[s] { schemas[s] = def }
        }
        return .object([
            "openapi": .string("3.0.0"),
            "info": .object(["title": .string("Kubernetes"), "version": .string("unversioned")]),
            "paths": .object(paths(for: served, schemas: schemas)),
            "components": .object(["schemas": .object(schemas)]),
        ])
    }

    // MARK: - Paths

    /// The REST paths of each served kind. `kubectl explain` finds a resource's kind through them: it looks
    /// up /<prefix>/<version>/<plural> (or the namespaced and {name} forms) and reads the operation's
    /// x-kubernetes-group-version-kind. PATCH, PUT and POST list the fieldValidation, fieldManager and dryRun
    /// query parameters, which kubectl checks before relying on server-side field validation.
    /// Plural and scope come from `Resources`; a kind not listed there gets a guessed plural and both scopes.
    static func paths(for kinds: [GroupVersionKind], schemas: [String: JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for g in kinds {
            let info = Resources.byKind(apiVersion: g.apiVersion, kind: g.kind)
            let plural = info?.plural ?? guessPlural(g.kind)
            let scopes: [Bool] = info.map { [$0.namespaced] } ?? [false, true]
            let prefix = g.group.isEmpty ? "/api/\(g.version)" : "/apis/\(g.group)/\(g.version)"
            let gvk: JSONValue = .object(["group": .string(g.group), "version": .string(g.version), "kind": .string(g.kind)])
            guard let kindSchema = Schema.kind(apiVersion: g.apiVersion, kind: g.kind)?.openAPIName else { continue }
            let listName = Schema.kind(apiVersion: g.apiVersion, kind: g.kind + "List")?.openAPIName
            let listSchema = listName.flatMap { schemas[$0] != nil ? $0 : nil } ?? kindSchema
            let queryParams: [JSONValue] = ["fieldValidation", "fieldManager", "dryRun"].map {
                .object(["name": .string($0), "in": "query", "schema": .object(["type": "string", "uniqueItems": true])])
            }
            func op(_ action: String, _ description: String, _ response: String, mutating: Bool, namespaced: Bool, named: Bool) -> JSONValue {
                var params: [JSONValue] = []
                if named { params.append(.object(["name": "name", "in": "path", "required": true, "schema": .object(["type": "string"])])) }
                if namespaced { params.append(.object(["name": "namespace", "in": "path", "required": true, "schema": .object(["type": "string"])])) }
                if mutating { params += queryParams }
                var o: [String: JSONValue] = [
                    "description": .string(description),
                    "operationId": .string(action + g.kind),
                    "x-kubernetes-action": .string(action),
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": .object(["200": .object([
                        "description": "OK",
                        "content": .object(["application/json": .object(["schema": ref(response)])]),
                    ])]),
                ]
                if !params.isEmpty { o["parameters"] = .array(params) }
                if mutating && action != "delete" {
                    o["requestBody"] = .object(["content": .object(["application/json": .object(["schema": ref(kindSchema)])])])
                }
                return .object(o)
            }
            for namespaced in scopes {
                let base = namespaced ? "\(prefix)/namespaces/{namespace}/\(plural)" : "\(prefix)/\(plural)"
                out[base] = .object([
                    "get": op("list", "List \(g.kind) objects.", listSchema, mutating: false, namespaced: namespaced, named: false),
                    "post": op("post", "Create a \(g.kind).", kindSchema, mutating: true, namespaced: namespaced, named: false),
                ])
                out[base + "/{name}"] = .object([
                    "get": op("get", "Read a \(g.kind).", kindSchema, mutating: false, namespaced: namespaced, named: true),
                    "put": op("put", "Replace a \(g.kind).", kindSchema, mutating: true, namespaced: namespaced, named: true),
                    "patch": op("patch", "Patch a \(g.kind).", kindSchema, mutating: true, namespaced: namespaced, named: true),
                    "delete": op("delete", "Delete a \(g.kind).", kindSchema, mutating: true, namespaced: namespaced, named: true),
                ])
                if namespaced, out["\(prefix)/\(plural)"] == nil {
                    out["\(prefix)/\(plural)"] = .object([
                        "get": op("list", "List \(g.kind) objects in all namespaces.", listSchema, mutating: false, namespaced: false, named: false),
                    ])
                }
            }
        }
        return out
    }

    /// Kubernetes' fallback plural: "Policy" -> "policies", "Ingress" -> "ingresses", "Pod" -> "pods".
    static func guessPlural(_ kind: String) -> String {
        let k = kind.lowercased()
        if k.hasSuffix("s") || k.hasSuffix("x") || k.hasSuffix("ch") || k.hasSuffix("sh") { return k + "es" }
        if k.hasSuffix("y"), let prev = k.dropLast().last, !"aeiou".contains(prev) { return k.dropLast() + "ies" }
        return k + "s"
    }

    // MARK: - Names

    /// "v1" -> "api/v1", "apps/v1" -> "apis/apps/v1".
    public static func pathKey(apiVersion: String) -> String {
        let gv = splitAPIVersion(apiVersion)
        return gv.group.isEmpty ? "api/\(gv.version)" : "apis/\(gv.group)/\(gv.version)"
    }

    static func splitAPIVersion(_ apiVersion: String) -> (group: String, version: String) {
        let parts = apiVersion.split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? (parts[0], parts[1]) : ("", apiVersion)
    }

    static let refPrefix = "#/components/schemas/"
    static let timeName = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    static let microTimeName = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
    static let quantityName = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    static let intOrStringName = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    static let rawExtensionName = "io.k8s.apimachinery.pkg.runtime.RawExtension"
    static let fieldsV1Name = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"

    /// Component schemas of the types that are scalars in the table.
    static let namedScalars: [String: JSONValue] = [
        timeName: .object(["description": "A timestamp in RFC 3339 form, to the second.",
                           "type": "string", "format": "date-time"]),
        microTimeName: .object(["description": "A timestamp in RFC 3339 form, to the microsecond.",
                                "type": "string", "format": "date-time"]),
        quantityName: .object(["description": "A fixed-point decimal amount written as a string with an optional suffix, such as \"500m\" or \"1Gi\"; a plain number is accepted too.",
                               "oneOf": .array([.object(["type": "string"]), .object(["type": "number"])])]),
        intOrStringName: .object(["description": "Either an integer or a string.",
                                  "format": "int-or-string",
                                  "oneOf": .array([.object(["type": "integer"]), .object(["type": "string"])])]),
        rawExtensionName: .object(["description": "An embedded object of any kind, kept as JSON.", "type": "object"]),
        fieldsV1Name: .object(["description": "A set of field paths, in the server-side apply field-set JSON form.", "type": "object"]),
    ]

    // MARK: - Schemas

    /// JSON-visible fields in table order, inline members flattened (the set is Schema.jsonFields).
    static func orderedFields(_ m: SchemaMessage) -> [SchemaField] {
        let visible = Schema.jsonFields[m.name] ?? [:]
        var out: [SchemaField] = []
        var names = Set<String>()
        func walk(_ msg: SchemaMessage) {
            for f in msg.fields {
                if f.inline, let sub = f.type.messageName.flatMap({ Schema.messages[$0] }) {
                    walk(sub)
                } else if !f.name.isEmpty, !names.contains(f.name), let v = visible[f.name] {
                    names.insert(f.name)
                    out.append(v)
                }
            }
        }
        walk(m)
        return out
    }

    static func collect(_ t: SchemaType, messages: inout [String], scalars: inout Set<String>) {
        switch t {
        case .message(let n): messages.append(n)
        case .list(let e), .map(let e), .wrapped(let e): collect(e, messages: &messages, scalars: &scalars)
        case .time: scalars.insert(timeName)
        case .microTime: scalars.insert(microTimeName)
        case .quantity: scalars.insert(quantityName)
        case .intOrString: scalars.insert(intOrStringName)
        case .raw: scalars.insert(rawExtensionName)
        case .fieldsV1: scalars.insert(fieldsV1Name)
        default: break
        }
    }

    static func messageSchema(_ m: SchemaMessage, gvks: [GroupVersionKind]) -> JSONValue {
        let fields = orderedFields(m)
        var props: [String: JSONValue] = [:]
        var required: [JSONValue] = []
        if !gvks.isEmpty {
            props["apiVersion"] = .object(["type": "string",
                                           "description": .string("apiVersion: the group and version of this object's schema, such as \"\(gvks[0].apiVersion)\".")])
            props["kind"] = .object(["type": "string",
                                     "description": .string("kind: the kind of this object, \"\(gvks[0].kind)\".")])
        }
        for f in fields {
            props[f.name] = propertySchema(f, in: m)
            if !f.omitEmpty { required.append(.string(f.name)) }
        }
        var s: [String: JSONValue] = [
            "type": "object",
            "description": .string(typeDescription(m, gvks: gvks)),
        ]
        if !props.isEmpty { s["properties"] = .object(props) }
        if !required.isEmpty { s["required"] = .array(required) }
        if m.structType == "atomic" { s["x-kubernetes-map-type"] = "atomic" }
        if !gvks.isEmpty {
            s["x-kubernetes-group-version-kind"] = .array(gvks.map {
                .object(["group": .string($0.group), "kind": .string($0.kind), "version": .string($0.version)])
            })
        }
        return .object(s)
    }

    static func typeDescription(_ m: SchemaMessage, gvks: [GroupVersionKind]) -> String {
        let (pkg, type) = Schema.split(m.name)
        if let g = gvks.first {
            if g.kind.hasSuffix("List"), m.fields.contains(where: { $0.name == "items" }) {
                return "The \(g.kind) kind of \(g.apiVersion): a list of \(String(g.kind.dropLast(4))) objects."
            }
            return "The \(g.kind) kind of \(g.apiVersion)."
        }
        return "The \(type) of \(pkg)."
    }

    /// A reference to a component: plain `$ref` inside items and additionalProperties, `allOf` where a
    /// description sits beside it (as the published documents do).
    static func ref(_ name: String) -> JSONValue { .object(["$ref": .string(refPrefix + name)]) }

    /// The component name a type refers to, or nil for an inline scalar/array/map.
    static func refName(_ t: SchemaType) -> String? {
        switch t {
        case .message(let n): return Schema.messages[n]?.openAPIName
        case .time: return timeName
        case .microTime: return microTimeName
        case .quantity: return quantityName
        case .intOrString: return intOrStringName
        case .raw: return rawExtensionName
        case .fieldsV1: return fieldsV1Name
        default: return nil
        }
    }

    /// The schema of a value of type `t` (no description).
    static func valueSchema(_ t: SchemaType) -> JSONValue {
        if let r = refName(t) { return ref(r) }
        switch t {
        case .string, .duration: return .object(["type": "string"])
        case .bool: return .object(["type": "boolean"])
        case .int32: return .object(["type": "integer", "format": "int32"])
        case .int64: return .object(["type": "integer", "format": "int64"])
        case .double: return .object(["type": "number", "format": "double"])
        case .bytes: return .object(["type": "string", "format": "byte"])
        case .list(let e): return .object(["type": "array", "items": valueSchema(e)])
        case .wrapped(let w):
            if case .list = w { return valueSchema(w) }
            return .object(["type": "array", "items": valueSchema(w)])
        case .map(let v): return .object(["type": "object", "additionalProperties": valueSchema(v)])
                default: return .object(["type": "object"])
        }
    }

    static func propertySchema(_ f: SchemaField, in m: SchemaMessage) -> JSONValue {
        var s: [String: JSONValue]
        if let r = refName(f.type) {
            s = ["allOf": .array([ref(r)])]
        } else if case .object(let o) = valueSchema(f.type) {
            s = o
        } else {
            s = [:]
        }
        s["description"] = .string(fieldDescription(f))
        if !f.patchStrategies.isEmpty { s["x-kubernetes-patch-strategy"] = .string(f.patchStrategies.joined(separator: ",")) }
        if let k = f.mergeKey { s["x-kubernetes-patch-merge-key"] = .string(k) }
        if let lt = f.listType { s["x-kubernetes-list-type"] = .string(lt) }
        if !f.listMapKeys.isEmpty { s["x-kubernetes-list-map-keys"] = .array(f.listMapKeys.map { .string($0) }) }
        if let mt = f.mapType ?? f.structType { s["x-kubernetes-map-type"] = .string(mt) }
        return .object(s)
    }

    /// A short phrase for a type: "a PodSpec", "a list of Container", "a map of string to Quantity".
    static func typePhrase(_ t: SchemaType) -> String {
        switch t {
        case .string: return "a string"
        case .bool: return "a boolean"
        case .int32: return "a 32-bit integer"
        case .int64: return "a 64-bit integer"
        case .double: return "a floating-point number"
        case .bytes: return "base64-encoded bytes"
        case .time: return "a timestamp"
        case .microTime: return "a timestamp with microseconds"
        case .duration: return "a duration such as \"1m30s\""
        case .quantity: return "a Quantity"
        case .intOrString: return "an integer or a string"
        case .raw: return "an embedded object"
        case .fieldsV1: return "a field set"
        case .message(let n):
            let t = Schema.split(n).1
            return ("AEIOU".contains(t.first ?? "x") ? "an " : "a ") + t
        case .list(let e): return "a list of " + elementPhrase(e)
        case .wrapped(let w): return typePhrase(w)
        case .map(let v): return "a map of string to " + elementPhrase(v)
        }
    }

    static func elementPhrase(_ t: SchemaType) -> String {
        switch t {
        case .message(let n): return Schema.split(n).1
        case .string: return "string"
        case .quantity: return "Quantity"
        case .bytes: return "base64-encoded bytes"
        default:
            let p = typePhrase(t)
            for a in ["a ", "an "] where p.hasPrefix(a) { return String(p.dropFirst(a.count)) }
            return p
        }
    }

    /// "containers: a list of Container, merged by \"name\" in a strategic merge patch."
    static func fieldDescription(_ f: SchemaField) -> String {
        var parts: [String] = []
        if let k = f.mergeKey, f.mergesByKey {
            parts.append("merged by \"\(k)\" in a strategic merge patch")
        } else if f.mergesByKey {
            parts.append("merged in a strategic merge patch")
        }
        if f.retainsKeys { parts.append("with unset keys cleared in a strategic merge patch") }
        if f.patchStrategies.contains("replace") { parts.append("replaced whole in a strategic merge patch") }
        switch f.listType {
        case "map" where !f.listMapKeys.isEmpty:
            parts.append("keyed by " + f.listMapKeys.map { "\"\($0)\"" }.joined(separator: " and ") + " in server-side apply")
        case "set": parts.append("a set in server-side apply")
        case "atomic": parts.append("replaced as a whole in server-side apply")
        default: break
        }
        if (f.mapType ?? f.structType) == "atomic" { parts.append("owned as a whole in server-side apply") }
        var s = "\(f.name): \(typePhrase(f.type))"
        if !parts.isEmpty { s += ", " + parts.joined(separator: ", ") }
        return s + "."
    }

    static func fnv64(_ bytes: Data) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }
}
