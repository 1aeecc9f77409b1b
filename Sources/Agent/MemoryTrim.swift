// What the agent gives back to the kernel while it runs. Most of an idle agent's resident
// memory is not its own data but pages of code: the binary's and the Swift libraries', mapped
// in when first run (start-up, certificate handling, a pod's first start) and kept mapped
// although most are not run again. Those pages are clean copies of files in the page cache,
// so unmapping them loses nothing: a page run again is mapped again on its next touch, from
// the page cache. glibc's malloc likewise keeps freed heap pages until asked to return them.
//
// Every trim: malloc_trim(0), then madvise(MADV_DONTNEED) over each executable mapping of a
// file that the process has not written to (Private_Dirty 0 in /proc/self/smaps). Writable and
// read-only data mappings are never touched: relocated data is private and would be lost.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32

public enum MemoryTrim {
    public struct Mapping: Equatable, Sendable {
        public var start: UInt
        public var end: UInt
        public var path: String
        public var resident: Int   // kB
    }

    /// Executable, file-backed mappings with no private dirty page, from smaps text.
    public static func cleanCodeMappings(smaps: String) -> [Mapping] {
        var out: [Mapping] = []
        var current: Mapping?
        var currentClean = false
        func flush() {
            if let m = current, currentClean { out.append(m) }
            current = nil
        }
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if let dash = first.firstIndex(of: "-"), let start = UInt(first[..<dash], radix: 16),
               let end = UInt(first[first.index(after: dash)...], radix: 16) {
                flush()
                // address perms offset dev inode [path]
                guard fields.count >= 6, fields[1] == "r-xp", fields[5].hasPrefix("/") else { continue }
                current = Mapping(start: start, end: end, path: fields[5...].joined(separator: " "), resident: 0)
                currentClean = true
            } else if current != nil {
                if first == "Rss:", fields.count >= 2 { current?.resident = Int(fields[1]) ?? 0 }
                if first == "Private_Dirty:", fields.count >= 2, fields[1] != "0" { currentClean = false }
            }
        }
        flush()
        return out
    }

    /// /proc/self/smaps (its size reads as 0, so it is read to the end, not by size).
    public static func ownSmaps() -> String? {
        guard let fh = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
        defer { try? fh.close() }
        guard let data = try? fh.readToEnd() else { return nil }
        return String(data: data, encoding: .utf8)
    }

    public struct Result: Sendable, Equatable {
        public var mappings = 0
        /// Resident kB of the code mappings before the trim.
        public var codeResidentKB = 0
        public var failed = 0
    }

    /// Returns freed heap to the kernel and unmaps the clean code pages.
    @discardableResult
    public static func trim() -> Result {
        _ = glibcMallocTrim(0)
        var r = Result()
        guard let text = ownSmaps() else {
            r.failed = 1
            return r
        }
        for m in cleanCodeMappings(smaps: text) {
            r.mappings += 1
            r.codeResidentKB += m.resident
            guard let p = UnsafeMutableRawPointer(bitPattern: m.start) else { continue }
            if madvise(p, Int(m.end - m.start), MADV_DONTNEED) != 0 { r.failed += 1 }
        }
        return r
    }
}
