// DNS wire format (RFC 1035, EDNS per RFC 6891) for the node-local cluster DNS server.
// The decoder faces untrusted datagrams: every read is bounds-checked and it never traps.

/// A resource record type (the 16-bit TYPE / QTYPE field).
public struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = DNSRecordType(rawValue: 1)
    public static let ns = DNSRecordType(rawValue: 2)
    public static let cname = DNSRecordType(rawValue: 5)
    public static let soa = DNSRecordType(rawValue: 6)
    public static let ptr = DNSRecordType(rawValue: 12)
    public static let txt = DNSRecordType(rawValue: 16)
    public static let aaaa = DNSRecordType(rawValue: 28)
    public static let srv = DNSRecordType(rawValue: 33)
    public static let opt = DNSRecordType(rawValue: 41)
    public static let ixfr = DNSRecordType(rawValue: 251)
    public static let axfr = DNSRecordType(rawValue: 252)
    public static let any = DNSRecordType(rawValue: 255)

    public var description: String {
        switch self {
        case .a: "A"
        case .ns: "NS"
        case .cname: "CNAME"
        case .soa: "SOA"
        case .ptr: "PTR"
        case .txt: "TXT"
        case .aaaa: "AAAA"
        case .srv: "SRV"
        case .opt: "OPT"
        case .ixfr: "IXFR"
        case .axfr: "AXFR"
        case .any: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

/// Response codes, including the EDNS-extended ones (12 bits in total).
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formErr = DNSResponseCode(rawValue: 1)
    public static let servFail = DNSResponseCode(rawValue: 2)
    public static let nxDomain = DNSResponseCode(rawValue: 3)
    public static let notImp = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)
    public static let badVers = DNSResponseCode(rawValue: 16)

    public var description: String {
        switch self {
        case .noError: "NOERROR"
        case .formErr: "FORMERR"
        case .servFail: "SERVFAIL"
        case .nxDomain: "NXDOMAIN"
        case .notImp: "NOTIMP"
        case .refused: "REFUSED"
        case .badVers: "BADVERS"
        default: "RCODE\(rawValue)"
        }
    }
}

public let dnsClassIN: UInt16 = 1
public let dnsClassANY: UInt16 = 255

/// A domain name kept as raw labels so that a question can be echoed byte-for-byte;
/// comparisons elsewhere go through `lowercased()` because DNS names are case-insensitive.
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    public var labels: [[UInt8]]

    public static let root = DNSName(labels: [])
    public static let maxWireLength = 255
    public static let maxLabelLength = 63

    public init(labels: [[UInt8]]) { self.labels = labels }

    /// Parses dotted text ("a.b.c" or "a.b.c."); nil when a label is empty, too long, or the
    /// whole name would not fit in 255 bytes on the wire.
    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasSuffix(".") { t = t.dropLast() }
        if t.isEmpty { self.labels = []; return }
        var out: [[UInt8]] = []
        for part in t.split(separator: ".", omittingEmptySubsequences: false) {
            let bytes = Array(part.utf8)
            if bytes.isEmpty || bytes.count > DNSName.maxLabelLength { return nil }
            out.append(bytes)
        }
        self.labels = out
        if wireLength > DNSName.maxWireLength { return nil }
    }

    public var wireLength: Int { labels.reduce(1) { $0 + 1 + $1.count } }

    public func lowercased() -> DNSName {
        DNSName(labels: labels.map { $0.map(dnsLowercase) })
    }

    /// Lowercase dotted text without the trailing dot, used as a dictionary key.
    public var key: String {
        labels.map { String(decoding: $0.map(dnsLowercase), as: UTF8.self) }.joined(separator: ".")
    }

    public func equalsIgnoringCase(_ other: DNSName) -> Bool {
        guard labels.count == other.labels.count else { return false }
        for (l, r) in zip(labels, other.labels) {
            guard l.count == r.count else { return false }
            for (x, y) in zip(l, r) where dnsLowercase(x) != dnsLowercase(y) { return false }
        }
        return true
    }

    /// Presentation form with a trailing dot; bytes that would be ambiguous are escaped.
    public var description: String {
        if labels.isEmpty { return "." }
        var s = ""
        for label in labels {
            for b in label {
                switch b {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    s.append("\\"); s.append(Character(Unicode.Scalar(b)))
                case 0x21...0x7E:
                    s.append(Character(Unicode.Scalar(b)))
                default:
                    let d = String(b)
                    s.append("\\" + String(repeating: "0", count: 3 - d.count) + d)
                }
            }
            s.append(".")
        }
        return s
    }
}

