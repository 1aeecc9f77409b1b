// Tests for the cluster DNS component: wire codec robustness, the record table against the
// Kubernetes DNS schema, and the NIO server over real loopback UDP/TCP with fake upstreams.

import NIOCore
import NIOPosix
import Testing
@testable import Agent

// MARK: - Fixtures

private func fixtureServices() -> [DNSService] {
    [
        DNSService(namespace: "default", name: "web", clusterIP: "10.96.0.10", type: "ClusterIP",
                   ports: [DNSServicePort(name: "http", proto: "TCP", port: 80),
                           DNSServicePort(name: "", proto: "TCP", port: 8080)]),
        DNSService(namespace: "default", name: "np", clusterIP: "10.96.0.11", type: "NodePort",
                   ports: [DNSServicePort(name: "http", port: 80)]),
        DNSService(namespace: "default", name: "lb", clusterIP: "10.96.0.12", type: "LoadBalancer"),
        DNSService(namespace: "default", name: "hl", clusterIP: "None",
                   ports: [DNSServicePort(name: "http", proto: "TCP", port: 80)],
                   endpoints: [DNSEndpoint(ip: "10.1.0.1", hostname: "pod-0", ready: true),
                               DNSEndpoint(ip: "10.1.0.2", hostname: nil, ready: true),
                               DNSEndpoint(ip: "10.1.0.3", hostname: "pod-2", ready: false)]),
        DNSService(namespace: "default", name: "hlpub", clusterIP: nil,
                   endpoints: [DNSEndpoint(ip: "10.2.0.1", ready: true),
                               DNSEndpoint(ip: "10.2.0.2", hostname: "b", ready: false)],
                   publishNotReadyAddresses: true),
        DNSService(namespace: "default", name: "empty", clusterIP: "",
                   endpoints: [DNSEndpoint(ip: "10.3.0.1", ready: false)]),
        DNSService(namespace: "default", name: "ext", clusterIP: nil, type: "ExternalName",
                   externalName: "www.example.com"),
        DNSService(namespace: "default", name: "v6", clusterIP: "fd00::10"),
        DNSService(namespace: "kube-system", name: "kube-dns", clusterIP: "10.96.0.53",
                   ports: [DNSServicePort(name: "dns", proto: "UDP", port: 53),
                           DNSServicePort(name: "dns-tcp", proto: "TCP", port: 53)]),
    ]
}

private let fixtureTable = ClusterDNSTable(services: fixtureServices())

private func makeQuery(_ name: String, _ type: DNSRecordType, id: UInt16 = 0x4242, edns: DNSEDNS? = nil) -> DNSMessage {
    DNSMessage(id: id, recursionDesired: true, questions: [DNSQuestion(name: DNSName(name)!, type: type)], edns: edns)
}

private func rcodeName(_ r: DNSResponseCode) -> String { r.description }

// MARK: - Codec

@Suite struct DNSCodecTests {
    static let sample = DNSMessage(
        id: 0xBEEF, isResponse: true, opcode: 0, authoritative: true, recursionDesired: true,
        recursionAvailable: true, checkingDisabled: true, rcode: .nxDomain,
        questions: [DNSQuestion(name: DNSName("Web.Default.svc.cluster.local")!, type: .any)],
        answers: [
            DNSRecord(name: DNSName("web.default.svc.cluster.local")!, type: .a, ttl: 5, data: .a([10, 96, 0, 10])),
            DNSRecord(name: DNSName("web.default.svc.cluster.local")!, type: .aaaa, ttl: 5,
                      data: .aaaa(dnsParseIP("fd00::10")!)),
            DNSRecord(name: DNSName("x.cluster.local")!, type: .cname, ttl: 7, data: .cname(DNSName("www.example.com")!)),
            DNSRecord(name: DNSName("10.0.96.10.in-addr.arpa")!, type: .ptr, ttl: 5,
                      data: .ptr(DNSName("web.default.svc.cluster.local")!)),
            DNSRecord(name: DNSName("_http._tcp.web.default.svc.cluster.local")!, type: .srv, ttl: 5,
                      data: .srv(priority: 0, weight: 100, port: 80, target: DNSName("web.default.svc.cluster.local")!)),
            DNSRecord(name: DNSName("dns-version.cluster.local")!, type: .txt, ttl: 5, data: .txt([Array("1.1.0".utf8)])),
            DNSRecord(name: DNSName("odd.example")!, type: DNSRecordType(rawValue: 99), ttl: 1, data: .raw([1, 2, 3])),
        ],
        authorities: [
            DNSRecord(name: DNSName("cluster.local")!, type: .ns, ttl: 5, data: .ns(DNSName("ns.dns.cluster.local")!)),
            DNSRecord(name: DNSName("cluster.local")!, type: .soa, ttl: 5, data: .soa(DNSSOAData(
                mname: DNSName("ns.dns.cluster.local")!, rname: DNSName("hostmaster.cluster.local")!,
                serial: 42, refresh: 7200, retry: 1800, expire: 86400, minimum: 5))),
        ],
        additionals: [DNSRecord(name: DNSName("web.default.svc.cluster.local")!, type: .a, ttl: 5, data: .a([10, 96, 0, 10]))],
        edns: DNSEDNS(udpPayloadSize: 1232, version: 0, dnssecOK: true, options: [0, 10, 0, 2, 0xAB, 0xCD]))

