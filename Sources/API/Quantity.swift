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
        milli = NSDecimalNumber(decimal: rounded).int64Value
        format = fmt
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
