// Running host commands (tar, runc, CNI plugins) without Foundation.Process, whose
// waitUntilExit() can hang on Swift concurrency threads: posix_spawn, output to temp files,
// and waitpid on a dispatch thread.
import Foundation
import Client
import Dispatch

public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var timedOut = false
}

public enum Command {
    /// Runs `exe args` to completion. Output goes through files, so background children that
    /// inherit descriptors cannot keep us waiting.
    public static func run(_ exe: String, _ args: [String], stdin: String? = nil, outputFile: String? = nil,
                           environment: [String: String]? = nil, timeout: Double? = nil) async throws -> CommandResult {
        try await withCheckedThrowingContinuation { cont in
            DispatchQueue.global().async {
                do { cont.resume(returning: try runSync(exe, args, stdin: stdin, outputFile: outputFile, environment: environment, timeout: timeout)) }
                catch { cont.resume(throwing: error) }
            }
        }
    }

    /// `outputFile`: where the command's stdout and stderr go (appended) instead of being
    /// captured; what the command's children write goes there too (container logs).
    /// `environment`: the child's whole environment (default: ours). `timeout`: SIGKILL after this
    /// many seconds (the result says `timedOut`).
    public static func runSync(_ exe: String, _ args: [String], stdin: String? = nil, outputFile: String? = nil,
                               environment: [String: String]? = nil, timeout: Double? = nil) throws -> CommandResult {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)").path
        let outPath = tmp + ".out", errPath = tmp + ".err", inPath = tmp + ".in"
        FileManager.default.createFile(atPath: inPath, contents: Data((stdin ?? "").utf8))
        defer { for p in [outPath, errPath, inPath] { unlink(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
        if let outputFile {
            posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for p in envp ?? [] { free(p) } }
        var pid: pid_t = 0
        let rc = envp == nil ? posix_spawn(&pid, exe, &actions, nil, argv, environ) : posix_spawn(&pid, exe, &actions, nil, argv, envp!)
        guard rc == 0 else { throw CommandError("\(exe): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var timedOut = false
        if let timeout {
            let deadline = Date().addingTimeInterval(timeout)
            var sleep: UInt32 = 500
            while true {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid || (r < 0 && errno != EINTR) { break }
                if Date() >= deadline {
                    kill(pid, SIGKILL); timedOut = true
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    break
                }
                usleep(sleep); sleep = min(sleep * 2, 20_000)
            }
        } else {
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let out = HostFile.text(outPath) ?? ""
        let err = HostFile.text(errPath) ?? ""
        return CommandResult(status: exit, stdout: out, stderr: err, timedOut: timedOut)
    }
}

public struct CommandError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}