@inline(__always)
func dnsLowercase(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

public struct DNSQuestion: Hashable, Sendable {
    public var name: DNSName
    public var type: DNSRecordType
    public var qclass: UInt16
    public init(name: DNSName, type: DNSRecordType, qclass: UInt16 = dnsClassIN) {
        self.name = name; self.type = type; self.qclass = qclass
    }
}

public struct DNSSOAData: Hashable, Sendable {
    public var mname: DNSName
    public var rname: DNSName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    public var minimum: UInt32
    public init(mname: DNSName, rname: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32) {
        self.mname = mname; self.rname = rname; self.serial = serial
        self.refresh = refresh; self.retry = retry; self.expire = expire; self.minimum = minimum
    }
}

public enum DNSRData: Hashable, Sendable {
    case a([UInt8])
    case aaaa([UInt8])
    case ns(DNSName)
    case cname(DNSName)
    case ptr(DNSName)
    case soa(DNSSOAData)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case txt([[UInt8]])
    /// Any type we do not interpret (and malformed-but-bounded data of known types is rejected).
    case raw([UInt8])
}

public struct DNSRecord: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSRecordType
    public var rrClass: UInt16
    public var ttl: UInt32
    public var data: DNSRData

    public init(name: DNSName, type: DNSRecordType, rrClass: UInt16 = dnsClassIN, ttl: UInt32, data: DNSRData) {
        self.name = name; self.type = type; self.rrClass = rrClass; self.ttl = ttl; self.data = data
    }

    /// Zone-file-like text, handy for logs and table-driven tests.
    public var description: String {
        let rdata: String
        switch data {
        case .a(let b), .aaaa(let b): rdata = dnsFormatIP(b) ?? "<\(b.count) bytes>"
        case .ns(let n), .cname(let n), .ptr(let n): rdata = n.description
        case .soa(let s):
            rdata = "\(s.mname) \(s.rname) \(s.serial) \(s.refresh) \(s.retry) \(s.expire) \(s.minimum)"
        case .srv(let p, let w, let port, let t): rdata = "\(p) \(w) \(port) \(t)"
        case .txt(let strings): rdata = strings.map { "\"" + String(decoding: $0, as: UTF8.self) + "\"" }.joined(separator: " ")
        case .raw(let b): rdata = "\\# \(b.count)"
        }
        return "\(name) \(ttl) \(type) \(rdata)"
    }
}

/// The EDNS(0) pseudo-record, kept apart from the additional section because it is not data.
public struct DNSEDNS: Hashable, Sendable {
    public var udpPayloadSize: UInt16
    public var version: UInt8
    public var dnssecOK: Bool
    /// Options are carried opaquely; this server understands none of them.
    public var options: [UInt8]
    public init(udpPayloadSize: UInt16 = 1232, version: UInt8 = 0, dnssecOK: Bool = false, options: [UInt8] = []) {
        self.udpPayloadSize = udpPayloadSize; self.version = version; self.dnssecOK = dnssecOK; self.options = options
    }
}

public enum DNSDecodeError: Error, Equatable, Sendable {
    /// Fewer than 12 bytes: there is no id to answer to, so the datagram is dropped.
    case truncatedHeader
    /// The header was readable; the caller may send FORMERR using these fields.
    case malformed(id: UInt16, opcode: UInt8, recursionDesired: Bool, reason: String)
}

