// Persistent volumes on the node: a pod's persistentVolumeClaim volumes become the directory of
// the volume each claim is bound to (hostPath or local, which must be meant for this node), and
// local-path volumes deleted in the cluster have their directory removed here before the Volume
// object is let go.
import Foundation
import API
import Client

struct VolumeNotReady: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension NodeAgent {
    /// The pod with each persistentVolumeClaim volume replaced by the directory it stands for;
    /// throws (to be retried) while a claim is unbound or its volume is not for this node.
    func resolveVolumes(_ pod: Pod) async throws -> Pod {
        guard let vols = pod.spec?.volumes, vols.contains(where: { $0.persistentVolumeClaim != nil }) else { return pod }
        let uid = pod.metadata.uid ?? pod.name
        var out = pod
        for (i, v) in vols.enumerated() {
            guard let claimName = v.claimName else { continue }
            if let known = memo(uid, { $0.volumes[v.name] }) { out.spec!.volumes![i] = known; continue }
            let claim: PersistentVolumeClaim
            do { claim = try await client.get(PersistentVolumeClaim.self, claimName, namespace: pod.namespace) }
            catch let s as Status where s.code == 404 { throw VolumeNotReady("persistentvolumeclaim \"\(claimName)\" not found") }
            if claim.metadata.deletionTimestamp != nil { throw VolumeNotReady("persistentvolumeclaim \"\(claimName)\" is being deleted") }
            guard let vn = claim.spec?.volumeName, !vn.isEmpty, claim.phase == "Bound" else {
                throw VolumeNotReady("persistentvolumeclaim \"\(claimName)\" is not bound yet")
            }
            let pv: PersistentVolume
            do { pv = try await client.get(PersistentVolume.self, vn) }
            catch let s as Status where s.code == 404 { throw VolumeNotReady("persistentvolume \"\(vn)\" of claim \"\(claimName)\" not found") }
            guard let spec = pv.spec, let path = spec.nodePath else {
                throw VolumeNotReady("persistentvolume \"\(vn)\": only hostPath and local volumes are mounted by this agent (it has \(pv.spec?.sources.joined(separator: ", ") ?? "none"))")
            }
            let labels = (try? await client.get(Node.self, config.nodeName))?.labels ?? ["kubernetes.io/hostname": config.nodeName]
            guard pv.admits(nodeName: config.nodeName, labels: labels) else {
                throw VolumeNotReady("persistentvolume \"\(vn)\" of claim \"\(claimName)\" is not meant for node \"\(config.nodeName)\" (node affinity)")
            }
            var r = v
            // Provisioned directories (and hostPath volumes asking for it) are made on first use.
            r.hostPath = Volume.HostPath(path: path, type: spec.hostPath?.type == "DirectoryOrCreate" ? "DirectoryOrCreate" : "Directory")
            memo(uid) { $0.volumes[v.name] = r }
            out.spec!.volumes![i] = r
        }
        return out
    }

    /// Local-path volumes pinned here that the cluster has deleted: the directory goes, then the
    /// cleanup finalizer, so the Volume object can go.
    func cleanUpVolumes() async {
        guard let root = config.storageRoot else { return }
        let list: [PersistentVolume]
        do { list = try await client.list(PersistentVolume.self, labelSelector: "\(StorageNames.localPathNodeLabel)=\(config.nodeName)").items }
        catch { logger.debug("listing local volumes failed", metadata: ["error": "\(error)"]); return }
        for pv in list where pv.metadata.deletionTimestamp != nil && (pv.metadata.finalizers ?? []).contains(StorageNames.localPathCleanup) && pv.pinnedNode == config.nodeName {
            guard let path = pv.spec?.nodePath else { continue }
            let base = root.hasSuffix("/") ? root : root + "/"
            let std = URL(fileURLWithPath: path).standardized.path
            if std.hasPrefix(base + "pvc-") && !std.dropFirst(base.count).contains("/") {
                do {
                    if FileManager.default.fileExists(atPath: std) { try FileManager.default.removeItem(atPath: std) }
                    logger.info("removed a deleted volume's directory", metadata: ["volume": "\(pv.name)", "path": "\(std)"])
                } catch {
                    logger.warning("removing a volume's directory failed", metadata: ["volume": "\(pv.name)", "error": "\(error)"])
                    continue
                }
            } else {
                logger.warning("not removing a volume directory outside the local-path root", metadata: ["volume": "\(pv.name)", "path": "\(std)"])
            }
            let rest = (pv.metadata.finalizers ?? []).filter { $0 != StorageNames.localPathCleanup }
            _ = try? await client.patch(PersistentVolume.self, pv.name,
                                        mergePatch: .object(["metadata": .object(["finalizers": rest.isEmpty ? .null : .array(rest.map { .string($0) })])]))
        }
    }

    var configSources: ConfigSources {
        let cms = configMaps, secs = secrets
        return ConfigSources(configMap: { ns, n in cms.get(namespace: ns, name: n) }, secret: { ns, n in secs.get(namespace: ns, name: n) },
                             allocatable: config.capacity ?? Self.hostCapacity())
    }

