// Kubernetes object metadata and the meta.k8s.io/v1 envelope types (Status, lists, watch events).
import Foundation

public struct OwnerReference: Codable, Hashable, Sendable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var uid: String
    public var controller: Bool?
    public var blockOwnerDeletion: Bool?
    public init(apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil, blockOwnerDeletion: Bool? = nil) {
        self.apiVersion = apiVersion; self.kind = kind; self.name = name; self.uid = uid
        self.controller = controller; self.blockOwnerDeletion = blockOwnerDeletion
    }
}

public struct ObjectMeta: Codable, Hashable, Sendable {
    public var name: String?
    public var generateName: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var deletionGracePeriodSeconds: Int64?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?
    public var finalizers: [String]?
    public var managedFields: JSONValue?
    public var selfLink: String?

    public init(name: String? = nil, namespace: String? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil) {
        self.name = name; self.namespace = namespace; self.labels = labels; self.annotations = annotations
    }

    public var controllerRef: OwnerReference? { ownerReferences?.first { $0.controller == true } }
}

/// Every stored kind: typed, with metadata, identified by its resource.
public protocol KubeObject: Codable, Sendable {
    static var resource: ResourceInfo { get }
    var apiVersion: String? { get set }
    var kind: String? { get set }
    var metadata: ObjectMeta { get set }
}

extension KubeObject {
    public var name: String { metadata.name ?? "" }
    public var namespace: String { metadata.namespace ?? "" }
    public var labels: [String: String] { metadata.labels ?? [:] }
    /// Sets apiVersion/kind from the resource table.
    public mutating func setTypeMeta() {
        apiVersion = Self.resource.apiVersion
        kind = Self.resource.kind
    }
}

public struct ListMeta: Codable, Hashable, Sendable {
    public var resourceVersion: String?
    public var `continue`: String?
    public var remainingItemCount: Int64?
    public init(resourceVersion: String? = nil) { self.resourceVersion = resourceVersion }
}

public struct ObjectList<T: Codable & Sendable>: Codable, Sendable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ListMeta
    public var items: [T]
}

public struct StatusCause: Codable, Hashable, Sendable {
    public var reason: String?
    public var message: String?
    public var field: String?
    public init(reason: String? = nil, message: String? = nil, field: String? = nil) {
        self.reason = reason; self.message = message; self.field = field
    }
}

public struct StatusDetails: Codable, Hashable, Sendable {
    public var name: String?
    public var group: String?
    public var kind: String?
    public var uid: String?
    public var causes: [StatusCause]?
    public var retryAfterSeconds: Int?
    public init(name: String? = nil, group: String? = nil, kind: String? = nil, causes: [StatusCause]? = nil) {
        self.name = name; self.group = group; self.kind = kind; self.causes = causes
    }
}

/// meta/v1 Status: the body of every error response.
public struct Status: Codable, Hashable, Sendable, Error {
    public var kind: String? = "Status"
    public var apiVersion: String? = "v1"
    public var metadata: ListMeta? = ListMeta()
    public var status: String?
    public var message: String?
    public var reason: String?
    public var details: StatusDetails?
    public var code: Int?
    public init(status: String, message: String, reason: String, code: Int, details: StatusDetails? = nil) {
        self.status = status; self.message = message; self.reason = reason; self.code = code; self.details = details
    }
    public static func success(_ details: StatusDetails? = nil) -> Status {
        Status(status: "Success", message: "", reason: "", code: 200, details: details)
    }
}

public struct WatchEvent<T: Codable & Sendable>: Codable, Sendable {
    public var type: String
    public var object: T
    public init(type: String, object: T) { self.type = type; self.object = object }
}

public struct Preconditions: Codable, Sendable, Hashable {
    public var uid: String?
    public var resourceVersion: String?
    public init(uid: String? = nil, resourceVersion: String? = nil) { self.uid = uid; self.resourceVersion = resourceVersion }
}

public struct DeleteOptions: Codable, Sendable, Hashable {
    public var kind: String?
    public var apiVersion: String?
    public var gracePeriodSeconds: Int64?
    public var propagationPolicy: String?
    public var orphanDependents: Bool?
    public var preconditions: Preconditions?
    public var dryRun: [String]?
    public init(gracePeriodSeconds: Int64? = nil, propagationPolicy: String? = nil) {
        self.gracePeriodSeconds = gracePeriodSeconds; self.propagationPolicy = propagationPolicy
    }
}

/// metav1.Condition-free helpers for RFC 3339 timestamps as Kubernetes writes them (seconds, UTC, "Z").
public enum KubeTime {
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!))
    }
    public static func formatMicro(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
    }
    public static func parse(_ s: String?) -> Date? {
        guard let s else { return nil }
        if let d = try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        return try? Date(s, strategy: Date.ISO8601FormatStyle())
    }
    /// kubectl-style short age: 5s, 3m, 2h, 4d.
    public static func age(since: String?, now: Date = Date()) -> String {
        guard let d = parse(since) else { return "<unknown>" }
        return shortDuration(now.timeIntervalSince(d))
    }
    public static func shortDuration(_ t: TimeInterval) -> String {
        let s = max(0, Int(t))
        if s < 120 { return "\(s)s" }
        if s < 600 { return "\(s / 60)m\(s % 60 == 0 ? "" : "\(s % 60)s")" }
        if s < 3 * 3600 { return "\(s / 60)m" }
        if s < 48 * 3600 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }
}

