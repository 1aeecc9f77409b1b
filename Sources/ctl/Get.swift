// ctl get and ctl describe.
import ArgumentParser
import Foundation
import API
import Client

let tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Display one or many objects.",
        discussion: "Types: pods (po), nodes (no), deployments (deploy), replicasets (rs), hpa, services (svc), namespaces (ns), leases, events (ev), endpoints, configmaps, secrets, csr.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "List across all namespaces.") var allNamespaces = false
    @Option(name: [.customShort("l"), .customLong("selector")], help: "Label selector, e.g. app=web,tier!=db.") var selector: String?
    @Option(name: .customLong("field-selector"), help: "Field selector, e.g. spec.nodeName=n1.") var fieldSelector: String?
    @Option(name: [.short, .customLong("output")], help: "wide, yaml, json or name.") var output: String?
    @Flag(name: [.short, .customLong("watch")], help: "After listing, watch for changes.") var watch = false
    @Option(name: .customLong("raw"), help: "GET this path (with its query) and print the body, as kubectl get --raw.") var raw: String?
    @Argument(help: "TYPE [NAME...] or TYPE/NAME...") var args: [String] = []

    func run() async throws {
        if let raw {
            guard args.isEmpty, selector == nil, fieldSelector == nil, output == nil, !watch else { fail("arguments may not be passed when --raw is specified") }
            guard raw.hasPrefix("/") else { fail("--raw must be a path beginning with /: \"\(raw)\"") }
            let client = try global.client()
            do {
                let parts = raw.split(separator: "?", maxSplits: 1)
                var q: [String: String] = [:]
                for pair in (parts.count > 1 ? parts[1] : "").split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
                    q[kv[0]] = kv.count > 1 ? kv[1] : ""
                }
                let r = try await client.call(.GET, String(parts[0]).removingPercentEncoding ?? String(parts[0]), query: q)
                FileHandle.standardOutput.write(r.body)
                if r.body.last != UInt8(ascii: "\n") { print("") }
            } catch { fail(describeError(error)) }
            await client.shutdown()
            return
        }
        if let o = output, !["wide", "yaml", "json", "name"].contains(o) { fail("unable to match a printer suitable for the output format \"\(o)\", allowed formats are: json,name,wide,yaml") }
        let client = try global.client()
        do {
            let targets = try parseTargets(args)
            var rawItems: [JSONValue] = []
            var printedAny = false
            let multipleTypes = Set(targets.map(\.0.plural)).count > 1
            for (info, name) in targets {
                let ns = info.namespaced && !allNamespaces ? (global.namespace ?? client.namespace) : nil
                var q: [String: String] = [:]
                if let s = selector { q["labelSelector"] = s }
                if let f = fieldSelector { q["fieldSelector"] = f }
                let path = info.path(namespace: ns, name: name)
                switch output {
                case "yaml", "json", "name":
                    let r = try await client.call(.GET, path, query: name == nil ? q : [:])
                    let v = try JSONValue.parse(r.body)
                    if name == nil { rawItems += v["items"]?.arrayValue ?? [] } else { rawItems.append(v) }
                default:
                    let r = try await client.call(.GET, path, query: name == nil ? q : [:], accept: tableAccept)
                    let table = try KubeJSON.decode(Table.self, from: r.body)
                    var printer = TablePrinter(wide: output == "wide", withNamespace: allNamespaces && info.namespaced,
                                               showKind: multipleTypes || targets.count > 1 && name == nil ? kindName(info) : nil)
                    let (h, rows) = printer.rows(table)
                    if rows.isEmpty && !watch { continue }
                    if printedAny && !rows.isEmpty { print("") }
                    let widths = printTable(h, rows)
                    printedAny = printedAny || !rows.isEmpty
                    if watch && name == nil {
                        try await watchTable(client, info: info, ns: ns, q: q, from: table.metadata.resourceVersion, printer: printer, widths: widths)
                    }
                }
            }
            switch output {
            case "yaml", "json":
                let single = targets.count == 1 && targets[0].1 != nil && rawItems.count == 1
                let doc: JSONValue = single ? rawItems[0] : .object(["apiVersion": .string("v1"), "kind": .string("List"), "items": .array(rawItems),
                                                                      "metadata": .object(["resourceVersion": .string("")])])
                if output == "json" { print(String(decoding: try doc.encoded(pretty: true), as: UTF8.self)) }
                else { print(try doc.yaml(), terminator: "") }
            case "name":
                for i in rawItems {
                    let info = Resources.byKind(apiVersion: i["apiVersion"]?.stringValue ?? "", kind: i["kind"]?.stringValue ?? "")
                    print("\(info.map(kindName) ?? "object")/\(i["metadata"]?["name"]?.stringValue ?? "")")
                }
            default:
                if !printedAny && !watch {
                    let ns = global.namespace ?? client.namespace
                    FileHandle.standardError.write(Data((allNamespaces || !(targets.first?.0.namespaced ?? true) ? "No resources found\n" : "No resources found in \(ns) namespace.\n").utf8))
                }
            }
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }

    func watchTable(_ client: KubeClient, info: ResourceInfo, ns: String?, q: [String: String], from: String?, printer: TablePrinter, widths: [Int]) async throws {
        var query = q
        query["resourceVersion"] = from ?? "0"
        var p = printer
        var widths = widths
        for try await ev in client.watchRaw(path: info.path(namespace: ns), query: query, accept: tableAccept) {
            if ev["type"]?.stringValue == "ERROR" { throw try ev["object"]!.decode(Status.self) }
            guard let obj = ev["object"], obj["kind"]?.stringValue == "Table" else { continue }
            let t = try obj.decode(Table.self)
            let (_, rows) = p.rows(t)
            widths = printTable([], rows, minWidths: widths)
            fflush(nil)
        }
    }
}

