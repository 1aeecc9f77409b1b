import Foundation
import XCTest
@testable import Agent

/// A container whose shim died with it (a power cut, a reboot) has no exit record: the runtime
/// must report it exited once, at a fixed time, so that the restart back-off can run out.
final class LostContainerTests: XCTestCase {
    func dir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("lost-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func testAContainerOfAnEarlierBootIsExitedEvenWhenItsPIDIsTakenAgain() throws {
        let d = try dir()
        // Our own PID is alive: a process of this boot that took the container's old PID.
        let meta = ContainerMeta(name: "main", id: "u.main.0", attempt: 0, image: "i", imageID: "sha256:x",
                                 startedAt: Date(timeIntervalSinceNow: -60), pid: getpid(), bootID: "an-earlier-boot")
        let first = RuncRuntime.info(meta, dir: d)
        guard case .exited(let code, _, let at1) = first.state else { return XCTFail("running: \(first.state)") }
        XCTAssertEqual(code, 137)
        let second = RuncRuntime.info(meta, dir: d)
        guard case .exited(_, _, let at2) = second.state else { return XCTFail("running: \(second.state)") }
        XCTAssertEqual(Int(at1.timeIntervalSince1970), Int(at2.timeIntervalSince1970), "the finish time moved")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(d)/exit"))
    }

    func testAContainerWhoseProcessAndShimAreGoneKeepsOneFinishTime() throws {
        let d = try dir()
        let meta = ContainerMeta(name: "main", id: "u.main.0", attempt: 0, image: "i", imageID: "sha256:x",
                                 startedAt: Date(timeIntervalSinceNow: -60), pid: Int32.max - 7, bootID: RuncRuntime.bootID)
        guard case .exited(_, _, let at1) = RuncRuntime.info(meta, dir: d).state else { return XCTFail("running") }
        let text = try String(contentsOfFile: "\(d)/exit", encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("137 "), text)
        guard case .exited(_, _, let at2) = RuncRuntime.info(meta, dir: d).state else { return XCTFail("running") }
        XCTAssertEqual(Int(at1.timeIntervalSince1970), Int(at2.timeIntervalSince1970))
    }

    func testAContainerOfThisBootWithALiveProcessIsRunning() throws {
        let d = try dir()
        let meta = ContainerMeta(name: "main", id: "u.main.0", attempt: 0, image: "i", imageID: "sha256:x",
                                 startedAt: Date(), pid: getpid(), bootID: RuncRuntime.bootID)
        guard case .running = RuncRuntime.info(meta, dir: d).state else { return XCTFail("not running") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(d)/exit"))
    }
}
