// Reading manifests: YAML (multi-document) or JSON files, or a directory of them, into JSON
// trees that remember where each field came from, so errors can name file, line and field.
import Foundation
import Yams
import API

public struct ManifestDocument: Sendable {
    public var file: String
    /// 1-based index of the document in its file.
    public var index: Int
    /// Line where the document starts.
    public var line: Int
    public var object: JSONValue
    /// Field path ("spec.template.spec.containers[0].image") → line.
    public var lines: [String: Int]

    public init(file: String, index: Int, line: Int, object: JSONValue, lines: [String: Int]) {
        self.file = file; self.index = index; self.line = line; self.object = object; self.lines = lines
    }

    /// The line of a field path, or of its closest known parent.
    public func line(of path: String) -> Int {
        var p = path
        while !p.isEmpty {
            if let l = lines[p] { return l }
            if let i = p.lastIndex(where: { $0 == "." || $0 == "[" }) { p = String(p[..<i]) } else { break }
        }
        return line
    }
    public var location: String { "\(file):\(line) (document \(index))" }
    public func location(of path: String) -> String { "\(file):\(line(of: path))" }
}

public struct ManifestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

public enum Manifests {
    /// Loads every .yaml/.yml/.json file of a path (a file, a directory, or "-" for stdin).
    public static func load(path: String, recursive: Bool = false) throws -> [ManifestDocument] {
        if path == "-" {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            return try parse(String(decoding: data, as: UTF8.self), file: "<stdin>")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ManifestError("the path \"\(path)\" does not exist")
        }
        var files: [String] = []
        if isDir.boolValue {
            let fm = FileManager.default
            let entries = (recursive ? (fm.enumerator(atPath: path)?.allObjects as? [String] ?? []) : (try fm.contentsOfDirectory(atPath: path))).sorted()
            for e in entries where [".yaml", ".yml", ".json"].contains(where: { e.hasSuffix($0) }) { files.append("\(path)/\(e)") }
            if files.isEmpty { throw ManifestError("no .yaml, .yml or .json files in \(path)") }
        } else {
            files = [path]
        }
        var docs: [ManifestDocument] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else { throw ManifestError("\(f): cannot read the file") }
            guard let text = String(data: data, encoding: .utf8) else { throw ManifestError("\(f): the file is not UTF-8 text") }
            docs += try parse(text, file: f)
        }
        return docs
    }

    public static func parse(_ text: String, file: String) throws -> [ManifestDocument] {
        var docs: [ManifestDocument] = []
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") {
            // JSON is YAML too, but parse it as JSON for exact numbers and clearer errors.
            do {
                let v = try JSONValue.parse(Data(trimmed.utf8))
                let objects = v["kind"]?.stringValue == "List" ? (v["items"]?.arrayValue ?? []) : [v]
                for (i, o) in objects.enumerated() { docs.append(ManifestDocument(file: file, index: i + 1, line: 1, object: o, lines: [:])) }
                return docs
            } catch {
                throw ManifestError("\(file): invalid JSON: \(error)")
            }
        }
        var index = 0
        do {
            // Yams' compose_all sequence stops silently at a syntax error; the parser itself throws,
            // so a broken document fails the whole file before anything is applied.
            let parser = try Yams.Parser(yaml: text)
            while let node = try parser.nextRoot() {
                index += 1
                var lines: [String: Int] = [:]
                let value = try convert(node, path: "", lines: &lines, file: file)
                if value.isNull { continue }
                guard case .object = value else {
                    throw ManifestError("\(file):\(node.mark?.line ?? 1) (document \(index)): expected a mapping with apiVersion, kind and metadata, found \(value.typeName)")
                }
                if value["kind"]?.stringValue == "List" {
                    for (i, item) in (value["items"]?.arrayValue ?? []).enumerated() {
                        let prefix = "items[\(i)]"
                        var sub: [String: Int] = [:]
                        for (k, l) in lines where k.hasPrefix(prefix) {
                            let rest = String(k.dropFirst(prefix.count))
                            sub[rest.hasPrefix(".") ? String(rest.dropFirst()) : rest] = l
                        }
                        docs.append(ManifestDocument(file: file, index: index, line: lines[prefix] ?? node.mark?.line ?? 1, object: item, lines: sub))
                    }
                } else {
                    docs.append(ManifestDocument(file: file, index: index, line: node.mark?.line ?? 1, object: value, lines: lines))
                }
            }
        } catch let e as ManifestError {
            throw e
        } catch let e as YamlError {
            let (line, text) = describe(e)
            throw ManifestError("\(file)\(line.map { ":\($0)" } ?? ""): invalid YAML in document \(index + 1): \(text); nothing was applied")
        } catch {
            throw ManifestError("\(file): invalid YAML in document \(index + 1): \(error); nothing was applied")
        }
        return docs
    }

    static func describe(_ e: YamlError) -> (Int?, String) {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            return (mark.line, "column \(mark.column): \(problem)\(context.map { " \($0.text)" } ?? "")")
        default: return (nil, "\(e)")
        }
    }

    static func convert(_ node: Yams.Node, path: String, lines: inout [String: Int], file: String) throws -> JSONValue {
        if let m = node.mark, !path.isEmpty { lines[path] = m.line }
        switch node {
        case .scalar(let s):
            if s.style == .singleQuoted || s.style == .doubleQuoted || s.style == .literal || s.style == .folded { return .string(s.string) }
            switch Resolver.default.resolveTag(of: node) {
            case .null: return .null
            case .bool: return .bool(node.bool ?? false)
            case .int: if let i = node.int { return .int(Int64(i)) }; return .string(s.string)
            case .float: if let d = node.float, d.isFinite { return .double(d) }; return .string(s.string)
            default: return .string(s.string)
            }
        case .mapping(let m):
            var o: [String: JSONValue] = [:]
            for (k, v) in m {
                guard case .scalar(let ks) = k else {
                    throw ManifestError("\(file):\(k.mark?.line ?? 0): mapping keys must be strings")
                }
                let key = ks.string
                if o[key] != nil { throw ManifestError("\(file):\(k.mark?.line ?? 0): duplicate key \"\(key)\"\(path.isEmpty ? "" : " in \(path)")") }
                o[key] = try convert(v, path: path.isEmpty ? key : "\(path).\(key)", lines: &lines, file: file)
            }
            return .object(o)
        case .sequence(let s):
            var a: [JSONValue] = []
            for (i, v) in s.enumerated() { a.append(try convert(v, path: "\(path)[\(i)]", lines: &lines, file: file)) }
            return .array(a)
        case .alias:
            throw ManifestError("\(file):\(node.mark?.line ?? 0): YAML aliases are not supported in manifests")
        }
    }
}

extension JSONValue {
    /// Foundation-free tree for Yams' emitter.
    public var plain: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return Int(i)
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(\.plain)
        case .object(let o): return o.mapValues(\.plain)
        }
    }

    public func yaml() throws -> String {
        try Yams.serialize(node: yamlNode(), sortKeys: true)
    }

    func yamlNode() -> Yams.Node {
        switch self {
        case .null: return Yams.Node("null", Tag(.null))
        case .bool(let b): return Yams.Node(b ? "true" : "false", Tag(.bool))
        case .int(let i): return Yams.Node("\(i)", Tag(.int))
        case .double(let d): return Yams.Node("\(d)", Tag(.float))
        case .string(let s):
            // Quote strings a YAML reader would otherwise take for another type.
            let tag = Resolver.default.resolveTag(of: Yams.Node(s))
            if tag != .str || s.isEmpty { return Yams.Node(s, Tag(.str), .doubleQuoted) }
            return Yams.Node(s, Tag(.str), s.contains("\n") ? .literal : .plain)
        case .array(let a): return Yams.Node(a.map { $0.yamlNode() })
        case .object(let o): return Yams.Node(o.sorted { $0.key < $1.key }.map { (Yams.Node($0.key), $0.value.yamlNode()) })
        }
    }
}
