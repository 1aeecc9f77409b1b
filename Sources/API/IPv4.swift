// IPv4 addresses and CIDR ranges as integers: parsing, membership and offsets, for the service
// address allocator, the proxy and DNS reverse names.
import Foundation

public struct IPv4: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public init?(_ s: String) {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            // Leading zeros are refused, as Kubernetes' validation does (they read as octal elsewhere).
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCII), let n = UInt32(p), n <= 255, p == "0" || !p.hasPrefix("0") else { return nil }
            v = v << 8 | n
        }
        value = v
    }
    public var description: String { "\(value >> 24).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)" }
    public static func < (a: IPv4, b: IPv4) -> Bool { a.value < b.value }
    /// "4.3.2.1.in-addr.arpa" for 1.2.3.4.
    public var reverseName: String { "\(value & 255).\(value >> 8 & 255).\(value >> 16 & 255).\(value >> 24).in-addr.arpa" }
}

public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public var base: IPv4
    public var prefix: Int
    public init?(_ s: String) {
        let p = s.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 2, let ip = IPv4(String(p[0])), let n = Int(p[1]), (0...32).contains(n) else { return nil }
        let mask: UInt32 = n == 0 ? 0 : ~UInt32(0) << (32 - n)
        guard ip.value & ~mask == 0 else { return nil }   // host bits set: ambiguous, refuse
        base = ip; prefix = n
    }
    public var mask: UInt32 { prefix == 0 ? 0 : ~UInt32(0) << (32 - prefix) }
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefix) }
    public func contains(_ ip: IPv4) -> Bool { ip.value & mask == base.value }
    public func contains(_ s: String) -> Bool { IPv4(s).map(contains) ?? false }
    /// The address `offset` places above the network address.
    public func address(_ offset: UInt64) -> IPv4 { IPv4(base.value &+ UInt32(truncatingIfNeeded: offset)) }
    public func offset(of ip: IPv4) -> UInt64 { UInt64(ip.value &- base.value) }
    public var description: String { "\(base)/\(prefix)" }
}
