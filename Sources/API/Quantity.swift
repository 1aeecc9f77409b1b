// Resource quantities ("500m", "1.5", "128Mi", "1G") parsed exactly and printed in canonical form.
import Foundation

public struct Quantity: Codable, Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The value in thousandths (milli-units): exact for every supported suffix.
    public let milli: Int64
    public let format: Format

    public enum Format: Sendable, Hashable { case decimalSI, binarySI }

    public init(milli: Int64, format: Format = .decimalSI) { self.milli = milli; self.format = format }

    public static func < (a: Quantity, b: Quantity) -> Bool { a.milli < b.milli }
    /// Equal values are equal whatever suffix they were written with ("1Ki" == "1024").
    public static func == (a: Quantity, b: Quantity) -> Bool { a.milli == b.milli }
    public func hash(into h: inout Hasher) { h.combine(milli) }

    public var value: Int64 { milli >= 0 ? (milli + 999) / 1000 : milli / 1000 }
    public var doubleValue: Double { Double(milli) / 1000 }

    static let binary: [(String, Int64)] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("Pi", 1 << 50), ("Ei", 1 << 60)]
    static let decimal: [(String, Int64)] = [("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000), ("P", 1_000_000_000_000_000)]

    public init(parsing s: String) throws {
        (milli, format) = try Quantity.plainMilli(s) ?? Quantity.exactMilli(s)
    }

    /// Any quantity, through Decimal.
    static func exactMilli(_ s: String) throws -> (Int64, Format) {
        let str = s.trimmingCharacters(in: .whitespaces)
        guard !str.isEmpty else { throw QuantityError(s, "empty") }
        var numberPart = str
        var multiplier: Int64 = 1   // in milli-units
        var fmt = Format.decimalSI
        var divisor: Int64 = 1
        if let b = Quantity.binary.first(where: { str.hasSuffix($0.0) }) {
            numberPart = String(str.dropLast(2)); multiplier = b.1; fmt = .binarySI
        } else if let d = Quantity.decimal.first(where: { str.hasSuffix($0.0) }) {
            numberPart = String(str.dropLast(1)); multiplier = d.1
        } else if str.hasSuffix("m") {
            numberPart = String(str.dropLast()); divisor = 1000
        } else if let e = str.firstIndex(where: { $0 == "e" || $0 == "E" }), let exp = Int(str[str.index(after: e)...]), exp >= 0, exp <= 18 {
            numberPart = String(str[..<e]); multiplier = Int64(pow(10.0, Double(exp)))
        }
        var digits = Substring(numberPart)
        if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
        guard let dec = Decimal(string: numberPart, locale: Locale(identifier: "en_US_POSIX")),
              digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              digits.filter({ $0 == "." }).count <= 1,
              digits.contains(where: { $0.isNumber }) else {
            throw QuantityError(s, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        }
        var total = dec * Decimal(multiplier) * 1000 / Decimal(divisor)
        var rounded = Decimal()
        NSDecimalRound(&rounded, &total, 0, .up)
        guard rounded <= Decimal(Int64.max / 2) else { throw QuantityError(s, "value too large") }
        return (NSDecimalNumber(decimal: rounded).int64Value, fmt)
    }

    /// The common case in integer arithmetic: a non-negative number with at most one point and
    /// no exponent, then nothing, a binary suffix, a decimal one or "m". Anything else (a sign,
    /// an exponent, spaces, a value near the limit, a malformed string) is nil and goes the exact
    /// Decimal way above, which also words the errors. (Decimal's parse was 12 % of the
    /// scheduler's CPU in a backlog: every pod's requests, every Node's capacity.)
    static func plainMilli(_ s: String) -> (Int64, Format)? {
        var u = Array(s.utf8)[...]
        guard let last = u.last else { return nil }
        var multiplier: Int64 = 1, divisor: Int64 = 1, format = Format.decimalSI
        if last == UInt8(ascii: "i"), u.count >= 2 {
            switch u[u.index(before: u.endIndex - 1)] {
            case UInt8(ascii: "K"): multiplier = 1 << 10
            case UInt8(ascii: "M"): multiplier = 1 << 20
            case UInt8(ascii: "G"): multiplier = 1 << 30
            case UInt8(ascii: "T"): multiplier = 1 << 40
            case UInt8(ascii: "P"): multiplier = 1 << 50
            case UInt8(ascii: "E"): multiplier = 1 << 60
            default: return nil
            }
            u = u.dropLast(2); format = .binarySI
        } else {
            switch last {
            case UInt8(ascii: "k"): multiplier = 1_000
            case UInt8(ascii: "M"): multiplier = 1_000_000
            case UInt8(ascii: "G"): multiplier = 1_000_000_000
            case UInt8(ascii: "T"): multiplier = 1_000_000_000_000
            case UInt8(ascii: "P"): multiplier = 1_000_000_000_000_000
            case UInt8(ascii: "m"): divisor = 1000
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."): break
            default: return nil
            }
            if divisor != 1 || multiplier != 1 { u = u.dropLast() }
        }
        // digits, at most one point, at least one digit
        var whole: Int64 = 0, fraction: Int64 = 0, fractionDigits = 0, sawPoint = false, sawDigit = false
        for b in u {
            if b == UInt8(ascii: ".") { if sawPoint { return nil }; sawPoint = true; continue }
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            sawDigit = true
            let d = Int64(b - UInt8(ascii: "0"))
            if sawPoint {
                fractionDigits += 1
                guard fractionDigits <= 15 else { return nil }
                fraction = fraction * 10 + d
            } else {
                guard whole < 100_000_000_000_000 else { return nil }
                whole = whole * 10 + d
            }
        }
        guard sawDigit else { return nil }
        // milli = ceil((whole + fraction / 10^k) × multiplier × 1000 / divisor)
        var scale: Int64 = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        let (n0, o0) = whole.multipliedReportingOverflow(by: scale)
        let (n1, o1) = n0.addingReportingOverflow(fraction)
        let (n2, o2) = n1.multipliedReportingOverflow(by: multiplier)
        let (n3, o3) = n2.multipliedReportingOverflow(by: 1000)
        guard !(o0 || o1 || o2 || o3) else { return nil }
        let (d0, o4) = scale.multipliedReportingOverflow(by: divisor)
        guard !o4 else { return nil }
        let m = n3 / d0 + (n3 % d0 == 0 ? 0 : 1)
        guard m <= Int64.max / 2 else { return nil }
        return (m, format)
    }

    public init(from decoder: Decoder) throws {
        // From a tree, look at the value instead of trying each type (a failed guess builds an error).
        if let t = decoder as? TreeDecoder {
            switch t.value {
            case .int(let i):
                let (m, o) = i.multipliedReportingOverflow(by: 1000)
                guard !o else { throw DecodingError.dataCorrupted(.init(codingPath: t.codingPath, debugDescription: "quantity \(i) is too large")) }
                self.init(milli: m); return
            case .double(let d):
                guard let m = Int64(exactly: (d * 1000).rounded(.up)) else { throw DecodingError.dataCorrupted(.init(codingPath: t.codingPath, debugDescription: "quantity \(d) is out of range")) }
                self.init(milli: m); return
            case .string(let s):
                do { try self.init(parsing: s); return } catch let e as QuantityError {
                    throw DecodingError.dataCorrupted(.init(codingPath: t.codingPath, debugDescription: e.description))
                }
            default: break
            }
        }
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int64.self) {
            let (m, o) = i.multipliedReportingOverflow(by: 1000)
            guard !o else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "quantity \(i) is too large") }
            self.init(milli: m); return
        }
        if let d = try? c.decode(Double.self) {
            guard let m = Int64(exactly: (d * 1000).rounded(.up)) else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "quantity \(d) is out of range") }
            self.init(milli: m); return
        }
        let s = try c.decode(String.self)
        do { try self.init(parsing: s) } catch let e as QuantityError {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: e.description)
        }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Canonical form, as Kubernetes prints it: "500m", "2", "128Mi", "1G".
    public var description: String {
        if milli % 1000 != 0 { return "\(milli)m" }
        let v = milli / 1000
        if v == 0 { return "0" }
        if format == .binarySI {
            for (suffix, m) in Quantity.binary.reversed() where v % m == 0 { return "\(v / m)\(suffix)" }
            // Not a whole binary multiple: fall back to decimal form.
        }
        for (suffix, m) in Quantity.decimal.reversed() where v % m == 0 { return "\(v / m)\(suffix)" }
        return "\(v)"
    }
}

public struct QuantityError: Error, CustomStringConvertible {
    public var description: String
    init(_ input: String, _ why: String) { description = "quantity \"\(input)\": \(why)" }
}

public typealias ResourceList = [String: Quantity]
