// A real single-member etcd for the store tests (LocalEtcd: Debian's etcd-server on free loopback
// ports, mutual TLS from its own CA), in a temporary directory removed when the test ends.
import Foundation
import Logging
import Store
@testable import Etcd

final class EtcdProcess: @unchecked Sendable {
    let local: LocalEtcd
    let config: EtcdConfig

    static func freePort() -> Int { LocalEtcd.freePort() }

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-test-\(UUID().uuidString.prefix(8))").path
        local = try LocalEtcd(dir: dir)
        var c = local.config
        c.requestTimeout = .seconds(2)
        c.compactionInterval = .zero
        config = c
    }

    func start() throws { try local.start() }
    func kill() { local.kill() }

    func open(patience: Duration = .seconds(20)) async throws -> EtcdStore {
        var l = Logger(label: "etcd-test")
        l.logLevel = .critical
        return try await EtcdStore.open(config: config, logger: l, patience: patience)
    }

    deinit {
        local.kill()
        try? FileManager.default.removeItem(atPath: local.dir)
    }
}
