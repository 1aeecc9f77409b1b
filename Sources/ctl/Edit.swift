// ctl create, ctl diff and ctl edit.
import ArgumentParser
import Foundation
import API
import Client

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create objects from manifests, or a namespace, deployment, configmap or secret from flags.",
        discussion: """
        ctl create -f FILE
        ctl create namespace NAME
        ctl create deployment NAME --image=IMAGE [--replicas=N] [--port=P]
        ctl create configmap NAME --from-literal=KEY=VALUE...
        ctl create secret generic NAME --from-literal=KEY=VALUE...
        ctl create user NAME [--group G]... [--duration 8760h] > NAME.kubeconfig
        ctl create token SERVICEACCOUNT [--audience A] [--duration 1h] [--bound-pod POD]
        """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("filename")], help: "File, directory or - (stdin) of manifests (repeatable).") var filenames: [String] = []
    @Option(help: "Image of the deployment's container.") var image: String?
    @Option(help: "Replicas of the deployment.") var replicas: Int = 1
    @Option(help: "Container port of the deployment.") var port: Int?
    @Option(name: .customLong("from-literal"), help: "KEY=VALUE for a configmap or secret (repeatable).") var literals: [String] = []
    @Option(name: .customLong("dry-run"), help: "none or server.") var dryRun: String = "none"
    @Option(help: "For user: a group (the certificate's O; repeatable).") var group: [String] = []
    @Option(help: "For user and token: how long it is valid (1h, 30m, 8760h).") var duration: String?
    @Option(help: "For token: an audience (repeatable; default the apiserver's).") var audience: [String] = []
    @Option(name: .customLong("bound-pod"), help: "For token: a pod the token dies with.") var boundPod: String?
    @Argument(help: "KIND NAME (namespace, deployment, configmap, secret generic, user, token)") var args: [String] = []

    func run() async throws {
        if args.first == "user" || args.first == "token" {
            guard args.count == 2 else { fail("\(args.first!) needs exactly one NAME") }
            let client = try global.client()
            do {
                if args[0] == "user" { try await Credentials.user(client, name: args[1], groups: group, duration: duration) }
                else { try await Credentials.token(client, serviceAccount: args[1], namespace: global.namespace ?? client.namespace, audiences: audience, duration: duration, boundPod: boundPod) }
            } catch { fail(describeError(error)) }
            await client.shutdown()
            return
        }
        var docs: [ManifestDocument] = []
        do {
            if !filenames.isEmpty {
                for f in filenames { docs += try Manifests.load(path: f) }
                for d in docs { _ = try validateShape(d) }
            } else {
                docs = [ManifestDocument(file: "<flags>", index: 1, line: 1, object: try objectFromFlags(), lines: [:])]
            }
        } catch { fail("\(error); nothing was created") }
        let client = try global.client()
        // All documents pass a server dry run before any is created.
        var pass: [Bool] = dryRun == "server" ? [true] : [true, false]
        if docs.count == 1 && dryRun != "server" { pass = [false] }
        for dry in pass {
            var failures = 0
            for doc in docs {
                do {
                    let (info, name) = try validateShape(doc)
                    let ns = info.namespaced ? (doc.object["metadata"]?["namespace"]?.stringValue ?? global.namespace ?? client.namespace) : nil
                    var obj = doc.object
                    if info.namespaced { obj["metadata"]?["namespace"] = .string(ns!) }
                    var q = ["fieldManager": "ctl-create", "fieldValidation": "Strict"]
                    if dry { q["dryRun"] = "All" }
                    let r = try await client.call(.POST, info.path(namespace: ns), query: q, body: try obj.encoded())
                    for w in r.warnings { FileHandle.standardError.write(Data("Warning: \(w)\n".utf8)) }
                    if !dry || dryRun == "server" { print("\(kindName(info))/\(name) created\(dry ? " (server dry run)" : "")") }
                } catch {
                    failures += 1
                    FileHandle.standardError.write(Data("error: \(error is CtlError ? "\(error)" : located(doc, error))\n".utf8))
                }
            }
            if failures > 0 {
                await client.shutdown()
                if dry && dryRun != "server" { fail("\(failures) of \(docs.count) documents were refused; nothing was created") }
                throw ExitCode(1)
            }
        }
        await client.shutdown()
    }

    func objectFromFlags() throws -> JSONValue {
        guard let kind = args.first else { throw CtlError("give -f FILE, or a kind and a name: ctl create deployment NAME --image=IMAGE") }
        var rest = Array(args.dropFirst())
        if kind == "secret" {
            guard rest.first == "generic" else { throw CtlError("only generic secrets can be created from flags: ctl create secret generic NAME --from-literal=K=V") }
            rest.removeFirst()
        }
        guard rest.count == 1, let name = rest.first else { throw CtlError("\(kind) needs exactly one NAME") }
        let meta: JSONValue = .object(["name": .string(name)])
        func data(base64: Bool) throws -> JSONValue {
            var d: [String: JSONValue] = [:]
            for l in literals {
                guard let eq = l.firstIndex(of: "="), eq != l.startIndex else { throw CtlError("--from-literal must be KEY=VALUE, got \"\(l)\"") }
                let v = String(l[l.index(after: eq)...])
                d[String(l[..<eq])] = .string(base64 ? Data(v.utf8).base64EncodedString() : v)
            }
            return .object(d)
        }
        switch kind {
        case "namespace", "ns":
            return .object(["apiVersion": "v1", "kind": "Namespace", "metadata": meta])
        case "configmap", "cm":
            return .object(["apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": try data(base64: false)])
        case "secret":
            return .object(["apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": try data(base64: true)])
        case "deployment", "deploy":
            guard let image else { throw CtlError("a deployment needs --image") }
            let labels: JSONValue = .object(["app": .string(name)])
            var container: [String: JSONValue] = ["name": .string(name.split(separator: ".").first.map(String.init) ?? name), "image": .string(image)]
            if let port { container["ports"] = .array([.object(["containerPort": .int(Int64(port))])]) }
            return .object([
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": .object(["name": .string(name), "labels": labels]),
                "spec": .object([
                    "replicas": .int(Int64(replicas)),
                    "selector": .object(["matchLabels": labels]),
                    "template": .object(["metadata": .object(["labels": labels]), "spec": .object(["containers": .array([.object(container)])])]),
                ]),
            ])
        default:
            throw CtlError("cannot create a \"\(kind)\" from flags (namespace, deployment, configmap, secret generic); use -f FILE")
        }
    }
}

