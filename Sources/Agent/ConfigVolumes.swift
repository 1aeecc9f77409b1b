// Configuration into pods: the files of configMap, secret, downwardAPI and projected volumes,
// and the environment from envFrom and valueFrom, computed from the pod and the ConfigMaps and
// Secrets the agent watches. Volumes are written with Kubernetes' atomic layout (a timestamped
// directory, a `..data` symlink swapped by rename, and top-level symlinks through it), so a
// running container sees a changed ConfigMap whole, never half-written.
import Foundation
import API

/// One file of a projected volume.
public struct ProjectedFile: Hashable, Sendable {
    public var path: String
    public var data: Data
    public var mode: Int
    public init(path: String, data: Data, mode: Int) { self.path = path; self.data = data; self.mode = mode }
}

/// Why a pod's configuration cannot be made yet (a missing object or key); the pod retries.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ d: String) { description = d }
}

public struct ConfigSources: Sendable {
    public var configMap: @Sendable (String, String) -> ConfigMap?   // namespace, name
    public var secret: @Sendable (String, String) -> Secret?
    /// The node's allocatable resources: resourceFieldRef limits that the container does not set.
    public var allocatable: ResourceList
    /// ServiceAccount tokens fetched for this pod, by `ConfigProjection.tokenKey`.
    public var tokens: [String: String] = [:]
    public init(configMap: @escaping @Sendable (String, String) -> ConfigMap?, secret: @escaping @Sendable (String, String) -> Secret?, allocatable: ResourceList) {
        self.configMap = configMap; self.secret = secret; self.allocatable = allocatable
    }
}

public enum ConfigProjection {
    static let defaultMode = 0o644

    /// Whether the volume is one the agent writes from API objects.
    public static func isProjected(_ v: Volume) -> Bool { v.configMap != nil || v.secret != nil || v.downwardAPI != nil || v.projected != nil }
    /// Secret-bearing volumes live on tmpfs, never on the node's disk.
    public static func needsTmpfs(_ v: Volume) -> Bool {
        v.secret != nil || (v.projected?["sources"]?.arrayValue ?? []).contains { $0["secret"] != nil || $0["serviceAccountToken"] != nil }
    }

    static func decode(_ b64: String) -> Data { Data(base64Encoded: b64) ?? Data() }

    /// The key → bytes of a ConfigMap (data and binaryData).
    static func contents(_ cm: ConfigMap) -> [String: Data] {
        var m: [String: Data] = [:]
        for (k, v) in cm.data ?? [:] { m[k] = Data(v.utf8) }
        for (k, v) in cm.binaryData ?? [:] { m[k] = decode(v) }
        return m
    }
    static func contents(_ s: Secret) -> [String: Data] {
        var m: [String: Data] = [:]
        for (k, v) in s.data ?? [:] { m[k] = decode(v) }
        for (k, v) in s.stringData ?? [:] { m[k] = Data(v.utf8) }
        return m
    }

    static func mode(_ j: JSONValue?) -> Int? { j?.intValue.map(Int.init) }

    /// Files for a set of keys: all of them, or the listed items (key → path, mode).
    static func keyed(_ data: [String: Data], items: [JSONValue]?, defaultMode: Int, kind: String, name: String, optional: Bool) throws(ConfigError) -> [ProjectedFile] {
        guard let items, !items.isEmpty else {
            return data.keys.sorted().map { ProjectedFile(path: $0, data: data[$0]!, mode: defaultMode) }
        }
        var out: [ProjectedFile] = []
        for it in items {
            let key = it["key"]?.stringValue ?? ""
            guard let bytes = data[key] else {
                if optional { continue }
                throw ConfigError("\(kind) references non-existent config key: \(key)")
            }
            out.append(ProjectedFile(path: it["path"]?.stringValue ?? key, data: bytes, mode: mode(it["mode"]) ?? defaultMode))
        }
        return out
    }

    static func configMapFiles(_ src: JSONValue, pod: Pod, sources: ConfigSources, defaultMode: Int) throws(ConfigError) -> [ProjectedFile] {
        let name = src["name"]?.stringValue ?? ""
        let optional = src["optional"] == .bool(true)
        guard let cm = sources.configMap(pod.namespace, name) else {
            if optional { return [] }
            throw ConfigError("configmap \"\(name)\" not found")
        }
        return try keyed(contents(cm), items: src["items"]?.arrayValue, defaultMode: defaultMode, kind: "configmap", name: name, optional: optional)
    }

    static func secretFiles(_ src: JSONValue, nameField: String, pod: Pod, sources: ConfigSources, defaultMode: Int) throws(ConfigError) -> [ProjectedFile] {
        let name = src[nameField]?.stringValue ?? ""
        let optional = src["optional"] == .bool(true)
        guard let s = sources.secret(pod.namespace, name) else {
            if optional { return [] }
            throw ConfigError("secret \"\(name)\" not found")
        }
        return try keyed(contents(s), items: src["items"]?.arrayValue, defaultMode: defaultMode, kind: "secret", name: name, optional: optional)
    }

