// ServiceAccount tokens: JWTs (ES256, swift-crypto) the apiserver signs with a key it keeps
// beside the CA (DATA_DIR/pki/sa.key), issued through TokenRequest
// (POST .../serviceaccounts/NAME/token) and accepted as bearer tokens. A token names its
// audience, expires, and is bound to a pod: it stops working when the pod is gone.
import Foundation
import Crypto
import Hummingbird
import API
import Store
import PKI

public final class TokenIssuer: Sendable {
    public static let defaultIssuer = "https://kubernetes.default.svc.cluster.local"
    let key: P256.Signing.PrivateKey
    let keyID: String
    public let issuer: String
    /// Audiences the apiserver itself accepts (a token for anything else is refused).
    public let apiAudiences: [String]
    let clock: @Sendable () -> Date

    public init(key: P256.Signing.PrivateKey, issuer: String = TokenIssuer.defaultIssuer, apiAudiences: [String]? = nil,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.key = key; self.issuer = issuer; self.apiAudiences = apiAudiences ?? [issuer]; self.clock = clock
        keyID = Self.b64url(Data(SHA256.hash(data: key.publicKey.derRepresentation)))
    }

    /// The signing key at `path`, made (mode 0600) when missing.
    public static func loadOrCreateKey(_ path: String) throws -> P256.Signing.PrivateKey {
        if let pem = try? String(contentsOfFile: path, encoding: .utf8) {
            do { return try P256.Signing.PrivateKey(pemRepresentation: pem) }
            catch { throw Status.internalError("\(path): not a PEM P-256 private key: \(error)") }
        }
        let k = P256.Signing.PrivateKey()
        try writeFile(path, k.pemRepresentation, mode: 0o600)
        return k
    }

    static func b64url(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
    static func unb64url(_ s: Substring) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
    }

    public struct Binding: Sendable, Equatable {
        public var namespace: String
        public var serviceAccount: String
        public var serviceAccountUID: String
        public var podName: String?
        public var podUID: String?
        public var nodeName: String?
        public init(namespace: String, serviceAccount: String, serviceAccountUID: String, podName: String? = nil, podUID: String? = nil, nodeName: String? = nil) {
            self.namespace = namespace; self.serviceAccount = serviceAccount; self.serviceAccountUID = serviceAccountUID
            self.podName = podName; self.podUID = podUID; self.nodeName = nodeName
        }
    }

    /// A signed token and its expiry.
    public func issue(_ b: Binding, audiences: [String], seconds: Int64) throws -> (token: String, expires: Date) {
        let now = clock()
        let iat = Int64(now.timeIntervalSince1970)
        let exp = iat + seconds
        var k8s: [String: JSONValue] = ["namespace": .string(b.namespace),
                                        "serviceaccount": .object(["name": .string(b.serviceAccount), "uid": .string(b.serviceAccountUID)])]
        if let p = b.podName, let u = b.podUID { k8s["pod"] = .object(["name": .string(p), "uid": .string(u)]) }
        if let n = b.nodeName { k8s["node"] = .object(["name": .string(n)]) }
        let claims: JSONValue = .object([
            "aud": .array(audiences.map { .string($0) }), "exp": .int(exp), "iat": .int(iat), "nbf": .int(iat), "iss": .string(issuer),
            "jti": .string(UUID().uuidString.lowercased()), "sub": .string("system:serviceaccount:\(b.namespace):\(b.serviceAccount)"),
            "kubernetes.io": .object(k8s),
        ])
        let header: JSONValue = .object(["alg": "ES256", "kid": .string(keyID)])
        let input = Self.b64url(try header.encoded()) + "." + Self.b64url(try claims.encoded())
        let sig = try key.signature(for: Data(input.utf8))
        return (input + "." + Self.b64url(sig.rawRepresentation), Date(timeIntervalSince1970: TimeInterval(exp)))
    }

    public enum Rejection: Error, Equatable, CustomStringConvertible {
        case malformed, badSignature, wrongIssuer, wrongAudience, expired, notYetValid, invalidated(String)
        public var description: String {
            switch self {
            case .malformed: return "not a well-formed token"
            case .badSignature: return "the token's signature is not valid"
            case .wrongIssuer: return "the token was issued by another issuer"
            case .wrongAudience: return "the token's audience is not this apiserver"
            case .expired: return "the token has expired"
            case .notYetValid: return "the token is not valid yet"
            case .invalidated(let why): return "the token has been invalidated: \(why)"
            }
        }
    }

