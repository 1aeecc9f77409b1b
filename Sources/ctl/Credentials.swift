// ctl create user and ctl create token: credentials for people and programs.
//   user: a key made here, a CertificateSigningRequest for signer kubernetes.io/kube-apiserver-client
//         (CN = the user, O = the groups), approved by the caller, signed by the controller-manager,
//         and written out as a kubeconfig, as kubeadm's "kubeconfig user" does.
//   token: a ServiceAccount token through TokenRequest.
import Foundation
import API
import Client
import PKI

enum Credentials {
    /// "1h", "30m", "45s", "8760h" or plain seconds.
    static func seconds(_ s: String?, default d: Int) throws -> Int {
        guard let s, !s.isEmpty else { return d }
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600]
        if let u = s.last, let mul = units[u], let n = Int(s.dropLast()), n > 0 { return n * mul }
        if let n = Int(s), n > 0 { return n }
        throw CtlError("--duration: \"\(s)\" is not a duration (for example 1h, 30m, 8760h)")
    }

    static func user(_ client: KubeClient, name: String, groups: [String], duration: String?) async throws {
        guard !name.isEmpty, !name.hasPrefix("system:") else { throw CtlError("user name \"\(name)\": must not be empty or start with system: (names reserved for the cluster's own components)") }
        if groups.contains("system:masters") { FileHandle.standardError.write(Data("Warning: group system:masters bypasses all authorization\n".utf8)) }
        let secs = try seconds(duration, default: 365 * 86400)
        let (csrPEM, keyPEM) = try makeCSR(commonName: name, organizations: groups)
        let csrName = "user-\(name.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "-" })-\(UUID().uuidString.prefix(8).lowercased())"
        var csr = CertificateSigningRequest(name: csrName, spec: CSRSpec(request: Data(csrPEM.utf8).base64EncodedString(),
                                                                        signerName: "kubernetes.io/kube-apiserver-client",
                                                                        expirationSeconds: secs, usages: ["client auth"]))
        csr = try await client.create(csr)
        let now = KubeTime.format(Date())
        var st = csr.status ?? CSRStatus()
        st.conditions = [CSRCondition(type: "Approved", status: "True", reason: "CtlCreateUser", message: "approved by ctl create user",
                                      lastUpdateTime: now, lastTransitionTime: now)]
        csr.status = st
        _ = try await client.update(csr, subresource: "approval")
        let deadline = Date().addingTimeInterval(60)
        var certPEM: String? = nil
        while Date() < deadline {
            let got = try await client.get(CertificateSigningRequest.self, csrName)
            if let c = got.status?.certificate, let d = Data(base64Encoded: c) { certPEM = String(decoding: d, as: UTF8.self); break }
            if let bad = got.status?.conditions?.first(where: { $0.type == "Denied" || $0.type == "Failed" }) {
                throw CtlError("certificate request \(csrName) \(bad.type.lowercased()): \(bad.message ?? "")")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        guard let certPEM else { throw CtlError("certificate request \(csrName) was approved but not signed within 60 s: is the controller-manager running?") }
        let kc = Kubeconfig(server: client.server, caPEM: client.caPEM ?? "", user: name, certPEM: certPEM, keyPEM: keyPEM)
        print(try kc.yaml(), terminator: "")
    }

    static func token(_ client: KubeClient, serviceAccount: String, namespace: String, audiences: [String], duration: String?, boundPod: String?) async throws {
        var bound: (name: String, uid: String)? = nil
        if let p = boundPod {
            let pod = try await client.get(Pod.self, p, namespace: namespace)
            bound = (p, pod.metadata.uid ?? "")
        }
        let (token, _) = try await client.requestToken(serviceAccount: serviceAccount, namespace: namespace, audiences: audiences,
                                                       expirationSeconds: Int64(try seconds(duration, default: 3600)), boundPod: bound)
        print(token)
    }
}
