// A real single-member etcd for the store tests: Debian's etcd-server, started on free loopback
// ports with client mutual TLS from our own CA, in a temporary data directory; stopped (by pid)
// and removed when the test ends.
import Foundation
import Logging
import PKI
import Store
@testable import Etcd

final class EtcdProcess: @unchecked Sendable {
    let dir: String
    let clientURL: String
    let config: EtcdConfig
    private var process: Process?
    private let peerURL: String

    static var binary: String? {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ca = try CertificateAuthority.generate(commonName: "etcd-test-ca")
        let server = try ca.issue(commonName: "etcd", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: .both)
        let client = try ca.issue(commonName: "kube-apiserver-etcd-client", usage: .client)
        try ca.certificatePEM.write(toFile: "\(dir)/ca.crt", atomically: true, encoding: .utf8)
        try server.certificatePEM.write(toFile: "\(dir)/server.crt", atomically: true, encoding: .utf8)
        try server.keyPEM.write(toFile: "\(dir)/server.key", atomically: true, encoding: .utf8)
        try client.certificatePEM.write(toFile: "\(dir)/client.crt", atomically: true, encoding: .utf8)
        try client.keyPEM.write(toFile: "\(dir)/client.key", atomically: true, encoding: .utf8)
        clientURL = "https://127.0.0.1:\(Self.freePort())"
        peerURL = "http://127.0.0.1:\(Self.freePort())"
        var c = EtcdConfig(endpoints: [clientURL])
        c.caFile = "\(dir)/ca.crt"; c.certFile = "\(dir)/client.crt"; c.keyFile = "\(dir)/client.key"
        c.requestTimeout = .seconds(2)
        c.compactionInterval = .zero
        config = c
        try start()
    }

    func start() throws {
        guard let bin = Self.binary else { throw StoreError.backend("etcd is not installed (apt-get install etcd-server)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["--name", "test", "--data-dir", "\(dir)/data",
                       "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                       "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                       "--initial-cluster", "test=\(peerURL)",
                       "--cert-file", "\(dir)/server.crt", "--key-file", "\(dir)/server.key",
                       "--trusted-ca-file", "\(dir)/ca.crt", "--client-cert-auth",
                       "--experimental-watch-progress-notify-interval", "1s"]
        let log = FileHandle(forWritingAtPath: "\(dir)/etcd.log") ?? {
            FileManager.default.createFile(atPath: "\(dir)/etcd.log", contents: nil)
            return FileHandle(forWritingAtPath: "\(dir)/etcd.log")!
        }()
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
    }

    /// SIGKILL, as a crash.
    func kill() {
        guard let p = process, p.isRunning else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    func open(patience: Duration = .seconds(20)) async throws -> EtcdStore {
        var l = Logger(label: "etcd-test")
        l.logLevel = .warning
        return try await EtcdStore.open(config: config, logger: l, patience: patience)
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
