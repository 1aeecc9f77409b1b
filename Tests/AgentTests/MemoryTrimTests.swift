// The agent's memory trim: which mappings it unmaps, and that it lowers what is resident.
import Testing
import Foundation
@testable import Agent

@Suite struct MemoryTrimTests {
    static let sample = """
    55d0c0000000-55d0c1000000 r--p 00000000 fd:01 1234                       /usr/bin/agent
    Size:              16384 kB
    Rss:                 820 kB
    Private_Dirty:         0 kB
    55d0c1000000-55d0c2c00000 r-xp 01000000 fd:01 1234                       /usr/bin/agent
    Size:              28672 kB
    Rss:               19616 kB
    Private_Dirty:         0 kB
    55d0c2c00000-55d0c2e00000 rw-p 02c00000 fd:01 1234                       /usr/bin/agent
    Rss:                1936 kB
    Private_Dirty:      1900 kB
    7f0000000000-7f0000100000 r-xp 00000000 00:00 0
    Rss:                   8 kB
    Private_Dirty:         8 kB
    7f0000200000-7f0000300000 r-xp 00010000 fd:01 99                         /opt/lib/libpatched.so
    Rss:                  64 kB
    Private_Dirty:         4 kB
    7f0000400000-7f0000500000 r-xp 00010000 fd:01 77                         /opt/lib/lib with space.so (deleted)
    Rss:                 128 kB
    Private_Dirty:         0 kB
    7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
    Rss:                   8 kB
    Private_Dirty:         0 kB
    """

    /// Only executable mappings of files, and only those never written to: not data, not
    /// anonymous code, not the vdso, not a library with a patched (dirty) page.
    @Test func picksCleanCodeOfFilesOnly() {
        let m = MemoryTrim.cleanCodeMappings(smaps: Self.sample)
        #expect(m == [
            .init(start: 0x55d0c1000000, end: 0x55d0c2c00000, path: "/usr/bin/agent", resident: 19616),
            .init(start: 0x7f0000400000, end: 0x7f0000500000, path: "/opt/lib/lib with space.so (deleted)", resident: 128),
        ])
    }

    static func codeResidentKB() -> Int {
        MemoryTrim.cleanCodeMappings(smaps: MemoryTrim.ownSmaps() ?? "").reduce(0) { $0 + $1.resident }
    }

    /// On this process: the code it has run is resident, and after a trim far less of it is
    /// (what the trim and the reading run again comes back), and the process goes on running.
    @Test func lowersTheResidentCode() {
        let before = Self.codeResidentKB()
        #expect(before > 1024)
        let r = MemoryTrim.trim()
        #expect(r.failed == 0)
        #expect(r.mappings > 0)
        let after = Self.codeResidentKB()
        #expect(after < before / 2, "resident code \(before) kB before the trim, \(after) kB after")
    }
}
