// Cluster PKI: the CA, serving and client certificates (ECDSA P-256), CSR signing, join tokens.
import Foundation
import X509
import Crypto
import SwiftASN1

public struct PKIError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

/// A certificate and its private key, both PEM.
public struct KeyPair: Sendable {
    public var certificatePEM: String
    public var keyPEM: String
    public init(certificatePEM: String, keyPEM: String) { self.certificatePEM = certificatePEM; self.keyPEM = keyPEM }
}

public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    let key: Certificate.PrivateKey
    public let certificatePEM: String
    public let keyPEM: String

    public static func generate(commonName: String = "orchestrator-ca", now: Date = Date()) throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName { CommonName(commonName) }
        let ski = SubjectKeyIdentifier(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: key.publicKey.subjectPublicKeyInfoBytes)))
        let ext = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            ski
        }
        let cert = try Certificate(version: .v3, serialNumber: .init(), publicKey: key.publicKey,
                                   notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
                                   issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: ext, issuerPrivateKey: key)
        return try CertificateAuthority(certificate: cert, key: key)
    }

    init(certificate: Certificate, key: Certificate.PrivateKey) throws {
        self.certificate = certificate
        self.key = key
        self.certificatePEM = try certificate.serializeAsPEM().pemString
        self.keyPEM = try key.serializeAsPEM().pemString
    }

    public init(certificatePEM: String, keyPEM: String) throws {
        try self.init(certificate: Certificate(pemEncoded: certificatePEM), key: Certificate.PrivateKey(pemEncoded: keyPEM))
    }

    /// "sha256:<hex>" of the CA's SubjectPublicKeyInfo, as kubeadm's discovery hash.
    public var publicKeyHash: String { Self.publicKeyHash(of: certificate) }
    public static func publicKeyHash(of cert: Certificate) -> String {
        "sha256:" + SHA256.hash(data: cert.publicKey.subjectPublicKeyInfoBytes).map { String(format: "%02x", $0) }.joined()
    }

    public enum Usage: Sendable { case server, client, both }

    /// Issues a certificate for a fresh key.
    public func issue(commonName: String, organizations: [String] = [], dnsNames: [String] = [], ipAddresses: [String] = [],
                      usage: Usage, validity: TimeInterval = 365 * 86400, now: Date = Date()) throws -> KeyPair {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let cert = try sign(publicKey: key.publicKey, subject: Self.subject(commonName, organizations), dnsNames: dnsNames,
                            ipAddresses: ipAddresses, usage: usage, validity: validity, now: now)
        return KeyPair(certificatePEM: try cert.serializeAsPEM().pemString, keyPEM: try key.serializeAsPEM().pemString)
    }

    static func subject(_ cn: String, _ orgs: [String]) throws -> DistinguishedName {
        try DistinguishedName {
            for o in orgs { OrganizationName(o) }
            CommonName(cn)
        }
    }

    public func sign(publicKey: Certificate.PublicKey, subject: DistinguishedName, dnsNames: [String] = [], ipAddresses: [String] = [],
                     usage: Usage, validity: TimeInterval, now: Date = Date()) throws -> Certificate {
        var sans: [GeneralName] = dnsNames.map { .dnsName($0) }
        for ip in ipAddresses {
            guard let bytes = Self.ipBytes(ip) else { throw PKIError("\"\(ip)\" is not an IP address") }
            sans.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let ekus: [ExtendedKeyUsage.Usage] = {
            switch usage { case .server: return [.serverAuth]; case .client: return [.clientAuth]; case .both: return [.serverAuth, .clientAuth] }
        }()
        let ext = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
            try ExtendedKeyUsage(ekus)
            AuthorityKeyIdentifier(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: certificate.publicKey.subjectPublicKeyInfoBytes)))
            if !sans.isEmpty { SubjectAlternativeNames(sans) }
        }
        return try Certificate(version: .v3, serialNumber: .init(), publicKey: publicKey,
                               notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
                               issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                               extensions: ext, issuerPrivateKey: key)
    }

    /// Signs a PEM CSR as a client certificate. Returns the certificate PEM.
    public func signClientCSR(pem: String, validity: TimeInterval, usage: Usage = .client, now: Date = Date()) throws -> String {
        let csr = try X509.CertificateSigningRequest(pemEncoded: pem)
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else { throw PKIError("CSR signature is invalid") }
        let cert = try sign(publicKey: csr.publicKey, subject: csr.subject, usage: usage, validity: validity, now: now)
        return try cert.serializeAsPEM().pemString
    }

    static func ipBytes(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// The identity a client certificate carries: CN = user, O = groups (Kubernetes' convention).
public struct CertIdentity: Sendable, Hashable {
    public var user: String
    public var groups: [String]
    public init(user: String, groups: [String]) { self.user = user; self.groups = groups }

    public static func from(derBytes: [UInt8]) -> CertIdentity? {
        guard let cert = try? Certificate(derEncoded: derBytes) else { return nil }
        return from(cert)
    }
    public static func from(_ cert: Certificate) -> CertIdentity { from(subject: cert.subject) }
    static func from(subject: DistinguishedName) -> CertIdentity {
        var cn = ""
        var orgs: [String] = []
        for rdn in subject {
            for attr in rdn {
                if attr.type == .RDNAttributeType.commonName { cn = String(describing: attr.value) }
                if attr.type == .RDNAttributeType.organizationName { orgs.append(String(describing: attr.value)) }
            }
        }
        return CertIdentity(user: cn, groups: orgs)
    }
}

/// Makes a CSR for a fresh key: returns (csrPEM, keyPEM).
public func makeCSR(commonName: String, organizations: [String]) throws -> (csr: String, key: String) {
    let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
    let csr = try X509.CertificateSigningRequest(version: .v1, subject: CertificateAuthority.subject(commonName, organizations), privateKey: key,
                                                  attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
    return (try csr.serializeAsPEM().pemString, try key.serializeAsPEM().pemString)
}

/// "sha256:<hex>" of a PEM certificate's public key (how join tokens pin the CA).
public func caPublicKeyHash(pem: String) throws -> String {
    CertificateAuthority.publicKeyHash(of: try Certificate(pemEncoded: pem))
}

/// The identity a PEM CSR asks for.
public func csrSubject(pem: String) throws -> CertIdentity {
    CertIdentity.from(subject: try X509.CertificateSigningRequest(pemEncoded: pem).subject)
}

/// Reads the CN/O of a PEM certificate and its expiry.
public func describeCertificate(pem: String) throws -> (identity: CertIdentity, notAfter: Date) {
    let c = try Certificate(pemEncoded: pem)
    return (CertIdentity.from(c), c.notValidAfter)
}

/// The validity window of a PEM certificate.
public func certificateValidity(pem: String) throws -> (notBefore: Date, notAfter: Date) {
    let c = try Certificate(pemEncoded: pem)
    return (c.notValidBefore, c.notValidAfter)
}

/// A join token: "<6 chars>.<16 chars>" as kubeadm's, prefixed with the CA hash so a joining
/// node can pin the CA it discovers: "K1-sha256:<hex>::<id>.<secret>".
public struct JoinToken: Sendable, Hashable, CustomStringConvertible {
    public var caHash: String
    public var id: String
    public var secret: String

    public static func generate(caHash: String) -> JoinToken {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        func word(_ n: Int) -> String { String((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }) }
        return JoinToken(caHash: caHash, id: word(6), secret: word(16))
    }
    public var description: String { "K1-\(caHash)::\(id).\(secret)" }
    /// The bearer credential sent to the apiserver.
    public var bearer: String { "\(id).\(secret)" }

    public init(caHash: String, id: String, secret: String) { self.caHash = caHash; self.id = id; self.secret = secret }
    public init(parsing s: String) throws {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = t.components(separatedBy: "::")
        guard parts.count == 2, parts[0].hasPrefix("K1-sha256:"), parts[0].count == "K1-sha256:".count + 64 else {
            throw PKIError("malformed join token: expected K1-sha256:<64 hex>::<id>.<secret>")
        }
        let cred = parts[1].split(separator: ".")
        guard cred.count == 2, cred[0].count == 6, cred[1].count == 16 else { throw PKIError("malformed join token: the credential must be <6 chars>.<16 chars>") }
        self.init(caHash: String(parts[0].dropFirst(3)), id: String(cred[0]), secret: String(cred[1]))
    }
}