public struct DNSMessage: Hashable, Sendable {
    public var id: UInt16
    public var isResponse: Bool
    public var opcode: UInt8
    public var authoritative: Bool
    public var truncated: Bool
    public var recursionDesired: Bool
    public var recursionAvailable: Bool
    public var authenticData: Bool
    public var checkingDisabled: Bool
    /// Full 12-bit code; the upper 8 bits travel in the OPT record when EDNS is present.
    public var rcode: DNSResponseCode
    public var questions: [DNSQuestion]
    public var answers: [DNSRecord]
    public var authorities: [DNSRecord]
    /// Additional records other than OPT.
    public var additionals: [DNSRecord]
    public var edns: DNSEDNS?

    public init(id: UInt16 = 0, isResponse: Bool = false, opcode: UInt8 = 0, authoritative: Bool = false,
                truncated: Bool = false, recursionDesired: Bool = false, recursionAvailable: Bool = false,
                authenticData: Bool = false, checkingDisabled: Bool = false, rcode: DNSResponseCode = .noError,
                questions: [DNSQuestion] = [], answers: [DNSRecord] = [], authorities: [DNSRecord] = [],
                additionals: [DNSRecord] = [], edns: DNSEDNS? = nil) {
        self.id = id; self.isResponse = isResponse; self.opcode = opcode; self.authoritative = authoritative
        self.truncated = truncated; self.recursionDesired = recursionDesired; self.recursionAvailable = recursionAvailable
        self.authenticData = authenticData; self.checkingDisabled = checkingDisabled; self.rcode = rcode
        self.questions = questions; self.answers = answers; self.authorities = authorities
        self.additionals = additionals; self.edns = edns
    }

    /// A response skeleton for `query`: same id, opcode, RD, CD and question.
    public static func reply(to query: DNSMessage, rcode: DNSResponseCode, authoritative: Bool = false) -> DNSMessage {
        DNSMessage(id: query.id, isResponse: true, opcode: query.opcode, authoritative: authoritative,
                   recursionDesired: query.recursionDesired, recursionAvailable: true,
                   checkingDisabled: query.checkingDisabled, rcode: rcode, questions: query.questions,
                   edns: query.edns.map { DNSEDNS(dnssecOK: $0.dnssecOK) })
    }

    /// FORMERR for a query whose header was readable; nil when the datagram should be dropped.
    public static func formErrReply(for error: DNSDecodeError) -> DNSMessage? {
        guard case .malformed(let id, let opcode, let rd, _) = error else { return nil }
        return DNSMessage(id: id, isResponse: true, opcode: opcode, recursionDesired: rd,
                          recursionAvailable: true, rcode: .formErr)
    }

    /// The largest UDP reply the sender of this query accepts.
    public var udpReplyLimit: Int {
        guard let e = edns else { return 512 }
        return max(512, Int(e.udpPayloadSize))
    }
}

// MARK: - Decoding

