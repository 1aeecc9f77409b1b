// etcd's certificates, under a CA of their own (as kubeadm does): etcd trusts any client
// certificate its CA signed, so that CA must not be the cluster's, whose signatures nodes and
// users hold. Files in DIR: ca.crt/.key, server.crt/.key and peer.crt/.key (for the given
// addresses, localhost and 127.0.0.1), apiserver-etcd-client.crt/.key. Made once; a later call
// adds certificates for addresses that are new.
import Foundation

public enum EtcdPKI {
    public static func ensure(dir: String, addresses: [String], now: Date = Date()) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func path(_ n: String) -> String { "\(dir)/\(n)" }
        func read(_ n: String) -> String? { try? String(contentsOfFile: path(n), encoding: .utf8) }
        func write(_ n: String, _ s: String, mode: Int) throws {
            try s.write(toFile: path(n), atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path(n))
        }
        let ca: CertificateAuthority
        if let c = read("ca.crt"), let k = read("ca.key") {
            ca = try CertificateAuthority(certificatePEM: c, keyPEM: k)
        } else {
            ca = try CertificateAuthority.generate(commonName: "etcd-ca", now: now)
            try write("ca.crt", ca.certificatePEM, mode: 0o644)
            try write("ca.key", ca.keyPEM, mode: 0o600)
        }
        let ips = Array(Set(addresses.filter { $0.contains(".") && $0.allSatisfy { $0.isNumber || $0 == "." } } + ["127.0.0.1"])).sorted()
        let names = Array(Set(addresses.filter { !ips.contains($0) } + ["localhost"])).sorted()
        let sans = (ips + names).joined(separator: ",")
        // Server and peer certificates are made again when the address list changed.
        if read("sans") != sans || read("server.crt") == nil || read("peer.crt") == nil {
            for n in ["server", "peer"] {
                let kp = try ca.issue(commonName: "etcd-\(n)", dnsNames: names, ipAddresses: ips, usage: .both, validity: 10 * 365 * 86400, now: now)
                try write("\(n).crt", kp.certificatePEM, mode: 0o644)
                try write("\(n).key", kp.keyPEM, mode: 0o600)
            }
            try write("sans", sans, mode: 0o644)
        }
        if read("apiserver-etcd-client.crt") == nil {
            let kp = try ca.issue(commonName: "kube-apiserver-etcd-client", usage: .client, validity: 10 * 365 * 86400, now: now)
            try write("apiserver-etcd-client.crt", kp.certificatePEM, mode: 0o644)
            try write("apiserver-etcd-client.key", kp.keyPEM, mode: 0o600)
        }
    }
}
