// Standard Kubernetes kubeconfig files (YAML, embedded base64 PEM or file paths).
import Foundation
import Yams

public struct Kubeconfig: Codable, Sendable {
    public struct NamedCluster: Codable, Sendable { public var name: String; public var cluster: Cluster }
    public struct Cluster: Codable, Sendable {
        public var server: String
        public var certificateAuthorityData: String?
        public var certificateAuthority: String?
        public var tlsServerName: String?
        public var insecureSkipTLSVerify: Bool?
        /// Named extensions (kubectl keeps and ignores them). Ours, `orchestrator.io/servers`,
        /// lists every apiserver of an HA control plane: `server` stays one plain URL so that
        /// kubectl and other clients read the file, and our clients fail over across the list.
        public var extensions: [NamedExtension]?
        enum CodingKeys: String, CodingKey {
            case server, extensions
            case certificateAuthorityData = "certificate-authority-data"
            case certificateAuthority = "certificate-authority"
            case tlsServerName = "tls-server-name"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }
    public struct NamedExtension: Codable, Sendable {
        public var name: String
        public var `extension`: ServerList?
        public init(name: String, extension e: ServerList?) { self.name = name; self.extension = e }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            // Other tools' extensions hold anything; only ours is read.
            `extension` = name == Kubeconfig.serversExtension ? try c.decodeIfPresent(ServerList.self, forKey: .extension) : nil
        }
        enum CodingKeys: String, CodingKey { case name, `extension` }
    }
    public struct ServerList: Codable, Sendable { public var servers: [String] }
    public static let serversExtension = "orchestrator.io/servers"

    public struct NamedUser: Codable, Sendable { public var name: String; public var user: User }
    public struct User: Codable, Sendable {
        public var clientCertificateData: String?
        public var clientKeyData: String?
        public var clientCertificate: String?
        public var clientKey: String?
        public var token: String?
        enum CodingKeys: String, CodingKey {
            case clientCertificateData = "client-certificate-data"
            case clientKeyData = "client-key-data"
            case clientCertificate = "client-certificate"
            case clientKey = "client-key"
            case token
        }
    }
    public struct NamedContext: Codable, Sendable { public var name: String; public var context: Context }
    public struct Context: Codable, Sendable { public var cluster: String; public var user: String; public var namespace: String? }

    public var apiVersion: String? = "v1"
    public var kind: String? = "Config"
    public var clusters: [NamedCluster]
    public var users: [NamedUser]
    public var contexts: [NamedContext]
    public var currentContext: String?
    public var preferences: [String: String]? = [:]

    enum CodingKeys: String, CodingKey {
        case apiVersion, kind, clusters, users, contexts, preferences
        case currentContext = "current-context"
    }

    /// `server` may list several URLs, comma-separated: the first becomes the cluster's
    /// server and all of them its servers extension.
    public init(server: String, caPEM: String, user: String, certPEM: String, keyPEM: String, clusterName: String = "orchestrator") {
        let ctx = "\(user)@\(clusterName)"
        let urls = server.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var cluster = Cluster(server: urls.first ?? server, certificateAuthorityData: Data(caPEM.utf8).base64EncodedString())
        if urls.count > 1 { cluster.extensions = [NamedExtension(name: Kubeconfig.serversExtension, extension: ServerList(servers: urls))] }
        clusters = [NamedCluster(name: clusterName, cluster: cluster)]
        users = [NamedUser(name: user, user: User(clientCertificateData: Data(certPEM.utf8).base64EncodedString(), clientKeyData: Data(keyPEM.utf8).base64EncodedString()))]
        contexts = [NamedContext(name: ctx, context: Context(cluster: clusterName, user: user, namespace: nil))]
        currentContext = ctx
    }

    public func yaml() throws -> String { try YAMLEncoder().encode(self) }

    public static func load(path: String) throws -> Kubeconfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw PKIError("cannot read kubeconfig \(path)") }
        do { return try YAMLDecoder().decode(Kubeconfig.self, from: text) }
        catch { throw PKIError("kubeconfig \(path): \(error)") }
    }

    /// What a client needs: server URL, CA PEM, client cert and key PEM (resolving file references
    /// relative to the kubeconfig's directory), and the default namespace.
    public struct Resolved: Sendable {
        public var server: String
        public var caPEM: String?
        public var certPEM: String?
        public var keyPEM: String?
        public var token: String?
        public var namespace: String
        public var tlsServerName: String?
        public init(server: String, caPEM: String?, certPEM: String?, keyPEM: String?, token: String?, namespace: String, tlsServerName: String?) {
            self.server = server; self.caPEM = caPEM; self.certPEM = certPEM; self.keyPEM = keyPEM
            self.token = token; self.namespace = namespace; self.tlsServerName = tlsServerName
        }
    }

    public func resolve(context name: String? = nil, baseDirectory: String = ".") throws -> Resolved {
        guard let ctxName = name ?? currentContext, let ctx = contexts.first(where: { $0.name == ctxName })?.context else {
            throw PKIError("kubeconfig: context \"\(name ?? currentContext ?? "")\" not found")
        }
        guard let cluster = clusters.first(where: { $0.name == ctx.cluster })?.cluster else { throw PKIError("kubeconfig: cluster \"\(ctx.cluster)\" not found") }
        guard let user = users.first(where: { $0.name == ctx.user })?.user else { throw PKIError("kubeconfig: user \"\(ctx.user)\" not found") }
        func read(data: String?, file: String?, what: String) throws -> String? {
            if let data {
                guard let d = Data(base64Encoded: data), let s = String(data: d, encoding: .utf8) else { throw PKIError("kubeconfig: \(what) is not valid base64 PEM") }
                return s
            }
            if let file {
                let p = file.hasPrefix("/") ? file : "\(baseDirectory)/\(file)"
                guard let s = try? String(contentsOfFile: p, encoding: .utf8) else { throw PKIError("kubeconfig: cannot read \(what) file \(p)") }
                return s
            }
            return nil
        }
        // The servers extension lists the others of an HA control plane; `server` goes first.
        var urls = cluster.server.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for e in cluster.extensions ?? [] where e.name == Kubeconfig.serversExtension {
            for u in e.extension?.servers ?? [] where !urls.contains(u) { urls.append(u) }
        }
        return Resolved(server: urls.joined(separator: ","),
                        caPEM: try read(data: cluster.certificateAuthorityData, file: cluster.certificateAuthority, what: "certificate-authority"),
                        certPEM: try read(data: user.clientCertificateData, file: user.clientCertificate, what: "client-certificate"),
                        keyPEM: try read(data: user.clientKeyData, file: user.clientKey, what: "client-key"),
                        token: user.token, namespace: ctx.namespace ?? "default", tlsServerName: cluster.tlsServerName)
    }
}

/// Writes a file with the given permissions (0600 for keys), creating parent directories.
public func writeFile(_ path: String, _ contents: String, mode: Int = 0o644) throws {
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let tmp = path + ".tmp"
    FileManager.default.createFile(atPath: tmp, contents: Data(contents.utf8), attributes: [.posixPermissions: mode])
    guard rename(tmp, path) == 0 else { throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))") }
    _ = chmod(path, mode_t(mode))
}