    /// Checks signature, issuer, audience and lifetime; returns what the token is bound to.
    public func verify(_ token: String) throws(Rejection) -> Binding {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let hd = Self.unb64url(parts[0]), let cd = Self.unb64url(parts[1]), let sd = Self.unb64url(parts[2]),
              let header = try? JSONValue.parse(hd), let claims = try? JSONValue.parse(cd) else { throw .malformed }
        guard header["alg"]?.stringValue == "ES256", let sig = try? P256.Signing.ECDSASignature(rawRepresentation: sd),
              key.publicKey.isValidSignature(sig, for: Data((parts[0] + "." + parts[1]).utf8)) else { throw .badSignature }
        guard claims["iss"]?.stringValue == issuer else { throw .wrongIssuer }
        let aud: [String] = claims["aud"]?.arrayValue?.compactMap(\.stringValue) ?? claims["aud"]?.stringValue.map { [$0] } ?? []
        guard aud.contains(where: apiAudiences.contains) else { throw .wrongAudience }
        let now = clock().timeIntervalSince1970
        guard let exp = claims["exp"]?.intValue else { throw .malformed }
        if now >= Double(exp) { throw .expired }
        if let nbf = claims["nbf"]?.intValue, now + 60 < Double(nbf) { throw .notYetValid }   // a minute of clock skew
        let k = claims["kubernetes.io"]
        guard let ns = k?["namespace"]?.stringValue, let sa = k?["serviceaccount"]?["name"]?.stringValue,
              let saUID = k?["serviceaccount"]?["uid"]?.stringValue else { throw .malformed }
        return Binding(namespace: ns, serviceAccount: sa, serviceAccountUID: saUID, podName: k?["pod"]?["name"]?.stringValue,
                       podUID: k?["pod"]?["uid"]?.stringValue, nodeName: k?["node"]?["name"]?.stringValue)
    }

    /// The expiry a token claims (read without checking it: only for tokens verified before).
    func expiry(_ token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let cd = Self.unb64url(parts[1]), let exp = (try? JSONValue.parse(cd))?["exp"]?.intValue else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(exp))
    }

    public static func identity(_ b: Binding) -> CertIdentity {
        CertIdentity(user: "system:serviceaccount:\(b.namespace):\(b.serviceAccount)",
                     groups: ["system:serviceaccounts", "system:serviceaccounts:\(b.namespace)", "system:authenticated"])
    }
}

struct CachedToken: Sendable {
    var binding: TokenIssuer.Binding
    var expires: Date
    var saRevision: Int64
    var podRevision: Int64?
}

extension APIHandler {
    /// A bearer token's identity, or the reason it is refused: the signature, issuer, audience and
    /// lifetime, and that the ServiceAccount and the pod it is bound to still exist (same UIDs).
    func authenticateServiceAccount(_ token: String) -> Result<CertIdentity, TokenIssuer.Rejection> {
        let now = registry.clock()
        // A token seen before skips the signature check until it expires; the account and pod are
        // looked at every time, but decoded again only when they changed.
        let cached = tokenCache.withLock { $0[token] }
        let b: TokenIssuer.Binding
        if let c = cached, now < c.expires { b = c.binding }
        else {
            do { b = try tokens.verify(token) } catch { return .failure(error) }
        }
        let saKey = Objects.key(Resources.serviceaccounts, b.namespace, b.serviceAccount)
        let podKey = b.podName.map { Objects.key(Resources.pods, b.namespace, $0) }
        let saRev = store.get(saKey)?.revision, podRev = podKey.flatMap { store.get($0)?.revision }
        if let c = cached, now < c.expires, c.saRevision == saRev, c.podRevision == podRev, saRev != nil { return .success(TokenIssuer.identity(b)) }
        guard let so = store.get(saKey), (try? KubeJSON.decode(ServiceAccount.self, from: so.data))?.metadata.uid == b.serviceAccountUID else {
            return .failure(.invalidated("service account \(b.namespace)/\(b.serviceAccount) no longer exists"))
        }
        if let pod = b.podName, let podKey {
            guard let po = store.get(podKey), let p = try? KubeJSON.decode(Pod.self, from: po.data), p.metadata.uid == b.podUID else {
                return .failure(.invalidated("pod \(b.namespace)/\(pod) no longer exists"))
            }
            if p.metadata.deletionTimestamp != nil, let d = KubeTime.parse(p.metadata.deletionTimestamp), d < now {
                return .failure(.invalidated("pod \(b.namespace)/\(pod) is being deleted"))
            }
        }
        let expires = tokens.expiry(token) ?? now
        tokenCache.withLock { m in
            if m.count > 10_000 { m.removeAll() }
            m[token] = CachedToken(binding: b, expires: expires, saRevision: so.revision, podRevision: podRev)
        }
        return .success(TokenIssuer.identity(b))
    }

