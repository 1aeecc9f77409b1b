// ctl exec: run a command in a pod's container through the apiserver (the same WebSocket
// protocol kubectl uses), with stdin (-i) and a terminal (-t); exits with the command's code.
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import API
import Client

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a command in a container: ctl exec [-i] [-t] POD [-c CONTAINER] -- COMMAND [ARGS...]")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .customLong("stdin")], help: "Pass stdin to the command.") var interactive = false
    @Flag(name: [.short, .customLong("tty")], help: "Allocate a terminal for the command.") var tty = false
    @Option(name: [.short, .customLong("container")], help: "The container (default: the pod's first).") var container: String?
    @Argument(help: "POD or pod/POD") var pod: String
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func run() async throws {
        guard !command.isEmpty else { fail("give the command after --, e.g. ctl exec \(pod) -- sh") }
        let name = pod.hasPrefix("pod/") ? String(pod.dropFirst(4)) : pod.hasPrefix("pods/") ? String(pod.dropFirst(5)) : pod
        let client = try global.client()
        let ns = global.namespace ?? client.namespace
        var options = RemoteCommand.Options(command: command, container: container, stdin: interactive, stdout: true, stderr: !tty, tty: tty)
        options.tty = tty && isatty(0) == 1
        if tty && !options.tty { FileHandle.standardError.write(Data("Unable to use a TTY - input is not a terminal or the right kind of file\n".utf8)) }
        var size: (width: UInt16, height: UInt16)?
        var saved = termios()
        if options.tty {
            var ws = winsize()
            if ioctl(1, UInt(TIOCGWINSZ), &ws) == 0 { size = (ws.ws_col, ws.ws_row) }
            tcgetattr(0, &saved)
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(0, TCSANOW, &raw)
        }
        defer { if options.tty { tcsetattr(0, TCSANOW, &saved) } }
        var input: AsyncStream<Data>?
        if interactive {
            input = readChunks(fd: 0)
        }
        do {
            let outcome = try await client.exec(namespace: ns, pod: name, options: options, stdin: input, size: size,
                                                stdout: { FileHandle.standardOutput.write($0) }, stderr: { FileHandle.standardError.write($0) })
            await client.shutdown()
            if options.tty { tcsetattr(0, TCSANOW, &saved) }
            if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
        } catch let e as ExitCode {
            throw e
        } catch {
            await client.shutdown()
            if options.tty { tcsetattr(0, TCSANOW, &saved) }
            fail(describeError(error))
        }
    }
}

struct PortForward: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port-forward",
        abstract: "Forward local ports to a pod: ctl port-forward POD [LOCAL:]REMOTE [...] (LOCAL empty or 0: any free port)")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The local address to listen on.") var address = "127.0.0.1"
    @Argument(help: "POD or pod/POD") var pod: String
    @Argument(help: "Ports: PORT, LOCAL:REMOTE or :REMOTE") var ports: [String] = []

    func run() async throws {
        guard !ports.isEmpty else { fail("give at least one port, e.g. ctl port-forward \(pod) 8080 or 18080:8080") }
        let specs: [PortForwardSpec]
        do { specs = try ports.map(PortForwardSpec.parse) } catch { fail(describeError(error)) }
        let name = pod.hasPrefix("pod/") ? String(pod.dropFirst(4)) : pod.hasPrefix("pods/") ? String(pod.dropFirst(5)) : pod
        let client = try global.client()
        let ns = global.namespace ?? client.namespace
        do {
            let po = try await client.get(Pod.self, name, namespace: ns)
            guard po.status?.phase == "Running" else { fail("unable to forward port because pod is not running. Current status=\(po.status?.phase ?? "Unknown")") }
            try await client.portForward(namespace: ns, pod: name, address: address, specs: specs, ready: { bound in
                for (b, s) in zip(bound, specs) { FileHandle.standardOutput.write(Data("Forwarding from \(address):\(b) -> \(s.remote)\n".utf8)) }
            }, onError: { FileHandle.standardError.write(Data("error: \($0)\n".utf8)) })
        } catch {
            await client.shutdown()
            fail(describeError(error))
        }
    }
}

