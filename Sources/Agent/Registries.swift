// Where images come from: a registries file in k3s's format (`mirrors:` with endpoints per
// registry name, tried in order before the registry itself; `configs:` with auth and TLS per
// endpoint host), and pull credentials from a pod's imagePullSecrets
// (kubernetes.io/dockerconfigjson). A reference without a registry is Docker Hub's, named
// "docker.io" here as in the file.
import Foundation
import API
import Yams

public struct RegistryAuth: Sendable, Hashable {
    public var username: String
    public var password: String
    public init(username: String, password: String) { self.username = username; self.password = password }
    public var basic: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

public struct RegistryTLS: Sendable, Hashable {
    public var insecureSkipVerify = false
    public var caFile: String?
}

public struct RegistriesConfig: Sendable {
    /// Registry name ("docker.io", "ghcr.io", "*") → endpoint URLs ("http://198.18.0.1:5000").
    public var mirrors: [String: [String]] = [:]
    /// Endpoint host ("198.18.0.1:5000") → credentials and TLS.
    public var auth: [String: RegistryAuth] = [:]
    public var tls: [String: RegistryTLS] = [:]
    public init() {}

    struct ConfigError: Error, CustomStringConvertible { var description: String }

    /// Reads the file; errors name it and the entry.
    public static func load(_ path: String) throws -> RegistriesConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError(description: "\(path): cannot read the registries file") }
        let any: Any?
        do { any = try Yams.load(yaml: text) } catch { throw ConfigError(description: "\(path): invalid YAML: \(error)") }
        var c = RegistriesConfig()
        guard let top = any as? [String: Any] else {
            if any == nil { return c }
            throw ConfigError(description: "\(path): expected a mapping with mirrors: and configs:")
        }
        for k in top.keys where !["mirrors", "configs"].contains(k) { throw ConfigError(description: "\(path): unknown key \"\(k)\" (expected mirrors, configs)") }
        for (name, v) in (top["mirrors"] as? [String: Any]) ?? [:] {
            guard let m = v as? [String: Any], let eps = m["endpoint"] as? [String], !eps.isEmpty else {
                throw ConfigError(description: "\(path): mirrors.\(name): needs endpoint: [URL, ...]")
            }
            for (i, e) in eps.enumerated() where !(e.hasPrefix("http://") || e.hasPrefix("https://")) || URL(string: e)?.host == nil {
                throw ConfigError(description: "\(path): mirrors.\(name).endpoint[\(i)]: \"\(e)\" must be an http:// or https:// URL")
            }
            if m["rewrite"] != nil { throw ConfigError(description: "\(path): mirrors.\(name).rewrite: rewrites are not supported") }
            c.mirrors[name] = eps.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        }
        for (host, v) in (top["configs"] as? [String: Any]) ?? [:] {
            guard let m = v as? [String: Any] else { throw ConfigError(description: "\(path): configs.\(host): expected auth: and tls:") }
            if let a = m["auth"] as? [String: Any] {
                if let u = a["username"] as? String, let p = a["password"] as? String { c.auth[host] = RegistryAuth(username: u, password: p) }
                else if let enc = a["auth"] as? String, let d = Data(base64Encoded: enc), let s = String(data: d, encoding: .utf8), let colon = s.firstIndex(of: ":") {
                    c.auth[host] = RegistryAuth(username: String(s[..<colon]), password: String(s[s.index(after: colon)...]))
                } else { throw ConfigError(description: "\(path): configs.\(host).auth: needs username and password (or auth: base64 of user:password)") }
            }
            if let t = m["tls"] as? [String: Any] {
                var tls = RegistryTLS()
                tls.insecureSkipVerify = (t["insecure_skip_verify"] as? Bool) ?? false
                if let ca = t["ca_file"] as? String {
                    guard FileManager.default.fileExists(atPath: ca) else { throw ConfigError(description: "\(path): configs.\(host).tls.ca_file: \(ca) does not exist") }
                    tls.caFile = ca
                }
                if t["cert_file"] != nil || t["key_file"] != nil { throw ConfigError(description: "\(path): configs.\(host).tls: client certificates are not supported") }
                c.tls[host] = tls
            }
        }
        return c
    }

    /// The registry's name as the file uses it.
    static func name(_ r: ImageReference) -> String { r.registry == "registry-1.docker.io" ? "docker.io" : r.registry }

    /// Endpoint bases to try for a reference, in order: its mirrors, then the registry itself.
    func endpoints(_ r: ImageReference, insecure: Set<String>) -> [String] {
        var out = mirrors[Self.name(r)] ?? mirrors["*"] ?? []
        let plain = insecure.contains(r.registry) || r.registry.hasPrefix("127.") || r.registry.hasPrefix("localhost")
        let own = "\(plain ? "http" : "https")://\(r.registry)"
        if !out.contains(own) { out.append(own) }
        return out
    }
}

/// Credentials from kubernetes.io/dockerconfigjson (or dockercfg) Secrets: registry host → auth.
public enum PullSecrets {
    public static func credentials(_ secrets: [Secret]) -> [String: RegistryAuth] {
        var out: [String: RegistryAuth] = [:]
        for s in secrets {
            let raw: String?
            switch s.type {
            case "kubernetes.io/dockerconfigjson": raw = s.data?[".dockerconfigjson"]
            case "kubernetes.io/dockercfg": raw = s.data?[".dockercfg"]
            default: raw = nil
            }
            guard let b64 = raw, let data = Data(base64Encoded: b64), let j = try? JSONValue.parse(data) else { continue }
            let auths = j["auths"]?.objectValue ?? j.objectValue ?? [:]
            for (server, entry) in auths {
                var user = entry["username"]?.stringValue, pass = entry["password"]?.stringValue
                if user == nil, let a = entry["auth"]?.stringValue, let d = Data(base64Encoded: a), let s = String(data: d, encoding: .utf8), let colon = s.firstIndex(of: ":") {
                    user = String(s[..<colon]); pass = String(s[s.index(after: colon)...])
                }
                guard let user, let pass else { continue }
                // "https://index.docker.io/v1/" and "docker.io" both mean Docker Hub.
                var host = server.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "")
                if let slash = host.firstIndex(of: "/") { host = String(host[..<slash]) }
                if host == "index.docker.io" || host == "docker.io" { host = "registry-1.docker.io" }
                out[host] = RegistryAuth(username: user, password: pass)
            }
        }
        return out
    }
}
