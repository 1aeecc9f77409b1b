// OCI image pulls: resolve a reference through the distribution API (plain HTTP for insecure
// registries, bearer tokens as Docker Hub issues them, image indexes narrowed to linux/amd64),
// verify every digest, keep blobs content-addressed, and unpack layers (gzip, whiteouts) into a
// rootfs per image digest that containers of that image share.
import Foundation
import Client
import Crypto
import AsyncHTTPClient
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization
import API

public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    /// Parses "busybox", "127.0.0.1:5000/demo/busybox:1.0", "ghcr.io/x/y@sha256:…" as Docker does.
    public init(parsing s: String) throws {
        var rest = s
        if let at = rest.firstIndex(of: "@") {
            digest = String(rest[rest.index(after: at)...])
            rest = String(rest[..<at])
            guard digest!.hasPrefix("sha256:"), digest!.count == 71 else { throw ImageError("\"\(s)\": the digest must be sha256:<64 hex>") }
        }
        let parts = rest.split(separator: "/", maxSplits: 1).map(String.init)
        if parts.count == 2, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            registry = parts[0]; rest = parts[1]
            // Docker Hub under its other names, as Docker resolves them.
            if registry == "docker.io" || registry == "index.docker.io" {
                registry = "registry-1.docker.io"
                if !rest.contains("/") { rest = "library/\(rest)" }
            }
        } else {
            registry = "registry-1.docker.io"
            rest = parts.count == 2 ? rest : "library/\(rest)"
        }
        if let colon = rest.lastIndex(of: ":") {
            tag = String(rest[rest.index(after: colon)...]); rest = String(rest[..<colon])
        } else if digest == nil { tag = "latest" }
        repository = rest
        guard !repository.isEmpty, repository.allSatisfy({ $0.isLowercase || $0.isNumber || "._-/".contains($0) }) else {
            throw ImageError("\"\(s)\" is not a valid image reference")
        }
    }
    public var description: String { "\(registry)/\(repository)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "") }
}

public struct ImageError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

public struct PulledImage: Sendable {
    public var reference: ImageReference
    public var digest: String          // manifest digest (the imageID we report)
    public var rootfs: String
    public var config: JSONValue       // the image config's "config" section (Cmd, Entrypoint, Env, WorkingDir)
}

public final class ImageStore: Sendable {
    let root: String
    let insecure: Set<String>
    let registries: RegistriesConfig
    let http: HTTPClient
    /// Clients for endpoints with their own TLS settings (registries file), made once each.
    let tlsClients = Mutex<[RegistryTLS: HTTPClient]>([:])
    /// Unpacks under way, by image directory.
    let unpacks = Mutex<[String: Task<Void, Error>]>([:])