    @Test(arguments: [true, false])
    func roundTrip(compress: Bool) throws {
        let bytes = Self.sample.encode(compress: compress)
        let decoded = try DNSMessage.decode(bytes)
        #expect(decoded == Self.sample)
        // Case as sent must survive, since answers echo the question.
        #expect(decoded.questions[0].name.description == "Web.Default.svc.cluster.local.")
    }

    @Test func compressionShrinksMessages() {
        #expect(Self.sample.encode(compress: true).count < Self.sample.encode(compress: false).count)
    }

    @Test func extendedRcodeTravelsInOPT() throws {
        var m = makeQuery("a.b", .a, edns: DNSEDNS())
        m.isResponse = true
        m.rcode = .badVers
        let bytes = m.encode()
        #expect(bytes[3] & 0x0F == 0)
        #expect(try DNSMessage.decode(bytes).rcode == .badVers)
    }

    @Test func truncationKeepsWholeAnswersAndSetsTC() throws {
        var m = DNSMessage.reply(to: makeQuery("big.example", .a), rcode: .noError)
        m.answers = (0..<200).map { i in
            DNSRecord(name: DNSName("big.example")!, type: .a, ttl: 5, data: .a([10, 0, UInt8(i / 256), UInt8(i % 256)]))
        }
        let small = m.encode(maxSize: 512)
        #expect(small.count <= 512)
        let decoded = try DNSMessage.decode(small)
        #expect(decoded.truncated)
        #expect(decoded.answers.count > 0 && decoded.answers.count < 200)
        #expect(decoded.answers == Array(m.answers.prefix(decoded.answers.count)))
        let full = try DNSMessage.decode(m.encode(maxSize: 65535))
        #expect(!full.truncated && full.answers.count == 200)
    }

