// The etcd store on a three-member cluster (Debian's etcd-server on loopback, mutual TLS): a
// member that hangs mid-write does not fail the write, and the store's cache follows the others.
import Testing
import Foundation
import Logging
import Store
@testable import Etcd

@Suite(.serialized) struct EtcdFailoverTests {
    @Test func writesSentToAHungMemberAreSentAgainToAnother() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-cluster-\(UUID().uuidString.prefix(8))").path
        let members = try LocalEtcd.cluster(dir: dir, members: 3)
        defer {
            for m in members { m.kill() }
            try? FileManager.default.removeItem(atPath: dir)
        }
        var config = members[0].config
        config.requestTimeout = .seconds(2)
        config.compactionInterval = .zero
        var logger = Logger(label: "etcd-failover-test")
        logger.logLevel = .critical
        let store = try await EtcdStore.open(config: config, logger: logger, patience: .seconds(30))
        defer { store.shutdown() }
        var a = try await store.write(.create(obj("a")))

        // The member the store uses (its first, once every member answers) stops answering:
        // connections stay open, nothing comes back.
        let settled = ContinuousClock.now + .seconds(20)
        while store.activeEndpoint.withLock({ $0 }) != 0 && ContinuousClock.now < settled { try await Task.sleep(for: .milliseconds(50)) }
        try #require(store.activeEndpoint.withLock { $0 } == 0)
        members[0].pause()
        defer { members[0].resume() }
        let clock = ContinuousClock()
        let started = clock.now
        for i in 0..<5 {
            // Each write is conditional on the last one's revision: a repeat of an applied write
            // would be a conflict, a lost one would leave the revision behind.
            a = try await store.write(.update(obj("a", payload: "v\(i)"), expectedRevision: a.revision))
        }
        #expect(clock.now - started < .seconds(15), "five writes took \(clock.now - started) with one member hung")
        #expect(store.activeEndpoint.withLock { $0 } != 0)
        // The store's cache follows the members that answer.
        let deadline = clock.now + .seconds(15)
        while store.get(a.key)?.revision != a.revision && clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(store.get(a.key)?.revision == a.revision)
        #expect(store.get(a.key).map { String(decoding: $0.data, as: UTF8.self).contains("v4") } == true)
    }
}
