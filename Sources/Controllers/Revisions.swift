// ControllerRevisions: the pod templates a DaemonSet or StatefulSet has had, named OWNER-HASH,
// numbered in order of use, so that `kubectl rollout history|undo` can list and restore them.
import Foundation
import API
import Client

enum RevisionHistory {
    /// The revision of `template` exists and has the highest number (a template that comes back,
    /// by rollback, becomes the newest again); the oldest beyond `limit` go.
    static func sync<T: KubeObject>(_ client: KubeClient, _ informers: SharedInformers, owner: T, template: PodTemplateSpec, hash: String, limit: Int) async throws {
        guard let uid = owner.metadata.uid else { return }
        let mine = informers.revisions.list(namespace: owner.namespace).filter { $0.metadata.controllerRef?.uid == uid }
        let top = mine.map(\.revision).max() ?? 0
        let name = "\(owner.name)-\(hash)"
        if var cur = mine.first(where: { $0.name == name }) {
            if cur.revision < top {
                cur.revision = top + 1
                _ = try await client.update(cur)
            }
        } else {
            var meta = ObjectMeta(name: name, namespace: owner.namespace,
                                  labels: (template.metadata?.labels ?? [:]).merging([ControllerRevision.hashLabel: hash]) { $1 })
            meta.ownerReferences = [ownerRef(owner)]
            var t = try JSONValue.from(template)
            t["$patch"] = .string("replace")
            let rev = ControllerRevision(metadata: meta, data: .object(["spec": .object(["template": t])]), revision: top + 1)
            do { _ = try await client.create(rev) } catch let s as Status where s.code == 409 {}
        }
        let old = mine.filter { $0.name != name }.sorted { $0.revision < $1.revision }
        for r in old.prefix(max(0, old.count - limit)) {
            try? await client.delete(ControllerRevision.self, r.name, namespace: r.namespace)
        }
    }

    /// The pod template a revision holds.
    static func template(of rev: ControllerRevision) -> PodTemplateSpec? {
        guard var t = rev.data?["spec"]?["template"] else { return nil }
        if case .object(var o) = t { o.removeValue(forKey: "$patch"); t = .object(o) }
        return try? KubeJSON.decode(PodTemplateSpec.self, from: t.encoded())
    }
}