    @Test(arguments: [
        ("10.96.0.1", "10.96.0.1"), ("fd00::10", "fd00::10"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::1", "::1"), ("::", "::"), ("::ffff:1.2.3.4", "::ffff:102:304"),
    ])
    func addressText(input: String, formatted: String) {
        #expect(dnsParseIP(input).flatMap(dnsFormatIP) == formatted)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1::2::3", "12345::", ":::", "a.b.c.d", "1:2:3:4:5:6:7:8:9"])
    func badAddressText(input: String) {
        #expect(dnsParseIP(input) == nil)
    }
}

/// Outcome expected from the server for a hostile datagram.
enum DNSMalformedExpectation: Sendable { case drop, formErr }

private func header(id: UInt16 = 0x1234, flags: UInt16 = 0x0100, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
    [id, flags, qd, an, ns, ar].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
}

private let validQuestion: [UInt8] = [3] + Array("web".utf8) + [7] + Array("default".utf8) + [0, 0, 1, 0, 1]

private let dnsMalformedCases: [(String, [UInt8], DNSMalformedExpectation)] = [
    ("empty", [], .drop),
    ("truncated header", [0x12, 0x34, 0x01, 0x00, 0x00], .drop),
    ("11 bytes", Array(header().prefix(11)), .drop),
    ("header only, question missing", header(), .formErr),
    ("question cut in the middle", header() + [3, 0x77, 0x65], .formErr),
    ("question without type", header() + [1, 0x61, 0], .formErr),
    ("pointer to itself", header() + [0xC0, 12, 0, 1, 0, 1], .formErr),
    ("pointer loop through a label", header() + [1, 0x61, 0xC0, 12, 0, 1, 0, 1], .formErr),
    ("forward pointer", header() + [0xC0, 20, 0, 1, 0, 1, 0, 0, 1, 0x61, 0], .formErr),
    ("pointer past end", header() + [0xC0, 0xFF, 0, 1, 0, 1], .formErr),
    ("truncated pointer", header() + [0xC0], .formErr),
    ("label of 64 bytes", header() + [64] + [UInt8](repeating: 0x61, count: 64) + [0, 0, 1, 0, 1], .formErr),
    ("extended label type", header() + [0x80, 0, 0, 1, 0, 1], .formErr),
    ("name over 255 bytes", header() + (0..<5).flatMap { _ in [60] + [UInt8](repeating: 0x61, count: 60) } + [0, 0, 1, 0, 1], .formErr),
    ("counts larger than the message", header(qd: 0xFFFF, an: 0xFFFF, ns: 0xFFFF, ar: 0xFFFF) + validQuestion, .formErr),
    ("record data past end", header(an: 1) + validQuestion + [0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 10, 1, 2], .formErr),
    ("A record of 3 bytes", header(an: 1) + validQuestion + [0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 3, 1, 2, 3], .formErr),
    ("two OPT records", header(ar: 2) + validQuestion + [0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0], .formErr),
    ("OPT not at root", header(ar: 1) + validQuestion + [1, 0x61, 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0], .formErr),
    ("a response is never answered", header(flags: 0x8100, qd: 1) + [0xC0, 12, 0, 1, 0, 1], .drop),
]

@Suite struct DNSMalformedInputTests {
    @Test(arguments: dnsMalformedCases)
    func hostileInput(label: String, bytes: [UInt8], expected: DNSMalformedExpectation) throws {
        let server = DNSServer(host: "127.0.0.1", port: 0, upstreams: [], table: fixtureTable)
        for overTCP in [false, true] {
            switch (server.process(bytes, overTCP: overTCP), expected) {
            case (.drop, .drop):
                break
            case (.reply(let out), .formErr):
                let reply = try DNSMessage.decode(out)
                #expect(reply.rcode == .formErr, "\(label)")
                #expect(reply.id == 0x1234 && reply.isResponse, "\(label)")
            default:
                Issue.record("\(label): unexpected outcome")
            }
        }
    }

    @Test func malformedQueryWithEDNSStillDecodesEDNS() throws {
        let bytes = header(ar: 1) + validQuestion + [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]
        let m = try DNSMessage.decode(bytes)
        #expect(m.edns?.udpPayloadSize == 4096)
        #expect(m.udpReplyLimit == 4096)
        #expect(m.additionals.isEmpty)
    }

    /// Random and mutated datagrams: decoding, answering and re-encoding must never trap.
    @Test func fuzzNeverCrashes() throws {
        var rng = DNSSplitMix(seed: 0xD15EA5E)
        let seeds: [[UInt8]] = [
            makeQuery("web.default.svc.cluster.local", .a, edns: DNSEDNS()).encode(),
            makeQuery("_http._tcp.hl.default.svc.cluster.local", .srv).encode(),
            DNSCodecTests.sample.encode(),
            DNSCodecTests.sample.encode(compress: false),
        ]
        let server = DNSServer(host: "127.0.0.1", port: 0, upstreams: [], table: fixtureTable)
        var decodedCount = 0
        for i in 0..<20_000 {
            var bytes: [UInt8]
            if i % 4 == 0 {
                bytes = (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                bytes = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) where !bytes.isEmpty {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 3 {
                    case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: bytes.removeSubrange(at...)
                    default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    }
                }
            }
            if let m = try? DNSMessage.decode(bytes) {
                decodedCount += 1
                _ = try? DNSMessage.decode(m.encode())
                if case .response(let r) = fixtureTable.answer(m) { _ = r.encode(maxSize: 512) }
            }
            _ = server.process(bytes, overTCP: i % 2 == 0)
        }
        #expect(decodedCount > 100)
    }
}

/// Small deterministic generator so fuzz failures reproduce.
struct DNSSplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Record table

struct DNSLookupCase: Sendable, CustomTestStringConvertible {
    let name: String
    let type: DNSRecordType
    let rcode: DNSResponseCode
    let answers: [String]
    var additional: [String] = []
    var testDescription: String { "\(name) \(type)" }
}

private let soaText = "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local."

private let dnsLookupCases: [DNSLookupCase] = [
    // Services with a cluster IP, whatever their type.
    DNSLookupCase(name: "web.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["web.default.svc.cluster.local. 5 A 10.96.0.10"]),
    DNSLookupCase(name: "np.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["np.default.svc.cluster.local. 5 A 10.96.0.11"]),
    DNSLookupCase(name: "lb.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["lb.default.svc.cluster.local. 5 A 10.96.0.12"]),
    DNSLookupCase(name: "kube-dns.kube-system.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.53"]),
    DNSLookupCase(name: "v6.default.svc.cluster.local.", type: .aaaa, rcode: .noError,
               answers: ["v6.default.svc.cluster.local. 5 AAAA fd00::10"]),
    // Case-insensitive match, question echoed as sent.
    DNSLookupCase(name: "WEB.Default.SVC.Cluster.LOCAL.", type: .a, rcode: .noError,
               answers: ["WEB.Default.SVC.Cluster.LOCAL. 5 A 10.96.0.10"]),
    // Headless: ready endpoints only, unless not-ready ones are published.
    DNSLookupCase(name: "hl.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["hl.default.svc.cluster.local. 5 A 10.1.0.1", "hl.default.svc.cluster.local. 5 A 10.1.0.2"]),
    DNSLookupCase(name: "hlpub.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["hlpub.default.svc.cluster.local. 5 A 10.2.0.1", "hlpub.default.svc.cluster.local. 5 A 10.2.0.2"]),
    DNSLookupCase(name: "pod-0.hl.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["pod-0.hl.default.svc.cluster.local. 5 A 10.1.0.1"]),
    DNSLookupCase(name: "10-1-0-2.hl.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["10-1-0-2.hl.default.svc.cluster.local. 5 A 10.1.0.2"]),
    DNSLookupCase(name: "b.hlpub.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["b.hlpub.default.svc.cluster.local. 5 A 10.2.0.2"]),
    DNSLookupCase(name: "pod-2.hl.default.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "empty.default.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    // SRV for named ports only; ClusterIP targets the service, headless targets each endpoint.
    DNSLookupCase(name: "_http._tcp.web.default.svc.cluster.local.", type: .srv, rcode: .noError,
               answers: ["_http._tcp.web.default.svc.cluster.local. 5 SRV 0 100 80 web.default.svc.cluster.local."],
               additional: ["web.default.svc.cluster.local. 5 A 10.96.0.10"]),
    DNSLookupCase(name: "_HTTP._TCP.np.default.svc.cluster.local.", type: .srv, rcode: .noError,
               answers: ["_HTTP._TCP.np.default.svc.cluster.local. 5 SRV 0 100 80 np.default.svc.cluster.local."],
               additional: ["np.default.svc.cluster.local. 5 A 10.96.0.11"]),
    DNSLookupCase(name: "_dns._udp.kube-dns.kube-system.svc.cluster.local.", type: .srv, rcode: .noError,
               answers: ["_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local."],
               additional: ["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.53"]),
    DNSLookupCase(name: "_http._tcp.hl.default.svc.cluster.local.", type: .srv, rcode: .noError,
               answers: ["_http._tcp.hl.default.svc.cluster.local. 5 SRV 0 100 80 pod-0.hl.default.svc.cluster.local.",
                         "_http._tcp.hl.default.svc.cluster.local. 5 SRV 0 100 80 10-1-0-2.hl.default.svc.cluster.local."],
               additional: ["pod-0.hl.default.svc.cluster.local. 5 A 10.1.0.1",
                            "10-1-0-2.hl.default.svc.cluster.local. 5 A 10.1.0.2"]),
    DNSLookupCase(name: "_http._udp.web.default.svc.cluster.local.", type: .srv, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "_dns-tcp._udp.kube-dns.kube-system.svc.cluster.local.", type: .srv, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "_tcp.web.default.svc.cluster.local.", type: .srv, rcode: .noError, answers: []),
    // Reverse lookups.
    DNSLookupCase(name: "10.0.96.10.in-addr.arpa.", type: .ptr, rcode: .noError,
               answers: ["10.0.96.10.in-addr.arpa. 5 PTR web.default.svc.cluster.local."]),
    DNSLookupCase(name: "1.0.1.10.in-addr.arpa.", type: .ptr, rcode: .noError,
               answers: ["1.0.1.10.in-addr.arpa. 5 PTR pod-0.hl.default.svc.cluster.local."]),
    DNSLookupCase(name: "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", type: .ptr, rcode: .noError,
               answers: ["0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 PTR v6.default.svc.cluster.local."]),
    // ExternalName: a CNAME for any type, not chased.
    DNSLookupCase(name: "ext.default.svc.cluster.local.", type: .a, rcode: .noError,
               answers: ["ext.default.svc.cluster.local. 5 CNAME www.example.com."]),
    DNSLookupCase(name: "ext.default.svc.cluster.local.", type: .cname, rcode: .noError,
               answers: ["ext.default.svc.cluster.local. 5 CNAME www.example.com."]),
    // NODATA: the name exists, the type does not; empty non-terminals exist too.
    DNSLookupCase(name: "web.default.svc.cluster.local.", type: .aaaa, rcode: .noError, answers: []),
    DNSLookupCase(name: "web.default.svc.cluster.local.", type: .cname, rcode: .noError, answers: []),
    DNSLookupCase(name: "default.svc.cluster.local.", type: .a, rcode: .noError, answers: []),
    DNSLookupCase(name: "svc.cluster.local.", type: .a, rcode: .noError, answers: []),
    DNSLookupCase(name: "kube-system.svc.cluster.local.", type: .a, rcode: .noError, answers: []),
    // NXDOMAIN inside the zone.
    DNSLookupCase(name: "missing.default.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "web.nowhere.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "nowhere.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "example.org.default.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    DNSLookupCase(name: "x.web.default.svc.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
    // Zone apex, schema version and the deprecated pod records.
    DNSLookupCase(name: "cluster.local.", type: .ns, rcode: .noError, answers: ["cluster.local. 5 NS ns.dns.cluster.local."]),
    DNSLookupCase(name: "cluster.local.", type: .a, rcode: .noError, answers: []),
    DNSLookupCase(name: "dns-version.cluster.local.", type: .txt, rcode: .noError,
               answers: ["dns-version.cluster.local. 5 TXT \"1.1.0\""]),
    DNSLookupCase(name: "10-1-0-9.default.pod.cluster.local.", type: .a, rcode: .noError,
               answers: ["10-1-0-9.default.pod.cluster.local. 5 A 10.1.0.9"]),
    DNSLookupCase(name: "not-an-ip.default.pod.cluster.local.", type: .a, rcode: .nxDomain, answers: []),
]

@Suite struct ClusterDNSTableTests {
    private func ask(_ q: DNSMessage, _ table: ClusterDNSTable = fixtureTable) -> DNSMessage? {
        guard case .response(let r) = table.answer(q) else { return nil }
        return r
    }

    @Test(arguments: dnsLookupCases)
    func lookup(_ c: DNSLookupCase) throws {
        let reply = try #require(ask(makeQuery(c.name, c.type)))
        #expect(reply.rcode == c.rcode)
        #expect(reply.isResponse && reply.authoritative && reply.id == 0x4242 && reply.recursionDesired)
        #expect(reply.questions == [DNSQuestion(name: DNSName(c.name)!, type: c.type)])
        #expect(reply.answers.map(\.description).sorted() == c.answers.sorted())
        #expect(reply.additionals.map(\.description).sorted() == c.additional.sorted())
        if c.answers.isEmpty {
            // Negative answers carry the zone SOA so resolvers can cache them.
            let auth = reply.authorities.map(\.description)
            #expect(auth.count == 1)
            #expect(auth.first?.hasPrefix(soaText) == true)
        }
        // Whatever the table answers must survive the wire.
        #expect(try DNSMessage.decode(reply.encode()) == reply)
    }

    @Test func apexSOA() throws {
        let reply = try #require(ask(makeQuery("cluster.local", .soa)))
        #expect(reply.answers.count == 1)
        #expect(reply.answers[0].description.hasPrefix(soaText))
        #expect(reply.authorities.isEmpty)
    }

    @Test(arguments: [
        ("example.org.", DNSRecordType.a), ("www.example.com.", .aaaa), ("local.", .soa), ("cluster.local.example.org.", .a),
        ("9.9.9.10.in-addr.arpa.", .ptr), ("3.10.in-addr.arpa.", .ptr), ("in-addr.arpa.", .soa),
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", .ptr),
        ("x.1.0.1.10.in-addr.arpa.", .ptr), ("01.0.1.10.in-addr.arpa.", .ptr),
    ])
    func forwardsOutsideNames(name: String, type: DNSRecordType) {
        #expect(fixtureTable.answer(makeQuery(name, type)) == .forward)
    }

    @Test func knownReverseNameOtherTypeIsNodata() throws {
        let reply = try #require(ask(makeQuery("10.0.96.10.in-addr.arpa.", .a)))
        #expect(reply.rcode == .noError && reply.answers.isEmpty && reply.authorities.count == 1)
    }

    @Test func protocolErrors() throws {
        var two = makeQuery("web.default.svc.cluster.local", .a)
        two.questions.append(two.questions[0])
        #expect(ask(two)?.rcode == .formErr)
        var none = makeQuery("web.default.svc.cluster.local", .a)
        none.questions = []
        #expect(ask(none)?.rcode == .formErr)
        var status = makeQuery("web.default.svc.cluster.local", .a)
        status.opcode = 2
        #expect(ask(status)?.rcode == .notImp)
        let v1 = makeQuery("web.default.svc.cluster.local", .a, edns: DNSEDNS(version: 1))
        let bad = try #require(ask(v1))
        #expect(bad.rcode == .badVers && bad.edns != nil)
        #expect(try DNSMessage.decode(bad.encode()).rcode == .badVers)
        #expect(ask(makeQuery("cluster.local", .axfr))?.rcode == .refused)
    }

    @Test func ednsIsEchoed() throws {
        let reply = try #require(ask(makeQuery("web.default.svc.cluster.local", .a, edns: DNSEDNS(udpPayloadSize: 4096, dnssecOK: true))))
        #expect(reply.edns?.dnssecOK == true)
        #expect(ask(makeQuery("web.default.svc.cluster.local", .a))?.edns == nil)
    }

    @Test func customDomainAndTTL() throws {
        let t = ClusterDNSTable(domain: "Corp.Example.", services: fixtureServices(), ttl: 30)
        #expect(t.domain == "corp.example")
        let reply = try #require(ask(makeQuery("web.default.svc.corp.example", .a), t))
        #expect(reply.answers.map(\.description) == ["web.default.svc.corp.example. 30 A 10.96.0.10"])
        #expect(t.answer(makeQuery("web.default.svc.cluster.local", .a)) == .forward)
    }

    @Test func tenThousandServices() throws {
        let services = (0..<10_000).map { i in
            DNSService(namespace: "ns\(i % 100)", name: "svc\(i)", clusterIP: "10.\(96 + i / 65536).\(i / 256 % 256).\(i % 256)",
                       ports: [DNSServicePort(name: "http", port: 80)])
        }
        let t = ClusterDNSTable(services: services)
        #expect(t.serviceCount == 10_000)
        for i in stride(from: 0, to: 10_000, by: 997) {
            let reply = try #require(ask(makeQuery("svc\(i).ns\(i % 100).svc.cluster.local", .a), t))
            #expect(reply.answers.count == 1)
            let ptr = try #require(ask(makeQuery("\(i % 256).\(i / 256 % 256).96.10.in-addr.arpa", .ptr), t))
            #expect(ptr.answers.map(\.description) == ["\(i % 256).\(i / 256 % 256).96.10.in-addr.arpa. 5 PTR svc\(i).ns\(i % 100).svc.cluster.local."])
        }
    }
}

// MARK: - Server without sockets

@Suite struct DNSServerLogicTests {
    @Test func udpTruncationAndTCPFull() throws {
        let endpoints = (0..<100).map { DNSEndpoint(ip: "10.5.0.\($0 + 1)") }
        let table = ClusterDNSTable(services: [DNSService(namespace: "default", name: "many", clusterIP: "None", endpoints: endpoints)])
        let server = DNSServer(host: "127.0.0.1", port: 0, upstreams: [], table: table)
        let q = makeQuery("many.default.svc.cluster.local", .a).encode()
        guard case .reply(let udp) = server.process(q, overTCP: false),
              case .reply(let tcp) = server.process(q, overTCP: true) else {
            Issue.record("expected replies"); return
        }
        #expect(udp.count <= 512)
        let u = try DNSMessage.decode(udp), t = try DNSMessage.decode(tcp)
        #expect(u.truncated && u.answers.count < 100)
        #expect(!t.truncated && t.answers.count == 100)
        // A client advertising a big EDNS buffer gets everything over UDP.
        guard case .reply(let big) = server.process(makeQuery("many.default.svc.cluster.local", .a, edns: DNSEDNS(udpPayloadSize: 4096)).encode(), overTCP: false) else {
            Issue.record("expected reply"); return
        }
        #expect(try DNSMessage.decode(big).answers.count == 100)
        #expect(server.answered == 3)
    }

    @Test func updateSwapsTable() throws {
        let server = DNSServer(host: "127.0.0.1", port: 0, upstreams: [], table: ClusterDNSTable(services: []))
        let q = makeQuery("web.default.svc.cluster.local", .a).encode()
        guard case .reply(let before) = server.process(q, overTCP: false) else { Issue.record("no reply"); return }
        #expect(try DNSMessage.decode(before).rcode == .nxDomain)
        server.update(fixtureTable)
        guard case .reply(let after) = server.process(q, overTCP: false) else { Issue.record("no reply"); return }
        #expect(try DNSMessage.decode(after).answers.count == 1)
        guard case .forward = server.process(makeQuery("example.org", .a).encode(), overTCP: false) else {
            Issue.record("expected forward"); return
        }
    }

    @Test(arguments: [
        ("10.0.0.1", "10.0.0.1", 53), ("10.0.0.1:5353", "10.0.0.1", 5353), ("[fd00::1]:54", "fd00::1", 54), ("fd00::1", "fd00::1", 53),
    ])
    func upstreamParsing(text: String, ip: String, port: Int) throws {
        let a = try #require(DNSServer.parseUpstream(text))
        #expect(a.ipAddress == ip && a.port == port)
    }

    @Test(arguments: ["", "nonsense", "10.0.0.1:0", "10.0.0.1:99999", "10.0.0.1:x", "[fd00::1]x"])
    func badUpstreams(text: String) {
        #expect(DNSServer.parseUpstream(text) == nil)
    }
}

// MARK: - Real sockets on 127.0.0.1

struct DNSTestTimeout: Error {}

/// Completes a promise with the first inbound payload; used by the test clients.
private final class FirstReplyHandler<In>: ChannelInboundHandler {
    typealias InboundIn = In
    let promise: EventLoopPromise<[UInt8]>
    let extract: (In) -> ByteBuffer
    init(_ promise: EventLoopPromise<[UInt8]>, extract: @escaping (In) -> ByteBuffer) {
        self.promise = promise; self.extract = extract
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        promise.succeed(Array(extract(Self.unwrapInboundIn(data)).readableBytesView))
    }
    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSTestTimeout())
        context.fireChannelInactive()
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}

private let loopback = "127.0.0.1"

private func awaitWithDeadline(_ channel: any Channel, _ promise: EventLoopPromise<[UInt8]>, _ timeout: TimeAmount) async throws -> [UInt8] {
    let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(DNSTestTimeout()) }
    defer { timer.cancel(); channel.close(promise: nil) }
    return try await promise.futureResult.get()
}

private func udpAsk(_ query: DNSMessage, port: Int, timeout: TimeAmount = .seconds(10)) async throws -> DNSMessage {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = loop.makePromise(of: [UInt8].self)
    let channel = try await DatagramBootstrap(group: loop)
        .channelInitializer { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(
                    FirstReplyHandler<AddressedEnvelope<ByteBuffer>>(promise) { $0.data })
            }
        }
        .bind(host: loopback, port: 0).get()
    let target = try SocketAddress(ipAddress: loopback, port: port)
    channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: channel.allocator.buffer(bytes: query.encode())), promise: nil)
    return try DNSMessage.decode(try await awaitWithDeadline(channel, promise, timeout))
}

private func tcpAsk(_ query: DNSMessage, port: Int, timeout: TimeAmount = .seconds(10)) async throws -> DNSMessage {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = loop.makePromise(of: [UInt8].self)
    let channel: any Channel
    do {
        channel = try await ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(DNSLengthPrefixDecoder()),
                        FirstReplyHandler<ByteBuffer>(promise) { $0 },
                    ])
                }
            }
            .connect(host: loopback, port: port).get()
    } catch {
        promise.fail(error)
        throw error
    }
    let bytes = query.encode()
    var buf = channel.allocator.buffer(capacity: bytes.count + 2)
    buf.writeInteger(UInt16(bytes.count))
    buf.writeBytes(bytes)
    channel.writeAndFlush(buf, promise: nil)
    return try DNSMessage.decode(try await awaitWithDeadline(channel, promise, timeout))
}

/// A stand-in upstream resolver: answers every A question with 192.0.2.7 (or stays silent).
private final class FakeUpstreamUDP: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let silent: Bool
    init(silent: Bool) { self.silent = silent }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = Self.unwrapInboundIn(data)
        guard !silent, let reply = fakeUpstreamReply(Array(env.data.readableBytesView)) else { return }
        context.writeAndFlush(Self.wrapOutboundOut(AddressedEnvelope(remoteAddress: env.remoteAddress,
                                                                      data: context.channel.allocator.buffer(bytes: reply))), promise: nil)
    }
}

private final class FakeUpstreamTCP: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let silent: Bool
    init(silent: Bool) { self.silent = silent }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !silent, let reply = fakeUpstreamReply(Array(Self.unwrapInboundIn(data).readableBytesView)) else { return }
        var buf = context.channel.allocator.buffer(capacity: reply.count + 2)
        buf.writeInteger(UInt16(reply.count))
        buf.writeBytes(reply)
        context.writeAndFlush(Self.wrapOutboundOut(buf), promise: nil)
    }
}

