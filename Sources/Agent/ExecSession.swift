// One exec session on the node: a process started in a container by the runtime's exec command,
// with pipes, or with a pseudo-terminal when a TTY was asked for (its size set on resize). Output
// arrives as an AsyncStream of (channel, bytes); the exit code once the process is gone. Closing
// the session kills what is still running.
import Foundation
import Client
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import API

final class ExecSession: Sendable {
    let process: Process
    let stdinHandle: FileHandle?
    let ptyMaster: Int32?
    /// Kept for the session's life: a FileHandle that goes away takes its read handler with it.
    let masterHandle: FileHandle?
    /// The pipes output is read from, closed at cleanup whatever state the readers are in (an
    /// abandoned session's handles were otherwise never closed: two descriptors per session).
    private let readers = HandleList()
    let pidFile: String?
    let output: AsyncStream<(UInt8, Data)>
    let exited: AsyncStream<Int32>
    private let stdinOpen = Mutex(true)

    /// Starts `binary args` with the session's stdio. `pidFile`: where the runtime writes the pid of
    /// the process inside the container, killed with the session.
    init(binary: String, args: [String], options: RemoteCommand.Options, pidFile: String?, initialSize: (UInt16, UInt16)? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        self.pidFile = pidFile
        let (outStream, outCont) = AsyncStream<(UInt8, Data)>.makeStream()
        let (exitStream, exitCont) = AsyncStream<Int32>.makeStream()
        output = outStream
        exited = exitStream
        // Readers finish the output stream once every one of them saw end of file.
        let openReaders = Mutex(0)
        let readers = self.readers
        func read(_ h: FileHandle, channel: UInt8) {
            openReaders.withLock { $0 += 1 }
            readers.list.withLock { $0.append(h) }
            h.readabilityHandler = { fh in
                // A terminal's master reads EIO once the last holder of its other end is gone:
                // an error is an end of file too (availableData would trap on it).
                let d = (try? fh.read(upToCount: 65536)) ?? Data()
                if d.isEmpty {
                    fh.readabilityHandler = nil
                    if openReaders.withLock({ $0 -= 1; return $0 }) == 0 { outCont.finish() }
                } else {
                    outCont.yield((channel, d))
                }
            }
        }
        if options.tty {
            // runc (--tty, in the foreground) makes the terminal inside the container and relays it
            // to its own stdio, which is this host-side terminal; resizing ours and signalling
            // SIGWINCH makes runc resize the container's.
            var master: Int32 = -1, slave: Int32 = -1
            var ws = winsize(ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0)
            if let (w, h) = initialSize { ws.ws_col = w; ws.ws_row = h }
            guard openpty(&master, &slave, nil, nil, &ws) == 0 else { throw RuncError("cannot allocate a terminal: errno \(errno)") }
            let slaveHandle = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
            p.standardInput = slaveHandle
            p.standardOutput = slaveHandle
            p.standardError = slaveHandle
            ptyMaster = master
            let masterHandle = FileHandle(fileDescriptor: master, closeOnDealloc: false)
            self.masterHandle = masterHandle
            stdinHandle = options.stdin ? masterHandle : nil
            try p.run()
            try? slaveHandle.close()   // the child holds its own copies
            // A terminal's master gets no readability events from FileHandle on Linux: a thread of
            // its own reads it until EIO, which comes once the last holder of the other end is gone.
            let fd = master
            let reader = Thread {
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = Glibc.read(fd, &buf, buf.count)
                    if n > 0 { outCont.yield((RemoteCommand.stdout, Data(buf[0..<n]))); continue }
                    if n < 0 && errno == EINTR { continue }
                    break
                }
                outCont.finish()
            }
            reader.start()
        } else {
            ptyMaster = nil
            masterHandle = nil
            let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
            p.standardInput = options.stdin ? inPipe : FileHandle.nullDevice
            p.standardOutput = options.stdout ? outPipe : FileHandle.nullDevice
            p.standardError = options.stderr ? errPipe : FileHandle.nullDevice
            stdinHandle = options.stdin ? inPipe.fileHandleForWriting : nil
            try p.run()
            if options.stdout { read(outPipe.fileHandleForReading, channel: RemoteCommand.stdout) }
            if options.stderr { read(errPipe.fileHandleForReading, channel: RemoteCommand.stderr) }
            if !options.stdout && !options.stderr { outCont.finish() }
        }
        process = p
        p.terminationHandler = { proc in
            exitCont.yield(proc.terminationStatus)
            exitCont.finish()
        }
        if !p.isRunning {   // it may have ended before the handler was set
            exitCont.yield(p.terminationStatus)
            exitCont.finish()
        }
    }

    func writeStdin(_ d: Data) {
        guard let h = stdinHandle, stdinOpen.withLock({ $0 }) else { return }
        try? h.write(contentsOf: d)
    }

    /// The client sends no more input: stdin reaches end of file (with a TTY, an end-of-file character).
    func closeStdin() {
        guard let h = stdinHandle, stdinOpen.withLock({ let was = $0; $0 = false; return was }) else { return }
        if ptyMaster != nil { try? h.write(contentsOf: Data([4])) } else { try? h.close() }
    }

    func resize(width: UInt16, height: UInt16) {
        guard let m = ptyMaster else { return }
        var ws = winsize(ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(m, UInt(TIOCSWINSZ), &ws)
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGWINCH) }
    }

    /// Kills the process in the container (by the pid the runtime wrote) and the runtime's own.
    func kill() {
        if let f = pidFile, let s = HostFile.text(f),
           let pid = Int32(s.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
            _ = Glibc.kill(pid, SIGKILL)
        }
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
    }

    func cleanup() {
        closeStdin()
        for h in readers.list.withLock({ r in defer { r.removeAll() }; return r }) {
            h.readabilityHandler = nil
            try? h.close()
        }
        if let m = ptyMaster { _ = Glibc.close(m) }
        if let f = pidFile {
            try? FileManager.default.removeItem(atPath: f)
            try? FileManager.default.removeItem(atPath: f + ".process.json")
        }
    }
}

final class HandleList: Sendable {
    let list = Mutex<[FileHandle]>([])
}
