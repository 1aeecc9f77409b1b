// Joining a control plane of several apiservers (k3s's `--server URL --token` model): the first
// apiserver makes the cluster's secrets on its first start (CA, service-account signing key,
// encryption key, join token) and a server token in DATA_DIR/server-token. Another apiserver
// started with --join-server URL --server-token TOKEN and an empty data directory pins the CA by
// the hash in the token, fetches those files from POST /bootstrap/server with the token's
// credential, writes them into its own data directory, and issues its own serving certificate
// from the shared CA. The token is for apiservers only: it grants no API access.
import Foundation
import AsyncHTTPClient
import NIOCore
import NIOSSL
import Logging
import API
import PKI

public struct ServerJoinConfig: Sendable {
    /// The URLs of running apiservers of the cluster (any one that answers will do).
    public var servers: [String]
    public var token: JoinToken
    public init(servers: [String], token: JoinToken) { self.servers = servers; self.token = token }
}

public enum ServerJoin {
    /// Files shared by every apiserver of a cluster, relative to the data directory.
    static let sharedFiles = ["pki/ca.crt", "pki/ca.key", "pki/sa.key", "encryption.yaml", "join-token", "server-token"]
    static let path = "/bootstrap/server"

    static func tokenPath(_ layout: DataDirLayout) -> String { "\(layout.dir)/server-token" }

    /// The server token, made on first start (bound to the CA by its hash).
    static func ensureToken(_ layout: DataDirLayout, ca: CertificateAuthority) throws -> JoinToken {
        let p = tokenPath(layout)
        if let t = try? String(contentsOfFile: p, encoding: .utf8), let parsed = try? JoinToken(parsing: t), parsed.caHash == ca.publicKeyHash {
            return parsed
        }
        let t = JoinToken.generate(caHash: ca.publicKeyHash)
        try writeFile(p, t.description + "\n", mode: 0o600)
        return t
    }

    /// What POST /bootstrap/server answers: the shared files, by relative path. The encryption
    /// configuration is the one in use (also when --encryption-provider-config names another file).
    static func bundle(_ layout: DataDirLayout, encryptionConfig: String?) throws -> Data {
        var files: [String: JSONValue] = [:]
        for f in sharedFiles {
            let source = f == "encryption.yaml" ? (encryptionConfig ?? layout.encryptionConfig) : "\(layout.dir)/\(f)"
            files[f] = .string(try String(contentsOfFile: source, encoding: .utf8))
        }
        return try JSONValue.object(["files": .object(files)]).encoded()
    }

    /// Constant-time comparison of the presented credential.
    static func matches(_ presented: String, _ token: JoinToken) -> Bool {
        let a = Array(presented.utf8), b = Array(token.bearer.utf8)
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// Fetches the shared files into `layout` unless it already holds a CA. Tries each server in
    /// turn; the server's certificate must chain to the CA whose hash the token names.
    public static func joinIfNeeded(_ join: ServerJoinConfig, layout: DataDirLayout, logger: Logger) async throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: layout.caCert) && fm.fileExists(atPath: layout.caKey) {
            let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: layout.caCert, encoding: .utf8),
                                              keyPEM: String(contentsOfFile: layout.caKey, encoding: .utf8))
            guard ca.publicKeyHash == join.token.caHash else {
                throw PKIError("\(layout.caCert) is another cluster's CA (hash \(ca.publicKeyHash)) than the server token's (\(join.token.caHash)); use an empty --data-dir to join")
            }
            return
        }
        var last: Error = PKIError("no --join-server URL given")
        for server in join.servers {
            do {
                let files = try await fetch(server: server, token: join.token)
                try fm.createDirectory(atPath: "\(layout.dir)/pki", withIntermediateDirectories: true)
                _ = chmod(layout.dir, 0o700)
                // The CA last: its presence is what marks the data directory as joined.
                for f in sharedFiles.filter({ $0 != "pki/ca.crt" }) + ["pki/ca.crt"] {
                    try writeFile("\(layout.dir)/\(f)", files[f]!, mode: f == "pki/ca.crt" ? 0o644 : 0o600)
                }
                logger.notice("joined the control plane: fetched the CA, service-account key and encryption key", metadata: ["server": "\(server)"])
                return
            } catch {
                logger.warning("cannot join through this apiserver", metadata: ["server": "\(server)", "error": "\(error)"])
                last = error
            }
        }
        throw last
    }

    static func fetch(server: String, token: JoinToken) async throws -> [String: String] {
        // First the CA, over TLS without verification, checked against the token's hash.
        var insecure = TLSConfiguration.makeClientConfiguration()
        insecure.certificateVerification = .none
        let probe = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: insecure))
        let caPEM: String
        do {
            let resp = try await probe.execute(HTTPClientRequest(url: server + "/cluster-info"), timeout: .seconds(10))
            let body = try await resp.body.collect(upTo: 1 << 20)
            try? await probe.shutdown()
            guard resp.status.code == 200, let v = try? JSONValue.parse(Data(buffer: body)), let ca = v["ca.crt"]?.stringValue else {
                throw PKIError("\(server)/cluster-info did not return the cluster CA (HTTP \(resp.status.code))")
            }
            caPEM = ca
        } catch let e as PKIError {
            throw e
        } catch {
            try? await probe.shutdown()
            throw PKIError("cannot reach the apiserver at \(server): \(error)")
        }
        let hash = try caPublicKeyHash(pem: caPEM)
        guard hash == token.caHash else {
            throw PKIError("the cluster CA at \(server) has hash \(hash), but the server token expects \(token.caHash): wrong token, or not this cluster")
        }
        // Then the files, over TLS verified against that CA.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        tls.certificateVerification = .noHostnameVerification
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        var req = HTTPClientRequest(url: server + path)
        req.method = .POST
        req.headers.add(name: "Authorization", value: "Bearer \(token.bearer)")
        let resp: HTTPClientResponse
        let body: ByteBuffer
        do {
            resp = try await http.execute(req, timeout: .seconds(10))
            body = try await resp.body.collect(upTo: 4 << 20)
        } catch {
            try? await http.shutdown()
            throw PKIError("cannot fetch the control plane's files from \(server): \(error)")
        }
        try? await http.shutdown()
        guard resp.status.code == 200 else {
            let why = (try? JSONValue.parse(Data(buffer: body)))?["message"]?.stringValue ?? "HTTP \(resp.status.code)"
            throw PKIError("\(server) refused to share the control plane's keys: \(why)")
        }
        guard let v = try? JSONValue.parse(Data(buffer: body)), case .object(let files)? = v["files"] else {
            throw PKIError("\(server)\(path) answered something other than the control plane's files")
        }
        var out: [String: String] = [:]
        for f in sharedFiles {
            guard let s = files[f]?.stringValue, !s.isEmpty else { throw PKIError("\(server)\(path) did not include \(f)") }
            out[f] = s
        }
        return out
    }
}