private func fakeUpstreamReply(_ bytes: [UInt8]) -> [UInt8]? {
    guard let q = try? DNSMessage.decode(bytes), let question = q.questions.first else { return nil }
    var r = DNSMessage.reply(to: q, rcode: .noError)
    r.answers = [DNSRecord(name: question.name, type: .a, ttl: 60, data: .a([192, 0, 2, 7]))]
    return r.encode()
}

/// UDP and TCP listeners of a fake upstream on one loopback port.
private struct FakeUpstream {
    let udp: any Channel
    let tcp: any Channel
    var port: Int { udp.localAddress!.port! }

    static func start(silent: Bool) async throws -> FakeUpstream {
        let group = MultiThreadedEventLoopGroup.singleton
        for _ in 0..<16 {
            let udp = try await DatagramBootstrap(group: group)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(FakeUpstreamUDP(silent: silent)) }
                }
                .bind(host: loopback, port: 0).get()
            do {
                let tcp = try await ServerBootstrap(group: group)
                    .childChannelInitializer { ch in
                        ch.eventLoop.makeCompletedFuture {
                            try ch.pipeline.syncOperations.addHandlers([
                                ByteToMessageHandler(DNSLengthPrefixDecoder()), FakeUpstreamTCP(silent: silent),
                            ])
                        }
                    }
                    .bind(host: loopback, port: udp.localAddress!.port!).get()
                return FakeUpstream(udp: udp, tcp: tcp)
            } catch {
                try? await udp.close()
            }
        }
        throw DNSTestTimeout()
    }

    func stop() async {
        try? await udp.close()
        try? await tcp.close()
    }
}