private struct DNSReader {
    let bytes: [UInt8]
    var pos: Int = 0
    /// Total pointer hops allowed while decoding the whole message; stops quadratic abuse.
    var pointerBudget = 2048

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() throws(DNSReadFailure) -> UInt8 {
        guard pos < bytes.count else { throw DNSReadFailure("unexpected end of message") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u16() throws(DNSReadFailure) -> UInt16 {
        guard pos + 2 <= bytes.count else { throw DNSReadFailure("unexpected end of message") }
        defer { pos += 2 }
        return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
    }

    mutating func u32() throws(DNSReadFailure) -> UInt32 {
        let hi = try u16()
        let lo = try u16()
        return UInt32(hi) << 16 | UInt32(lo)
    }

    mutating func take(_ n: Int) throws(DNSReadFailure) -> [UInt8] {
        guard n >= 0, pos + n <= bytes.count else { throw DNSReadFailure("unexpected end of message") }
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    /// Reads a possibly compressed name. Pointers must point strictly backwards, which alone
    /// rules out loops; the hop budget additionally bounds work on long backward chains.
    mutating func name(limit: Int? = nil) throws(DNSReadFailure) -> DNSName {
        let end = limit ?? bytes.count
        var labels: [[UInt8]] = []
        var wireLength = 1
        var cursor = pos
        var jumped = false
        var lowestStart = pos
        while true {
            guard cursor < (jumped ? bytes.count : end) else { throw DNSReadFailure("name runs past its bounds") }
            let len = Int(bytes[cursor])
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    cursor += 1
                    if !jumped { pos = cursor }
                    return DNSName(labels: labels)
                }
                let start = cursor + 1
                guard start + len <= (jumped ? bytes.count : end) else { throw DNSReadFailure("label runs past its bounds") }
                wireLength += 1 + len
                guard wireLength <= DNSName.maxWireLength else { throw DNSReadFailure("name longer than 255 bytes") }
                labels.append(Array(bytes[start..<start + len]))
                cursor = start + len
            case 0xC0:
                guard cursor + 1 < (jumped ? bytes.count : end) else { throw DNSReadFailure("truncated compression pointer") }
                let target = (len & 0x3F) << 8 | Int(bytes[cursor + 1])
                guard target < lowestStart else { throw DNSReadFailure("compression pointer does not point backwards") }
                pointerBudget -= 1
                guard pointerBudget > 0 else { throw DNSReadFailure("too many compression pointers") }
                if !jumped { pos = cursor + 2; jumped = true }
                lowestStart = target
                cursor = target
            default:
                // 0x40 and 0x80 prefixes are obsolete extended label types; a length byte of
                // 64..191 therefore also lands here, which is how over-long labels are refused.
                throw DNSReadFailure("label longer than 63 bytes or unknown label type")
            }
        }
    }
}

private struct DNSReadFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

extension DNSMessage {
    /// Decodes a complete message. Throws `.truncatedHeader` for fewer than 12 bytes and
    /// `.malformed` (carrying the header fields needed for a FORMERR) for anything else wrong.
    public static func decode(_ bytes: [UInt8]) throws(DNSDecodeError) -> DNSMessage {
        guard bytes.count >= 12 else { throw .truncatedHeader }
        var r = DNSReader(bytes)
        let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        let flags = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        let opcode = UInt8((flags >> 11) & 0x0F)
        let rd = flags & 0x0100 != 0
        var msg = DNSMessage(
            id: id, isResponse: flags & 0x8000 != 0, opcode: opcode, authoritative: flags & 0x0400 != 0,
            truncated: flags & 0x0200 != 0, recursionDesired: rd, recursionAvailable: flags & 0x0080 != 0,
            authenticData: flags & 0x0020 != 0, checkingDisabled: flags & 0x0010 != 0,
            rcode: DNSResponseCode(rawValue: flags & 0x000F))
        r.pos = 4
        do throws(DNSReadFailure) {
            let qd = Int(try r.u16()), an = Int(try r.u16()), ns = Int(try r.u16()), ar = Int(try r.u16())
            // Each question needs at least 5 bytes and each record 11: refuse counts that cannot
            // possibly fit before allocating anything for them.
            guard qd * 5 + (an + ns + ar) * 11 <= bytes.count - 12 else {
                throw DNSReadFailure("section counts exceed message size")
            }
            msg.questions.reserveCapacity(qd)
            for _ in 0..<qd {
                let name = try r.name()
                let type = try r.u16()
                let qclass = try r.u16()
                msg.questions.append(DNSQuestion(name: name, type: DNSRecordType(rawValue: type), qclass: qclass))
            }
            for _ in 0..<an { msg.answers.append(try readRecord(&r)) }
            for _ in 0..<ns { msg.authorities.append(try readRecord(&r)) }
            for _ in 0..<ar {
                let rec = try readRecord(&r)
                if rec.type == .opt {
                    guard msg.edns == nil else { throw DNSReadFailure("more than one OPT record") }
                    guard rec.name.labels.isEmpty else { throw DNSReadFailure("OPT record not owned by the root") }
                    guard case .raw(let options) = rec.data else { throw DNSReadFailure("bad OPT data") }
                    msg.edns = DNSEDNS(udpPayloadSize: rec.rrClass, version: UInt8((rec.ttl >> 16) & 0xFF),
                                       dnssecOK: rec.ttl & 0x8000 != 0, options: options)
                    msg.rcode = DNSResponseCode(rawValue: UInt16((rec.ttl >> 24) & 0xFF) << 4 | msg.rcode.rawValue)
                } else {
                    msg.additionals.append(rec)
                }
            }
            // Trailing bytes after the last section are tolerated: they carry no meaning.
        } catch {
            throw .malformed(id: id, opcode: opcode, recursionDesired: rd, reason: error.reason)
        }
        return msg
    }