struct Describe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show details of an object, with its events.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "TYPE NAME or TYPE/NAME") var args: [String] = []

    func run() async throws {
        let client = try global.client()
        do {
            for (info, name) in try parseTargets(args) {
                let ns = info.namespaced ? (global.namespace ?? client.namespace) : nil
                var names: [String] = []
                if let name { names = [name] } else {
                    let r = try await client.call(.GET, info.path(namespace: ns))
                    names = (try JSONValue.parse(r.body)["items"]?.arrayValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }
                }
                for (i, n) in names.enumerated() {
                    if i > 0 { print("\n") }
                    let r = try await client.call(.GET, info.path(namespace: ns, name: n))
                    let obj = try JSONValue.parse(r.body)
                    print(render(obj))
                    try await printEvents(client, obj: obj, ns: ns)
                }
            }
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }

    func render(_ obj: JSONValue) -> String {
        var out = ""
        let meta = obj["metadata"] ?? .object([:])
        func kv(_ k: String, _ v: String, _ indent: Int = 0) { out += String(repeating: " ", count: indent) + (k + ":").padding(toLength: max(18 - indent, k.count + 2), withPad: " ", startingAt: 0) + v + "\n" }
        kv("Name", meta["name"]?.stringValue ?? "")
        if let ns = meta["namespace"]?.stringValue { kv("Namespace", ns) }
        kv("Kind", obj["kind"]?.stringValue ?? "")
        func mapText(_ m: JSONValue?) -> [String] { (m?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(cellText($0.value))" } }
        let labels = mapText(meta["labels"])
        kv("Labels", labels.first ?? "<none>")
        for l in labels.dropFirst() { out += String(repeating: " ", count: 18) + l + "\n" }
        let anns = mapText(meta["annotations"]).filter { !$0.hasPrefix(lastAppliedKey) }
        kv("Annotations", anns.first ?? "<none>")
        for a in anns.dropFirst() { out += String(repeating: " ", count: 18) + a + "\n" }
        kv("CreationTimestamp", meta["creationTimestamp"]?.stringValue ?? "")
        if let d = meta["deletionTimestamp"]?.stringValue { kv("DeletionTimestamp", d) }
        if let owners = meta["ownerReferences"]?.arrayValue, let o = owners.first {
            kv("Controlled By", "\(o["kind"]?.stringValue ?? "")/\(o["name"]?.stringValue ?? "")")
        }
        for section in ["spec", "status", "data", "subsets", "involvedObject"] {
            guard let v = obj[section] else { continue }
            out += section.prefix(1).uppercased() + section.dropFirst() + ":\n"
            out += block(v, indent: 2)
        }
        return out
    }

    func block(_ v: JSONValue, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch v {
        case .object(let o):
            var s = ""
            for (k, val) in o.sorted(by: { $0.key < $1.key }) {
                switch val {
                case .object(let inner) where !inner.isEmpty: s += "\(pad)\(k):\n" + block(val, indent: indent + 2)
                case .array(let a) where !a.isEmpty: s += "\(pad)\(k):\n" + block(val, indent: indent + 2)
                default: s += "\(pad)\(k):\t\(cellText(val).isEmpty ? "<none>" : cellText(val))\n"
                }
            }
            return s
        case .array(let a):
            var s = ""
            for item in a {
                if case .object = item {
                    let inner = block(item, indent: indent + 2)
                    s += pad + "- " + inner.dropFirst(indent + 2)
                } else { s += "\(pad)- \(cellText(item))\n" }
            }
            return s
        default: return "\(pad)\(cellText(v))\n"
        }
    }

    func printEvents(_ client: KubeClient, obj: JSONValue, ns: String?) async throws {
        guard obj["kind"]?.stringValue != "Event" else { return }
        var sel = "involvedObject.name=\(obj["metadata"]?["name"]?.stringValue ?? "")"
        if let uid = obj["metadata"]?["uid"]?.stringValue { sel += ",involvedObject.uid=\(uid)" }
        let path = Resources.events.path(namespace: ns ?? "default")
        let r = try await client.call(.GET, path, query: ["fieldSelector": sel])
        let items = (try JSONValue.parse(r.body)["items"]?.arrayValue ?? []).compactMap { try? $0.decode(Event.self) }
        if items.isEmpty { print("Events:            <none>"); return }
        print("Events:")
        let rows = items.sorted { ($0.lastTimestamp ?? "") < ($1.lastTimestamp ?? "") }.map { e -> [String] in
            let age = KubeTime.age(since: e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp)
            return ["  " + (e.type ?? ""), e.reason ?? "", (e.count ?? 1) > 1 ? "\(age) (x\(e.count!))" : age, e.source?.component ?? e.reportingComponent ?? "", e.message ?? ""]
        }
        printTable(["  Type", "Reason", "Age", "From", "Message"], rows)
    }
}