/// An object as diff and edit show it: YAML without the fields the server keeps to itself.
func presentable(_ v: JSONValue) -> JSONValue {
    var o = v
    o["metadata"]?["managedFields"] = nil
    return o
}

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show how applying manifests would change the live objects.",
        discussion: "Exit status: 0 no differences, 1 differences, greater than 1 an error. Uses $KUBECTL_EXTERNAL_DIFF or diff -u -N.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("filename")], help: "File, directory or - of manifests (repeatable).") var filenames: [String] = []
    @Flag(name: .customLong("server-side"), help: "Compare with a server-side apply.") var serverSide = false
    @Flag(name: .customLong("force-conflicts"), help: "With --server-side: as if taking over other managers' fields.") var forceConflicts = false

    func run() async throws {
        guard !filenames.isEmpty else { FileHandle.standardError.write(Data("error: must specify -f\n".utf8)); throw ExitCode(2) }
        var docs: [ManifestDocument] = []
        do { for f in filenames { docs += try Manifests.load(path: f) }; for d in docs { _ = try validateShape(d) } }
        catch { FileHandle.standardError.write(Data("error: \(error)\n".utf8)); throw ExitCode(2) }
        var applyArgs = ["-f", "-"]
        if serverSide { applyArgs.append("--server-side") }
        if forceConflicts { applyArgs.append("--force-conflicts") }
        if let n = global.namespace { applyArgs += ["--namespace", n] }
        if let k = global.kubeconfig { applyArgs += ["--kubeconfig", k] }
        if let c = global.context { applyArgs += ["--context", c] }
        let applier = try Apply.parse(applyArgs)
        let client = try global.client()
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("ctl-diff-\(ProcessInfo.processInfo.processIdentifier)")
        let liveDir = root.appendingPathComponent("LIVE"), mergedDir = root.appendingPathComponent("MERGED")
        defer { try? fm.removeItem(at: root) }
        try fm.createDirectory(at: liveDir, withIntermediateDirectories: true)
        try fm.createDirectory(at: mergedDir, withIntermediateDirectories: true)
        do {
            for doc in docs {
                let (info, name) = try validateShape(doc)
                let ns = info.namespaced ? (doc.object["metadata"]?["namespace"]?.stringValue ?? global.namespace ?? client.namespace) : nil
                let file = [info.group.isEmpty ? "v1" : "\(info.group).\(info.version)", info.kind, ns, name].compactMap { $0 }.joined(separator: ".")
                let live = try await client.request(.GET, info.path(namespace: ns, name: name))
                if live.status == 200 {
                    try presentable(try JSONValue.parse(live.body)).yaml().write(to: liveDir.appendingPathComponent(file), atomically: true, encoding: .utf8)
                }
                let (_, merged) = try await applier.applied(doc, client, dryRun: true)
                try presentable(merged).yaml().write(to: mergedDir.appendingPathComponent(file), atomically: true, encoding: .utf8)
            }
        } catch {
            await client.shutdown()
            FileHandle.standardError.write(Data("error: \(describeError(error))\n".utf8))
            throw ExitCode(2)
        }
        await client.shutdown()
        let external = ProcessInfo.processInfo.environment["KUBECTL_EXTERNAL_DIFF"].flatMap { $0.isEmpty ? nil : $0 } ?? "diff -u -N"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "\(external) \"$1\" \"$2\"", "diff", liveDir.path, mergedDir.path]
        try p.run()
        p.waitUntilExit()
        throw ExitCode(p.terminationStatus == 0 ? 0 : p.terminationStatus == 1 ? 1 : 2)
    }
}

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit an object in $KUBE_EDITOR or $EDITOR (vi by default) and save it back.",
        discussion: "ctl edit deployment/web. An unchanged file cancels the edit; a refused change keeps your file and names it.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "TYPE NAME or TYPE/NAME") var args: [String] = []

    func run() async throws {
        let client = try global.client()
        do {
            let targets = try parseTargets(args)
            guard targets.count == 1, let name = targets[0].1 else { throw CtlError("edit needs one object: ctl edit TYPE/NAME") }
            let info = targets[0].0
            let ns = info.namespaced ? (global.namespace ?? client.namespace) : nil
            let path = info.path(namespace: ns, name: name)
            let live = presentable(try JSONValue.parse(try await client.call(.GET, path).body))
            let header = "# Edit the object below; lines beginning with '#' are ignored. An unchanged file cancels the edit.\n"
            let original = try live.yaml()
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("ctl-edit-\(info.plural)-\(name)-\(ProcessInfo.processInfo.processIdentifier).yaml")
            try (header + original).write(to: file, atomically: true, encoding: .utf8)
            let env = ProcessInfo.processInfo.environment
            let editor = [env["KUBE_EDITOR"], env["EDITOR"]].compactMap { $0 }.first { !$0.isEmpty } ?? "vi"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "\(editor) \"$1\"", "edit", file.path]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw CtlError("the editor \"\(editor)\" exited with status \(p.terminationStatus); nothing was saved (your file: \(file.path))") }
            let text = try String(contentsOf: file, encoding: .utf8)
            let docs = try Manifests.parse(text, file: file.path)
            guard docs.count == 1 else { throw CtlError("\(file.path): expected one object, found \(docs.count); nothing was saved") }
            if docs[0].object == live {
                try? FileManager.default.removeItem(at: file)
                print("Edit cancelled, no changes made.")
                await client.shutdown()
                return
            }
            do {
                _ = try await client.call(.PUT, path, query: ["fieldManager": "ctl-edit", "fieldValidation": "Strict"], body: try docs[0].object.encoded())
            } catch {
                throw CtlError("\(located(docs[0], error))\nA copy of your changes has been stored to \"\(file.path)\"")
            }
            try? FileManager.default.removeItem(at: file)
            print("\(kindName(info))/\(name) edited")
        } catch {
            await client.shutdown()
            fail(error is CtlError ? "\(error)" : describeError(error))
        }
        await client.shutdown()
    }
}