    private static func readRecord(_ r: inout DNSReader) throws(DNSReadFailure) -> DNSRecord {
        let name = try r.name()
        let type = DNSRecordType(rawValue: try r.u16())
        let rrClass = try r.u16()
        let ttl = try r.u32()
        let rdlength = Int(try r.u16())
        let start = r.pos
        let end = start + rdlength
        guard end <= r.bytes.count else { throw DNSReadFailure("record data runs past the message") }
        let data: DNSRData
        switch type {
        case .a:
            guard rdlength == 4 else { throw DNSReadFailure("A record data is not 4 bytes") }
            data = .a(try r.take(4))
        case .aaaa:
            guard rdlength == 16 else { throw DNSReadFailure("AAAA record data is not 16 bytes") }
            data = .aaaa(try r.take(16))
        case .ns: data = .ns(try r.name(limit: end))
        case .cname: data = .cname(try r.name(limit: end))
        case .ptr: data = .ptr(try r.name(limit: end))
        case .soa:
            let mname = try r.name(limit: end)
            let rname = try r.name(limit: end)
            guard r.pos + 20 <= end else { throw DNSReadFailure("SOA record data too short") }
            data = .soa(DNSSOAData(mname: mname, rname: rname, serial: try r.u32(), refresh: try r.u32(),
                                   retry: try r.u32(), expire: try r.u32(), minimum: try r.u32()))
        case .srv:
            guard rdlength >= 7 else { throw DNSReadFailure("SRV record data too short") }
            let p = try r.u16(), w = try r.u16(), port = try r.u16()
            data = .srv(priority: p, weight: w, port: port, target: try r.name(limit: end))
        case .txt:
            var strings: [[UInt8]] = []
            while r.pos < end {
                let n = Int(try r.u8())
                guard r.pos + n <= end else { throw DNSReadFailure("TXT string runs past its record") }
                strings.append(try r.take(n))
            }
            data = .txt(strings)
        default:
            data = .raw(try r.take(rdlength))
        }
        guard r.pos == end else { throw DNSReadFailure("record data length mismatch") }
        return DNSRecord(name: name, type: type, rrClass: rrClass, ttl: ttl, data: data)
    }
}

// MARK: - Encoding

private struct DNSWriter {
    var bytes: [UInt8] = []
    let compress: Bool
    /// Name suffix -> offset of its first occurrence, for RFC 1035 compression. Matching is
    /// case-sensitive on purpose so every name decodes with exactly the case it was given.
    var offsets: [DNSName: Int] = [:]

    init(compress: Bool) {
        self.compress = compress
        bytes.reserveCapacity(512)
    }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }

    mutating func set16(_ v: UInt16, at i: Int) { bytes[i] = UInt8(v >> 8); bytes[i + 1] = UInt8(v & 0xFF) }