    static let manifestTypes = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
    ]

    /// `insecure`: registries reached over plain HTTP (loopback registries always are);
    /// `registries`: mirrors, credentials and TLS per endpoint.
    public init(root: String, insecureRegistries: [String] = [], registries: RegistriesConfig = RegistriesConfig()) {
        self.root = root
        insecure = Set(insecureRegistries)
        self.registries = registries
        http = Self.sharedHTTP
    }

    /// One client per process, never shut down (an HTTPClient must not be dropped unshut).
    static let sharedHTTP = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(10), read: .seconds(120))))

    /// Shuts down the clients made for registries with their own TLS settings (the shared
    /// client lives as long as the process).
    public func shutdown() async {
        let clients = tlsClients.withLock { m -> [HTTPClient] in let c = Array(m.values); m = [:]; return c }
        for c in clients { try? await c.shutdown() }
    }

    static func sha256(_ d: Data) -> String { "sha256:" + SHA256.hash(data: d).map { String(format: "%02x", $0) }.joined() }

    /// The image's rootfs if it was pulled before (imagePullPolicy IfNotPresent / Never).
    public func local(_ ref: String) -> PulledImage? {
        guard let r = try? ImageReference(parsing: ref) else { return nil }
        let tagFile = "\(root)/refs/\(Self.refKey(r))"
        guard let digest = HostFile.text(tagFile),
              FileManager.default.fileExists(atPath: "\(root)/images/\(digest.dropFirst(7))/complete"),
              let cfg = FileManager.default.contents(atPath: "\(root)/images/\(digest.dropFirst(7))/config.json"),
              let config = try? JSONValue.parse(cfg) else { return nil }
        return PulledImage(reference: r, digest: digest, rootfs: "\(root)/images/\(digest.dropFirst(7))/rootfs", config: config)
    }

    static func refKey(_ r: ImageReference) -> String {
        r.description.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: ":", with: "_").replacingOccurrences(of: "@", with: "_")
    }

    // MARK: registry requests

    /// One endpoint being pulled from: its base URL, the repository, and what authorizes us.
    struct Source {
        var base: String          // "http://198.18.0.1:5000"
        var host: String
        var repository: String
        var credentials: RegistryAuth?
        var auth: String?         // the Authorization header in use
        var client: HTTPClient
        var v2: String { "\(base)/v2/\(repository)" }
    }

    func client(for host: String) throws -> HTTPClient {
        guard let tls = registries.tls[host] else { return http }
        return try tlsClients.withLock { m in
            if let c = m[tls] { return c }
            var t = TLSConfiguration.makeClientConfiguration()
            if tls.insecureSkipVerify { t.certificateVerification = .none }
            if let ca = tls.caFile { t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
            var conf = HTTPClient.Configuration(tlsConfiguration: t, timeout: .init(connect: .seconds(10), read: .seconds(120)))
            conf.httpVersion = .http1Only
            let c = HTTPClient(eventLoopGroupProvider: .singleton, configuration: conf)
            m[tls] = c
            return c
        }
    }

    func get(_ src: inout Source, _ url: String, accept: [String]) async throws -> (Data, HTTPHeaders) {
        for attempt in 0..<2 {
            var req = HTTPClientRequest(url: url)
            for a in accept { req.headers.add(name: "Accept", value: a) }
            if let auth = src.auth { req.headers.add(name: "Authorization", value: auth) }
            let resp = try await src.client.execute(req, timeout: .seconds(120))
            if resp.status == .unauthorized, attempt == 0, let challenge = resp.headers["WWW-Authenticate"].first {
                _ = try? await resp.body.collect(upTo: 1 << 20)
                if challenge.hasPrefix("Bearer ") { src.auth = try await bearerToken(challenge, src) ; continue }
                if challenge.hasPrefix("Basic "), let c = src.credentials { src.auth = c.basic; continue }
                throw ImageError("\(url): unauthorized\(src.credentials == nil ? " (no credentials for \(src.host): add them to the registries file or an imagePullSecret)" : "")")
            }
            let body = try await resp.body.collect(upTo: 512 << 20)
            guard resp.status == .ok else {
                throw ImageError("\(url): HTTP \(resp.status.code) \(String(decoding: Data(buffer: body).prefix(200), as: UTF8.self))")
            }
            return (Data(buffer: body), resp.headers)
        }
        throw ImageError("\(url): unauthorized (the credentials for \(src.host) were refused)")
    }

    /// Docker Hub's token flow: Bearer realm="…",service="…",scope="…", with basic credentials if any.
    func bearerToken(_ challenge: String, _ src: Source) async throws -> String {
        var params: [String: String] = [:]
        for part in challenge.dropFirst("Bearer ".count).split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) }
            if kv.count == 2 { params[kv[0]] = kv[1] }
        }
        guard let realm = params["realm"], var comps = URLComponents(string: realm) else { throw ImageError("registry auth challenge without realm") }
        comps.queryItems = ["service", "scope"].compactMap { k in params[k].map { URLQueryItem(name: k, value: $0) } }
        var req = HTTPClientRequest(url: comps.url!.absoluteString)
        if let c = src.credentials { req.headers.add(name: "Authorization", value: c.basic) }
        let resp = try await src.client.execute(req, timeout: .seconds(30))
        let body = try await resp.body.collect(upTo: 1 << 20)
        guard let v = try? JSONValue.parse(Data(buffer: body)), let t = v["token"]?.stringValue ?? v["access_token"]?.stringValue else {
            throw ImageError("registry token endpoint \(realm) returned no token (HTTP \(resp.status.code))")
        }
        return "Bearer \(t)"
    }

    /// A blob, from the local store or the registry; its digest is verified either way.
    func blob(_ src: inout Source, _ r: ImageReference, _ digest: String) async throws -> Data {
        let path = "\(root)/blobs/sha256/\(digest.dropFirst(7))"
        if let d = FileManager.default.contents(atPath: path), Self.sha256(d) == digest { return d }
        let (d, _) = try await get(&src, "\(src.v2)/blobs/\(digest)", accept: ["*/*"])
        let got = Self.sha256(d)
        guard got == digest else { throw ImageError("blob \(digest) of \(r) failed verification: its content hashes to \(got)") }
        try FileManager.default.createDirectory(atPath: "\(root)/blobs/sha256", withIntermediateDirectories: true)
        try d.write(to: URL(fileURLWithPath: path + ".tmp"))
        rename(path + ".tmp", path)
        return d
    }

    // MARK: pull

    /// Pulls from the reference's mirrors in order, then from its registry. `credentials`:
    /// registry host → auth from the pod's imagePullSecrets (the registries file's come first).
    public func pull(_ ref: String, credentials: [String: RegistryAuth] = [:]) async throws -> PulledImage {
        let r = try ImageReference(parsing: ref)
        var errors: [String] = []
        let endpoints = registries.endpoints(r, insecure: insecure)
        for ep in endpoints {
            let host = URL(string: ep)?.host.map { h in URL(string: ep)?.port.map { "\(h):\($0)" } ?? h } ?? r.registry
            var src = Source(base: ep, host: host, repository: r.repository, credentials: registries.auth[host] ?? credentials[host] ?? credentials[r.registry],
                             auth: nil, client: try client(for: host))
            if let c = src.credentials { src.auth = c.basic }
            do { return try await pull(r, from: &src) } catch {
                errors.append(endpoints.count > 1 ? "\(ep): \(error)" : "\(error)")
            }
        }
        throw ImageError(errors.joined(separator: "; "))
    }

    func pull(_ r: ImageReference, from src: inout Source) async throws -> PulledImage {
        var (data, headers) = try await get(&src, "\(src.v2)/manifests/\(r.digest ?? r.tag ?? "latest")", accept: Self.manifestTypes)
        var digest = Self.sha256(data)
        if let want = r.digest, want != digest { throw ImageError("manifest of \(r) failed verification: it hashes to \(digest)") }
        var manifest = try JSONValue.parse(data)
        let type = manifest["mediaType"]?.stringValue ?? headers["Content-Type"].first ?? ""
        if type.contains("index") || type.contains("manifest.list") || manifest["manifests"] != nil {
            let entries = manifest["manifests"]?.arrayValue ?? []
            guard let pick = entries.first(where: { $0["platform"]?["os"]?.stringValue == "linux" && $0["platform"]?["architecture"]?.stringValue == "amd64" })
                    ?? (entries.count == 1 ? entries.first : nil),
                  let d = pick["digest"]?.stringValue else { throw ImageError("\(r) has no linux/amd64 image") }
            (data, headers) = try await get(&src, "\(src.v2)/manifests/\(d)", accept: Self.manifestTypes)
            digest = Self.sha256(data)
            guard digest == d else { throw ImageError("manifest \(d) of \(r) failed verification: it hashes to \(digest)") }
            manifest = try JSONValue.parse(data)
        }
        guard let configDigest = manifest["config"]?["digest"]?.stringValue else { throw ImageError("\(r): manifest has no config") }
        let configBlob = try await blob(&src, r, configDigest)
        let imageConfig = (try? JSONValue.parse(configBlob))?["config"] ?? .object([:])
        let dir = "\(root)/images/\(digest.dropFirst(7))"
        let rootfs = "\(dir)/rootfs"
        if !FileManager.default.fileExists(atPath: "\(dir)/complete") {
            var layers: [(path: String, gzip: Bool)] = []
            for layer in manifest["layers"]?.arrayValue ?? [] {
                guard let ld = layer["digest"]?.stringValue else { continue }
                _ = try await blob(&src, r, ld)
                layers.append(("\(root)/blobs/sha256/\(ld.dropFirst(7))", (layer["mediaType"]?.stringValue ?? "").contains("gzip")))
            }
            try await unpackOnce(dir: dir, layers: layers, config: imageConfig)
        }
        try FileManager.default.createDirectory(atPath: "\(root)/refs", withIntermediateDirectories: true)
        try digest.write(toFile: "\(root)/refs/\(Self.refKey(r))", atomically: true, encoding: .utf8)
        return PulledImage(reference: r, digest: digest, rootfs: rootfs, config: imageConfig)
    }

    /// Unpacks an image's layers into DIR/rootfs once, however many pulls reach it at the same
    /// time: two references to one image (a tag and a mirror's name for it) share the directory,
    /// and a second unpack would empty the rootfs under the first, or under a container already
    /// running on it.
    func unpackOnce(dir: String, layers: [(path: String, gzip: Bool)], config: JSONValue) async throws {
        let task = unpacks.withLock { m -> Task<Void, Error> in
            if let t = m[dir] { return t }
            let t = Task {
                let fm = FileManager.default, rootfs = "\(dir)/rootfs"
                if fm.fileExists(atPath: "\(dir)/complete") { return }
                try? fm.removeItem(atPath: dir)
                try fm.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
                for l in layers {
                    // tar runs for a while: keep it off the cooperative thread pool.
                    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                        DispatchQueue.global().async { c.resume(with: Result { try Self.unpack(layer: l.path, into: rootfs, gzip: l.gzip) }) }
                    }
                }
                try config.encoded().write(to: URL(fileURLWithPath: "\(dir)/config.json"))
                fm.createFile(atPath: "\(dir)/complete", contents: nil)
            }
            m[dir] = t
            return t
        }
        defer { unpacks.withLock { m in _ = m.removeValue(forKey: dir) } }
        try await task.value
    }

    /// Applies one layer: whiteouts first (".wh.NAME" deletes NAME, ".wh..wh..opq" empties the
    /// directory), then the layer's files, as the OCI image spec describes.
    static func unpack(layer: String, into rootfs: String, gzip: Bool) throws {
        let list = try run("/bin/tar", ["-t\(gzip ? "z" : "")f", layer])
        let fm = FileManager.default
        let realRoot = URL(fileURLWithPath: rootfs).resolvingSymlinksInPath().path
        // Never follow a path out of the rootfs (a symlink in a lower layer must not redirect a delete).
        func inside(_ path: String) -> Bool {
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            return real == realRoot || real.hasPrefix(realRoot + "/")
        }
        for entry in list.split(separator: "\n").map(String.init) {
            var clean = Substring(entry)
            while clean.hasPrefix("./") { clean = clean.dropFirst(2) }
            while clean.hasSuffix("/") { clean = clean.dropLast() }
            let slash = clean.lastIndex(of: "/")
            let name = String(slash.map { clean[clean.index(after: $0)...] } ?? clean)
            let parent = String(slash.map { clean[..<$0] } ?? "")
            guard name.hasPrefix(".wh."), !parent.split(separator: "/").contains("..") else { continue }
            let dir = parent.isEmpty ? rootfs : "\(rootfs)/\(parent)"
            guard inside(dir) else { continue }
            if name == ".wh..wh..opq" {
                for c in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] { try? fm.removeItem(atPath: "\(dir)/\(c)") }
            } else {
                let target = "\(dir)/\(name.dropFirst(4))"
                if !target.contains("/../") { try? fm.removeItem(atPath: target) }
            }
        }
        _ = try run("/bin/tar", ["-x\(gzip ? "z" : "")f", layer, "-C", rootfs, "--numeric-owner", "--no-same-owner", "--exclude=.wh.*", "--exclude=*/.wh.*"])
    }

    static func run(_ exe: String, _ args: [String]) throws -> String {
        let r = try Command.runSync(exe, args)
        guard r.status == 0 else { throw ImageError("\(exe) \(args.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }
}
