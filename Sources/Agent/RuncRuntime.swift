// The real runtime: each container is a runc container owned by an orch-shim process (which
// keeps its exit status and writes its log), with an overlay rootfs over the shared unpacked
// image, in the pod's network namespace wired by CNI. Everything the runtime makes for a pod
// lives under DATA/pods/<uid>, so an agent restart can find it again (adoption) or remove it.
//
//   DATA/runc                         runc's state root (--root), this agent's only
//   DATA/images, DATA/blobs, …        the image store
//   DATA/cni                          host-local IPAM leases
//   DATA/pods/<uid>/sandbox.json      netns name and pod IP
//   DATA/pods/<uid>/etc/              hosts, hostname, resolv.conf bound into every container
//   DATA/pods/<uid>/volumes/<name>    emptyDir volumes
//   DATA/pods/<uid>/containers/<id>/  meta.json, exit, bundle/{config.json,rootfs}, upper, work
//   DATA/pods/<uid>/logs/<name>/<attempt>.log
import Foundation
import Client
import Crypto
import Synchronization
import Logging
import API

public struct RuncRuntimeConfig: Sendable {
    public var dataDir: String
    public var nodeName: String
    public var network: CNINetwork
    public var shim: String
    public var insecureRegistries: [String] = []
    /// Mirrors, credentials and TLS per registry (the registries file).
    public var registries = RegistriesConfig()
    public var logMaxBytes: Int64 = 10 << 20
    public init(dataDir: String, nodeName: String, network: CNINetwork, shim: String) {
        self.dataDir = dataDir; self.nodeName = nodeName; self.network = network; self.shim = shim
    }
    /// orch-shim next to the running executable, or on PATH.
    public static func locateShim() -> String {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("orch-shim").path
        if FileManager.default.isExecutableFile(atPath: exe) { return exe }
        for d in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(d)/orch-shim") {
            return "\(d)/orch-shim"
        }
        return exe
    }
}

struct ContainerMeta: Codable {
    var name: String
    var id: String
    var attempt: Int
    var image: String
    var imageID: String
    var startedAt: Date
    var pid: Int32?
    /// The kernel's boot id when it started: a container of an earlier boot is dead whatever
    /// process now has its PID.
    var bootID: String?
}

public final class RuncRuntime: ContainerRuntime {
    public let name = "runc"
    public let hollow = false
    public let version: String
    let config: RuncRuntimeConfig
    let runc: Runc
    public let images: ImageStore
    let logger = Logger(label: "runc-runtime")
    let pulls = Mutex<[String: Task<PulledImage, Error>]>([:])
    let sandboxLocks = Mutex<[String: Task<SandboxInfo, Error>]>([:])

    public init(_ config: RuncRuntimeConfig) async throws {
        self.config = config
        let fm = FileManager.default
        for d in ["runc", "pods", "cni", "images"] { try fm.createDirectory(atPath: "\(config.dataDir)/\(d)", withIntermediateDirectories: true) }
        guard fm.isExecutableFile(atPath: Runc.locate()) else { throw RuncError("runc not found (install Debian's runc package)") }
        guard fm.isExecutableFile(atPath: config.shim) else { throw RuncError("orch-shim not found at \(config.shim) (build it with swift build; it ships next to agent)") }
        runc = Runc(root: "\(config.dataDir)/runc")
        images = ImageStore(root: "\(config.dataDir)/images", insecureRegistries: config.insecureRegistries, registries: config.registries)
        let v = try await Command.run(runc.binary, ["--version"])
        version = "runc://" + (v.stdout.split(separator: "\n").first.map { String($0.split(separator: " ").last ?? "") } ?? "unknown")
    }

    func podDir(_ uid: String) -> String { "\(config.dataDir)/pods/\(uid)" }
    func containerDir(_ uid: String, _ id: String) -> String { "\(podDir(uid))/containers/\(id)" }
    static func netnsName(_ uid: String) -> String { "orch-\(uid.prefix(36))" }

    // MARK: sandbox

