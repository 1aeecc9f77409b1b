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
            let (stream, cont) = AsyncStream<Data>.makeStream()
            FileHandle.standardInput.readabilityHandler = { h in
                let d = (try? h.read(upToCount: 65536)) ?? Data()
                if d.isEmpty { h.readabilityHandler = nil; cont.finish() } else { cont.yield(d) }
            }
            input = stream
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
