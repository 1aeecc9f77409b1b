import Foundation
import XCTest
@testable import Agent

/// The CPU-rate sampler keeps one sample per container of the pods it saw in its last pass, and
/// nothing of pods that have gone (it used to keep every pod the agent ever ran).
final class StatsSamplerTests: XCTestCase {
    func stats(_ name: String, cpu: UInt64, at: Double) -> ContainerStats {
        ContainerStats(name: name, cpuUsageNanoSeconds: cpu, memoryWorkingSetBytes: 1, timestamp: Date(timeIntervalSince1970: at))
    }

    func testARateIsTheCPUTimeBetweenTwoSamples() {
        let s = StatsSampler()
        XCTAssertEqual(s.update(uid: "a", [stats("main", cpu: 0, at: 100)]).map(\.1), [0])
        XCTAssertEqual(s.update(uid: "a", [stats("main", cpu: 500_000_000, at: 102)]).map(\.1), [250_000_000])
    }

    func testPodsThatHaveGoneAreForgotten() {
        let s = StatsSampler()
        for i in 0..<1000 { _ = s.update(uid: "pod-\(i)", [stats("main", cpu: 1, at: 1), stats("side", cpu: 1, at: 1)]) }
        XCTAssertEqual(s.last.withLock { $0.count }, 2000)
        s.forget(allBut: ["pod-7", "pod-999"])
        XCTAssertEqual(s.last.withLock { Set($0.keys) }, ["pod-7/main", "pod-7/side", "pod-999/main", "pod-999/side"])
        // A pod that stays keeps its history: its next rate is still computed from the last sample.
        XCTAssertEqual(s.update(uid: "pod-7", [stats("main", cpu: 1_000_000_001, at: 2)]).map(\.1), [1_000_000_000])
        s.forget(allBut: [])
        XCTAssertEqual(s.last.withLock { $0.count }, 0)
    }
}
