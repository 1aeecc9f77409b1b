// A thin wrapper over the runc binary: global flags in a value type, one function per verb,
// JSON decoding of `runc state` / `runc list`, and OCI bundle generation from `runc spec`.
import Foundation
import Synchronization
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

    /// What goes into a bundle's config.json beyond runc's defaults.
    public struct BundleSpec: Sendable {
        public var rootfs: String
        public var args: [String]
        public var env: [String]
        public var cwd: String = "/"
        public var hostname: String
        public var netns: String?
        public var memoryLimit: Int64?
        public var cpuQuota: Int64?
        public var cpuShares: Int64?
        public var cgroupsPath: String?
        /// The process gets a terminal (`tty: true`); the shim receives its master from runc.
        public var terminal = false
        /// Bind mounts: (source on the host, destination in the container, read-only).
        public var binds: [(source: String, destination: String, readOnly: Bool)] = []
        public init(rootfs: String, args: [String], env: [String], hostname: String) {
            self.rootfs = rootfs; self.args = args; self.env = env; self.hostname = hostname
        }
    }

    /// runc's default spec, generated once per process (mounts, capabilities, masked paths).
    private static let template = Mutex<JSONValue?>(nil)

    func defaultSpec() async throws -> JSONValue {
        if let t = Self.template.withLock({ $0 }) { return t }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("runc-spec-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await run(["spec", "--bundle", dir])
        guard let data = FileManager.default.contents(atPath: "\(dir)/config.json") else { throw RuncError("runc spec wrote no config.json") }
        let spec = try JSONValue.parse(data)
        Self.template.withLock { $0 = spec }
        return spec
    }

    /// Writes `bundle`/config.json for `b`, starting from runc's own default spec.
    public func writeBundle(bundle: String, _ b: BundleSpec) async throws {
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        var spec = try await defaultSpec()
        spec["root"] = .object(["path": .string(b.rootfs), "readonly": .bool(false)])
        spec["hostname"] = .string(b.hostname)
        var process = spec["process"] ?? .object([:])
        process["terminal"] = .bool(b.terminal)
        process["args"] = .array(b.args.map { .string($0) })
        process["env"] = .array(b.env.map { .string($0) })
        process["cwd"] = .string(b.cwd)
        spec["process"] = process
        var mounts = spec["mounts"]?.arrayValue ?? []
        for m in b.binds {
            mounts.removeAll { $0["destination"]?.stringValue == m.destination }
            mounts.append(.object(["destination": .string(m.destination), "type": .string("bind"), "source": .string(m.source),
                                   "options": .array((["rbind", "rprivate"] + (m.readOnly ? ["ro"] : ["rw"])).map { .string($0) })]))
        }
        spec["mounts"] = .array(mounts)
        var linux = spec["linux"] ?? .object([:])
        if let netns = b.netns {
            let ns = (linux["namespaces"]?.arrayValue ?? []).map { n -> JSONValue in
                guard n["type"]?.stringValue == "network" else { return n }
                return .object(["type": .string("network"), "path": .string(netns)])
            }
            linux["namespaces"] = .array(ns)
        }
        if let cg = b.cgroupsPath { linux["cgroupsPath"] = .string(cg) }
        var resources = linux["resources"] ?? .object([:])
        if let m = b.memoryLimit { resources["memory"] = .object(["limit": .int(m)]) }
        var cpu: [String: JSONValue] = [:]
        if let q = b.cpuQuota { cpu["quota"] = .int(q); cpu["period"] = .int(100_000) }
        if let s = b.cpuShares { cpu["shares"] = .int(s) }
        if !cpu.isEmpty { resources["cpu"] = .object(cpu) }
        linux["resources"] = resources
        spec["linux"] = linux
        try spec.encoded(pretty: false).write(to: URL(fileURLWithPath: "\(bundle)/config.json"))
    }

    /// The test-friendly form: one process, no pod plumbing.
    public func writeBundle(bundle: String, rootfs: String, args: [String], env: [String], cwd: String, hostname: String,
                            netns: String? = nil, memoryLimit: Int64? = nil, cpuQuota: Int64? = nil, cpuShares: Int64? = nil) async throws {
        var b = BundleSpec(rootfs: rootfs, args: args, env: env, hostname: hostname)
        b.cwd = cwd; b.netns = netns; b.memoryLimit = memoryLimit; b.cpuQuota = cpuQuota; b.cpuShares = cpuShares
        try await writeBundle(bundle: bundle, b)
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

    /// Runs `command` inside the container; returns its exit status and combined output.
    public func exec(_ id: String, _ command: [String], timeout: Double) async throws -> CommandResult {
        try await Command.run(binary, ["--root", root, "exec", id] + command, timeout: timeout)
    }
}
