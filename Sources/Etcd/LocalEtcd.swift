// An etcd member (or a cluster of them on loopback) run as child processes, with client and peer mutual TLS from EtcdPKI:
// for the integration tests and hack/bench-apiserver --store etcd. Needs Debian's etcd-server.
import Foundation
import Store
import PKI

public final class LocalEtcd: @unchecked Sendable {
    public let dir: String
    public let clientURL: String
    public let peerURL: String
    public private(set) var config: EtcdConfig
    private var process: Process?
    private let lock = NSLock()

    public static var binary: String? {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A port on loopback nobody listens on now.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// This member's name and the whole cluster's `name=peerURL` list.
    public let name: String
    private var initialCluster: String
    private let pkiDir: String

    /// Makes certificates in DIR/pki and starts etcd with its data in DIR/data.
    public convenience init(dir: String) throws {
        try EtcdPKI.ensure(dir: "\(dir)/pki", addresses: ["127.0.0.1"])
        try self.init(dir: dir, name: "local", pkiDir: "\(dir)/pki")
        initialCluster = "local=\(peerURL)"
        try start()
    }

    private init(dir: String, name: String, pkiDir: String) throws {
        self.dir = dir; self.name = name; self.pkiDir = pkiDir
        clientURL = "https://127.0.0.1:\(Self.freePort())"
        peerURL = "https://127.0.0.1:\(Self.freePort())"
        initialCluster = ""
        var c = EtcdConfig(endpoints: [clientURL])
        c.caFile = "\(pkiDir)/ca.crt"; c.certFile = "\(pkiDir)/apiserver-etcd-client.crt"; c.keyFile = "\(pkiDir)/apiserver-etcd-client.key"
        config = c
    }

    /// A cluster of `members` members on loopback sharing DIR/pki, each with its data in
    /// DIR/NAME, started together. Each member's config names every client URL, its own first.
    public static func cluster(dir: String, members: Int) throws -> [LocalEtcd] {
        try EtcdPKI.ensure(dir: "\(dir)/pki", addresses: ["127.0.0.1"])
        let all = try (0..<members).map { try LocalEtcd(dir: "\(dir)/m\($0)", name: "m\($0)", pkiDir: "\(dir)/pki") }
        let list = all.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        for (i, m) in all.enumerated() {
            try FileManager.default.createDirectory(atPath: m.dir, withIntermediateDirectories: true)
            m.initialCluster = list
            m.config.endpoints = [m.clientURL] + all.indices.filter { $0 != i }.map { all[$0].clientURL }
        }
        for m in all { try m.start() }
        return all
    }

    public func start() throws {
        guard let bin = Self.binary else { throw StoreError.backend("etcd is not installed (apt-get install etcd-server)") }
        let pki = pkiDir
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["--name", name, "--data-dir", "\(dir)/data",
                       "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                       "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                       "--initial-cluster", initialCluster,
                       "--cert-file", "\(pki)/server.crt", "--key-file", "\(pki)/server.key",
                       "--trusted-ca-file", "\(pki)/ca.crt", "--client-cert-auth",
                       "--peer-cert-file", "\(pki)/peer.crt", "--peer-key-file", "\(pki)/peer.key",
                       "--peer-trusted-ca-file", "\(pki)/ca.crt", "--peer-client-cert-auth",
                       "--experimental-watch-progress-notify-interval", "1s"]
        let logPath = "\(dir)/etcd.log"
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        lock.withLock { process = p }
    }

    public var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }

    /// SIGSTOP: a member that hangs (its connections stay open and nothing answers); `resume` undoes it.
    public func pause() { if let p = pid { Glibc.kill(p, SIGSTOP) } }
    public func resume() { if let p = pid { Glibc.kill(p, SIGCONT) } }

    /// SIGKILL: a crash.
    public func kill() {
        guard let p = lock.withLock({ defer { process = nil }; return process }), p.isRunning else { return }
        Glibc.kill(p.processIdentifier, SIGCONT)
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    deinit { kill() }
}
