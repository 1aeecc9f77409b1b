// The storage semantics of the Kubernetes API on top of the generic store: create, update,
// patch, delete (graceful for pods, finalizers), subresources status/scale/binding.
import Foundation
import API
import Store
import Logging

public final class Registry: Sendable {
    public let store: any ObjectStore
    let clock: @Sendable () -> Date
    let logger: Logger
    /// Cluster IPs and node ports for Services (nil: Services get none, as in unit tests).
    let allocator: ServiceAllocator?
    /// Roles and bindings, for the authorizer and the escalation check.
    public let rbac: RBACCache

    public init(store: any ObjectStore, clock: @escaping @Sendable () -> Date = { Date() }, logger: Logger = Logger(label: "registry"),
                services: ServiceNetworkConfig? = nil) {
        self.store = store; self.clock = clock; self.logger = logger
        allocator = services.map { ServiceAllocator(store: store, config: $0, logger: logger, clock: clock) }
        rbac = RBACCache(store: store, logger: logger)
    }

    /// `value` (a T seen through a concrete type) as T again; a 500 rather than a crash if not.
    func same<T, V>(_ value: V, as: T.Type) throws -> T {
        guard let t = value as? T else { throw Status.internalError("\(V.self) is not \(T.self)") }
        return t
    }

    /// Claims what a Service needs from the allocators; a no-op for other kinds.
    func allocate<T: ServedKind>(_ obj: inout T, old: T?) async throws -> (claimed: [String], unused: [String]) {
        guard let allocator, var svc = obj as? Service else { return ([], []) }
        let r = try await allocator.assign(&svc, old: old as? Service)
        obj = try same(svc, as: T.self)
        return r
    }
    func releaseAllocations(_ names: [String], uid: String?) async {
        guard let allocator, !names.isEmpty else { return }
        await allocator.release(names, uid: uid)
    }

    var nowString: String { KubeTime.format(clock()) }

    // MARK: create

    func create<T: ServedKind>(_ type: T.Type, namespace: String?, body: JSONValue, validation: FieldValidation, dryRun: Bool = false,
                               manager: String? = nil, keepManagedFields: Bool = false) async throws -> (StoredObject, [String]) {
        let info = T.resource
        var body = body
        // Status is set by its owners, not by whoever creates the object (nodes excepted, as in Kubernetes).
        if info.hasStatus && info != Resources.nodes { body["status"] = nil }
        if !keepManagedFields {
            body["metadata"]?["managedFields"] = nil
            if let manager, let m = Self.schemaMessage(info) {
                body = ServerSideApply.recordUpdate(old: nil, new: body, manager: manager, message: m, apiVersion: info.apiVersion, now: nowString, subresource: nil)
            }
        }
        var out = try Objects.decode(T.self, body, validation: validation)
        var obj = out.object
        var nsGuard: (key: ObjectKey, revision: Int64)?
        if info.namespaced {
            let ns = namespace ?? obj.metadata.namespace ?? "default"
            if let bodyNS = obj.metadata.namespace, !bodyNS.isEmpty, let urlNS = namespace, bodyNS != urlNS {
                throw Status.badRequest("the namespace of the provided object does not match the namespace sent on the request")
            }
            obj.metadata.namespace = ns
            nsGuard = try checkNamespaceAccepts(ns)
        } else {
            obj.metadata.namespace = nil
        }
        obj.metadata.uid = UUID().uuidString.lowercased()
        obj.metadata.creationTimestamp = nowString
        obj.metadata.deletionTimestamp = nil
        obj.metadata.deletionGracePeriodSeconds = nil
        obj.metadata.selfLink = nil
        obj.metadata.generation = Objects.usesGeneration(info) ? 1 : nil
        obj.applyDefaults()
        obj.admitCreate()
        if var pod = obj as? Pod { try admitServiceAccount(&pod, dryRun: dryRun); obj = try same(pod, as: T.self) }
        if var claim = obj as? PersistentVolumeClaim, var spec = claim.spec, spec.storageClassName == nil {
            // As Kubernetes' DefaultStorageClass admission: a claim naming no class gets the default one.
            if let sc = defaultStorageClass() { spec.storageClassName = sc; claim.spec = spec; obj = try same(claim, as: T.self) }
        }
        let generated = (obj.metadata.name ?? "").isEmpty && obj.metadata.generateName != nil
        var claimed: [String] = []
        for attempt in 0..<5 {
            if generated { obj.metadata.name = obj.metadata.generateName! + Objects.randomSuffix() }
            let errs = obj.validate()
            if !errs.isEmpty { throw Status.invalid(info, obj.metadata.name ?? obj.metadata.generateName ?? "", errs) }
            if attempt == 0, let who = Requester.current { try rbac.admit(obj, requester: who) }
            if !dryRun && attempt == 0 { claimed = try await allocate(&obj, old: nil).claimed }
            let stored = try Objects.encodeForStore(obj)
            if dryRun { return (StoredObject(key: stored.key, data: Store.stamp(stored.data, 0), labels: stored.labels, fields: stored.fields), out.warnings) }
            do {
                return (try await store.write(.create(stored, unchanged: nsGuard)), out.warnings)
            } catch StoreError.alreadyExists where generated && attempt < 4 {
                continue
            } catch StoreError.conflict(let k, _) where k == nsGuard?.key && attempt < 4 {
                // The namespace changed since it was checked: check it again (403 once it
                // terminates, 404 once it is gone); other changes (labels) are no obstacle.
                do { nsGuard = try checkNamespaceAccepts(k.name) } catch {
                    await releaseAllocations(claimed, uid: obj.metadata.uid)
                    throw error
                }
            } catch {
                await releaseAllocations(claimed, uid: obj.metadata.uid)
                throw Objects.map(error, info, obj.name)
            }
        }
        await releaseAllocations(claimed, uid: obj.metadata.uid)
        out.warnings = []
        throw Status.alreadyExists(info, obj.name)
    }

