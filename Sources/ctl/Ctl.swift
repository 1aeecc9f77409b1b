// ctl: a kubectl-like command-line client. Argument parsing and printing only; the work is
// done by the Client library against the apiserver.
import ArgumentParser
import Foundation
import API
import Client
import PKI

@main
struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Controls the cluster: apply manifests, inspect and change objects.",
        discussion: "Reads the kubeconfig from --kubeconfig, $KUBECONFIG or ~/.kube/config, like kubectl.",
        version: BuildInfo.versionLine,
        subcommands: [Apply.self, Create.self, Diff.self, Edit.self, Exec.self, PortForward.self, Copy.self, Get.self, Describe.self, Delete.self, Scale.self, Rollout.self, Logs.self, Top.self, ClusterCmd.self, Version.self])

    /// Global flags may come anywhere, as with kubectl: `ctl --kubeconfig K get pods` is parsed as
    /// `ctl get pods --kubeconfig K`.
    static func main() async {
        let args = hoistGlobalFlags(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(args)
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }
}

/// Moves global flags given before the subcommand to after it (before any `--`).
func hoistGlobalFlags(_ args: [String]) -> [String] {
    let withValue: Set<String> = ["--kubeconfig", "--context", "--namespace", "-n"]
    var moved: [String] = []
    var i = 0
    while i < args.count, args[i].hasPrefix("-"), args[i] != "--" {
        let a = args[i]
        if withValue.contains(a), i + 1 < args.count {
            moved += [a, args[i + 1]]; i += 2
        } else if let eq = a.firstIndex(of: "="), withValue.contains(String(a[..<eq])) {
            moved.append(a); i += 1
        } else {
            return args   // --help, --version and the like: leave the line as it is
        }
    }
    if moved.isEmpty { return args }
    var rest = Array(args[i...])
    let at = rest.firstIndex(of: "--") ?? rest.count
    rest.insert(contentsOf: moved, at: at)
    return rest
}

struct GlobalOptions: ParsableArguments {
    @Option(help: "Path to the kubeconfig file.") var kubeconfig: String?
    @Option(help: "The kubeconfig context to use.") var context: String?
    @Option(name: [.short, .long], help: "Namespace for this request.") var namespace: String?
    @Option(name: [.short, .long], help: "The apiserver URL(s) to use instead of the kubeconfig's (comma-separated to fail over).") var server: String?

    func client() throws -> KubeClient {
        if let s = server {
            for u in s.split(separator: ",") {
                guard let c = URLComponents(string: String(u).trimmingCharacters(in: .whitespaces)), c.scheme == "https" || c.scheme == "http", c.host != nil else {
                    throw CtlError("--server: \"\(u)\" must be https://HOST:PORT")
                }
            }
        }
        do { return try KubeClient(kubeconfig: kubeconfig, context: context, namespace: namespace, server: server) }
        catch { throw CtlError("\(error)") }
    }
}

struct CtlError: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    Foundation.exit(1)
}

func describeError(_ e: Error) -> String {
    if let s = e as? Status { return "Error from server (\(s.reason ?? "Unknown")): \(s.message ?? "")" }
    return "\(e)"
}

/// "deployment.apps" / "pod": how kubectl names a kind in output.
func kindName(_ r: ResourceInfo) -> String { r.group.isEmpty ? r.kind.lowercased() : "\(r.kind.lowercased()).\(r.group)" }

func resolveResource(_ s: String) throws -> ResourceInfo {
    guard let r = Resources.lookup(s) else {
        throw CtlError("the server doesn't have a resource type \"\(s)\" (known: \(Resources.all.map(\.plural).joined(separator: ", ")))")
    }
    return r
}

/// Parses "TYPE NAME..." or "TYPE/NAME ..." arguments.
func parseTargets(_ args: [String]) throws -> [(ResourceInfo, String?)] {
    guard let first = args.first else { throw CtlError("you must specify the type of resource, e.g. ctl get pods") }
    if first.contains("/") {
        return try args.map { a in
            let parts = a.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw CtlError("arguments in resource/name form must have a single resource and name: \(a)") }
            return (try resolveResource(parts[0]), parts[1])
        }
    }
    let types = try first.split(separator: ",").flatMap { part -> [ResourceInfo] in
        if part == "all" { return Resources.all.filter { $0.categories.contains("all") } }
        return [try resolveResource(String(part))]
    }
    let names = Array(args.dropFirst())
    if names.isEmpty { return types.map { ($0, nil) } }
    guard types.count == 1 else { throw CtlError("names cannot be given with several resource types") }
    return names.map { (types[0], $0) }
}

// MARK: printing

/// Prints aligned columns; returns the widths used so that later rows (watch) line up.
@discardableResult
func printTable(_ headers: [String], _ rows: [[String]], minWidths: [Int] = []) -> [Int] {
    let n = max(headers.count, rows.map(\.count).max() ?? 0, minWidths.count)
    var widths = [Int](repeating: 0, count: n)
    for (i, w) in minWidths.enumerated() { widths[i] = w }
    for (i, h) in headers.enumerated() { widths[i] = h.count }
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            if i == cells.count - 1 { s += c } else { s += c.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }
        }
        return s
    }
    if !headers.isEmpty { print(line(headers)) }
    for r in rows { print(line(r)) }
    return widths
}

func cellText(_ v: JSONValue) -> String {
    switch v {
    case .string(let s): return s
    case .int(let i): return "\(i)"
    case .double(let d): return "\(d)"
    case .bool(let b): return "\(b)"
    case .null: return "<none>"
    default: return (try? String(decoding: v.encoded(), as: UTF8.self)) ?? ""
    }
}

/// Renders a server-side Table as kubectl does.
struct TablePrinter {
    var wide: Bool
    var withNamespace: Bool
    var showKind: String?
    var columns: [TableColumn] = []

    mutating func rows(_ table: Table) -> (headers: [String], rows: [[String]]) {
        if let c = table.columnDefinitions, !c.isEmpty { columns = c }
        let visible = columns.enumerated().filter { wide || $0.element.priority == 0 }.map(\.offset)
        var headers = visible.map { columns[$0].name.uppercased() }
        if withNamespace { headers.insert("NAMESPACE", at: 0) }
        var out: [[String]] = []
        for r in table.rows {
            var cells = visible.map { $0 < r.cells.count ? cellText(r.cells[$0]) : "" }
            if let k = showKind, !cells.isEmpty { cells[0] = "\(k)/\(cells[0])" }
            if withNamespace { cells.insert(r.object?["metadata"]?["namespace"]?.stringValue ?? "", at: 0) }
            out.append(cells)
        }
        return (headers, out)
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the client and server versions.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Client version only.") var client = false
    func run() async throws {
        print("Client Version: \(BuildInfo.kubernetesGitVersion) (\(BuildInfo.release))")
        if client { return }
        let c = try global.client()
        do {
            let r = try await c.call(.GET, "/version")
            let v = try JSONValue.parse(r.body)
            print("Server Version: \(v["gitVersion"]?.stringValue ?? "unknown")")
        } catch { fail(describeError(error)) }
    }
}
