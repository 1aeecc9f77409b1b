// ctl apply and ctl delete -f: create or update every object of a set of manifests.
import ArgumentParser
import Foundation
import API
import Client

let lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"

/// A merge patch that turns `old` into `new` (keys dropped from `new` become null).
func mergeDiff(_ old: JSONValue?, _ new: JSONValue) -> JSONValue? {
    guard case .object(let n) = new, case .object(let o)? = old else { return old == new ? nil : new }
    var patch: [String: JSONValue] = [:]
    for (k, v) in n {
        if let d = mergeDiff(o[k], v) { patch[k] = d }
    }
    for k in o.keys where n[k] == nil { patch[k] = .null }
    return patch.isEmpty ? nil : .object(patch)
}

/// Points a server error at the manifest: file, line and field.
func located(_ doc: ManifestDocument, _ error: Error) -> String {
    if let s = error as? Status {
        var field: String? = s.details?.causes?.first?.field
        let msg = s.message ?? ""
        if field == nil, let r = msg.range(of: "unknown field \"") {
            field = String(msg[r.upperBound...].prefix { $0 != "\"" })
        }
        if field == nil, let colon = msg.range(of: ": "), msg.hasPrefix(doc.object["kind"]?.stringValue ?? "\u{0}") == true {
            let tail = msg[colon.upperBound...]
            if let c2 = tail.range(of: ": ") { field = String(tail[..<c2.lowerBound]) }
        }
        if let f = field, !f.isEmpty {
            return "\(doc.location(of: f)) (document \(doc.index)), field \(f): \(describeError(s))"
        }
        return "\(doc.location) : \(describeError(s))"
    }
    return "\(doc.location): \(error)"
}

