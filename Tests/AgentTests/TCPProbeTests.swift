// The tcpSocket probe's connect: open, or refused as the kubelet words it.
import Testing
import Foundation
@testable import Agent

@Suite struct TCPProbeTests {
    /// A loopback listener on a free port, and its port.
    func listener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(bound)
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    @Test func anOpenPortPassesAndAClosedOneIsRefused() throws {
        let (fd, port) = try listener()
        #expect(Prober.tcpConnect(host: "127.0.0.1", port: port, timeout: 1) == nil)
        close(fd)
        #expect(Prober.tcpConnect(host: "127.0.0.1", port: port, timeout: 1) == "connect: connection refused")
        #expect(Prober.tcpConnect(host: "no-such-host", port: port, timeout: 1) == "not an IPv4 address")
    }
}