    /// The newest class marked default, as Kubernetes picks when several are.
    func defaultStorageClass() -> String? {
        let classes = store.list(resource: Resources.storageclasses.groupResource, namespace: nil).items
            .compactMap { try? KubeJSON.decode(StorageClass.self, from: $0.data) }.filter(\.isDefault)
        return classes.max { ($0.metadata.creationTimestamp ?? "", $1.name) < ($1.metadata.creationTimestamp ?? "", $0.name) }?.name
    }

    /// The namespace `ns` as it is when it accepts new objects (its key and revision: the create
    /// is written only if it is still at that revision); 404 if it does not exist, 403 while it
    /// terminates.
    @discardableResult
    func checkNamespaceAccepts(_ ns: String) throws -> (key: ObjectKey, revision: Int64) {
        let key = Objects.key(Resources.namespaces, nil, ns)
        guard let nso = store.get(key) else {
            throw Status.notFound(Resources.namespaces, ns)
        }
        if nso.fields["status.phase"] == "Terminating" {
            throw Status.forbidden("unable to create new content in namespace \(ns) because it is being terminated", Resources.namespaces, ns)
        }
        return (key, nso.revision)
    }

    // MARK: update

    /// Applies a full replacement (PUT) of the object or its status.
    func update<T: ServedKind>(_ type: T.Type, namespace: String?, name: String, body: JSONValue, subresource: String?, validation: FieldValidation, dryRun: Bool = false,
                               manager: String? = nil) async throws -> (StoredObject, [String]) {
        let info = T.resource
        guard case .object = body else { throw Status.badRequest("the body must be a JSON object describing a \(info.kind)") }
        if let n = body["metadata"]?["name"]?.stringValue, !n.isEmpty, n != name {
            throw Status.badRequest("the name of the object (\(n)) does not match the name on the URL (\(name))")
        }
        if info.namespaced, let ns = body["metadata"]?["namespace"]?.stringValue, !ns.isEmpty, ns != namespace {
            throw Status.badRequest("the namespace of the provided object does not match the namespace sent on the request")
        }
        let rv = body["metadata"]?["resourceVersion"]?.stringValue ?? ""
        let precondition = Int64(rv)
        if !rv.isEmpty, precondition == nil {
            throw Status.badRequest("metadata.resourceVersion: Invalid value: \"\(rv)\": must be a decimal revision")
        }
        let key = Objects.key(info, namespace, name)
        for _ in 0..<16 {
            guard let cur = store.get(key) else { throw Status.notFound(info, name) }
            if let p = precondition, p != cur.revision { throw Status.conflict(info, name) }
            var incoming = body
            // A PUT without managedFields keeps the stored ones (Kubernetes resets only an explicit empty list).
            if incoming["metadata"]?["managedFields"] == nil, let kept = (try? JSONValue.parse(cur.data))?["metadata"]?["managedFields"] {
                incoming["metadata"]?["managedFields"] = kept
            }
            do { return try await commitMerged(T.self, current: cur, incoming: incoming, subresource: subresource, validation: validation, dryRun: dryRun, manager: manager) }
            catch StoreError.conflict(_, _) where precondition == nil { continue }
            catch { throw Objects.map(error, info, name) }
        }
        throw Status.conflict(info, name)
    }

