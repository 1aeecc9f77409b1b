// A single etcd member run as a child process, with client and peer mutual TLS from EtcdPKI:
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

    /// Makes certificates in DIR/pki and starts etcd with its data in DIR/data.
    public init(dir: String) throws {
        self.dir = dir
        try EtcdPKI.ensure(dir: "\(dir)/pki", addresses: ["127.0.0.1"])
        clientURL = "https://127.0.0.1:\(Self.freePort())"
        peerURL = "https://127.0.0.1:\(Self.freePort())"
        var c = EtcdConfig(endpoints: [clientURL])
        c.caFile = "\(dir)/pki/ca.crt"; c.certFile = "\(dir)/pki/apiserver-etcd-client.crt"; c.keyFile = "\(dir)/pki/apiserver-etcd-client.key"
        config = c
        try start()
    }

    public func start() throws {
        guard let bin = Self.binary else { throw StoreError.backend("etcd is not installed (apt-get install etcd-server)") }
        let pki = "\(dir)/pki"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["--name", "local", "--data-dir", "\(dir)/data",
                       "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                       "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                       "--initial-cluster", "local=\(peerURL)",
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

    /// SIGKILL: a crash.
    public func kill() {
        guard let p = lock.withLock({ defer { process = nil }; return process }), p.isRunning else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    deinit { kill() }
}
