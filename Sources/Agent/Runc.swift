// A thin wrapper over the runc binary: global flags in a value type, one function per verb,
// JSON decoding of `runc state` / `runc list`, and OCI bundle generation from `runc spec`.
import Foundation
import API

public struct RuncState: Codable, Sendable, Equatable {
    public var id: String
    public var pid: Int
    public var status: String      // created, running, stopped, paused
    public var bundle: String
    public var created: String?
}

public struct RuncError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

public struct Runc: Sendable {
    public var binary: String
    /// runc's state directory (--root): one per agent, so agents never see each other's containers.
    public var root: String

    public init(root: String, binary: String = Runc.locate()) { self.root = root; self.binary = binary }

    public static func locate() -> String {
        for p in ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/sbin/runc"
    }

    @discardableResult
    func run(_ args: [String], outputFile: String? = nil) async throws -> CommandResult {
        let r = try await Command.run(binary, ["--root", root] + args, outputFile: outputFile)
        guard r.status == 0 else {
            throw RuncError("runc \(args.first ?? ""): \((r.stderr + r.stdout).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return r
    }

    /// Writes config.json for `process` into `bundle` (whose rootfs is `rootfs`), starting from
    /// runc's own default spec so mounts, capabilities and masked paths are runc's defaults.
    public func writeBundle(bundle: String, rootfs: String, args: [String], env: [String], cwd: String, hostname: String,
                            netns: String? = nil, memoryLimit: Int64? = nil, cpuQuota: Int64? = nil, cpuShares: Int64? = nil) async throws {
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: "\(bundle)/config.json")
        try await run(["spec", "--bundle", bundle])
        guard let data = FileManager.default.contents(atPath: "\(bundle)/config.json") else { throw RuncError("runc spec wrote no config.json") }
        var spec = try JSONValue.parse(data)
        spec["root"] = .object(["path": .string(rootfs), "readonly": .bool(false)])
        spec["hostname"] = .string(hostname)
        var process = spec["process"] ?? .object([:])
        process["terminal"] = .bool(false)
        process["args"] = .array(args.map { .string($0) })
        process["env"] = .array(env.map { .string($0) })
        process["cwd"] = .string(cwd)
        spec["process"] = process
        var linux = spec["linux"] ?? .object([:])
        if let netns {
            let ns = (linux["namespaces"]?.arrayValue ?? []).map { n -> JSONValue in
                guard n["type"]?.stringValue == "network" else { return n }
                return .object(["type": .string("network"), "path": .string(netns)])
            }
            linux["namespaces"] = .array(ns)
        }
        var resources = linux["resources"] ?? .object([:])
        if let m = memoryLimit { resources["memory"] = .object(["limit": .int(m)]) }
        var cpu: [String: JSONValue] = [:]
        if let q = cpuQuota { cpu["quota"] = .int(q); cpu["period"] = .int(100_000) }
        if let s = cpuShares { cpu["shares"] = .int(s) }
        if !cpu.isEmpty { resources["cpu"] = .object(cpu) }
        linux["resources"] = resources
        spec["linux"] = linux
        try spec.encoded(pretty: true).write(to: URL(fileURLWithPath: "\(bundle)/config.json"))
    }

    /// `runc create` then `runc start`; the container's stdout and stderr append to `logFile`.
    public func runDetached(id: String, bundle: String, logFile: String) async throws {
        try await run(["create", "--bundle", bundle, "--pid-file", "\(bundle)/pid", id], outputFile: logFile)
        try await run(["start", id])
    }

    public func state(_ id: String) async throws -> RuncState? {
        let r = try await Command.run(binary, ["--root", root, "state", id])
        guard r.status == 0 else {
            if (r.stderr + r.stdout).contains("does not exist") { return nil }
            throw RuncError("runc state \(id): \(r.stderr)")
        }
        return try KubeJSON.decode(RuncState.self, from: Data(r.stdout.utf8))
    }

    public func list() async throws -> [RuncState] {
        let r = try await run(["list", "--format", "json"])
        let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty || text == "null" { return [] }
        return try KubeJSON.decode([RuncState].self, from: Data(text.utf8))
    }

    public func kill(_ id: String, signal: String = "TERM", all: Bool = false) async throws {
        try await run(["kill"] + (all ? ["--all"] : []) + [id, signal])
    }

    public func delete(_ id: String, force: Bool = false) async throws {
        try await run(["delete"] + (force ? ["--force"] : []) + [id])
    }
}