func validateShape(_ doc: ManifestDocument) throws -> (ResourceInfo, String) {
    let o = doc.object
    guard let apiVersion = o["apiVersion"]?.stringValue, !apiVersion.isEmpty else {
        throw CtlError("\(doc.location): apiVersion not set")
    }
    guard let kind = o["kind"]?.stringValue, !kind.isEmpty else { throw CtlError("\(doc.location): kind not set") }
    guard let info = Resources.byKind(apiVersion: apiVersion, kind: kind) else {
        throw CtlError("\(doc.location(of: "kind")) (document \(doc.index)): no kind \"\(kind)\" is served in version \"\(apiVersion)\"")
    }
    guard let name = o["metadata"]?["name"]?.stringValue, !name.isEmpty else {
        throw CtlError("\(doc.location(of: "metadata")) (document \(doc.index)), field metadata.name: Required value (apply needs a name)")
    }
    return (info, name)
}

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or update objects from manifest files or directories.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("filename")], help: "File, directory or - (stdin) holding YAML or JSON manifests (repeatable).")
    var filenames: [String] = []
    @Flag(name: [.short, .customLong("recursive")], help: "Descend into subdirectories.") var recursive = false
    @Flag(name: .customLong("server-side"), help: "Let the apiserver merge the manifest and track field ownership (server-side apply).") var serverSide = false
    @Flag(name: .customLong("force-conflicts"), help: "With --server-side: take over fields other managers own.") var forceConflicts = false
    @Option(name: .customLong("field-manager"), help: "Name of the manager that owns the applied fields.") var fieldManager: String?
    @Option(name: .customLong("dry-run"), help: "none, or server: show what would be applied without writing.") var dryRun: String = "none"

    func run() async throws {
        guard !filenames.isEmpty else { fail("must specify one of -f and -k") }
        guard ["none", "server"].contains(dryRun) else { fail("--dry-run must be none or server, got \"\(dryRun)\"") }
        var docs: [ManifestDocument] = []
        do { for f in filenames { docs += try Manifests.load(path: f, recursive: recursive) } } catch { fail("\(error)") }
        // Every document is checked, here and then by the apiserver (dry run), before any is written:
        // a bad one anywhere refuses the whole input.
        do { for d in docs { _ = try validateShape(d) } } catch { fail("\(error); nothing was applied") }
        let client = try global.client()
        if docs.count > 1 || dryRun == "server" {
            var bad = 0
            for doc in docs {
                do { _ = try await apply(doc, client, dryRun: true) } catch {
                    bad += 1
                    FileHandle.standardError.write(Data("error: \(error is CtlError ? "\(error)" : located(doc, error))\n".utf8))
                }
            }
            if bad > 0 {
                await client.shutdown()
                fail("\(bad) of \(docs.count) documents were refused; nothing was applied")
            }
        }
        var failures = 0
        for doc in docs {
            do {
                print(try await apply(doc, client, dryRun: dryRun == "server") + (dryRun == "server" ? " (server dry run)" : ""))
            } catch {
                failures += 1
                FileHandle.standardError.write(Data("error: \(error is CtlError ? "\(error)" : located(doc, error))\n".utf8))
            }
        }
        await client.shutdown()
        if failures > 0 { throw ExitCode(1) }
    }

    /// Server-side apply: the apiserver merges and owns the result.
    func applyServerSide(_ doc: ManifestDocument, _ client: KubeClient, info: ResourceInfo, name: String, dryRun: Bool) async throws -> (String, JSONValue) {
        var manifest = doc.object
        let ns = info.namespaced ? (manifest["metadata"]?["namespace"]?.stringValue ?? global.namespace ?? client.namespace) : nil
        if info.namespaced { manifest["metadata"]?["namespace"] = .string(ns!) }
        var q = ["fieldManager": fieldManager ?? "ctl", "fieldValidation": "Strict"]
        if forceConflicts { q["force"] = "true" }
        if dryRun { q["dryRun"] = "All" }
        let before = try await client.request(.GET, info.path(namespace: ns, name: name))
        let r = try await client.call(.PATCH, info.path(namespace: ns, name: name), query: q, body: try manifest.encoded(),
                                      contentType: "application/apply-patch+yaml")
        printWarnings(r.warnings, doc)
        let label = "\(kindName(info))/\(name)"
        let result = try JSONValue.parse(r.body)
        if before.status == 404 { return ("\(label) serverside-applied (created)", result) }
        var a = result, l = try JSONValue.parse(before.body)
        for k in ["resourceVersion", "managedFields"] { a["metadata"]?[k] = nil; l["metadata"]?[k] = nil }
        return (a == l ? "\(label) serverside-applied (unchanged)" : "\(label) serverside-applied", result)
    }

    func apply(_ doc: ManifestDocument, _ client: KubeClient, dryRun: Bool) async throws -> String { try await applied(doc, client, dryRun: dryRun).0 }

    /// Applies one document; returns what to print and the object as the apiserver answered.
    func applied(_ doc: ManifestDocument, _ client: KubeClient, dryRun: Bool) async throws -> (String, JSONValue) {
        let (info, name) = try validateShape(doc)
        if serverSide { return try await applyServerSide(doc, client, info: info, name: name, dryRun: dryRun) }
        var writeQuery = ["fieldManager": fieldManager ?? "ctl", "fieldValidation": "Strict"]
        if dryRun { writeQuery["dryRun"] = "All" }
        var manifest = doc.object
        // An object saved with `get -o json` carries its own last-applied annotation: never nest it.
        manifest["metadata"]?["annotations"]?[lastAppliedKey] = nil
        if manifest["metadata"]?["annotations"]?.objectValue?.isEmpty == true { manifest["metadata"]?["annotations"] = nil }
        let desired = manifest
        let ns = info.namespaced ? (manifest["metadata"]?["namespace"]?.stringValue ?? global.namespace ?? client.namespace) : nil
        if let gns = global.namespace, let mns = manifest["metadata"]?["namespace"]?.stringValue, info.namespaced, gns != mns {
            throw CtlError("\(doc.location(of: "metadata.namespace")) (document \(doc.index)): the namespace from the provided object \"\(mns)\" does not match the namespace \"\(gns)\". You must pass '--namespace=\(mns)' to perform this operation.")
        }
        let lastApplied = String(decoding: try manifest.encoded(), as: UTF8.self)
        var annotations = manifest["metadata"]?["annotations"]?.objectValue ?? [:]
        annotations[lastAppliedKey] = .string(lastApplied)
        manifest["metadata"]?["annotations"] = .object(annotations)
        let label = "\(kindName(info))/\(name)"
        let itemPath = info.path(namespace: ns, name: name)
        let got = try await client.request(.GET, itemPath)
        if got.status == 404 {
            if info.namespaced { manifest["metadata"]?["namespace"] = .string(ns!) }
            let r = try await client.call(.POST, info.path(namespace: ns), query: writeQuery, body: try manifest.encoded())
            printWarnings(r.warnings, doc)
            return ("\(label) created", try JSONValue.parse(r.body))
        }
        guard got.status < 300 else {
            throw (try? KubeJSON.decode(Status.self, from: got.body)) ?? CtlError("GET \(itemPath): HTTP \(got.status)")
        }
        let live = try JSONValue.parse(got.body)
        let previous = live["metadata"]?["annotations"]?[lastAppliedKey]?.stringValue.flatMap { try? JSONValue.parse(Data($0.utf8)) }
        // Three-way, as kubectl: fields in the last applied configuration but not in this one are
        // removed; fields of this one that differ from the live object are set (also when only
        // the live object changed, e.g. after a rollout undo).
        // Kinds with a schema get a strategic merge patch, as kubectl sends: lists with a merge
        // key (containers, ports, volumes) are merged by key, so what the server added to an
        // element (a pod's ServiceAccount token mount) stays.
        let message = Schema.kind(apiVersion: info.apiVersion, kind: info.kind)?.name
        let sameLastApplied = live["metadata"]?["annotations"]?[lastAppliedKey]?.stringValue == lastApplied
        var patch: JSONValue
        if let message {
            let smp = strategicThreeWayPatch(previous: previous, desired: desired, live: live, message: message)
            if smp == nil && sameLastApplied { return ("\(label) unchanged", live) }
            patch = smp ?? .object([:])
        } else {
            let removals = Self.onlyNulls(mergeDiff(previous ?? .object([:]), desired) ?? .object([:])) ?? .object([:])
            let sets = Self.withoutNulls(mergeDiff(live, desired) ?? .object([:])) ?? .object([:])
            patch = jsonMergePatch(removals, sets)
            if sameLastApplied && jsonMergePatch(live, patch) == live { return ("\(label) unchanged", live) }
        }
        var meta = patch["metadata"]?.objectValue ?? [:]
        var ann = meta["annotations"]?.objectValue ?? [:]
        ann[lastAppliedKey] = .string(lastApplied)
        meta["annotations"] = .object(ann)
        patch["metadata"] = .object(meta)
        let r = try await client.call(.PATCH, itemPath, query: writeQuery, body: try patch.encoded(),
                                      contentType: message == nil ? "application/merge-patch+json" : "application/strategic-merge-patch+json")
        printWarnings(r.warnings, doc)
        let after = try JSONValue.parse(r.body)
        var a = after, l = live
        a["metadata"]?["resourceVersion"] = nil; l["metadata"]?["resourceVersion"] = nil
        a["metadata"]?["annotations"]?[lastAppliedKey] = nil; l["metadata"]?["annotations"]?[lastAppliedKey] = nil
        return (a == l ? "\(label) unchanged" : "\(label) configured", after)
    }

    /// The deletions of a merge patch (null leaves), nil if none.
    static func onlyNulls(_ v: JSONValue) -> JSONValue? {
        guard case .object(let o) = v else { return v.isNull ? v : nil }
        var out: [String: JSONValue] = [:]
        for (k, x) in o { if let y = onlyNulls(x) { out[k] = y } }
        return out.isEmpty ? nil : .object(out)
    }

    /// A merge patch without its deletions, nil if nothing is left.
    static func withoutNulls(_ v: JSONValue) -> JSONValue? {
        guard case .object(let o) = v else { return v.isNull ? nil : v }
        var out: [String: JSONValue] = [:]
        for (k, x) in o { if let y = withoutNulls(x) { out[k] = y } }
        return out.isEmpty ? nil : .object(out)
    }

    func printWarnings(_ w: [String], _ doc: ManifestDocument) {
        for m in w { FileHandle.standardError.write(Data("Warning: \(doc.location): \(m)\n".utf8)) }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete objects by manifest, by type and name, or by label selector.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("filename")], help: "File or directory of manifests whose objects to delete.") var filenames: [String] = []
    @Option(name: [.customShort("l"), .customLong("selector")], help: "Label selector.") var selector: String?
    @Flag(help: "Delete all objects of the type in the namespace.") var all = false
    @Option(name: .customLong("grace-period"), help: "Seconds to give pods to stop (0 with --force deletes at once).") var gracePeriod: Int?
    @Flag(help: "Delete immediately without waiting for graceful termination.") var force = false
    @Option(help: "Wait for the objects to be gone.") var wait: Bool = true
    @Option(help: "Background, Foreground or Orphan.") var cascade: String = "background"
    @Flag(name: .customLong("ignore-not-found"), help: "Treat absent objects as deleted.") var ignoreNotFound = false
    @Argument(help: "TYPE [NAME...] or TYPE/NAME...") var args: [String] = []

    func run() async throws {
        let client = try global.client()
        var targets: [(ResourceInfo, String?, String)] = []   // info, namespace, name
        do {
            if !filenames.isEmpty {
                for f in filenames {
                    for doc in try Manifests.load(path: f) {
                        let (info, name) = try validateShape(doc)
                        let ns = info.namespaced ? (doc.object["metadata"]?["namespace"]?.stringValue ?? global.namespace ?? client.namespace) : nil
                        targets.append((info, ns, name))
                    }
                }
            } else {
                for (info, name) in try parseTargets(args) {
                    let ns = info.namespaced ? (global.namespace ?? client.namespace) : nil
                    if let name { targets.append((info, ns, name)); continue }
                    guard selector != nil || all else { throw CtlError("resource(s) were provided, but no name was specified: give names, -l SELECTOR or --all") }
                    let r = try await client.call(.GET, info.path(namespace: ns), query: selector.map { ["labelSelector": $0] } ?? [:])
                    for item in try JSONValue.parse(r.body)["items"]?.arrayValue ?? [] {
                        if let n = item["metadata"]?["name"]?.stringValue { targets.append((info, ns, n)) }
                    }
                }
            }
        } catch { fail("\(error)") }
        var opts = DeleteOptions(propagationPolicy: cascade.capitalized == "Orphan" ? "Orphan" : cascade.capitalized == "Foreground" ? "Foreground" : "Background")
        if force { opts.gracePeriodSeconds = 0 } else if let g = gracePeriod { opts.gracePeriodSeconds = Int64(g) }
        var failed = false
        var pending: [(ResourceInfo, String?, String, String?)] = []
        for (info, ns, name) in targets {
            do {
                let r = try await client.call(.DELETE, info.path(namespace: ns, name: name), body: try KubeJSON.encode(opts))
                print("\(kindName(info)) \"\(name)\" deleted")
                // The object's UID: a controller may make a new one of the same name at once
                // (a StatefulSet's pod), which does not count as the old one still being there.
                let uid = (try? JSONValue.parse(r.body))?["metadata"]?["uid"]?.stringValue
                pending.append((info, ns, name, uid))
            } catch let s as Status where s.code == 404 && ignoreNotFound {
            } catch {
                failed = true
                FileHandle.standardError.write(Data("\(describeError(error))\n".utf8))
            }
        }
        if wait {
            let deadline = Date().addingTimeInterval(120)
            for (info, ns, name, uid) in pending {
                while Date() < deadline {
                    let r = try await client.request(.GET, info.path(namespace: ns, name: name))
                    if r.status == 404 { break }
                    if let uid, r.status == 200, let now = (try? JSONValue.parse(r.body))?["metadata"]?["uid"]?.stringValue, now != uid { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        await client.shutdown()
        if failed { throw ExitCode(1) }
    }
}

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set the number of replicas of a Deployment or ReplicaSet.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The new number of replicas.") var replicas: Int
    @Argument(help: "deployment/NAME, or TYPE NAME") var args: [String] = []

    func run() async throws {
        let client = try global.client()
        do {
            let targets = try parseTargets(args)
            for (info, name) in targets {
                guard let name else { throw CtlError("scale needs a name: ctl scale deployment/NAME --replicas=N") }
                guard info.subresources.contains("scale") else { throw CtlError("\(info.plural) cannot be scaled") }
                let ns = info.namespaced ? (global.namespace ?? client.namespace) : nil
                let patch: JSONValue = .object(["spec": .object(["replicas": .int(Int64(replicas))])])
                try await client.call(.PATCH, info.path(namespace: ns, name: name, subresource: "scale"), body: try patch.encoded(),
                                      contentType: "application/merge-patch+json")
                print("\(kindName(info))/\(name) scaled")
            }
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}
