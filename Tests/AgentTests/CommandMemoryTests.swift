import Foundation
import Client
import XCTest
@testable import Agent

/// The agent runs several host commands per pod (runc, CNI plugins, ip, mount); each reads the
/// command's output files back. Reading them kept about 8 KiB per command (Foundation's
/// String(contentsOfFile:) on the empty output files), so an agent grew by tens of MB an hour
/// under pod churn.
final class CommandMemoryTests: XCTestCase {
    /// Anonymous resident memory of this process, in KiB.
    func rssAnon() -> Int {
        let status = HostFile.text("/proc/self/status") ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    func testRunningCommandsDoesNotGrowTheHeap() throws {
        for _ in 0..<200 { _ = try Command.runSync("/bin/true", []) }   // warm up allocator and caches
        let before = rssAnon()
        for _ in 0..<2000 { _ = try Command.runSync("/bin/true", []) }
        let grown = rssAnon() - before
        XCTAssertLessThan(grown, 4096, "2,000 commands grew anonymous memory by \(grown) KiB (the leak was about 16,000)")
    }

    func testOutputIsReadWholeAndStatusKept() throws {
        let r = try Command.runSync("/bin/sh", ["-c", "head -c 40000 /dev/zero | tr '\\\\0' x; echo; echo oops >&2; exit 3"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stdout.count, 40001)
        XCTAssertEqual(r.stderr, "oops\n")
        XCTAssertNil(HostFile.text("/nonexistent/file"))
        XCTAssertTrue(HostFile.text("/proc/self/stat")?.isEmpty == false, "a file that reports size 0 is read whole")
    }
}
