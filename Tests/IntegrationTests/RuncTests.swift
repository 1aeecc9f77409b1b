import Testing
import Foundation
import Agent

let canRunContainers = getuid() == 0 && FileManager.default.isExecutableFile(atPath: Runc.locate()) && FileManager.default.isExecutableFile(atPath: "/bin/busybox")

@Suite(.serialized, .enabled(if: canRunContainers, "needs root, runc and busybox-static")) struct RuncTests {
    @Test func runsAContainerCapturesItsOutputAndCleansUp() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("runc-\(UUID().uuidString.prefix(8))").path
        let rootfs = "\(dir)/rootfs"
        try FileManager.default.createDirectory(atPath: "\(rootfs)/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(rootfs)/bin/busybox")
        for app in ["sh", "echo", "sleep", "hostname"] { try FileManager.default.createSymbolicLink(atPath: "\(rootfs)/bin/\(app)", withDestinationPath: "busybox") }
        let runc = Runc(root: "\(dir)/state")
        let id = "test-\(UUID().uuidString.prefix(8).lowercased())"
        defer {
            _ = try? Command.runSync(runc.binary, ["--root", runc.root, "delete", "--force", id])
            try? FileManager.default.removeItem(atPath: dir)
        }
        try await runc.writeBundle(bundle: "\(dir)/bundle", rootfs: rootfs, args: ["/bin/sh", "-c", "echo hello from $(hostname); exec sleep 30"],
                                   env: ["PATH=/bin"], cwd: "/", hostname: "pod-a", memoryLimit: 64 << 20)
        try await runc.runDetached(id: id, bundle: "\(dir)/bundle", logFile: "\(dir)/log")
        let running = try await eventually(10, "running") { () -> RuncState? in
            let s = try await runc.state(id); return s?.status == "running" ? s : nil
        }
        #expect(running.pid > 0)
        _ = try await eventually(10, "output in the log file") { () -> Bool? in
            ((try? String(contentsOfFile: "\(dir)/log", encoding: .utf8)) ?? "").contains("hello from pod-a") ? true : nil
        }
        #expect(try await runc.list().map(\.id).contains(id))
        try await runc.kill(id, signal: "KILL")
        _ = try await eventually(10, "stopped") { try await runc.state(id)?.status == "stopped" ? true : nil }
        try await runc.delete(id)
        #expect(try await runc.state(id) == nil)
        // Gone, or a zombie waiting for whoever reaps orphans (the agent will be a subreaper).
        let st = (try? String(contentsOfFile: "/proc/\(running.pid)/status", encoding: .utf8)) ?? ""
        #expect(st.isEmpty || st.contains("State:\tZ"), "the container's process still runs")
    }
}