    mutating func name(_ n: DNSName, allowCompression: Bool = true) {
        // Labels over 63 bytes cannot be expressed; clamp rather than emit a corrupt message.
        let labels = n.labels.map { $0.count > DNSName.maxLabelLength ? Array($0.prefix(DNSName.maxLabelLength)) : $0 }
        for i in labels.indices {
            if compress {
                let suffix = DNSName(labels: Array(labels[i...]))
                if allowCompression, let off = offsets[suffix] {
                    u16(0xC000 | UInt16(off))
                    return
                }
                if bytes.count < 0x3FFF { offsets[suffix] = bytes.count }
            }
            u8(UInt8(labels[i].count))
            bytes.append(contentsOf: labels[i])
        }
        u8(0)
    }

    mutating func record(_ rec: DNSRecord) {
        name(rec.name)
        u16(rec.type.rawValue)
        u16(rec.rrClass)
        u32(rec.ttl)
        let lengthAt = bytes.count
        u16(0)
        switch rec.data {
        case .a(let b), .aaaa(let b), .raw(let b): bytes.append(contentsOf: b)
        case .ns(let n), .cname(let n), .ptr(let n): name(n)
        case .soa(let s):
            name(s.mname); name(s.rname)
            u32(s.serial); u32(s.refresh); u32(s.retry); u32(s.expire); u32(s.minimum)
        case .srv(let p, let w, let port, let target):
            u16(p); u16(w); u16(port)
            name(target, allowCompression: false)  // RFC 2782 forbids compressing the target
        case .txt(let strings):
            for s in strings {
                let chunk = s.prefix(255)
                u8(UInt8(chunk.count)); bytes.append(contentsOf: chunk)
            }
        }
        set16(UInt16(min(bytes.count - lengthAt - 2, 0xFFFF)), at: lengthAt)
    }
}

extension DNSMessage {
    /// Encodes the message. When it exceeds `maxSize` the additional section is dropped first
    /// (that loses nothing required); if still too big, as many whole answers as fit are kept,
    /// authority is dropped, and TC is set so the client retries over TCP.
    public func encode(maxSize: Int = 65535, compress: Bool = true) -> [UInt8] {
        let limit = min(max(maxSize, 512), 65535)
        var w = DNSWriter(compress: compress)
        w.u16(id)
        w.u16(0)  // flags, patched below once TC is known
        w.u16(UInt16(min(questions.count, 0xFFFF)))
        w.u16(0); w.u16(0); w.u16(0)
        for q in questions {
            w.name(q.name)
            w.u16(q.type.rawValue)
            w.u16(q.qclass)
        }
        let afterQuestions = w.bytes.count
        var answerEnds: [Int] = []
        for rec in answers { w.record(rec); answerEnds.append(w.bytes.count) }
        for rec in authorities { w.record(rec) }
        let afterAuthority = w.bytes.count
        for rec in additionals { w.record(rec) }

        var opt: [UInt8] = []
        if let e = edns {
            var ow = DNSWriter(compress: false)
            ow.u8(0)
            ow.u16(DNSRecordType.opt.rawValue)
            ow.u16(e.udpPayloadSize)
            ow.u32(UInt32((rcode.rawValue >> 4) & 0xFF) << 24 | UInt32(e.version) << 16 | (e.dnssecOK ? 0x8000 : 0))
            ow.u16(UInt16(min(e.options.count, 0xFFFF)))
            ow.bytes.append(contentsOf: e.options)
            opt = ow.bytes
        }

        var counts = (an: answers.count, ns: authorities.count, ar: additionals.count)
        var tc = truncated
        if w.bytes.count + opt.count > limit {
            if afterAuthority + opt.count <= limit {
                w.bytes.removeSubrange(afterAuthority...)
                counts.ar = 0
            } else {
                let keep = answerEnds.lastIndex { $0 + opt.count <= limit }.map { $0 + 1 } ?? 0
                let cut = keep == 0 ? afterQuestions : answerEnds[keep - 1]
                w.bytes.removeSubrange(min(cut, w.bytes.count)...)
                counts = (keep, 0, 0)
                tc = true
            }
        }
        w.bytes.append(contentsOf: opt)
        if !opt.isEmpty { counts.ar += 1 }

        var flags: UInt16 = 0
        if isResponse { flags |= 0x8000 }
        flags |= UInt16(opcode & 0x0F) << 11
        if authoritative { flags |= 0x0400 }
        if tc { flags |= 0x0200 }
        if recursionDesired { flags |= 0x0100 }
        if recursionAvailable { flags |= 0x0080 }
        if authenticData { flags |= 0x0020 }
        if checkingDisabled { flags |= 0x0010 }
        flags |= rcode.rawValue & 0x000F
        w.set16(flags, at: 2)
        w.set16(UInt16(min(counts.an, 0xFFFF)), at: 6)
        w.set16(UInt16(min(counts.ns, 0xFFFF)), at: 8)
        w.set16(UInt16(min(counts.ar, 0xFFFF)), at: 10)
        return w.bytes
    }
}

