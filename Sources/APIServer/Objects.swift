// Object-level operations shared by every handler: strict typed decoding, system metadata,
// defaulting and validation, and the read-modify-write loop against the store.
import Foundation
import API
import Store

/// What the client asked for unknown fields (Kubernetes' fieldValidation parameter).
enum FieldValidation: String { case strict = "Strict", warn = "Warn", ignore = "Ignore" }

struct DecodeOutcome<T> {
    var object: T
    var warnings: [String]
}

enum Objects {
    static func key(_ info: ResourceInfo, _ ns: String?, _ name: String) -> ObjectKey {
        ObjectKey(resource: info.groupResource, namespace: info.namespaced ? (ns ?? "") : "", name: name)
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
            }
            return s.isEmpty ? "<root>" : s
        }
        switch e {
        case .typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(typeName(t)), \(c.debugDescription.lowercased().contains("found") ? c.debugDescription : "got another type")"
        case .valueNotFound(let t, let c): return "\(path(c.codingPath)): expected \(typeName(t)) but found null"
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): Required value"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
    static func typeName(_ t: Any.Type) -> String {
        let n = String(describing: t)
        switch n {
        case "Int", "Int32", "Int64": return "an integer"
        case "String": return "a string"
        case "Bool": return "a boolean"
        case "Double": return "a number"
        default: return n.hasPrefix("Array") ? "an array" : n.hasPrefix("Dictionary") ? "an object" : "an object (\(n))"
        }
    }

    /// Decodes a typed object from a JSON tree, rejecting (or warning about) fields the type does not know.
    static func decode<T: ServedKind>(_ type: T.Type, _ input: JSONValue, validation: FieldValidation) throws -> DecodeOutcome<T> {
        let info = T.resource
        guard case .object = input else { throw Status.badRequest("the body must be a JSON object describing a \(info.kind)") }
        if let k = input["kind"]?.stringValue, !k.isEmpty, k != info.kind {
            throw Status.badRequest("the kind \"\(k)\" in the body does not match the resource \"\(info.groupResource)\" (kind \"\(info.kind)\")")
        }
        if let v = input["apiVersion"]?.stringValue, !v.isEmpty, v != info.apiVersion {
            throw Status.badRequest("the API version \"\(v)\" in the body does not match the endpoint's \"\(info.apiVersion)\"")
        }
        var obj: T
        do {
            obj = try input.decode(T.self)
        } catch let e as DecodingError {
            throw Status.badRequest("\(info.kind) in version \"\(info.version)\" cannot be handled as a \(info.kind): \(describe(e))")
        } catch {
            throw Status.badRequest("\(info.kind) in version \"\(info.version)\" cannot be handled as a \(info.kind): \(error)")
        }
        var warnings: [String] = []
        if validation != .ignore {
            // Unknown to Kubernetes' schema (null, {} and [] values too), then known fields that the
            // typed object could not keep: neither may vanish silently.
            var unknown = Schema.kind(apiVersion: info.apiVersion, kind: info.kind).map { Schema.unknownFields(input, message: $0.name) } ?? []
            let typed = try JSONValue.from(obj)
            for p in unknownFields(input: input, typed: typed) where !unknown.contains(p) { unknown.append(p) }
            if !unknown.isEmpty {
                if validation == .strict {
                    throw Status.strictDecoding(unknown)
                }
                warnings = unknown.map { "unknown field \"\($0)\"" }
            }
        }
        obj.setTypeMeta()
        return DecodeOutcome(object: obj, warnings: warnings)
    }

    static func decodeStored<T: ServedKind>(_ type: T.Type, _ o: StoredObject) throws -> T {
        do { return try KubeJSON.decode(T.self, from: o.data) }
        catch { throw Status.internalError("stored \(o.key) does not decode: \(error)") }
    }

    /// Encodes with the revision placeholder the store stamps at commit.
    static func encodeForStore<T: ServedKind>(_ obj: T) throws -> StoredObject {
        var o = obj
        o.setTypeMeta()
        o.metadata.resourceVersion = Store.revisionPlaceholder
        let data = try KubeJSON.encode(o)
        return StoredObject(key: key(T.resource, o.metadata.namespace, o.name), data: data, labels: o.labels, fields: o.selectableFields)
    }

    static func usesGeneration(_ info: ResourceInfo) -> Bool {
        info.hasStatus && info != Resources.pods && info != Resources.nodes && info != Resources.namespaces
    }

    /// The part of a stored object whose change bumps metadata.generation: everything but
    /// metadata and status.
    static func specPart(_ data: Data) -> JSONValue? {
        guard case .object(var o)? = try? JSONValue.parse(data) else { return nil }
        o.removeValue(forKey: "metadata"); o.removeValue(forKey: "status")
        return .object(o)
    }

    static func map(_ e: Error, _ info: ResourceInfo, _ name: String) -> Status {
        if let s = e as? Status { return s }
        if let se = e as? StoreError {
            switch se {
            case .alreadyExists: return .alreadyExists(info, name)
            case .notFound: return .notFound(info, name)
            case .conflict: return .conflict(info, name)
            case .gone(let r, let oldest): return .gone("too old resource version: \(r) (\(oldest))")
            case .backend(let m): return .internalError("storage: \(m)")
            case .closed: return .serviceUnavailable("the apiserver is shutting down")
            case .unavailable(let m): return .serviceUnavailable("storage unavailable: \(m)")
            }
        }
        return .internalError("\(e)")
    }

    static func randomSuffix(_ n: Int = 5) -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
    }
}
