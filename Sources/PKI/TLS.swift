// NIOSSL configurations for mutual TLS from PEM strings.
import Foundation
import NIOSSL

public enum TLSConfig {
    /// Server side: presents its chain, verifies client certificates against the CA when
    /// offered; a connection without one is accepted and gets only the public endpoints.
    public static func server(certPEM: String, keyPEM: String, caPEM: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        c.certificateVerification = .optionalVerification
        c.minimumTLSVersion = .tlsv12
        c.applicationProtocols = ["http/1.1"]
        return c
    }

    /// Client side: trusts only the cluster CA and presents the client certificate if given.
    public static func client(caPEM: String?, certPEM: String?, keyPEM: String?) throws -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        if let caPEM {
            c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
            c.additionalTrustRoots = []
        }
        if let certPEM, let keyPEM {
            c.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8)).map { .certificate($0) }
            c.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        }
        c.minimumTLSVersion = .tlsv12
        c.applicationProtocols = ["http/1.1"]
        return c
    }
}