// MARK: - Address text helpers (no libc, so behaviour is identical everywhere)

/// Parses dotted-quad IPv4 or RFC 4291 IPv6 text into 4 or 16 bytes.
public func dnsParseIP(_ text: String) -> [UInt8]? {
    if text.contains(":") { return dnsParseIPv6(text) }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var out: [UInt8] = []
    for p in parts {
        guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
              let v = Int(p), v <= 255, !(p.count > 1 && p.first == "0") else { return nil }
        out.append(UInt8(v))
    }
    return out
}

private func dnsParseIPv6(_ text: String) -> [UInt8]? {
    var s = Substring(text)
    if let pct = s.firstIndex(of: "%") { s = s[..<pct] }  // zone ids never matter for DNS data
    var halves = [s]
    if let gap = s.firstRange(of: "::") {
        halves = [s[..<gap.lowerBound], s[gap.upperBound...]]
        guard halves[1].firstRange(of: "::") == nil else { return nil }
    }
    func groups(_ part: Substring) -> [UInt8]? {
        if part.isEmpty { return [] }
        var out: [UInt8] = []
        let fields = part.split(separator: ":", omittingEmptySubsequences: false)
        for (i, f) in fields.enumerated() {
            if i == fields.count - 1, f.contains(".") {
                guard let v4 = dnsParseIP(String(f)), v4.count == 4 else { return nil }
                out += v4
                continue
            }
            guard (1...4).contains(f.count), let v = UInt16(f, radix: 16) else { return nil }
            out += [UInt8(v >> 8), UInt8(v & 0xFF)]
        }
        return out
    }
    guard let head = groups(halves[0]) else { return nil }
    if halves.count == 1 { return head.count == 16 ? head : nil }
    guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
    return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
}

/// Formats 4 or 16 address bytes; IPv6 uses the RFC 5952 shortest form.
public func dnsFormatIP(_ b: [UInt8]) -> String? {
    if b.count == 4 { return b.map(String.init).joined(separator: ".") }
    guard b.count == 16 else { return nil }
    let g = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
    var bestStart = -1, bestLen = 0, i = 0
    while i < 8 {
        if g[i] == 0 {
            var j = i
            while j < 8 && g[j] == 0 { j += 1 }
            if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
            i = j
        } else { i += 1 }
    }
    if bestStart < 0 { return g.map { String($0, radix: 16) }.joined(separator: ":") }
    let head = g[..<bestStart].map { String($0, radix: 16) }.joined(separator: ":")
    let tail = g[(bestStart + bestLen)...].map { String($0, radix: 16) }.joined(separator: ":")
    return head + "::" + tail
}