    /// A downward API value: fieldRef or resourceFieldRef.
    static func downward(_ item: JSONValue, pod: Pod, container: Container?, sources: ConfigSources) throws(ConfigError) -> String {
        if let path = item["fieldRef"]?["fieldPath"]?.stringValue {
            func lines(_ m: [String: String]?) -> String {
                (m ?? [:]).keys.sorted().map { k in "\(k)=\"\(escape(m![k]!))\"" }.joined(separator: "\n")
            }
            switch path {
            case "metadata.name": return pod.name
            case "metadata.namespace": return pod.namespace
            case "metadata.uid": return pod.metadata.uid ?? ""
            case "metadata.labels": return lines(pod.metadata.labels)
            case "metadata.annotations": return lines(pod.metadata.annotations)
            case "spec.nodeName": return pod.spec?.nodeName ?? ""
            case "spec.serviceAccountName": return pod.spec?.serviceAccountName ?? "default"
            case "status.podIP": return pod.status?.podIP ?? ""
            case "status.hostIP": return pod.status?.hostIP ?? ""
            default:
                if path.hasPrefix("metadata.labels['"), path.hasSuffix("']") { return pod.metadata.labels?[String(path.dropFirst(17).dropLast(2))] ?? "" }
                if path.hasPrefix("metadata.annotations['"), path.hasSuffix("']") { return pod.metadata.annotations?[String(path.dropFirst(22).dropLast(2))] ?? "" }
                throw ConfigError("unsupported fieldPath \"\(path)\"")
            }
        }
        if let r = item["resourceFieldRef"] {
            let cname = r["containerName"]?.stringValue
            guard let c = cname.flatMap({ n in pod.spec?.containers.first { $0.name == n } }) ?? container else {
                throw ConfigError("resourceFieldRef: container \"\(cname ?? "")\" not found in the pod")
            }
            return try resourceValue(r, container: c, sources: sources)
        }
        throw ConfigError("a downward API item needs fieldRef or resourceFieldRef")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// limits.cpu, limits.memory, limits.ephemeral-storage, requests.* with a divisor (cpu rounds
    /// up, as Kubernetes); an unset limit is the node's allocatable.
    static func resourceValue(_ r: JSONValue, container c: Container, sources: ConfigSources) throws(ConfigError) -> String {
        let res = r["resource"]?.stringValue ?? ""
        let parts = res.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, ["limits", "requests"].contains(parts[0]), ["cpu", "memory", "ephemeral-storage"].contains(parts[1]) else {
            throw ConfigError("unsupported resource \"\(res)\" in resourceFieldRef")
        }
        let kind = parts[1]
        var q: Quantity? = parts[0] == "limits" ? c.resources?.limits?[kind] : c.resources?.requests?[kind]
        if q == nil && parts[0] == "limits" { q = sources.allocatable[kind] }
        if q == nil && parts[0] == "requests" { q = c.resources?.limits?[kind] }   // requests default to limits
        let divisor = r["divisor"]?.stringValue.flatMap { try? Quantity(parsing: $0) }
        let value = q ?? Quantity(milli: 0)
        if kind == "cpu" {
            let d = max(1, divisor?.milli ?? 1000)
            return String((value.milli + d - 1) / d)
        }
        let d = max(1, divisor?.value ?? 1)
        return String((value.value + d - 1) / d)
    }

    /// The files of a configMap, secret, downwardAPI or projected volume.
    public static func files(_ v: Volume, pod: Pod, sources: ConfigSources) throws(ConfigError) -> [ProjectedFile] {
        if let cm = v.configMap {
            return try configMapFiles(cm, pod: pod, sources: sources, defaultMode: mode(cm["defaultMode"]) ?? defaultMode)
        }
        if let s = v.secret {
            return try secretFiles(s, nameField: "secretName", pod: pod, sources: sources, defaultMode: mode(s["defaultMode"]) ?? defaultMode)
        }
        if let d = v.downwardAPI {
            let dm = mode(d["defaultMode"]) ?? defaultMode
            var out: [ProjectedFile] = []
            for it in d["items"]?.arrayValue ?? [] {
                out.append(ProjectedFile(path: it["path"]?.stringValue ?? "", data: Data(try downward(it, pod: pod, container: nil, sources: sources).utf8), mode: mode(it["mode"]) ?? dm))
            }
            return out
        }
        if let p = v.projected {
            let dm = mode(p["defaultMode"]) ?? defaultMode
            var out: [ProjectedFile] = []
            for src in p["sources"]?.arrayValue ?? [] {
                if let cm = src["configMap"] { out += try configMapFiles(cm, pod: pod, sources: sources, defaultMode: dm) }
                else if let s = src["secret"] { out += try secretFiles(s, nameField: "name", pod: pod, sources: sources, defaultMode: dm) }
                else if let d = src["downwardAPI"] {
                    for it in d["items"]?.arrayValue ?? [] {
                        out.append(ProjectedFile(path: it["path"]?.stringValue ?? "", data: Data(try downward(it, pod: pod, container: nil, sources: sources).utf8), mode: mode(it["mode"]) ?? dm))
                    }
                } else if let t = src["serviceAccountToken"] {
                    let want = tokenRequest(t)
                    guard let token = sources.tokens[want.key] else { throw ConfigError("no token for service account \"\(pod.spec?.serviceAccountName ?? "default")\" yet") }
                    out.append(ProjectedFile(path: t["path"]?.stringValue ?? "token", data: Data(token.utf8), mode: dm))
                } else if src["clusterTrustBundle"] != nil {
                    throw ConfigError("clusterTrustBundle projections are not served by this cluster")
                }
            }
            return out
        }
        return []
    }

    /// What a serviceAccountToken projection asks for: audience (nil: the apiserver's) and lifetime.
    public static func tokenRequest(_ t: JSONValue) -> (key: String, audience: String?, seconds: Int64) {
        let aud = t["audience"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let secs = t["expirationSeconds"]?.intValue ?? 3600
        return ("\(aud ?? "")|\(secs)", aud, secs)
    }

    /// Every token the pod's projected volumes need.
    public static func tokenRequests(_ pod: Pod) -> [(key: String, audience: String?, seconds: Int64)] {
        var out: [(key: String, audience: String?, seconds: Int64)] = []
        for v in pod.spec?.volumes ?? [] {
            for src in v.projected?["sources"]?.arrayValue ?? [] {
                if let t = src["serviceAccountToken"] { let r = tokenRequest(t); if !out.contains(where: { $0.key == r.key }) { out.append(r) } }
            }
        }
        return out
    }

    /// The container's environment with envFrom expanded and valueFrom references to ConfigMaps,
    /// Secrets and resources made literal (fieldRef entries stay for the runtime). Values taken
    /// from objects are escaped, so `$(...)` in them is not expanded. Returns the names skipped as
    /// invalid, as Kubernetes reports them.
    public static func environment(_ c: Container, pod: Pod, sources: ConfigSources) throws(ConfigError) -> (env: [EnvVar], invalid: [String]) {
        var out: [EnvVar] = []
        var invalid: [String] = []
        func literal(_ name: String, _ v: String) -> EnvVar { EnvVar(name: name, value: v.replacingOccurrences(of: "$", with: "$$")) }
        for src in c.envFrom?.arrayValue ?? [] {
            let prefix = src["prefix"]?.stringValue ?? ""
            var data: [String: Data] = [:]
            if let ref = src["configMapRef"] {
                let name = ref["name"]?.stringValue ?? ""
                if let cm = sources.configMap(pod.namespace, name) { data = contents(cm) }
                else if ref["optional"] != .bool(true) { throw ConfigError("configmap \"\(name)\" not found") }
            } else if let ref = src["secretRef"] {
                let name = ref["name"]?.stringValue ?? ""
                if let s = sources.secret(pod.namespace, name) { data = contents(s) }
                else if ref["optional"] != .bool(true) { throw ConfigError("secret \"\(name)\" not found") }
            }
            for k in data.keys.sorted() {
                let name = prefix + k
                guard Validation.envVarName(name) == nil else { invalid.append(name); continue }
                out.removeAll { $0.name == name }
                out.append(literal(name, String(decoding: data[k]!, as: UTF8.self)))
            }
        }
        for e in c.env ?? [] {
            out.removeAll { $0.name == e.name }
            guard e.value == nil, let from = e.valueFrom else { out.append(e); continue }
            if let ref = from["configMapKeyRef"] {
                let name = ref["name"]?.stringValue ?? "", key = ref["key"]?.stringValue ?? ""
                let optional = ref["optional"] == .bool(true)
                guard let cm = sources.configMap(pod.namespace, name) else {
                    if optional { continue }
                    throw ConfigError("configmap \"\(name)\" not found")
                }
                guard let v = contents(cm)[key] else {
                    if optional { continue }
                    throw ConfigError("couldn't find key \(key) in ConfigMap \(pod.namespace)/\(name)")
                }
                out.append(literal(e.name, String(decoding: v, as: UTF8.self)))
            } else if let ref = from["secretKeyRef"] {
                let name = ref["name"]?.stringValue ?? "", key = ref["key"]?.stringValue ?? ""
                let optional = ref["optional"] == .bool(true)
                guard let s = sources.secret(pod.namespace, name) else {
                    if optional { continue }
                    throw ConfigError("secret \"\(name)\" not found")
                }
                guard let v = contents(s)[key] else {
                    if optional { continue }
                    throw ConfigError("couldn't find key \(key) in Secret \(pod.namespace)/\(name)")
                }
                out.append(literal(e.name, String(decoding: v, as: UTF8.self)))
            } else if from["resourceFieldRef"] != nil {
                out.append(literal(e.name, try downward(from, pod: pod, container: c, sources: sources)))
            } else {
                out.append(e)   // fieldRef: the runtime fills it (it knows the pod's address)
            }
        }
        return (out, invalid)
    }

    /// "configmap/NAME" and "secret/NAME" for every object the pod's volumes and environment name.
    public static func references(_ pod: Pod) -> Set<String> {
        var out = Set<String>()
        for v in pod.spec?.volumes ?? [] {
            if let n = v.configMap?["name"]?.stringValue { out.insert("configmap/\(n)") }
            if let n = v.secret?["secretName"]?.stringValue { out.insert("secret/\(n)") }
            for src in v.projected?["sources"]?.arrayValue ?? [] {
                if let n = src["configMap"]?["name"]?.stringValue { out.insert("configmap/\(n)") }
                if let n = src["secret"]?["name"]?.stringValue { out.insert("secret/\(n)") }
            }
        }
        for c in (pod.spec?.containers ?? []) + (pod.spec?.initContainers ?? []) {
            for src in c.envFrom?.arrayValue ?? [] {
                if let n = src["configMapRef"]?["name"]?.stringValue { out.insert("configmap/\(n)") }
                if let n = src["secretRef"]?["name"]?.stringValue { out.insert("secret/\(n)") }
            }
            for e in c.env ?? [] {
                if let n = e.valueFrom?["configMapKeyRef"]?["name"]?.stringValue { out.insert("configmap/\(n)") }
                if let n = e.valueFrom?["secretKeyRef"]?["name"]?.stringValue { out.insert("secret/\(n)") }
            }
        }
        return out
    }

    /// A digest of a volume's files, to write only what changed.
    public static func digest(_ files: [ProjectedFile]) -> Int {
        var h = Hasher()
        for f in files.sorted(by: { $0.path < $1.path }) { h.combine(f.path); h.combine(f.data); h.combine(f.mode) }
        return h.finalize()
    }
}

/// Writes a projected volume's files under `dir` with Kubernetes' atomic layout:
///   dir/..2026_12_01_10_00_00.123456789/<files>   the current content
///   dir/..data -> ..2026_...                       swapped by rename(2), atomically
///   dir/<top> -> ..data/<top>                      one symlink per top-level name
public enum AtomicWriter {
    public static func write(_ files: [ProjectedFile], to dir: String, now: Date = Date()) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "UTC"); f.dateFormat = "yyyy_MM_dd_HH_mm_ss"
        let nanos = Int(now.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) * 1e9)
        var ts = "..\(f.string(from: now)).\(String(format: "%09d", nanos))"
        while fm.fileExists(atPath: "\(dir)/\(ts)") { ts += "1" }
        let tsDir = "\(dir)/\(ts)"
        try fm.createDirectory(atPath: tsDir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        for file in files {
            let path = "\(tsDir)/\(file.path)"
            let parent = (path as NSString).deletingLastPathComponent
            try fm.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            guard fm.createFile(atPath: path, contents: file.data, attributes: [.posixPermissions: file.mode]) else {
                throw ConfigError("writing \(path) failed")
            }
            chmod(path, mode_t(file.mode))
        }
        // Swap: a new symlink renamed over ..data.
        let tmp = "\(dir)/..data_tmp"
        unlink(tmp)
        guard symlink(ts, tmp) == 0, rename(tmp, "\(dir)/..data") == 0 else { throw ConfigError("swapping \(dir)/..data: errno \(errno)") }
        // Top-level names point through ..data; names no longer there go.
        let tops = Set(files.map { String($0.path.split(separator: "/").first ?? "") }.filter { !$0.isEmpty })
        for t in tops where (try? fm.destinationOfSymbolicLink(atPath: "\(dir)/\(t)")) == nil {
            unlink("\(dir)/\(t)")
            guard symlink("..data/\(t)", "\(dir)/\(t)") == 0 else { throw ConfigError("linking \(dir)/\(t): errno \(errno)") }
        }
        for entry in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
            if entry.hasPrefix("..") {
                if entry != ts && entry != "..data" { try? fm.removeItem(atPath: "\(dir)/\(entry)") }
            } else if !tops.contains(entry) {
                try? fm.removeItem(atPath: "\(dir)/\(entry)")
            }
        }
    }
}