@Suite(.serialized) struct DNSServerSocketTests {
    @Test func answersRelaysAndFailsOverRealSockets() async throws {
        let upstream = try await FakeUpstream.start(silent: false)
        let silent = try await FakeUpstream.start(silent: true)
        let good = DNSServer(host: loopback, port: 0, upstreams: ["\(loopback):\(upstream.port)"], table: fixtureTable)
        let dead = DNSServer(host: loopback, port: 0, upstreams: ["\(loopback):\(silent.port)"], table: fixtureTable,
                             upstreamTimeout: .milliseconds(400))
        let failover = DNSServer(host: loopback, port: 0,
                                 upstreams: ["\(loopback):\(silent.port)", "\(loopback):\(upstream.port)"],
                                 table: fixtureTable, upstreamTimeout: .milliseconds(400))
        try await good.start()
        try await dead.start()
        try await failover.start()

        do {
            let goodPort = try #require(good.localPort)
            let deadPort = try #require(dead.localPort)
            #expect(goodPort != 0)

            for (transport, ask) in [("udp", udpAsk), ("tcp", tcpAsk)] as [(String, @Sendable (DNSMessage, Int, TimeAmount) async throws -> DNSMessage)] {
                // A cluster name, answered locally and authoritatively.
                let local = try await ask(makeQuery("web.default.svc.cluster.local", .a, id: 0x1111), goodPort, .seconds(10))
                #expect(local.id == 0x1111 && local.authoritative, "\(transport)")
                #expect(local.answers.map(\.description) == ["web.default.svc.cluster.local. 5 A 10.96.0.10"], "\(transport)")

                // An outside name, relayed from the fake upstream under the client's id.
                let relayed = try await ask(makeQuery("Example.org", .a, id: 0x2222), goodPort, .seconds(10))
                #expect(relayed.id == 0x2222 && relayed.rcode == .noError && !relayed.authoritative, "\(transport)")
                #expect(relayed.answers.map(\.description) == ["Example.org. 60 A 192.0.2.7"], "\(transport)")

                // A silent upstream: SERVFAIL once its timeout passes.
                let failed = try await ask(makeQuery("example.org", .a, id: 0x3333), deadPort, .seconds(10))
                #expect(failed.id == 0x3333 && failed.rcode == .servFail, "\(transport)")
                #expect(failed.questions.first?.name.description == "example.org.", "\(transport)")

                // Upstreams are tried in order: the silent one times out, the next one answers.
                let second = try await ask(makeQuery("example.net", .a, id: 0x4444), try #require(failover.localPort), .seconds(10))
                #expect(second.id == 0x4444 && second.answers.map(\.description) == ["example.net. 60 A 192.0.2.7"], "\(transport)")
            }

            // Malformed datagram with a readable header: FORMERR over the wire too.
            let formErr = try await udpAskRaw(header(id: 0x5555) + [0xC0, 12, 0, 1, 0, 1], port: goodPort)
            #expect(formErr.id == 0x5555 && formErr.rcode == .formErr)

            // Replacing the table takes effect for the next query.
            good.update(ClusterDNSTable(services: []))
            let gone = try await udpAsk(makeQuery("web.default.svc.cluster.local", .a), port: goodPort)
            #expect(gone.rcode == .nxDomain)

            #expect(good.answered == 6)
            #expect(good.forwarded == 2)
            #expect(dead.answered == 2 && dead.forwarded == 0)
        } catch {
            Issue.record(error)
        }

        await good.stop()
        await dead.stop()
        await failover.stop()
        await upstream.stop()
        await silent.stop()
    }
}

private func udpAskRaw(_ bytes: [UInt8], port: Int) async throws -> DNSMessage {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = loop.makePromise(of: [UInt8].self)
    let channel = try await DatagramBootstrap(group: loop)
        .channelInitializer { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(FirstReplyHandler<AddressedEnvelope<ByteBuffer>>(promise) { $0.data })
            }
        }
        .bind(host: loopback, port: 0).get()
    channel.writeAndFlush(AddressedEnvelope(remoteAddress: try SocketAddress(ipAddress: loopback, port: port),
                                            data: channel.allocator.buffer(bytes: bytes)), promise: nil)
    return try DNSMessage.decode(try await awaitWithDeadline(channel, promise, .seconds(10)))
}