    /// Writes the pod's configMap, secret, downwardAPI and projected volumes (again when what
    /// they show changed) and returns the pod with each pointing at its directory.
    func writeConfigVolumes(_ pod: Pod) async throws -> Pod {
        guard let vols = pod.spec?.volumes, vols.contains(where: ConfigProjection.isProjected) else { return pod }
        let uid = pod.metadata.uid ?? pod.name
        var out = pod
        var sources = configSources
        for want in ConfigProjection.tokenRequests(pod) {
            do { sources.tokens[want.key] = try await serviceAccountToken(pod, audience: want.audience, seconds: want.seconds, key: want.key) }
            catch {
                let v = vols.first { ($0.projected?["sources"]?.arrayValue ?? []).contains { $0["serviceAccountToken"] != nil } }?.name ?? ""
                throw VolumeNotReady("MountVolume.SetUp failed for volume \"\(v)\" : failed to fetch token: \(Self.describe(error))")
            }
        }
        for (i, v) in vols.enumerated() where ConfigProjection.isProjected(v) {
            let files: [ProjectedFile]
            do { files = try ConfigProjection.files(v, pod: pod, sources: sources) }
            catch { throw VolumeNotReady("MountVolume.SetUp failed for volume \"\(v.name)\" : \(error)") }
            let digest = ConfigProjection.digest(files)
            var path = memo(uid) { $0.written[v.name] }.flatMap { $0.digest == digest ? $0.path : nil }
            if path == nil {
                do { path = try await runtime.writeVolume(podUID: uid, name: v.name, files: files, tmpfs: ConfigProjection.needsTmpfs(v)) }
                catch { throw VolumeNotReady("MountVolume.SetUp failed for volume \"\(v.name)\" : \(error)") }
                let p = path!
                memo(uid) { $0.written[v.name] = (digest, p) }
            }
            out.spec!.volumes![i].hostPath = Volume.HostPath(path: path!)
        }
        return out
    }

    /// A token for the pod's ServiceAccount, bound to the pod, as the kubelet keeps them: fetched
    /// once, and again when 80% of its lifetime has passed (the last one serves while a refresh fails).
    func serviceAccountToken(_ pod: Pod, audience: String?, seconds: Int64, key: String) async throws -> String {
        let uid = pod.metadata.uid ?? pod.name
        let now = clock.now()
        if let t = memo(uid, { $0.tokens[key] }), now < t.issued.addingTimeInterval(t.expires.timeIntervalSince(t.issued) * 0.8) { return t.token }
        do {
            let (token, expires) = try await client.requestToken(serviceAccount: pod.spec?.serviceAccountName ?? "default", namespace: pod.namespace,
                                                                 audiences: audience.map { [$0] } ?? [], expirationSeconds: seconds, boundPod: (pod.name, uid))
            memo(uid) { $0.tokens[key] = (token, now, expires) }
            return token
        } catch {
            if let t = memo(uid, { $0.tokens[key] }), now < t.expires { return t.token }
            throw error
        }
    }

    static func describe(_ e: any Error) -> String { (e as? Status)?.message ?? "\(e)" }

    /// KUBERNETES_SERVICE_HOST and friends: where pods reach the API (the `kubernetes` Service).
    func apiServiceEnvironment() -> [EnvVar] {
        guard let svc = proxy.services.get(namespace: "default", name: "kubernetes"), let ip = svc.spec?.clusterIP, ip != "None", !ip.isEmpty,
              let port = svc.spec?.ports?.first?.port else { return [] }
        let tcp = "tcp://\(ip):\(port)"
        return [EnvVar(name: "KUBERNETES_SERVICE_HOST", value: ip), EnvVar(name: "KUBERNETES_SERVICE_PORT", value: "\(port)"),
                EnvVar(name: "KUBERNETES_SERVICE_PORT_HTTPS", value: "\(port)"), EnvVar(name: "KUBERNETES_PORT", value: tcp),
                EnvVar(name: "KUBERNETES_PORT_\(port)_TCP", value: tcp), EnvVar(name: "KUBERNETES_PORT_\(port)_TCP_PROTO", value: "tcp"),
                EnvVar(name: "KUBERNETES_PORT_\(port)_TCP_PORT", value: "\(port)"), EnvVar(name: "KUBERNETES_PORT_\(port)_TCP_ADDR", value: ip)]
    }

    /// Registry credentials from the pod's imagePullSecrets; missing Secrets are reported once.
    func pullCredentials(_ pod: Pod) -> [String: RegistryAuth] {
        let names = (pod.spec?.imagePullSecrets?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        guard !names.isEmpty else { return [:] }
        let found = names.compactMap { secrets.get(namespace: pod.namespace, name: $0) }
        if found.count < names.count {
            let missing = names.filter { n in !found.contains { $0.name == n } }
            let uid = pod.metadata.uid ?? pod.name
            if memo(uid, { !$0.announced.contains("pull-secrets") }) {
                memo(uid) { _ = $0.announced.insert("pull-secrets") }
                events.record(pod, type: "Warning", reason: "FailedToRetrieveImagePullSecret",
                              message: "Unable to retrieve some image pull secrets (\(missing.joined(separator: ", "))); attempting to pull the image may not succeed.")
            }
        }
        return PullSecrets.credentials(found)
    }
}
