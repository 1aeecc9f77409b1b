// The history file: raw rows kept an hour, then folded into per-minute means kept a week,
// driven by an explicit clock (maintain(now:)), and what survives reopening the file.
import Testing
import Foundation
import API
import CSQLite
@testable import APIServer

@Suite struct HistoryDBTests {
    let web = WorkloadRef(namespace: "default", kind: "Deployment", name: "web")
    let other = WorkloadRef(namespace: "team", kind: "Pod", name: "solo")
    /// A whole minute, so that minute buckets line up with the test's arithmetic.
    let t0 = Date(timeIntervalSince1970: 1_800_000_000 - 1_800_000_000.truncatingRemainder(dividingBy: 60))

    func sample(_ t: Date, cpu: Double, pods: Double = 2, util: Double? = nil) -> WorkloadMetricsSample {
        WorkloadMetricsSample(time: t, windowSeconds: 10, pods: pods, cpuTotalMillicores: cpu, cpuAverageMillicores: cpu / pods,
                              memoryAverageBytes: 1000, cpuUtilization: util, memoryUtilization: nil)
    }

    func tempPath() -> String { FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID()).db").path }

    @Test func rawRowsFoldIntoMinuteMeansAfterAnHourAndGoAfterAWeek() async throws {
        let path = tempPath()
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + s) } }
        let db = try MetricsHistoryDB(path: path)
        // Two hours, one row every 10 s: cpu = the minute's index (so a minute's mean is exact),
        // utilization known only in even minutes.
        var rows: [(WorkloadRef, WorkloadMetricsSample)] = []
        for i in 0..<720 {
            let minute = i / 6
            rows.append((web, sample(t0.addingTimeInterval(Double(i) * 10), cpu: Double(minute) + Double(i % 6) - 2.5,
                                     util: minute % 2 == 0 ? Double(i % 6) * 10 : nil)))
        }
        rows.append((other, sample(t0, cpu: 7)))
        db.append(rows)
        // Buffered rows are visible before they are written.
        #expect(try await db.query(web, since: t0).count == 720)
        #expect(try await db.flush() == 721)
        #expect(db.pendingCount == 0)

        let now = t0.addingTimeInterval(7200 + 30)   // half a minute past the last row
        try await db.maintain(now: now)
        // Cut-off: the whole minute at or before now - 1h = t0 + 3630 s → t0 + 3600 s (minute 60).
        let counts = try await db.counts()
        #expect(counts.raw == 360)                     // minutes 60…119 stay raw
        #expect(counts.minute == 60 + 1)               // minutes 0…59 of web, minute 0 of the other
        let all = try await db.query(web, since: t0)
        #expect(all.count == 60 + 360)
        #expect(all.map(\.time) == all.map(\.time).sorted())
        let firstMinute = all[0]
        #expect(firstMinute.time == t0.addingTimeInterval(60) && firstMinute.windowSeconds == 60)
        #expect(firstMinute.cpuTotalMillicores == 0 && firstMinute.pods == 2)
        #expect(firstMinute.cpuUtilization == 25)      // mean of 0…50 over the six rows that had one
        #expect(all[1].cpuUtilization == nil)           // minute 1 had none
        let minutes = all.filter { $0.windowSeconds == 60 }, raw = all.filter { $0.windowSeconds == 10 }
        #expect(minutes.count == 60 && minutes.last?.cpuTotalMillicores == 59 && minutes.last?.time == t0.addingTimeInterval(3600))
        // A raw row belongs to the minute its timestamp falls in: the one at exactly +3600 s stays raw.
        #expect(raw.count == 360 && raw.first?.time == t0.addingTimeInterval(3600))

        // A late raw row for an already folded minute merges as a weighted mean (6 rows at 0, 1 at 70).
        db.append([(web, sample(t0.addingTimeInterval(5), cpu: 70))])
        try await db.flush()
        try await db.maintain(now: now)
        let merged = try await db.query(web, since: t0, step: nil)[0]
        #expect(merged.time == t0.addingTimeInterval(60) && merged.cpuTotalMillicores == 10)

        // Reopening the file finds everything; a week later only the newest minutes are left.
        let again = try MetricsHistoryDB(path: path)
        #expect(try await again.query(web, since: t0).count == 420)
        #expect(try await again.hasHistory(other))
        try await again.maintain(now: t0.addingTimeInterval(7 * 86400 + 3600 + 120))
        let week = try await again.counts()
        #expect(week.raw == 0)
        // Minutes ending after now - 7 d (t0 + 3720 s): minute 61 onwards, folded from raw just now.
        #expect(week.minute == 120 - 61)
        #expect(try await again.query(other, since: t0).isEmpty)
        #expect(try await again.hasHistory(other) == false)
    }

    @Test func bucketsAreWeightedMeans() async throws {
        let db = try MetricsHistoryDB(path: ":memory:")
        db.append([(web, sample(t0.addingTimeInterval(1), cpu: 100, util: 50)), (web, sample(t0.addingTimeInterval(2), cpu: 300, util: nil)),
                   (web, sample(t0.addingTimeInterval(31), cpu: 50, pods: 1, util: 10))])
        let b = try await db.query(web, since: t0, step: 30)
        #expect(b.count == 2)
        #expect(b[0].time == t0.addingTimeInterval(30) && b[0].windowSeconds == 30)
        #expect(b[0].cpuTotalMillicores == 200 && b[0].cpuUtilization == 50)   // the row without utilization does not dilute it
        #expect(b[1].cpuTotalMillicores == 50 && b[1].pods == 1)
        // Weighted by how many raw rows a stored row stands for.
        let rows = [MetricsHistoryDB.Row(sample: sample(t0.addingTimeInterval(60), cpu: 10), count: 6, cpuUtilizationCount: 0, memoryUtilizationCount: 0),
                    MetricsHistoryDB.Row(self.sample(t0.addingTimeInterval(61), cpu: 80))]
        #expect(MetricsHistoryDB.bucket(rows, step: 120)[0].cpuTotalMillicores == 20)
        #expect(try await db.query(web, since: t0.addingTimeInterval(10)).count == 1)
    }

    /// Request rates are kept, folded and bucketed like utilization; a file written before they
    /// existed gains the column and keeps its rows.
    @Test func requestRatesAreKeptFoldedAndOldFilesGainTheColumn() async throws {
        let path = tempPath()
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + s) } }
        // The previous schema, with one row in it.
        var raw: OpaquePointer?
        #expect(sqlite3_open(path, &raw) == SQLITE_OK)
        #expect(sqlite3_exec(raw, """
            CREATE TABLE samples(namespace TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
              minute INTEGER NOT NULL, ts REAL NOT NULL, window REAL NOT NULL, n INTEGER NOT NULL,
              pods REAL NOT NULL, cpu_total REAL NOT NULL, cpu_avg REAL NOT NULL, mem_avg REAL NOT NULL,
              cpu_util REAL, cpu_util_n INTEGER NOT NULL, mem_util REAL, mem_util_n INTEGER NOT NULL,
              PRIMARY KEY(namespace, kind, name, minute, ts)) WITHOUT ROWID;
            INSERT INTO samples VALUES('default', 'Deployment', 'web', 0, \(t0.timeIntervalSince1970), 10, 1, 2, 100, 50, 1000, 40, 1, NULL, 0);
            """, nil, nil, nil) == SQLITE_OK)
        sqlite3_close(raw)

        let db = try MetricsHistoryDB(path: path)
        var old = try await db.query(web, since: t0)
        #expect(old.count == 1 && old[0].cpuUtilization == 40 && old[0].requestsPerSecond == nil)
        // Six rows in the next minute, four with a rate.
        var rows: [(WorkloadRef, WorkloadMetricsSample)] = []
        for i in 0..<6 {
            var s = sample(t0.addingTimeInterval(60 + Double(i) * 10), cpu: 10)
            s.requestsPerSecond = i < 4 ? Double(10 * (i + 1)) : nil
            rows.append((web, s))
        }
        db.append(rows)
        try await db.flush()
        old = try await db.query(web, since: t0)
        #expect(old.compactMap(\.requestsPerSecond) == [10, 20, 30, 40])
        #expect(try await db.query(web, since: t0, step: 60).last?.requestsPerSecond == 25)
        try await db.maintain(now: t0.addingTimeInterval(3600 + 180))
        let folded = try await db.query(web, since: t0)
        #expect(folded.count == 2 && folded[0].requestsPerSecond == nil && folded[1].requestsPerSecond == 25)
        // Reopened: the migration is not run twice.
        let again = try MetricsHistoryDB(path: path)
        #expect(try await again.query(web, since: t0).last?.requestsPerSecond == 25)
    }
}