    /// POST /api/v1/namespaces/NS/serviceaccounts/NAME/token: a TokenRequest in, the same with
    /// status.token out. A node may only ask for a token bound to a pod on it that runs as NAME.
    func requestToken(_ request: Request, namespace ns: String, name: String, node: String?) async throws -> Response {
        let info = Resources.serviceaccounts
        var body = try await readJSON(request)
        guard case .object = body else { throw Status.badRequest("the body must be a JSON object describing a TokenRequest") }
        if let k = body["kind"]?.stringValue, k != "TokenRequest" { throw Status.badRequest("the body's kind must be TokenRequest, not \(k)") }
        if let m = Schema.kind(apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest") {
            let unknown = Schema.unknownFields(body, message: m.name)
            if !unknown.isEmpty { throw Status.strictDecoding(unknown) }
        }
        let spec = body["spec"] ?? .object([:])
        if let node, spec["boundObjectRef"]?.objectValue == nil {
            throw Status.forbidden("serviceaccounts \"\(name)\" is forbidden: node \"\(node)\" may only ask for tokens bound to pods on it", info, name)
        }
        guard let so = store.get(Objects.key(info, ns, name)), let sa = try? KubeJSON.decode(ServiceAccount.self, from: so.data) else {
            throw Status.notFound(info, name)
        }
        var errs: [FieldError] = []
        let seconds = spec["expirationSeconds"]?.intValue ?? 3600
        if seconds < 600 { errs.append(.init(.invalid, "spec.expirationSeconds", "\(seconds): may not specify a duration less than 10 minutes")) }
        if seconds > 1 << 32 { errs.append(.init(.tooLong, "spec.expirationSeconds", "may not specify a duration larger than 2^32 seconds")) }
        var audiences = (spec["audiences"]?.arrayValue ?? []).compactMap(\.stringValue)
        if audiences.isEmpty { audiences = tokens.apiAudiences }
        var binding = TokenIssuer.Binding(namespace: ns, serviceAccount: name, serviceAccountUID: sa.metadata.uid ?? "")
        if let ref = spec["boundObjectRef"], case .object = ref {
            let kind = ref["kind"]?.stringValue ?? ""
            let podName = ref["name"]?.stringValue ?? ""
            if kind != "Pod" { errs.append(.init(.notSupported, "spec.boundObjectRef.kind", "\"\(kind)\": supported values: \"Pod\"")) }
            else if podName.isEmpty { errs.append(.init(.required, "spec.boundObjectRef.name", "")) }
            else {
                guard let po = store.get(Objects.key(Resources.pods, ns, podName)), let pod = try? KubeJSON.decode(Pod.self, from: po.data) else {
                    throw Status.notFound(Resources.pods, podName)
                }
                if let uid = ref["uid"]?.stringValue, !uid.isEmpty, uid != pod.metadata.uid {
                    throw Status.conflict(Resources.pods, podName, "the UID in the bound object reference (\(uid)) does not match the pod's (\(pod.metadata.uid ?? ""))")
                }
                let podSA = pod.spec?.serviceAccountName ?? "default"
                if podSA != name {
                    errs.append(.init(.invalid, "spec.boundObjectRef", "pod \(podName) runs as service account \"\(podSA)\", not \"\(name)\""))
                }
                binding.podName = podName; binding.podUID = pod.metadata.uid; binding.nodeName = pod.spec?.nodeName
                if let node, pod.spec?.nodeName != node {
                    throw Status.forbidden("serviceaccounts \"\(name)\" is forbidden: node \"\(node)\" may only ask for tokens bound to pods on it", info, name)
                }
            }
        }
        if !errs.isEmpty {
            throw Status.invalid(ResourceInfo(group: "authentication.k8s.io", version: "v1", kind: "TokenRequest", plural: "tokenrequests"), name, errs)
        }
        let (token, expires) = try tokens.issue(binding, audiences: audiences, seconds: seconds)
        body["apiVersion"] = "authentication.k8s.io/v1"
        body["kind"] = "TokenRequest"
        var meta = body["metadata"]?.objectValue ?? [:]
        meta["name"] = .string(name); meta["namespace"] = .string(ns); meta["creationTimestamp"] = .null
        body["metadata"] = .object(meta)
        var outSpec = spec
        outSpec["audiences"] = .array(audiences.map { .string($0) })
        outSpec["expirationSeconds"] = .int(seconds)
        body["spec"] = outSpec
        body["status"] = .object(["token": .string(token), "expirationTimestamp": .string(KubeTime.format(expires))])
        return Self.encoded(201, try body.encoded(), protobuf: Self.prefersProtobuf(request.headers[.accept] ?? ""))
    }
}

