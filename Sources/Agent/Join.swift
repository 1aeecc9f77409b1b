// Joining the cluster: with the join token the agent pins the cluster CA by its hash, asks for
// a client certificate through a CertificateSigningRequest, stores it, and from then on uses
// only mutual TLS.
import Foundation
import NIOSSL
import NIOFoundationCompat
import AsyncHTTPClient
import NIOCore
import API
import Client
import PKI

public struct AgentCredentials: Sendable {
    public var caPEM: String
    public var certPEM: String
    public var keyPEM: String
}

extension AgentCredentials {
    /// When to renew: after two thirds of the certificate's lifetime, as the kubelet does (it
    /// picks a jittered point between 70% and 90%).
    public var renewAt: Date {
        guard let v = try? certificateValidity(pem: certPEM) else { return .distantFuture }
        return v.notBefore.addingTimeInterval(v.notAfter.timeIntervalSince(v.notBefore) * 2 / 3)
    }
}

public enum Join {
    /// Asks for a fresh certificate with the current one (the signer lets a node renew its own),
    /// stores it, and returns the new credentials.
    public static func renew(server: String, current: AgentCredentials, nodeName: String, dataDir: String, timeout: Double = 60) async throws -> AgentCredentials {
        let f = files(dataDir)
        let (csrPEM, keyPEM) = try makeCSR(commonName: "system:node:\(nodeName)", organizations: ["system:nodes"])
        let client = try KubeClient(config: .init(server: server, caPEM: current.caPEM, certPEM: current.certPEM, keyPEM: current.keyPEM, token: nil, namespace: "default", tlsServerName: nil))
        defer { Task { await client.shutdown() } }
        let name = "node-csr-\(nodeName)-\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await client.create(CertificateSigningRequest(name: name, spec: CSRSpec(request: Data(csrPEM.utf8).base64EncodedString(),
            signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["digital signature", "key encipherment", "client auth", "server auth"])))
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let got = try await client.get(CertificateSigningRequest.self, name)
            if let denied = got.status?.conditions?.first(where: { $0.type == "Denied" }) {
                throw ClientError("certificate renewal \(name) denied: \(denied.message ?? "")")
            }
            if let b64 = got.status?.certificate, let d = Data(base64Encoded: b64), let cert = String(data: d, encoding: .utf8) {
                try writeFile(f.key + ".new", keyPEM, mode: 0o600)
                try writeFile(f.cert + ".new", cert)
                // Key and certificate move into place together (a crash leaves the old pair).
                rename(f.key + ".new", f.key)
                rename(f.cert + ".new", f.cert)
                return AgentCredentials(caPEM: current.caPEM, certPEM: cert, keyPEM: keyPEM)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ClientError("certificate renewal \(name) was not signed within \(Int(timeout)) s")
    }

    static func files(_ dataDir: String) -> (ca: String, cert: String, key: String) {
        ("\(dataDir)/pki/ca.crt", "\(dataDir)/pki/node.crt", "\(dataDir)/pki/node.key")
    }

    /// Loads stored credentials, or joins with the token and stores them.
    public static func credentials(server: String, token: String?, nodeName: String, dataDir: String) async throws -> AgentCredentials {
        let f = files(dataDir)
        if let ca = try? String(contentsOfFile: f.ca, encoding: .utf8), let cert = try? String(contentsOfFile: f.cert, encoding: .utf8),
           let key = try? String(contentsOfFile: f.key, encoding: .utf8),
           let (id, notAfter) = try? describeCertificate(pem: cert), id.user == "system:node:\(nodeName)", notAfter > Date().addingTimeInterval(3600) {
            return AgentCredentials(caPEM: ca, certPEM: cert, keyPEM: key)
        }
        guard let token else { throw ClientError("no stored certificate for node \(nodeName) in \(dataDir)/pki: give --token to join") }
        let t: JoinToken
        do { t = try JoinToken(parsing: token) } catch { throw ClientError("--token: \(error)") }
        let ca = try await discoverCA(server: server, expectedHash: t.caHash)
        let (csrPEM, keyPEM) = try makeCSR(commonName: "system:node:\(nodeName)", organizations: ["system:nodes"])
        let boot = try KubeClient(config: .init(server: server, caPEM: ca, certPEM: nil, keyPEM: nil, token: t.bearer, namespace: "default", tlsServerName: nil))
        defer { Task { await boot.shutdown() } }
        let name = "node-csr-\(nodeName)-\(UUID().uuidString.prefix(8).lowercased())"
        let csr = CertificateSigningRequest(name: name, spec: CSRSpec(request: Data(csrPEM.utf8).base64EncodedString(),
                                                                      signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["digital signature", "key encipherment", "client auth", "server auth"]))
        do { _ = try await boot.create(csr) } catch let s as Status where s.code == 401 || s.code == 403 {
            throw ClientError("the apiserver refused the join token: \(s.message ?? "")")
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let got = try await boot.get(CertificateSigningRequest.self, name)
            if let denied = got.status?.conditions?.first(where: { $0.type == "Denied" }) {
                throw ClientError("certificate request \(name) denied: \(denied.message ?? "")")
            }
            if let b64 = got.status?.certificate, let d = Data(base64Encoded: b64), let cert = String(data: d, encoding: .utf8) {
                try writeFile(f.ca, ca)
                try writeFile(f.key, keyPEM, mode: 0o600)
                try writeFile(f.cert, cert)
                return AgentCredentials(caPEM: ca, certPEM: cert, keyPEM: keyPEM)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ClientError("certificate request \(name) was not signed within 60 s: is the controller-manager running with --cluster-signing-cert-file?")
    }

    /// Fetches the CA from the public /cluster-info without trusting the connection, and
    /// accepts it only if its public key hash matches the token's (kubeadm's
    /// discovery-token-ca-cert-hash): a man in the middle cannot forge that.
    /// The CA from the first of several apiservers (comma-separated) that answers.
    static func discoverCA(server: String, expectedHash: String) async throws -> String {
        let urls = server.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var last: Error = ClientError("no apiserver URL given")
        for u in urls {
            do { return try await discoverCA(at: u, expectedHash: expectedHash) } catch { last = error }
        }
        throw last
    }

    static func discoverCA(at server: String, expectedHash: String) async throws -> String {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        let resp: HTTPClientResponse
        let body: ByteBuffer
        do {
            resp = try await http.execute(HTTPClientRequest(url: server + "/cluster-info"), timeout: .seconds(10))
            body = try await resp.body.collect(upTo: 1 << 20)
        } catch {
            try? await http.shutdown()
            throw ClientError("cannot reach the apiserver at \(server): \(error)")
        }
        try? await http.shutdown()
        guard resp.status.code == 200, let v = try? JSONValue.parse(Data(buffer: body)), let ca = v["ca.crt"]?.stringValue else {
            throw ClientError("\(server)/cluster-info did not return the cluster CA (HTTP \(resp.status.code))")
        }
        let hash: String
        do { hash = try caPublicKeyHash(pem: ca) } catch { throw ClientError("the CA from \(server) does not parse: \(error)") }
        guard hash == expectedHash else {
            throw ClientError("the cluster CA at \(server) has hash \(hash), but the join token expects \(expectedHash): wrong token, or not our cluster")
        }
        return ca
    }
}
