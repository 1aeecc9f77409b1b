// The bytes kept in etcd carry no revision: etcd assigns it when the write commits. The revision
// is put into `metadata.resourceVersion` of the top-level object when the object is read back,
// found by walking the JSON (a field of that name anywhere else is left alone).
import Foundation

enum ResourceVersion {
    /// `data` with the top-level `metadata.resourceVersion` string set to `value`; unchanged when
    /// the object has no such field or is not a JSON object.
    static func set(_ data: Data, _ value: String) -> Data {
        let b = [UInt8](data)
        guard let span = locate(b) else { return data }
        var out = Data(capacity: b.count + 16)
        out.append(contentsOf: b[0..<span.lowerBound])
        out.append(contentsOf: Array("\"\(value)\"".utf8))
        out.append(contentsOf: b[span.upperBound...])
        return out
    }

    /// The byte range of the quoted string value of metadata.resourceVersion.
    static func locate(_ b: [UInt8]) -> Range<Int>? {
        var i = 0
        func ws() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
        /// Skips a string starting at its opening quote; returns its raw contents' range.
        func string() -> Range<Int>? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            let start = i + 1
            i += 1
            while i < b.count {
                if b[i] == UInt8(ascii: "\\") { i += 2; continue }
                if b[i] == UInt8(ascii: "\"") { i += 1; return start..<(i - 1) }
                i += 1
            }
            return nil
        }
        func value() -> Bool {
            ws()
            guard i < b.count else { return false }
            switch b[i] {
            case UInt8(ascii: "\""): return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while i < b.count {
                    switch b[i] {
                    case UInt8(ascii: "\""): if string() == nil { return false }; continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                while i < b.count, !",}] \n\r\t".utf8.contains(b[i]) { i += 1 }
                return true
            }
        }
        /// Walks the members of the object at `i`, calling `member` with each key; `member`
        /// consumes the value (returns a result to stop) or returns nil to have it skipped.
        func members(_ member: (ArraySlice<UInt8>) -> Range<Int>??) -> Range<Int>? {
            ws()
            guard i < b.count, b[i] == UInt8(ascii: "{") else { return nil }
            i += 1
            while true {
                ws()
                guard i < b.count else { return nil }
                if b[i] == UInt8(ascii: "}") { i += 1; return nil }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                guard let k = string() else { return nil }
                ws()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                i += 1
                ws()
                if let found = member(b[k]) { return found }
                if !value() { return nil }
            }
        }
        return members { key in
            guard key.elementsEqual("metadata".utf8), i < b.count, b[i] == UInt8(ascii: "{") else { return nil }
            let found = members { inner in
                guard inner.elementsEqual("resourceVersion".utf8), i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
                let start = i
                guard string() != nil else { return .some(nil) }
                return .some(start..<i)
            }
            return .some(found)
        }
    }
}