    public func ensureSandbox(_ pod: Pod, resolvConf: String) async throws -> SandboxInfo {
        let uid = pod.metadata.uid ?? pod.name
        let file = "\(podDir(uid))/sandbox.json"
        if let d = FileManager.default.contents(atPath: file), let sb = try? KubeJSON.decode(SandboxInfo.self, from: d),
           let ns = sb.netns, FileManager.default.fileExists(atPath: "/run/netns/\(ns)") { return sb }
        // One setup per pod even when syncs overlap.
        let task = sandboxLocks.withLock { m -> Task<SandboxInfo, Error> in
            if let t = m[uid] { return t }
            let t = Task { try await self.createSandbox(pod, uid: uid, resolvConf: resolvConf) }
            m[uid] = t
            return t
        }
        defer { sandboxLocks.withLock { _ = $0.removeValue(forKey: uid) } }
        return try await task.value
    }

    func createSandbox(_ pod: Pod, uid: String, resolvConf: String) async throws -> SandboxInfo {
        let dir = podDir(uid), fm = FileManager.default
        try fm.createDirectory(atPath: "\(dir)/etc", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(dir)/containers", withIntermediateDirectories: true)
        let ns = Self.netnsName(uid)
        // A sandbox this pod had before is gone (the host rebooted: /run/netns is a tmpfs, the IPAM
        // leases are on disk). Its lease is released first, or the IPAM plugin refuses the pod.
        if fm.fileExists(atPath: "\(dir)/sandbox.json") {
            logger.info("sandbox lost; setting it up again", metadata: ["uid": "\(uid)"])
            await config.network.delete(containerID: uid, netnsName: ns)
        }
        let ip = try await config.network.add(containerID: uid, netnsName: ns)
        let hostname = pod.spec?.hostname ?? pod.name
        let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\(ip)\t\(hostname)\n"
        try hosts.write(toFile: "\(dir)/etc/hosts", atomically: true, encoding: .utf8)
        try (hostname + "\n").write(toFile: "\(dir)/etc/hostname", atomically: true, encoding: .utf8)
        try resolvConf.write(toFile: "\(dir)/etc/resolv.conf", atomically: true, encoding: .utf8)
        let sb = SandboxInfo(podUID: uid, ip: ip, netns: ns)
        try KubeJSON.encode(sb).write(to: URL(fileURLWithPath: "\(dir)/sandbox.json"))
        logger.debug("sandbox ready", metadata: ["uid": "\(uid)", "ip": "\(ip)"])
        return sb
    }

    // MARK: images

    public func ensureImage(_ image: String, policy: String, credentials: [String: RegistryAuth]) async throws -> String {
        try await pulledImage(image, policy: policy, credentials: credentials).digest
    }

    func pulledImage(_ image: String, policy: String, credentials: [String: RegistryAuth] = [:]) async throws -> PulledImage {
        if policy != "Always", let local = images.local(image) { return local }
        if policy == "Never" {
            throw ImagePullError(description: "Container image \"\(image)\" is not present with pull policy of Never", neverPull: true)
        }
        // Concurrent pulls of one reference share a single download and unpack.
        let task = pulls.withLock { m -> Task<PulledImage, Error> in
            if let t = m[image] { return t }
            let t = Task { try await self.images.pull(image, credentials: credentials) }
            m[image] = t
            return t
        }
        defer { pulls.withLock { m in if m[image] != nil { m.removeValue(forKey: image) } } }
        do { return try await task.value }
        catch { throw ImagePullError(description: "failed to pull image \"\(image)\": \(error)") }
    }

    // MARK: containers

    /// Kubernetes' rules: command replaces the image's Entrypoint, args replace its Cmd.
    static func processArgs(_ c: Container, image: JSONValue) -> [String] {
        let entrypoint = image["Entrypoint"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let cmd = image["Cmd"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if let command = c.command, !command.isEmpty { return command + (c.args ?? []) }
        return entrypoint + (c.args ?? cmd)
    }

    static func environment(_ pod: Pod, _ c: Container, image: JSONValue, sandbox: SandboxInfo, node: String) -> [String] {
        var env: [(String, String)] = []
        func set(_ k: String, _ v: String) { env.removeAll { $0.0 == k }; env.append((k, v)) }
        for e in image["Env"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            let kv = e.split(separator: "=", maxSplits: 1).map(String.init)
            set(kv[0], kv.count > 1 ? kv[1] : "")
        }
        if !env.contains(where: { $0.0 == "PATH" }) { set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") }
        set("HOSTNAME", pod.spec?.hostname ?? pod.name)
        for e in c.env ?? [] {
            if let v = e.value { set(e.name, expand(v, env)); continue }
            // Downward API through fieldRef (the common fields).
            if let path = e.valueFrom?["fieldRef"]?["fieldPath"]?.stringValue {
                let v: String? = switch path {
                case "metadata.name": pod.name
                case "metadata.namespace": pod.namespace
                case "metadata.uid": pod.metadata.uid
                case "spec.nodeName": node
                case "spec.serviceAccountName": pod.spec?.serviceAccountName ?? "default"
                case "status.podIP": sandbox.ip
                default:
                    if path.hasPrefix("metadata.labels['") { pod.metadata.labels?[String(path.dropFirst(17).dropLast(2))] }
                    else if path.hasPrefix("metadata.annotations['") { pod.metadata.annotations?[String(path.dropFirst(22).dropLast(2))] }
                    else { nil }
                }
                set(e.name, v ?? "")
            } else {
                set(e.name, "")
            }
        }
        return env.map { "\($0.0)=\($0.1)" }
    }

    /// $(VAR) references to earlier variables, as Kubernetes expands them; $$ escapes.
    static func expand(_ s: String, _ env: [(String, String)]) -> String {
        guard s.contains("$(") || s.contains("$$") else { return s }
        var out = "", i = s.startIndex
        while i < s.endIndex {
            if s[i] == "$", s.index(after: i) < s.endIndex {
                let n = s.index(after: i)
                if s[n] == "$" { out.append("$"); i = s.index(after: n); continue }
                if s[n] == "(", let close = s[n...].firstIndex(of: ")") {
                    let name = String(s[s.index(after: n)..<close])
                    if let v = env.last(where: { $0.0 == name })?.1 { out += v } else { out += "$(\(name))" }
                    i = s.index(after: close); continue
                }
            }
            out.append(s[i]); i = s.index(after: i)
        }
        return out
    }

    public func start(_ pod: Pod, container c: Container, attempt: Int, sandbox: SandboxInfo) async throws -> ContainerInfo {
        let uid = sandbox.podUID
        let image = try await pulledImage(c.image ?? "", policy: c.imagePullPolicy ?? "IfNotPresent")
        let id = "\(uid).\(c.name).\(attempt)"
        let dir = containerDir(uid, id), bundle = "\(dir)/bundle", rootfs = "\(bundle)/rootfs"
        let fm = FileManager.default
        if fm.fileExists(atPath: dir) { try? await removeContainer(podUID: uid, containerID: id) }
        for d in [rootfs, "\(dir)/upper", "\(dir)/work"] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let mount = try await Command.run("/bin/mount", ["-t", "overlay", "overlay", "-o",
                                                        "lowerdir=\(image.rootfs),upperdir=\(dir)/upper,workdir=\(dir)/work", rootfs])
        guard mount.status == 0 else { throw RuncError("overlay mount for \(c.name): \(mount.stderr)") }

        var b = Runc.BundleSpec(rootfs: rootfs, args: Self.processArgs(c, image: image.config),
                                env: Self.environment(pod, c, image: image.config, sandbox: sandbox, node: config.nodeName),
                                hostname: pod.spec?.hostname ?? pod.name)
        guard !b.args.isEmpty else { throw RuncError("container \(c.name): no command given and the image has no Entrypoint or Cmd") }
        b.cwd = c.workingDir ?? image.config["WorkingDir"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        b.netns = sandbox.netns.map { "/run/netns/\($0)" }
        if c.tty == true {
            // As containerd does: a terminal, and TERM unless the spec sets it.
            b.terminal = true
            if !b.env.contains(where: { $0.hasPrefix("TERM=") }) { b.env.append("TERM=xterm") }
        }
        b.cgroupsPath = "/orchestrator/\(config.nodeName)/\(id)"
        if let mem = c.resources?.limits?["memory"] { b.memoryLimit = mem.value }
        if let cpu = c.resources?.limits?["cpu"] { b.cpuQuota = max(1000, cpu.milli * 100) }
        if let cpu = c.resources?.requests?["cpu"] ?? c.resources?.limits?["cpu"] { b.cpuShares = max(2, cpu.milli * 1024 / 1000) }
        let pdir = podDir(uid)
        b.binds = [("\(pdir)/etc/hosts", "/etc/hosts", false), ("\(pdir)/etc/hostname", "/etc/hostname", false),
                   ("\(pdir)/etc/resolv.conf", "/etc/resolv.conf", false)]
        for m in c.volumeMounts ?? [] {
            guard let v = pod.spec?.volumes?.first(where: { $0.name == m.name }) else {
                throw RuncError("volumeMount \(m.name) of container \(c.name) names no volume of the pod")
            }
            var source: String
            if let hp = v.hostPath {
                source = hp.path
                if hp.type == "DirectoryOrCreate", !fm.fileExists(atPath: source) { try fm.createDirectory(atPath: source, withIntermediateDirectories: true) }
                guard fm.fileExists(atPath: source) else { throw RuncError("hostPath \(source) of volume \(v.name) does not exist") }
            } else if v.emptyDir != nil {
                source = "\(pdir)/volumes/\(v.name)"
                try fm.createDirectory(atPath: source, withIntermediateDirectories: true)
            } else {
                throw RuncError("volume \(v.name): only emptyDir, hostPath and persistentVolumeClaim volumes are supported")
            }
            if let sub = m.subPath, !sub.isEmpty {
                guard !sub.split(separator: "/").contains("..") else { throw RuncError("volumeMount \(m.name): subPath must not contain ..") }
                source += "/\(sub)"
                if !fm.fileExists(atPath: source) { try fm.createDirectory(atPath: source, withIntermediateDirectories: true) }
            }
            // Config volumes are read-only in the container, as in Kubernetes.
            b.binds.append((source, m.mountPath, (m.readOnly ?? false) || v.persistentVolumeClaim?["readOnly"] == .bool(true) || ConfigProjection.isProjected(v)))
        }
        try await runc.writeBundle(bundle: bundle, b)

        let logDir = "\(pdir)/logs/\(c.name)"
        try fm.createDirectory(atPath: logDir, withIntermediateDirectories: true)
        let started = Date()
        var meta = ContainerMeta(name: c.name, id: id, attempt: attempt, image: c.image ?? "", imageID: image.digest, startedAt: started,
                                 bootID: Self.bootID)
        try KubeJSON.encode(meta).write(to: URL(fileURLWithPath: "\(dir)/meta.json"))
        var shimArgs = [runc.binary, runc.root, id, bundle, "\(logDir)/\(attempt).log", "\(dir)/exit", String(config.logMaxBytes)]
        if c.stdin == true || c.tty == true {
            try fm.createDirectory(atPath: Self.stdinSocketDir, withIntermediateDirectories: true)
            shimArgs += [Self.stdinSocket(id), c.stdinOnce == true ? "once" : "keep"] + (c.tty == true ? ["tty"] : [])
        }
        let r = try await Command.run(config.shim, shimArgs)
        guard r.status == 0 else {
            _ = try? await Command.run(runc.binary, ["--root", runc.root, "delete", "--force", id])
            _ = try? await Command.run("/bin/umount", ["-l", rootfs])
            try? fm.removeItem(atPath: dir)
            throw RuncError("starting container \(c.name): \((r.stderr + r.stdout).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        meta.pid = Int32(HostFile.text("\(bundle)/pid")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
        try KubeJSON.encode(meta).write(to: URL(fileURLWithPath: "\(dir)/meta.json"))
        return info(meta, dir: dir)
    }

    /// State from files only (no runc call), so checking many pods every second is cheap.
    func info(_ meta: ContainerMeta, dir: String) -> ContainerInfo { Self.info(meta, dir: dir) }

    static func info(_ meta: ContainerMeta, dir: String) -> ContainerInfo {
        var state = ContainerInfo.State.running(startedAt: meta.startedAt)
        if let text = HostFile.text("\(dir)/exit") {
            let parts = text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            let code = Int32(parts.first ?? "") ?? 255
            let at = Double(parts.count > 1 ? parts[1] : "").map { Date(timeIntervalSince1970: $0) } ?? Date()
            state = .exited(code: code, startedAt: meta.startedAt, finishedAt: at)
        } else if let b = meta.bootID, let now = Self.bootID, b != now {
            // Started before this machine last booted: the power went, or it rebooted.
            state = .exited(code: 137, startedAt: meta.startedAt, finishedAt: Self.recordLoss(dir: dir))
        } else if let pid = meta.pid, kill(pid, 0) != 0, errno == ESRCH, !Self.alive(pidFile: "\(dir)/exit.shim") {
            // Neither the shim's record nor the process nor the shim: killed together (a dead
            // machine). While the shim lives, its record is on the way.
            state = .exited(code: 137, startedAt: meta.startedAt, finishedAt: Self.recordLoss(dir: dir))
        }
        return ContainerInfo(name: meta.name, id: meta.id, attempt: meta.attempt, image: meta.image, imageID: meta.imageID, state: state)
    }

    /// This boot of the kernel.
    static let bootID: String? = HostFile.text("/proc/sys/kernel/random/boot_id")?
        .trimmingCharacters(in: .whitespacesAndNewlines)

    /// Writes the exit record a container lost with its shim never got (code 137, now), so that
    /// its finish time stays put and the restart back-off can run out. Returns that time.
    static func recordLoss(dir: String) -> Date {
        let at = Date()
        try? "137 \(Int(at.timeIntervalSince1970))\n".write(toFile: "\(dir)/exit", atomically: true, encoding: .utf8)
        return at
    }

    static func alive(pidFile: String) -> Bool {
        guard let text = HostFile.text(pidFile), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    func meta(_ uid: String, _ id: String) -> ContainerMeta? {
        FileManager.default.contents(atPath: "\(containerDir(uid, id))/meta.json").flatMap { try? KubeJSON.decode(ContainerMeta.self, from: $0) }
    }

    public func containers(podUID: String) async -> [ContainerInfo] {
        let base = "\(podDir(podUID))/containers"
        return ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap { id in
            meta(podUID, id).map { info($0, dir: "\(base)/\(id)") }
        }.sorted { ($0.name, $0.attempt) < ($1.name, $1.attempt) }
    }

    public func stop(podUID: String, containerID id: String, grace: Double) async throws {
        guard let m = meta(podUID, id) else { return }
        let dir = containerDir(podUID, id)
        func exited() -> Bool { !info(m, dir: dir).isRunning }
        if exited() { return }
        _ = try? await runc.kill(id, signal: "TERM")
        let deadline = Date().addingTimeInterval(max(0, grace))
        while Date() < deadline, !exited() { try await Task.sleep(for: .milliseconds(50)) }
        if exited() { return }
        _ = try? await runc.kill(id, signal: "KILL", all: true)
        let hard = Date().addingTimeInterval(10)
        while Date() < hard, !exited() { try await Task.sleep(for: .milliseconds(20)) }
        if !exited() { throw RuncError("container \(id) did not exit after SIGKILL") }
    }

    public func removeContainer(podUID: String, containerID id: String) async throws {
        let dir = containerDir(podUID, id)
        if let m = meta(podUID, id), info(m, dir: dir).isRunning { try await stop(podUID: podUID, containerID: id, grace: 0) }
        let d = try await Command.run(runc.binary, ["--root", runc.root, "delete", "--force", id])
        if d.status != 0, !(d.stderr + d.stdout).contains("does not exist") { throw RuncError("runc delete \(id): \(d.stderr)") }
        try await Self.unmount("\(dir)/bundle/rootfs")
        do { if FileManager.default.fileExists(atPath: dir) { try FileManager.default.removeItem(atPath: dir) } }
        catch { throw RuncError("removing \(dir): \(error)") }
    }

    /// Unmounts `path` until nothing is mounted there (lazily if it stays busy).
    static func unmount(_ path: String) async throws {
        for attempt in 0..<5 {
            guard isMountPoint(path) else { return }
            let r = try await Command.run("/bin/umount", attempt < 2 ? [path] : ["-l", path])
            if r.status != 0 && attempt == 4 { throw RuncError("umount \(path): \(r.stderr)") }
        }
    }

    /// Whether something is mounted at `path`: its device differs from its parent's, or it is
    /// listed in mountinfo (an overlay can share the parent's device number).
    static func isMountPoint(_ path: String) -> Bool {
        var st = stat(), parent = stat()
        guard stat(path, &st) == 0 else { return false }
        if stat(path + "/..", &parent) == 0, st.st_dev != parent.st_dev { return true }
        guard let mounts = HostFile.text("/proc/self/mountinfo") else { return false }
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        return mounts.split(separator: "\n").contains { line in
            let mp = line.split(separator: " ").dropFirst(4).first.map { String($0).replacingOccurrences(of: "\\040", with: " ") }
            return mp == path || mp == real
        }
    }

    /// Config volumes live in the pod's directory; secret-bearing ones on a tmpfs mounted there.
    public func writeVolume(podUID: String, name: String, files: [ProjectedFile], tmpfs: Bool) async throws -> String {
        let dir = "\(podDir(podUID))/volumes/\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if tmpfs && !Self.isMountPoint(dir) {
            let r = try await Command.run("/bin/mount", ["-t", "tmpfs", "-o", "mode=0755,size=64m", "tmpfs", dir])
            guard r.status == 0 else { throw RuncError("tmpfs for volume \(name): \(r.stderr)") }
        }
        try AtomicWriter.write(files, to: dir)
        return dir
    }

    public func remove(podUID: String) async throws {
        for c in await containers(podUID: podUID) { try await removeContainer(podUID: podUID, containerID: c.id) }
        // Secret volumes' tmpfs mounts go before the directory.
        let volumes = "\(podDir(podUID))/volumes"
        for v in (try? FileManager.default.contentsOfDirectory(atPath: volumes)) ?? [] { try await Self.unmount("\(volumes)/\(v)") }
        // Containers runc knows of whose directory is gone (a crash between steps).
        for s in (try? await runc.list()) ?? [] where s.id.hasPrefix(podUID + ".") {
            _ = try? await runc.kill(s.id, signal: "KILL", all: true)
            _ = try? await runc.delete(s.id, force: true)
        }
        await config.network.delete(containerID: podUID, netnsName: Self.netnsName(podUID))
        do { if FileManager.default.fileExists(atPath: podDir(podUID)) { try FileManager.default.removeItem(atPath: podDir(podUID)) } }
        catch { throw RuncError("removing \(podDir(podUID)): \(error)") }
    }

    /// Removes the node's cgroup directories (/orchestrator/<node> in every hierarchy), which
    /// runc leaves behind when it deletes a container's own cgroup. For teardown.
    public func removeNodeCgroups() {
        let fm = FileManager.default
        for h in (try? fm.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
            let dir = "/sys/fs/cgroup/\(h)/orchestrator/\(config.nodeName)"
            guard fm.fileExists(atPath: dir) else { continue }
            // Children first; rmdir only succeeds on empty cgroups, which is what we want.
            let subs = ((try? fm.subpathsOfDirectory(atPath: dir)) ?? []).filter { !$0.contains(".") || $0.split(separator: "/").last?.contains(".") == false }
            for sub in subs.sorted(by: { $0.count > $1.count }) { rmdir("\(dir)/\(sub)") }
            rmdir(dir)
        }
    }

    public func pods() async -> [String] {
        var uids = Set((try? FileManager.default.contentsOfDirectory(atPath: "\(config.dataDir)/pods")) ?? [])
        for s in (try? await runc.list()) ?? [] { if let dot = s.id.firstIndex(of: ".") { uids.insert(String(s.id[..<dot])) } }
        return Array(uids)
    }

    public func exec(podUID: String, containerID: String, command: [String], timeout: Double) async throws -> (status: Int32, output: String) {
        let r = try await runc.exec(containerID, command, timeout: timeout)
        if r.timedOut { throw RuncError("command timed out after \(timeout)s") }
        return (r.status, r.stdout + r.stderr)
    }

    public func streamingExec(podUID: String, containerID: String, command: [String], tty: Bool, size: (width: UInt16, height: UInt16)?,
                              pidFile: String) -> (binary: String, args: [String])? {
        // Without a terminal runc passes its own stdio (the session's pipes) through; with one it
        // makes a terminal in the container and relays it to its stdio (the session's terminal).
        let head = ["--root", runc.root, "exec", "--pid-file", pidFile]
        guard tty else { return (runc.binary, head + [containerID] + command) }
        // runc sets the container's terminal to a process's consoleSize before starting it, but
        // takes that only from a process file: the container's own process with this command.
        let bundle = "\(containerDir(podUID, containerID))/bundle/config.json"
        if let size, let data = FileManager.default.contents(atPath: bundle), let spec = try? JSONValue.parse(data),
           var process = spec["process"] {
            process["args"] = .array(command.map { .string($0) })
            process["terminal"] = .bool(true)
            process["consoleSize"] = .object(["width": .int(Int64(size.width)), "height": .int(Int64(size.height))])
            process["env"] = .array((process["env"]?.arrayValue ?? []).filter { !($0.stringValue ?? "").hasPrefix("TERM=") } + [.string("TERM=xterm")])
            let file = pidFile + ".process.json"
            if (try? process.encoded(pretty: false).write(to: URL(fileURLWithPath: file))) != nil {
                return (runc.binary, head + ["--tty", "--process", file, containerID])
            }
        }
        return (runc.binary, head + ["--tty", "--env", "TERM=xterm", containerID] + command)
    }

    /// Where the shim of a container with `stdin: true` takes attached input (a unix socket path
    /// must stay short, so it is named by a hash of the container id).
    static let stdinSocketDir = "/run/orchestrator-stdin"
    static func stdinSocket(_ containerID: String) -> String {
        "\(stdinSocketDir)/" + SHA256.hash(data: Data(containerID.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined() + ".sock"
    }

    public func attachStdin(podUID: String, containerID: String) -> String? {
        let p = Self.stdinSocket(containerID)
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }

    public func podNetworkNamespace(podUID: String) -> String? {
        let p = "/run/netns/\(Self.netnsName(podUID))"
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }

    public func logPath(podUID: String, container: String, attempt: Int) -> String? {
        let p = "\(podDir(podUID))/logs/\(container)/\(attempt).log"
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }

    public func stats(podUID: String) async -> [ContainerStats] {
        let now = Date()
        return await containers(podUID: podUID).filter(\.isRunning).map { c in
            let cg = CgroupStats.read(path: "/orchestrator/\(config.nodeName)/\(c.id)")
            return ContainerStats(name: c.name, cpuUsageNanoSeconds: cg.cpu, memoryWorkingSetBytes: cg.workingSet, timestamp: now)
        }
    }
}

/// CPU and memory of a cgroup, from cgroup v1 (cpuacct, memory) or the unified v2 hierarchy.
enum CgroupStats {
    static let v2 = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")

    static func number(_ path: String) -> UInt64? {
        HostFile.text(path).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
    static func statField(_ path: String, _ key: String) -> UInt64? {
        guard let text = HostFile.text(path) else { return nil }
        for line in text.split(separator: "\n") {
            let p = line.split(separator: " ")
            if p.count == 2, p[0] == key { return UInt64(p[1]) }
        }
        return nil
    }

    /// (cumulative CPU nanoseconds, memory working set bytes = usage − inactive file cache).
    static func read(path: String) -> (cpu: UInt64, workingSet: UInt64) {
        if v2 {
            let base = "/sys/fs/cgroup\(path)"
            let cpu = (statField("\(base)/cpu.stat", "usage_usec") ?? 0) * 1000
            let usage = number("\(base)/memory.current") ?? 0
            let inactive = statField("\(base)/memory.stat", "inactive_file") ?? 0
            return (cpu, usage > inactive ? usage - inactive : 0)
        }
        let cpu = number("/sys/fs/cgroup/cpuacct\(path)/cpuacct.usage") ?? number("/sys/fs/cgroup/cpu,cpuacct\(path)/cpuacct.usage") ?? 0
        let usage = number("/sys/fs/cgroup/memory\(path)/memory.usage_in_bytes") ?? 0
        let inactive = statField("/sys/fs/cgroup/memory\(path)/memory.stat", "total_inactive_file") ?? 0
        return (cpu, usage > inactive ? usage - inactive : 0)
    }
}