extension Registry {
    static let tokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
    static let rootCAConfigMap = "kube-root-ca.crt"

    /// Kubernetes' ServiceAccount admission: a pod runs as `default` unless it names another
    /// account (which must exist), and unless it or its account opts out it gets a projected
    /// volume with a bound token, the cluster CA and its namespace, mounted in every container
    /// at /var/run/secrets/kubernetes.io/serviceaccount.
    /// A dry run does not require the account yet: `ctl apply` dry-runs a whole manifest (a new
    /// ServiceAccount and the pod that uses it) before writing any of it.
    func admitServiceAccount(_ pod: inout Pod, dryRun: Bool = false) throws {
        guard var spec = pod.spec else { return }
        let ns = pod.metadata.namespace ?? "default"
        let name = (spec.serviceAccountName ?? "").isEmpty ? "default" : spec.serviceAccountName!
        spec.serviceAccountName = name
        spec.serviceAccount = name
        let sa = store.get(Objects.key(Resources.serviceaccounts, ns, name)).flatMap { try? KubeJSON.decode(ServiceAccount.self, from: $0.data) }
        // The default account may not be made yet in a new namespace: its pods wait for their token.
        if sa == nil && name != "default" && !dryRun {
            throw Status.forbidden("pods \"\(pod.metadata.name ?? pod.metadata.generateName ?? "")\" is forbidden: error looking up service account \(ns)/\(name): serviceaccount \"\(name)\" not found",
                                   Resources.pods, pod.metadata.name)
        }
        let automount = spec.automountServiceAccountToken ?? sa?.automountServiceAccountToken ?? true
        let mounted = (spec.containers + (spec.initContainers ?? [])).contains { c in (c.volumeMounts ?? []).contains { $0.mountPath == Self.tokenMountPath } }
        if automount && !mounted {
            var vname = ""
            repeat { vname = "kube-api-access-" + Objects.randomSuffix() } while (spec.volumes ?? []).contains { $0.name == vname }
            var v = Volume(name: vname)
            v.projected = .object([
                "defaultMode": 420,
                "sources": .array([
                    .object(["serviceAccountToken": .object(["expirationSeconds": 3607, "path": "token"])]),
                    .object(["configMap": .object(["name": .string(Self.rootCAConfigMap), "items": .array([.object(["key": "ca.crt", "path": "ca.crt"])])])]),
                    .object(["downwardAPI": .object(["items": .array([.object(["path": "namespace",
                                                                               "fieldRef": .object(["apiVersion": "v1", "fieldPath": "metadata.namespace"])])])])]),
                ]),
            ])
            spec.volumes = (spec.volumes ?? []) + [v]
            let m = VolumeMount(name: vname, mountPath: Self.tokenMountPath, readOnly: true)
            for i in spec.containers.indices { spec.containers[i].volumeMounts = (spec.containers[i].volumeMounts ?? []) + [m] }
            if spec.initContainers != nil {
                for i in spec.initContainers!.indices { spec.initContainers![i].volumeMounts = (spec.initContainers![i].volumeMounts ?? []) + [m] }
            }
        }
        pod.spec = spec
    }
}