/// An int or a string, like Kubernetes' IntOrString (ports, maxSurge).
public enum IntOrString: Codable, Hashable, Sendable, CustomStringConvertible {
    case int(Int)
    case string(String)
    public init(from decoder: Decoder) throws {
        if let t = decoder as? TreeDecoder {
            if case .int(let i) = t.value, let x = Int(exactly: i) { self = .int(x); return }
            if case .string(let s) = t.value { self = .string(s); return }
        }
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self { case .int(let i): try c.encode(i); case .string(let s): try c.encode(s) }
    }
    public var description: String { switch self { case .int(let i): return "\(i)"; case .string(let s): return s } }

    /// Resolves against a total: "25%" of 10 → 3 when rounding up, 2 when down.
    public func scaled(total: Int, roundUp: Bool) -> Int? {
        switch self {
        case .int(let i): return i
        case .string(let s):
            guard s.hasSuffix("%"), let p = Int(s.dropLast()) else { return Int(s) }
            let v = Double(p) * Double(total) / 100
            return roundUp ? Int(v.rounded(.up)) : Int(v.rounded(.down))
        }
    }
}

extension Status {
    /// JSON with the keys in the order Kubernetes writes them (Go's field order, empty fields
    /// left out): kind, apiVersion, metadata, status, message, reason, details, code. Clients
    /// that compare error texts see the same bytes as from kube-apiserver.
    public func kubernetesJSON() -> Data {
        var parts: [(String, JSONValue)] = [("kind", .string(kind ?? "Status")), ("apiVersion", .string(apiVersion ?? "v1"))]
        var meta: [(String, JSONValue)] = []
        if let rv = metadata?.resourceVersion, !rv.isEmpty { meta.append(("resourceVersion", .string(rv))) }
        if let c = metadata?.continue, !c.isEmpty { meta.append(("continue", .string(c))) }
        parts.append(("metadata", .object(Dictionary(uniqueKeysWithValues: meta))))
        if let s = status, !s.isEmpty { parts.append(("status", .string(s))) }
        if let m = message, !m.isEmpty { parts.append(("message", .string(m))) }
        if let r = reason, !r.isEmpty { parts.append(("reason", .string(r))) }
        var out = Data("{".utf8)
        func add(_ k: String, _ raw: Data) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: (try? JSONValue.string(k).encoded()) ?? Data())
            out.append(UInt8(ascii: ":"))
            out.append(raw)
        }
        for (k, v) in parts { add(k, (try? v.encoded()) ?? Data("null".utf8)) }
        if let d = details {
            var dd = Data("{".utf8)
            func addD(_ k: String, _ v: JSONValue) {
                if dd.count > 1 { dd.append(UInt8(ascii: ",")) }
                dd.append(contentsOf: (try? JSONValue.string(k).encoded()) ?? Data())
                dd.append(UInt8(ascii: ":"))
                dd.append(contentsOf: (try? v.encoded()) ?? Data())
            }
            if let x = d.name, !x.isEmpty { addD("name", .string(x)) }
            if let x = d.group, !x.isEmpty { addD("group", .string(x)) }
            if let x = d.kind, !x.isEmpty { addD("kind", .string(x)) }
            if let x = d.uid, !x.isEmpty { addD("uid", .string(x)) }
            if let cs = d.causes, !cs.isEmpty {
                // Cause keys in Go's order: reason, message, field.
                var ca = Data("[".utf8)
                for (i, c) in cs.enumerated() {
                    if i > 0 { ca.append(UInt8(ascii: ",")) }
                    var pairs: [String] = []
                    for (k, v) in [("reason", c.reason), ("message", c.message), ("field", c.field)] {
                        if let v, !v.isEmpty, let e = try? JSONValue.string(v).encoded() { pairs.append("\"\(k)\":" + String(decoding: e, as: UTF8.self)) }
                    }
                    ca.append(contentsOf: Data(("{" + pairs.joined(separator: ",") + "}").utf8))
                }
                ca.append(UInt8(ascii: "]"))
                if dd.count > 1 { dd.append(UInt8(ascii: ",")) }
                dd.append(contentsOf: Data("\"causes\":".utf8)); dd.append(ca)
            }
            if let r = d.retryAfterSeconds, r != 0 { addD("retryAfterSeconds", .int(Int64(r))) }
            dd.append(UInt8(ascii: "}"))
            add("details", dd)
        }
        if let c = code, c != 0 { add("code", Data("\(c)".utf8)) }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
