// Batch bindings: our extension for schedulers that bind many pods at once.
// POST /apis/scheduling.orchestrator.io/v1/bindings with a BindingList binds each item exactly
// as pods/binding would. The binds run concurrently, so the store's group commit writes them in
// one transaction; the answer is a BindingResultList with one result per item, in order. Every
// other client keeps the one-pod binding subresource.
import API
import Foundation
import PKI
import Hummingbird

extension APIHandler {
    func batchBind(_ request: Request, identity: CertIdentity) async throws -> Response {
        let body = try await readJSON(request)
        let list: BindingList
        do { list = try body.decode(BindingList.self) } catch let e as DecodingError {
            throw Status.badRequest("BindingList in version \"v1\" cannot be handled as a BindingList: \(Objects.describe(e))")
        }
        if let k = list.kind, k != "BindingList" { throw Status.badRequest("kind: Unsupported value: \"\(k)\": supported values: \"BindingList\"") }
        guard list.items.count <= BindingList.maxItems else {
            throw Status.badRequest("items: Too many: \(list.items.count): must have at most \(BindingList.maxItems) items")
        }
        // The whole list is checked before anything is bound: a malformed item refuses the request.
        var targets: [(namespace: String, name: String)] = []
        for (i, b) in list.items.enumerated() {
            guard let name = b.metadata.name, !name.isEmpty else { throw Status.badRequest("items[\(i)].metadata.name: Required value") }
            guard let ns = b.metadata.namespace, !ns.isEmpty else { throw Status.badRequest("items[\(i)].metadata.namespace: Required value") }
            guard let node = b.target.name, !node.isEmpty else { throw Status.badRequest("items[\(i)].target.name: Required value") }
            targets.append((ns, name))
        }
        // Allowed only where a pods/binding create would be, for every namespace named.
        for ns in Set(targets.map(\.namespace)).sorted() {
            let attrs = RequestAttributes(user: identity, verb: "create", resource: Resources.pods, subresource: "binding", namespace: ns,
                                          name: nil, fieldNodeName: nil)
            switch authz.authorize(attrs) {
            case .allow: break
            case .deny(let msg): throw Status.forbidden(msg, Resources.pods, nil)
            default: throw Status.forbidden("batch bindings are only for callers that may create pods/binding in namespace \"\(ns)\"", Resources.pods, nil)
            }
        }
        let registry = self.registry
        let results = await withTaskGroup(of: (Int, BindingResult).self) { group in
            for (i, b) in list.items.enumerated() {
                let (ns, name) = targets[i]
                group.addTask {
                    do {
                        try await registry.bind(namespace: ns, name: name, b)
                        return (i, BindingResult(namespace: ns, name: name, code: 201))
                    } catch {
                        let s = Objects.map(error, Resources.pods, name)
                        return (i, BindingResult(namespace: ns, name: name, code: s.code ?? 500, reason: s.reason, message: s.message))
                    }
                }
            }
            var out = [BindingResult?](repeating: nil, count: list.items.count)
            for await (i, r) in group { out[i] = r }
            return out.compactMap { $0 }
        }
        return Self.json(200, try KubeJSON.encode(BindingResultList(items: results)))
    }
}
