// A bounded TCP connect, for probes of containers (the agent's tcpSocket probe) and of nodes
// (the node-lifecycle controller asks whether a silent node's host answers at all).
import Foundation
import Glibc

public enum TCPDial {
    public enum Outcome: Sendable, Equatable {
        /// The connection opened.
        case open
        /// The host answered and refused (a reset): its kernel is up, nothing listens.
        case refused
        /// Nothing answered in time, or there is no route to the host: the host, or the way to
        /// it, is gone. The text is the reason, as Go's dialer words it ("i/o timeout",
        /// "connect: no route to host").
        case silent(String)
        /// Anything else (a bad address, a socket that could not be made).
        case failed(String)

        /// nil when open; else the reason, worded as the kubelet's ("connect: connection refused").
        public var failure: String? {
            switch self {
            case .open: return nil
            case .refused: return "connect: connection refused"
            case .silent(let s), .failed(let s): return s
            }
        }
    }

    /// A non-blocking connect to an IPv4 address, bounded by `timeout` seconds. Blocks the
    /// calling thread for up to the timeout; async callers use `dial`.
    public static func connect(host: String, port: Int, timeout: Double) -> Outcome {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        guard (1...65535).contains(port) else { return .failed("port \(port) is out of range") }
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { return .failed("not an IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failed("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc == 0 { return .open }
        guard errno == EINPROGRESS else { return classify(errno) }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, timeout) * 1e9)
        while true {
            let left = Int64(deadline) - Int64(DispatchTime.now().uptimeNanoseconds)
            guard left > 0 else { return .silent("i/o timeout") }
            let n = poll(&p, 1, Int32(max(1, left / 1_000_000)))
            if n == 1 { break }
            if n == 0 { return .silent("i/o timeout") }
            if errno != EINTR { return .failed("poll: \(String(cString: strerror(errno)).lowercased())") }
        }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err == 0 ? .open : classify(err)
    }

    static func classify(_ e: Int32) -> Outcome {
        let text = "connect: \(String(cString: strerror(e)).lowercased())"
        switch e {
        case ECONNREFUSED: return .refused
        case EHOSTUNREACH, ENETUNREACH, ETIMEDOUT, EHOSTDOWN, ENETDOWN: return .silent(text)
        default: return .failed(text)
        }
    }

    /// `connect` off the cooperative pool (it blocks for up to the timeout).
    public static func dial(host: String, port: Int, timeout: Double) async -> Outcome {
        await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: connect(host: host, port: port, timeout: timeout)) }
        }
    }
}