/// ctl cp: files and directories in and out of a container, as tar through exec (tar in the
/// container, the host's tar here), like kubectl cp.
struct Copy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp",
        abstract: "Copy files and directories to and from a container: ctl cp SRC DEST, one of them [NAMESPACE/]POD:PATH")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("container")], help: "The container (default: the pod's first).") var container: String?
    @Argument(help: "Source: a local path or [NAMESPACE/]POD:PATH") var source: String
    @Argument(help: "Destination: a local path or [NAMESPACE/]POD:PATH") var destination: String

    struct Remote { var namespace: String?; var pod: String; var path: String }

    /// "pod:path" or "ns/pod:path"; a path that starts with / or . is local.
    static func remote(_ s: String) -> Remote? {
        guard !s.hasPrefix("/"), !s.hasPrefix("."), let colon = s.firstIndex(of: ":") else { return nil }
        let who = String(s[..<colon]), path = String(s[s.index(after: colon)...])
        let parts = who.split(separator: "/").map(String.init)
        guard !path.isEmpty, (1...2).contains(parts.count) else { return nil }
        return parts.count == 2 ? Remote(namespace: parts[0], pod: parts[1], path: path) : Remote(namespace: nil, pod: parts[0], path: path)
    }

    /// A name as a literal in tar's --transform expression.
    static func literal(_ s: String) -> String {
        var out = ""
        for ch in s { if "\\.[]*^$+?(){}".contains(ch) { out.append("\\") }; out.append(ch) }
        return out
    }

    static func split(_ path: String) -> (dir: String, base: String) {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let u = URL(fileURLWithPath: trimmed, relativeTo: nil)
        let dir = trimmed.contains("/") ? String(trimmed[..<trimmed.lastIndex(of: "/")!]) : "."
        return (dir.isEmpty ? "/" : dir, u.lastPathComponent)
    }

    func run() async throws {
        let src = Self.remote(source), dst = Self.remote(destination)
        guard (src == nil) != (dst == nil) else { fail("one of SRC and DEST must be POD:PATH and the other a local path (got \"\(source)\" and \"\(destination)\")") }
        let client = try global.client()
        let fm = FileManager.default
        do {
            if let dst {
                // Into the pod: tar here, untar there.
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: source, isDirectory: &isDir) else { fail("\(source): no such file or directory") }
                let (ldir, lbase) = Self.split(source)
                var (rdir, rbase) = Self.split(dst.path)
                if dst.path.hasSuffix("/") { rdir = dst.path; rbase = lbase }
                guard !lbase.contains("|"), !rbase.contains("|") else { fail("names with | cannot be copied") }
                // The host's tar, spawned directly (a Foundation Process can keep ctl from exiting).
                let tar = try HostProcess(["tar", "cf", "-", "-C", ldir, "--transform", "s|^\(Self.literal(lbase))|\(rbase)|", lbase], pipeStdout: true)
                let stream = readChunks(fd: tar.stdout!.fileDescriptor)
                let options = RemoteCommand.Options(command: ["tar", "xf", "-", "-C", rdir], container: container, stdin: true, stdout: true, stderr: true)
                let errors = StderrBox()
                let outcome = try await client.exec(namespace: dst.namespace ?? global.namespace ?? client.namespace, pod: dst.pod, options: options,
                                                    stdin: stream, stdout: { _ in }, stderr: { errors.append($0) })
                let tarStatus = tar.wait()
                await client.shutdown()
                guard tarStatus == 0 else { fail("tar of \(source) failed (exit \(tarStatus))") }
                guard outcome.exitCode == 0 else { fail("tar in the container failed (exit \(outcome.exitCode)): \(errors.text)") }
            } else if let src {
                // Out of the pod: tar there, untar here.
                let (rdir, rbase) = Self.split(src.path)
                var isDir: ObjCBool = false
                var (ldir, lbase) = Self.split(destination)
                if fm.fileExists(atPath: destination, isDirectory: &isDir), isDir.boolValue { ldir = destination; lbase = rbase }
                guard !lbase.contains("|"), !rbase.contains("|") else { fail("names with | cannot be copied") }
                guard fm.fileExists(atPath: ldir) else { fail("\(ldir): no such directory") }
                let tar = try HostProcess(["tar", "xf", "-", "-C", ldir, "--no-same-owner", "--transform", "s|^\(Self.literal(rbase))|\(lbase)|"], pipeStdin: true)
                let writer = tar.stdin!
                let options = RemoteCommand.Options(command: ["tar", "cf", "-", "-C", rdir, rbase], container: container, stdin: false, stdout: true, stderr: true)
                let errors = StderrBox()
                let outcome = try await client.exec(namespace: src.namespace ?? global.namespace ?? client.namespace, pod: src.pod, options: options,
                                                    stdout: { try? writer.write(contentsOf: $0) }, stderr: { errors.append($0) })
                try? writer.close()
                let tarStatus = tar.wait()
                await client.shutdown()
                guard outcome.exitCode == 0 else { fail("tar in the container failed (exit \(outcome.exitCode)): \(errors.text)") }
                guard tarStatus == 0 else { fail("unpacking into \(destination) failed (exit \(tarStatus))") }
            }
        } catch {
            await client.shutdown()
            fail(describeError(error))
        }
    }
}

final class StderrBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// A host command started with posix_spawn, its stdin or stdout a pipe to us.
final class HostProcess {
    let pid: pid_t
    let stdin: FileHandle?
    let stdout: FileHandle?

    init(_ argv: [String], pipeStdin: Bool = false, pipeStdout: Bool = false) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
        if pipeStdin {
            guard pipe(&inPipe) == 0 else { throw ClientError("pipe: \(String(cString: strerror(errno)))") }
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
            posix_spawn_file_actions_addclose(&actions, inPipe[1])
        }
        if pipeStdout {
            guard pipe(&outPipe) == 0 else { throw ClientError("pipe: \(String(cString: strerror(errno)))") }
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
            posix_spawn_file_actions_addclose(&actions, outPipe[0])
        }
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var p: pid_t = 0
        let rc = posix_spawnp(&p, argv[0], &actions, nil, &cargs, environ)
        if pipeStdin { close(inPipe[0]) }
        if pipeStdout { close(outPipe[1]) }
        guard rc == 0 else { throw ClientError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        pid = p
        stdin = pipeStdin ? FileHandle(fileDescriptor: inPipe[1], closeOnDealloc: false) : nil
        stdout = pipeStdout ? FileHandle(fileDescriptor: outPipe[0], closeOnDealloc: true) : nil
    }

    /// Waits for the exit; the exit code (128+signal when killed).
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 { if errno != EINTR { return -1 } }
        let sig = status & 0x7f
        return sig == 0 ? (status >> 8) & 0xff : 128 + sig
    }
}

/// What a descriptor delivers, read by a thread of its own until end of file (FileHandle's
/// readabilityHandler sometimes never reported the end of a pipe whose writer had exited).
func readChunks(fd: Int32) -> AsyncStream<Data> {
    let (stream, cont) = AsyncStream<Data>.makeStream(bufferingPolicy: .unbounded)
    Thread {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            cont.yield(Data(buf[0..<n]))
        }
        cont.finish()
    }.start()
    return stream
}
