// Approves and signs node client certificate requests made with the join token: the CSR must
// ask for CN=system:node:NAME, O=system:nodes, and come from a bootstrapper or that node. Signs
// user client certificates (signer kubernetes.io/kube-apiserver-client) once someone allowed to
// has approved them (ctl create user, kubectl certificate approve).
import Foundation
import Logging
import API
import Client
import PKI

public final class CSRSigner: Sendable {
    public static let signerName = "kubernetes.io/kube-apiserver-client-kubelet"
    public static let userSignerName = "kubernetes.io/kube-apiserver-client"
    let client: KubeClient
    let informers: SharedInformers
    let ca: CertificateAuthority
    let queue: WorkQueue
    let validity: Double
    let clock: any ControlClock
    let logger = Logger(label: "csr-signer")

    public init(client: KubeClient, informers: SharedInformers, ca: CertificateAuthority, validity: Double = 365 * 86400, clock: any ControlClock = SystemControlClock()) {
        self.client = client; self.informers = informers; self.ca = ca; self.validity = validity; self.clock = clock
        queue = WorkQueue(clock: clock)
        informers.csrs.addHandler { [weak self] ev in
            switch ev { case .added(let c), .updated(_, let c): self?.queue.add(c.name); case .deleted: break }
        }
    }

    public func run() async {
        await runWorkers(2, queue: queue, logger: logger) { key in try await self.reconcile(key) }
    }

    func reconcile(_ name: String) async throws -> ReconcileResult {
        guard var csr = informers.csrs.get(name), let spec = csr.spec else { return .done }
        if csr.status?.certificate != nil { return .done }
        if spec.signerName == Self.userSignerName { return try await signUser(&csr, spec) }
        guard spec.signerName == Self.signerName else { return .done }
        let conds = csr.status?.conditions ?? []
        if conds.contains(where: { $0.type == "Denied" || $0.type == "Failed" }) { return .done }
        guard let der = Data(base64Encoded: spec.request), let pem = String(data: der, encoding: .utf8) else {
            return try await deny(&csr, "the request is not base64 PEM")
        }
        let subject: CertIdentity
        do { subject = try csrSubject(pem: pem) } catch { return try await deny(&csr, "cannot parse the request: \(error)") }
        guard subject.user.hasPrefix("system:node:"), subject.groups == ["system:nodes"] else {
            return try await deny(&csr, "node client certificates must have CN=system:node:NAME and O=system:nodes")
        }
        let requester = spec.username ?? ""
        guard requester.hasPrefix("system:bootstrap:") || requester == subject.user else {
            return try await deny(&csr, "\(requester) may not request a certificate for \(subject.user)")
        }
        let now = KubeTime.format(clock.now())
        if !conds.contains(where: { $0.type == "Approved" }) {
            var st = csr.status ?? CSRStatus()
            st.conditions = conds + [CSRCondition(type: "Approved", status: "True", reason: "AutoApproved", message: "node client certificate requested with a valid join token",
                                                  lastUpdateTime: now, lastTransitionTime: now)]
            csr.status = st
            csr = try await client.update(csr, subresource: "approval")
        }
        // A node certificate also serves the agent's HTTPS endpoint when the request asks for it.
        let usage: CertificateAuthority.Usage = (spec.usages ?? []).contains("server auth") ? .both : .client
        let cert = try ca.signClientCSR(pem: pem, validity: Double(spec.expirationSeconds ?? Int(validity)), usage: usage)
        csr.status?.certificate = Data(cert.utf8).base64EncodedString()
        _ = try await client.updateStatus(csr)
        logger.info("issued node certificate", metadata: ["csr": "\(name)", "node": "\(subject.user)"])
        return .done
    }

    /// A user's client certificate: signed only once approved, never approved here.
    func signUser(_ csr: inout CertificateSigningRequest, _ spec: CSRSpec) async throws -> ReconcileResult {
        let conds = csr.status?.conditions ?? []
        guard conds.contains(where: { $0.type == "Approved" && $0.status == "True" }),
              !conds.contains(where: { $0.type == "Denied" || $0.type == "Failed" }) else { return .done }
        guard let der = Data(base64Encoded: spec.request), let pem = String(data: der, encoding: .utf8) else {
            return try await deny(&csr, "the request is not base64 PEM")
        }
        let subject: CertIdentity
        do { subject = try csrSubject(pem: pem) } catch { return try await deny(&csr, "cannot parse the request: \(error)") }
        if !(spec.usages ?? ["client auth"]).allSatisfy({ ["client auth", "digital signature", "key encipherment"].contains($0) }) {
            return try await deny(&csr, "signer \(Self.userSignerName) issues client certificates only (usages: client auth, digital signature, key encipherment)")
        }
        let cert = try ca.signClientCSR(pem: pem, validity: Double(spec.expirationSeconds ?? Int(validity)), usage: .client)
        csr.status?.certificate = Data(cert.utf8).base64EncodedString()
        _ = try await client.updateStatus(csr)
        logger.info("issued user certificate", metadata: ["csr": "\(csr.name)", "user": "\(subject.user)", "groups": "\(subject.groups)"])
        return .done
    }

    func deny(_ csr: inout CertificateSigningRequest, _ why: String) async throws -> ReconcileResult {
        let now = KubeTime.format(clock.now())
        var st = csr.status ?? CSRStatus()
        st.conditions = (st.conditions ?? []) + [CSRCondition(type: "Denied", status: "True", reason: "NotAllowed", message: why, lastUpdateTime: now, lastTransitionTime: now)]
        csr.status = st
        _ = try await client.update(csr, subresource: "approval")
        return .done
    }
}
