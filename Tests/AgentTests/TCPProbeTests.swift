// The tcpSocket probe's connect: open, or refused as the kubelet words it.
import Testing
import Foundation
@testable import Agent
import Client

@Suite struct TCPProbeTests {
    /// A loopback listener on a free port, and its port.
    func listener(backlog: Int32 = 4) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(bound)
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    @Test func anOpenPortPassesAndAClosedOneIsRefused() throws {
        let (fd, port) = try listener()
        #expect(TCPDial.connect(host: "127.0.0.1", port: port, timeout: 1) == .open)
        close(fd)
        #expect(TCPDial.connect(host: "127.0.0.1", port: port, timeout: 1) == .refused)
        #expect(TCPDial.connect(host: "127.0.0.1", port: port, timeout: 1).failure == "connect: connection refused")
        #expect(TCPDial.connect(host: "no-such-host", port: port, timeout: 1) == .failed("not an IPv4 address"))
    }

    /// A host that does not answer at all is told apart from one that refuses: a listener whose
    /// accept queue is full drops new SYNs, so a connect gets no answer and times out.
    @Test func noAnswerIsSilentNotRefused() throws {
        let (fd, port) = try listener(backlog: 0)
        defer { close(fd) }
        var outcomes: [TCPDial.Outcome] = []
        for _ in 0..<6 {
            let o = TCPDial.connect(host: "127.0.0.1", port: port, timeout: 0.3)
            outcomes.append(o)
            if o != .open { break }
        }
        #expect(outcomes.last == .silent("i/o timeout"), "\(outcomes)")
    }
}