    /// Spec writers cannot touch status, status writers cannot touch anything else, and system
    /// metadata always comes from the stored object. Done on the JSON trees, so the result is
    /// decoded (and strictly checked) once.
    static func mergeJSON(old: JSONValue, incoming: JSONValue, info: ResourceInfo, subresource: String?) -> JSONValue {
        if subresource == "status" || subresource == "approval" {
            var out = old
            out["status"] = incoming["status"].flatMap { $0.isNull ? nil : $0 }
            return out
        }
        var out = incoming
        if info.hasStatus { out["status"] = old["status"] }
        var meta = out["metadata"]?.objectValue ?? [:]
        let oldMeta = old["metadata"]?.objectValue ?? [:]
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "name", "namespace", "generation"] { meta[k] = oldMeta[k] }
        meta["selfLink"] = nil
        out["metadata"] = .object(meta)
        return out
    }

    /// Merges `incoming` onto the stored object, decodes it strictly, and commits it.
    func commitMerged<T: ServedKind>(_ type: T.Type, current cur: StoredObject, incoming: JSONValue, subresource: String?,
                                     validation: FieldValidation, dryRun: Bool = false, manager: String? = nil) async throws -> (StoredObject, [String]) {
        let oldJ: JSONValue
        do { oldJ = try JSONValue.parse(cur.data) } catch { throw Status.internalError("stored \(cur.key) does not parse") }
        var merged = Self.mergeJSON(old: oldJ, incoming: incoming, info: T.resource, subresource: subresource)
        // Field ownership: a write that leaves managedFields alone records its manager's changes
        // (as Kubernetes does); one that sets managedFields itself (kubectl's upgrade from
        // client-side apply) is taken as written.
        let keptManaged = (incoming["metadata"]?["managedFields"] ?? .null) == (oldJ["metadata"]?["managedFields"] ?? .null)
        if keptManaged, let manager, let m = Self.schemaMessage(T.resource) {
            merged = ServerSideApply.recordUpdate(old: oldJ, new: merged, manager: manager, message: m, apiVersion: T.resource.apiVersion,
                                                  now: nowString, subresource: subresource)
        }
        let decoded = try Objects.decode(T.self, merged, validation: validation)
        let old = try Objects.decodeStored(T.self, cur)
        return (try await commitUpdate(old: old, new: decoded.object, current: cur, dryRun: dryRun), decoded.warnings)
    }

    /// Defaults, validates, bumps generation, and commits with the current revision as precondition.
    func commitUpdate<T: ServedKind>(old: T, new: T, current: StoredObject, dryRun: Bool = false) async throws -> StoredObject {
        let info = T.resource
        var next = new
        next.applyDefaults()
        var errs = next.validate()
        if !errs.isEmpty { throw Status.invalid(info, old.name, errs) }
        // Allocation first: an update that leaves out the cluster IP keeps the assigned one.
        let (claimed, unused) = try await allocate(&next, old: old)
        errs = next.validateUpdate(old: old)
        if !errs.isEmpty { await releaseAllocations(claimed, uid: next.metadata.uid); throw Status.invalid(info, old.name, errs) }
        if let who = Requester.current {
            do { try rbac.admit(next, requester: who) } catch { await releaseAllocations(claimed, uid: next.metadata.uid); throw error }
        }
        if dryRun {
            // Everything but the write: what was claimed for this attempt is given back.
            await releaseAllocations(claimed, uid: next.metadata.uid)
            var shown = next
            shown.metadata.generation = old.metadata.generation
            let stored = try Objects.encodeForStore(shown)
            return StoredObject(key: stored.key, data: Store.stamp(stored.data, current.revision), labels: stored.labels, fields: stored.fields)
        }
        do {
            let r = try await commitValidated(old: old, next: next, current: current)
            await releaseAllocations(unused, uid: next.metadata.uid)
            return r
        } catch {
            await releaseAllocations(claimed, uid: next.metadata.uid)
            throw error
        }
    }

    private func commitValidated<T: ServedKind>(old: T, next: T, current: StoredObject) async throws -> StoredObject {
        let info = T.resource
        var next = next
        next.metadata.generation = old.metadata.generation
        // An object being deleted whose last finalizer is gone is deleted now.
        if next.metadata.deletionTimestamp != nil, (next.metadata.finalizers ?? []).isEmpty, finalizesOnEmpty(next) {
            let final = try Objects.encodeForStore(next)
            return try await store.write(.delete(current.key, expectedRevision: current.revision, finalData: final.data))
        }
        var stored = try Objects.encodeForStore(next)
        // generation counts spec changes: compare what is about to be stored with what was.
        if Objects.usesGeneration(info), Objects.specPart(stored.data) != Objects.specPart(current.data) {
            next.metadata.generation = (old.metadata.generation ?? 0) + 1
            stored = try Objects.encodeForStore(next)
        }
        return try await store.write(.update(stored, expectedRevision: current.revision))
    }

    /// Pods wait for their node to finish the graceful delete; other kinds go once finalizers are gone.
    func finalizesOnEmpty<T: ServedKind>(_ obj: T) -> Bool {
        if T.resource == Resources.pods, let p = obj as? Pod, !(p.spec?.nodeName ?? "").isEmpty, !p.isTerminal { return false }
        if T.resource == Resources.namespaces { return false }
        return true
    }

    /// Read-modify-write with retries, for system changes (binding, scale, namespace phase).
    func mutate<T: ServedKind>(_ type: T.Type, namespace: String?, name: String, precondition: Int64? = nil, _ change: (inout T) throws -> Void) async throws -> StoredObject {
        let info = T.resource
        let key = Objects.key(info, namespace, name)
        for _ in 0..<16 {
            guard let cur = store.get(key) else { throw Status.notFound(info, name) }
            if let p = precondition, p != cur.revision { throw Status.conflict(info, name) }
            let old = try Objects.decodeStored(T.self, cur)
            var next = old
            try change(&next)
            do { return try await commitUpdate(old: old, new: next, current: cur) }
            catch StoreError.conflict(_, _) where precondition == nil { continue }
            catch { throw Objects.map(error, info, name) }
        }
        throw Status.conflict(info, name)
    }

    // MARK: patch

    enum PatchType { case merge, json, strategic, apply }

    static func schemaMessage(_ info: ResourceInfo) -> String? { Schema.kind(apiVersion: info.apiVersion, kind: info.kind)?.name }

    func patch<T: ServedKind>(_ type: T.Type, namespace: String?, name: String, patchType: PatchType, patch: JSONValue, subresource: String?, validation: FieldValidation, dryRun: Bool = false,
                              manager: String? = nil, force: Bool = false) async throws -> (StoredObject, [String]) {
        let info = T.resource
        let key = Objects.key(info, namespace, name)
        if patchType == .apply {
            return try await apply(T.self, namespace: namespace, name: name, applied: patch, subresource: subresource, validation: validation,
                                   dryRun: dryRun, manager: manager, force: force)
        }
        for _ in 0..<16 {
            guard let cur = store.get(key) else { throw Status.notFound(info, name) }
            let curJ: JSONValue
            do { curJ = try JSONValue.parse(cur.data) } catch { throw Status.internalError("stored object does not parse") }
            var patched: JSONValue
            switch patchType {
            case .merge, .apply:
                guard case .object = patch else { throw Status.badRequest("a merge patch must be a JSON object") }
                patched = jsonMergePatch(curJ, patch)
            case .strategic:
                guard case .object = patch else { throw Status.badRequest("a strategic merge patch must be a JSON object") }
                do { patched = try strategicMergePatch(curJ, patch, message: Self.schemaMessage(info)) }
                catch { throw Status.badRequest("the strategic merge patch cannot be applied: \(error)") }
            case .json:
                do { patched = try jsonPatch(curJ, patch) } catch { throw Status.failure422(info, name, "\(error)") }
            }
            // A patch that sets resourceVersion makes it a precondition; otherwise the read revision is.
            let rvInPatch = patched["metadata"]?["resourceVersion"]?.stringValue
            if let rv = rvInPatch, rv != curJ["metadata"]?["resourceVersion"]?.stringValue {
                throw Status.conflict(info, name)
            }
            do { return try await commitMerged(T.self, current: cur, incoming: patched, subresource: subresource, validation: validation, dryRun: dryRun, manager: manager) }
            catch StoreError.conflict(_, _) { continue }
            catch { throw Objects.map(error, info, name) }
        }
        throw Status.conflict(info, name)
    }

    // MARK: server-side apply

    /// application/apply-patch+yaml: merges the manifest with the live object (or creates it),
    /// tracking field ownership per manager; another manager's field set to a different value is
    /// a 409 naming the fields, unless `force` moves the ownership.
    func apply<T: ServedKind>(_ type: T.Type, namespace: String?, name: String, applied: JSONValue, subresource: String?, validation: FieldValidation,
                              dryRun: Bool, manager: String?, force: Bool) async throws -> (StoredObject, [String]) {
        let info = T.resource
        guard let manager, !manager.isEmpty else {
            throw Status.badRequest("PATCH requests with the apply content type require the fieldManager parameter")
        }
        guard case .object = applied else { throw Status.badRequest("an apply patch must be an object (YAML or JSON)") }
        if let n = applied["metadata"]?["name"]?.stringValue, !n.isEmpty, n != name {
            throw Status.badRequest("the name of the object (\(n)) does not match the name on the URL (\(name))")
        }
        if let v = applied["apiVersion"]?.stringValue, v != info.apiVersion {
            throw Status.badRequest("the API version \"\(v)\" in the body does not match the endpoint's \"\(info.apiVersion)\"")
        }
        if let k = applied["kind"]?.stringValue, k != info.kind {
            throw Status.badRequest("the kind \"\(k)\" in the body does not match the resource \"\(info.groupResource)\" (kind \"\(info.kind)\")")
        }
        guard applied["apiVersion"]?.stringValue != nil, applied["kind"]?.stringValue != nil else {
            throw Status.badRequest("an apply patch must name apiVersion and kind")
        }
        if let mf = applied["metadata"]?["managedFields"], !mf.isNull {
            throw Status.badRequest("metadata.managedFields must be nil in an apply patch")
        }
        guard let message = Self.schemaMessage(info) else { throw Status.unsupportedMediaType("application/apply-patch+yaml") }
        // Fields unknown to the schema are refused before anything is merged.
        if validation == .strict {
            let unknown = Schema.unknownFields(applied, message: message)
            if !unknown.isEmpty { throw Status.strictDecoding(unknown) }
        }
        let key = Objects.key(info, namespace, name)
        for _ in 0..<16 {
            let cur = store.get(key)
            let live = try cur.map { c -> JSONValue in
                do { return try JSONValue.parse(c.data) } catch { throw Status.internalError("stored object does not parse") }
            }
            var result: JSONValue
            do {
                result = try ServerSideApply.apply(live: live, applied: applied, manager: manager, force: force, message: message,
                                                   apiVersion: info.apiVersion, now: nowString)
            } catch let c as ApplyConflict {
                throw Status.applyConflict(info, name, c)
            } catch {
                throw Status.badRequest("the apply patch cannot be merged: \(error)")
            }
            guard let cur else {
                if subresource != nil { throw Status.notFound(info, name) }
                result["metadata"]?["name"] = .string(name)
                return try await create(T.self, namespace: namespace, body: result, validation: validation, dryRun: dryRun, keepManagedFields: true)
            }
            do { return try await commitMerged(T.self, current: cur, incoming: result, subresource: subresource, validation: validation, dryRun: dryRun) }
            catch StoreError.conflict(_, _) { continue }
            catch { throw Objects.map(error, info, name) }
        }
        throw Status.conflict(info, name)
    }

    // MARK: eviction

    /// pods/eviction: deletes the pod if its PodDisruptionBudget allows one more disruption
    /// (taking it from the budget first), else 429 as Kubernetes does, so that drain retries.
    func evict(namespace: String, name: String, body: JSONValue) async throws -> Status {
        let ev: Eviction
        do { ev = try body.decode(Eviction.self) } catch let e as DecodingError {
            throw Status.badRequest("Eviction in version \"v1\" cannot be handled as an Eviction: \(Objects.describe(e))")
        }
        if let n = ev.metadata.name, !n.isEmpty, n != name { throw Status.badRequest("name in URL does not match name in Eviction object") }
        let podKey = Objects.key(Resources.pods, namespace, name)
        let options = ev.deleteOptions ?? DeleteOptions()
        for _ in 0..<16 {
            guard let cur = store.get(podKey) else { throw Status.notFound(Resources.pods, name) }
            let pod = try Objects.decodeStored(Pod.self, cur)
            var opts = options
            if opts.preconditions == nil { opts.preconditions = Preconditions(uid: pod.metadata.uid) }
            // Finished or already going: nothing left to protect.
            if pod.isTerminal || pod.metadata.deletionTimestamp != nil {
                _ = try await delete(Pod.self, namespace: namespace, name: name, options: opts)
                return Status.success()
            }
            let budgets = store.list(resource: Resources.pdbs.groupResource, namespace: namespace).0
                .compactMap { try? Objects.decodeStored(PodDisruptionBudget.self, $0) }
                .filter { $0.spec?.selector?.matches(pod.labels) ?? false }
            if budgets.count > 1 {
                throw Status(status: "Failure", message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                             reason: "InternalError", code: 500)
            }
            guard var pdb = budgets.first else {
                _ = try await delete(Pod.self, namespace: namespace, name: name, options: opts)
                return Status.success()
            }
            guard var st = pdb.status, (st.observedGeneration ?? 0) >= (pdb.metadata.generation ?? 0) else {
                throw Self.tooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.",
                                           "The disruption budget \(pdb.name) is still being processed by the server.")
            }
            if !Disruption.healthy(pod) {
                // An unhealthy pod may go when the budget is met (IfHealthyBudget) or always (AlwaysAllow).
                if pdb.spec?.unhealthyPodEvictionPolicy == "AlwaysAllow" || st.currentHealthy >= st.desiredHealthy {
                    _ = try await delete(Pod.self, namespace: namespace, name: name, options: opts)
                    return Status.success()
                }
                throw Self.tooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.",
                                           "The disruption budget \(pdb.name) needs \(st.desiredHealthy) healthy pods and has \(st.currentHealthy) currently")
            }
            guard st.disruptionsAllowed > 0 else {
                throw Self.tooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.",
                                           "The disruption budget \(pdb.name) needs \(st.desiredHealthy) healthy pods and has \(st.currentHealthy) currently")
            }
            // Take the disruption from the budget before the pod goes, so two evictions cannot both use it.
            st.disruptionsAllowed -= 1
            var disrupted = st.disruptedPods ?? [:]
            disrupted[name] = nowString
            st.disruptedPods = disrupted
            pdb.status = st
            guard let pdbCur = store.get(Objects.key(Resources.pdbs, namespace, pdb.name)) else { continue }
            do {
                _ = try await store.write(.update(try Objects.encodeForStore(pdb), expectedRevision: pdbCur.revision))
            } catch StoreError.conflict(_, _) { continue }
            _ = try await delete(Pod.self, namespace: namespace, name: name, options: opts)
            return Status.success()
        }
        throw Status.conflict(Resources.pdbs, "", "the disruption budget kept changing; try again")
    }

    static func tooManyRequests(_ message: String, _ cause: String) -> Status {
        var s = Status(status: "Failure", message: message, reason: "TooManyRequests", code: 429,
                       details: StatusDetails(causes: [StatusCause(reason: "DisruptionBudget", message: cause)]))
        s.details?.retryAfterSeconds = nil
        return s
    }

    // MARK: delete

    /// Deletes, or marks for deletion when the object must finish gracefully (pods on a node,
    /// finalizers, namespaces). Returns the object and whether it is gone.
    func delete<T: ServedKind>(_ type: T.Type, namespace: String?, name: String, options: DeleteOptions) async throws -> (StoredObject, gone: Bool) {
        let info = T.resource
        let key = Objects.key(info, namespace, name)
        for _ in 0..<16 {
            guard let cur = store.get(key) else { throw Status.notFound(info, name) }
            var obj = try Objects.decodeStored(T.self, cur)
            if let p = options.preconditions {
                if let uid = p.uid, uid != obj.metadata.uid {
                    throw Status.conflict(info, name, "Precondition failed: UID in precondition: \(uid), UID in object meta: \(obj.metadata.uid ?? "")")
                }
                if let rv = p.resourceVersion, rv != "\(cur.revision)" {
                    throw Status.conflict(info, name, "Precondition failed: ResourceVersion in precondition: \(rv), ResourceVersion in object meta: \(cur.revision)")
                }
            }
            var finalizers = obj.metadata.finalizers ?? []
            let policy = options.propagationPolicy ?? (options.orphanDependents == true ? "Orphan" : nil)
            if policy == "Foreground" && !finalizers.contains("foregroundDeletion") { finalizers.append("foregroundDeletion") }
            if policy == "Orphan" && !finalizers.contains("orphan") { finalizers.append("orphan") }
            var graceful = false
            if var pod = obj as? Pod, !(pod.spec?.nodeName ?? "").isEmpty, !pod.isTerminal {
                let requested = options.gracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30
                if requested > 0 || options.gracePeriodSeconds == nil {
                    var grace = max(requested, 0)
                    if let existing = pod.metadata.deletionGracePeriodSeconds { grace = min(grace, existing) }
                    if pod.metadata.deletionGracePeriodSeconds == grace && pod.metadata.deletionTimestamp != nil && finalizers == (pod.metadata.finalizers ?? []) {
                        return (cur, false)
                    }
                    let deadline = clock().addingTimeInterval(TimeInterval(grace))
                    pod.metadata.deletionTimestamp = KubeTime.format(deadline)
                    pod.metadata.deletionGracePeriodSeconds = grace
                    pod.metadata.finalizers = finalizers.isEmpty ? nil : finalizers
                    obj = try same(pod, as: T.self)
                    graceful = true
                }
            }
            if T.resource == Resources.namespaces, var nsObj = obj as? Namespace {
                if nsObj.metadata.deletionTimestamp != nil { return (cur, false) }
                nsObj.metadata.deletionTimestamp = nowString
                nsObj.status = Namespace.NamespaceStatus(phase: "Terminating", conditions: nsObj.status?.conditions)
                obj = try same(nsObj, as: T.self)
                graceful = true
            }
            if !graceful && !finalizers.isEmpty {
                if obj.metadata.deletionTimestamp != nil && finalizers == (obj.metadata.finalizers ?? []) { return (cur, false) }
                obj.metadata.deletionTimestamp = obj.metadata.deletionTimestamp ?? nowString
                obj.metadata.deletionGracePeriodSeconds = 0
                obj.metadata.finalizers = finalizers
                graceful = true
            }
            do {
                if graceful {
                    let stored = try Objects.encodeForStore(obj)
                    return (try await store.write(.update(stored, expectedRevision: cur.revision)), false)
                }
                obj.metadata.deletionTimestamp = obj.metadata.deletionTimestamp ?? nowString
                obj.metadata.deletionGracePeriodSeconds = obj.metadata.deletionGracePeriodSeconds ?? 0
                let final = try Objects.encodeForStore(obj)
                return (try await store.write(.delete(key, expectedRevision: cur.revision, finalData: final.data)), true)
            } catch StoreError.conflict(_, _) {
                continue
            } catch {
                throw Objects.map(error, info, name)
            }
        }
        throw Status.conflict(info, name)
    }

    // MARK: subresources

    func scale(namespace: String, name: String, info: ResourceInfo) throws -> Scale {
        let key = Objects.key(info, namespace, name)
        guard let cur = store.get(key) else { throw Status.notFound(info, name) }
        var meta = ObjectMeta(name: name, namespace: namespace)
        if info == Resources.deployments {
            let d = try Objects.decodeStored(Deployment.self, cur)
            meta.uid = d.metadata.uid; meta.creationTimestamp = d.metadata.creationTimestamp; meta.resourceVersion = "\(cur.revision)"
            return Scale(metadata: meta, replicas: d.spec?.replicas ?? 0, statusReplicas: d.status?.replicas ?? 0, selector: d.spec?.selector?.stringForm)
        }
        if info == Resources.statefulsets {
            let x = try Objects.decodeStored(StatefulSet.self, cur)
            meta.uid = x.metadata.uid; meta.creationTimestamp = x.metadata.creationTimestamp; meta.resourceVersion = "\(cur.revision)"
            return Scale(metadata: meta, replicas: x.spec?.replicas ?? 0, statusReplicas: x.status?.replicas ?? 0, selector: x.spec?.selector?.stringForm)
        }
        let r = try Objects.decodeStored(ReplicaSet.self, cur)
        meta.uid = r.metadata.uid; meta.creationTimestamp = r.metadata.creationTimestamp; meta.resourceVersion = "\(cur.revision)"
        return Scale(metadata: meta, replicas: r.spec?.replicas ?? 0, statusReplicas: r.status?.replicas ?? 0, selector: r.spec?.selector?.stringForm)
    }

    /// Sets spec.replicas from a Scale. `precondition`: the revision the client insists on
    /// (a PUT's metadata.resourceVersion, or one a patch names), else none.
    func setScale(namespace: String, name: String, info: ResourceInfo, body: JSONValue, precondition pre: Int64?) async throws -> Scale {
        let s: Scale
        do { s = try body.decode(Scale.self) } catch let e as DecodingError {
            throw Status.badRequest("Scale in version \"v1\" cannot be handled as a Scale: \(Objects.describe(e))")
        }
        guard let replicas = s.spec?.replicas else { throw Status.invalid(info, name, [FieldError(.required, "spec.replicas", "")]) }
        if replicas < 0 { throw Status.invalid(info, name, [FieldError(.invalid, "spec.replicas", "\(replicas): must be greater than or equal to 0")]) }
        if info == Resources.deployments {
            _ = try await mutate(Deployment.self, namespace: namespace, name: name, precondition: pre) { $0.spec?.replicas = replicas }
        } else if info == Resources.statefulsets {
            _ = try await mutate(StatefulSet.self, namespace: namespace, name: name, precondition: pre) { $0.spec?.replicas = replicas }
        } else {
            _ = try await mutate(ReplicaSet.self, namespace: namespace, name: name, precondition: pre) { $0.spec?.replicas = replicas }
        }
        return try scale(namespace: namespace, name: name, info: info)
    }

    func bind(namespace: String, name: String, body: JSONValue) async throws {
        let b: Binding
        do { b = try body.decode(Binding.self) } catch let e as DecodingError {
            throw Status.badRequest("Binding in version \"v1\" cannot be handled as a Binding: \(Objects.describe(e))")
        }
        try await bind(namespace: namespace, name: name, b)
    }

    /// Assigns a pod to the node a Binding names (pods/binding, and each item of a batch).
    func bind(namespace: String, name: String, _ b: Binding) async throws {
        guard let node = b.target.name, !node.isEmpty else {
            throw Status.invalid(Resources.pods, name, [FieldError(.required, "target.name", "")])
        }
        if let n = b.metadata.name, !n.isEmpty, n != name { throw Status.badRequest("the name of the binding (\(n)) does not match the pod (\(name))") }
        let now = nowString
        _ = try await mutate(Pod.self, namespace: namespace, name: name) { pod in
            if pod.metadata.deletionTimestamp != nil { throw Status.conflict(Resources.pods, name, "pod \(name) is being deleted, cannot be assigned to a host") }
            if let cur = pod.spec?.nodeName, !cur.isEmpty { throw Status.conflict(Resources.pods, name, "pod \(name) is already assigned to node \"\(cur)\"") }
            pod.spec?.nodeName = node
            var st = pod.status ?? PodStatus(phase: "Pending")
            st.setCondition(PodCondition(type: "PodScheduled", status: "True"), now: now)
            pod.status = st
        }
    }
}

extension Status {
    /// 409 for server-side apply, in Kubernetes' words and with one FieldManagerConflict cause per field.
    static func applyConflict(_ info: ResourceInfo, _ name: String, _ c: ApplyConflict) -> Status {
        let causes = c.causes.map { StatusCause(reason: "FieldManagerConflict", message: $0.message, field: $0.field) }
        return Status(status: "Failure", message: c.message, reason: "Conflict", code: 409,
                      details: StatusDetails(name: name, group: info.group.isEmpty ? nil : info.group, kind: info.plural, causes: causes))
    }

    static func failure422(_ info: ResourceInfo, _ name: String, _ msg: String) -> Status {
        Status(status: "Failure", message: "\(info.kind) \"\(name)\" is invalid: \(msg)", reason: "Invalid", code: 422)
    }
}

