// The per-workload usage history ("back data" for predictive scaling and `ctl top --history`),
// in its own SQLite file, DATA_DIR/metrics.db, apart from the cluster state: it is written
// every second, may be deleted without losing anything that matters, and must never slow the
// store's commits. Rows are buffered in memory and written in one transaction per flush, on a
// dedicated queue, so neither API requests nor the cooperative thread pool wait on disk.
// Retention: raw rows (one per collector interval) for an hour, then folded into one row per
// minute, kept for a week.
import Foundation
import Synchronization
import CSQLite
import API

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

public struct MetricsHistoryError: Error, CustomStringConvertible {
    public var description: String
    init(_ s: String) { description = s }
}

public final class MetricsHistoryDB: @unchecked Sendable {
    /// One stored row: a sample plus how many raw samples it averages (for merging averages).
    struct Row: Sendable, Hashable {
        var sample: WorkloadMetricsSample
        var count: Int
        var cpuUtilizationCount: Int
        var memoryUtilizationCount: Int
        var requestsCount: Int
        init(_ s: WorkloadMetricsSample) {
            sample = s; count = 1; cpuUtilizationCount = s.cpuUtilization == nil ? 0 : 1; memoryUtilizationCount = s.memoryUtilization == nil ? 0 : 1
            requestsCount = s.requestsPerSecond == nil ? 0 : 1
        }
        init(sample: WorkloadMetricsSample, count: Int, cpuUtilizationCount: Int, memoryUtilizationCount: Int, requestsCount: Int = 0) {
            self.sample = sample; self.count = count; self.cpuUtilizationCount = cpuUtilizationCount; self.memoryUtilizationCount = memoryUtilizationCount
            self.requestsCount = requestsCount
        }
    }

    public let path: String
    public let rawRetention: Double
    public let minuteRetention: Double
    // Every use of `db` happens on `queue`.
    private var db: OpaquePointer?
    private let queue = DispatchQueue(label: "metrics.history")
    private let pending = Mutex<[(WorkloadRef, WorkloadMetricsSample)]>([])

    /// `path` ":memory:" keeps the history in memory (in-memory apiservers, tests).
    public init(path: String, rawRetention: Double = 3600, minuteRetention: Double = 7 * 86400) throws {
        self.path = path; self.rawRetention = rawRetention; self.minuteRetention = minuteRetention
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw MetricsHistoryError("opening the metrics history \(path): \(msg)")
        }
        // WAL with synchronous=NORMAL: a crash may lose the last flush, never corrupt the file;
        // for usage history that is the right trade against an fsync per flush.
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=NORMAL")
        try exec("PRAGMA busy_timeout=5000")
        // `minute` 0: raw rows, timestamp = end of the collector interval; 1: per-minute means,
        // timestamp = end of the minute. `n` raw rows are in a mean; *_n of them had a utilization.
        try exec("""
            CREATE TABLE IF NOT EXISTS samples(namespace TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
              minute INTEGER NOT NULL, ts REAL NOT NULL, window REAL NOT NULL, n INTEGER NOT NULL,
              pods REAL NOT NULL, cpu_total REAL NOT NULL, cpu_avg REAL NOT NULL, mem_avg REAL NOT NULL,
              cpu_util REAL, cpu_util_n INTEGER NOT NULL, mem_util REAL, mem_util_n INTEGER NOT NULL,
              rps REAL, rps_n INTEGER NOT NULL DEFAULT 0,
              PRIMARY KEY(namespace, kind, name, minute, ts)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS samples_age ON samples(minute, ts);
            """)
        // A file from before request rates were recorded gains their columns (empty for old rows).
        if try !columnNames().contains("rps") {
            try exec("ALTER TABLE samples ADD COLUMN rps REAL; ALTER TABLE samples ADD COLUMN rps_n INTEGER NOT NULL DEFAULT 0")
        }
    }

    private func columnNames() throws -> Set<String> {
        let q = try prepare("PRAGMA table_info(samples)")
        defer { sqlite3_finalize(q) }
        var names = Set<String>()
        while sqlite3_step(q) == SQLITE_ROW { if let c = sqlite3_column_text(q, 1) { names.insert(String(cString: c)) } }
        return names
    }

    deinit { sqlite3_close_v2(db) }

    // MARK: writing

    /// Buffers samples; they reach the file at the next flush (and are visible to queries now).
    public func append(_ rows: [(WorkloadRef, WorkloadMetricsSample)]) {
        guard !rows.isEmpty else { return }
        pending.withLock { $0 += rows }
    }

    public var pendingCount: Int { pending.withLock { $0.count } }

    /// Writes the buffered samples in one transaction; returns how many.
    @discardableResult
    public func flush() async throws -> Int {
        try await onQueue { try self.flushNow() }
    }

    /// Folds raw rows older than `rawRetention` into per-minute rows and drops per-minute rows
    /// older than `minuteRetention`. Only whole minutes are folded, so a minute is never split
    /// between a raw part and a folded part; a minute folded twice (after a clock step) is
    /// merged as a weighted mean.
    public func maintain(now: Date) async throws {
        try await onQueue { try self.maintainNow(now: now) }
    }

    func flushNow() throws -> Int {
        let rows = pending.withLock { p -> [(WorkloadRef, WorkloadMetricsSample)] in let r = p; p = []; return r }
        guard !rows.isEmpty else { return 0 }
        do {
            try transaction {
                let stmt = try prepare("""
                    INSERT OR REPLACE INTO samples(namespace, kind, name, minute, ts, window, n, pods, cpu_total, cpu_avg, mem_avg,
                      cpu_util, cpu_util_n, mem_util, mem_util_n, rps, rps_n) VALUES(?,?,?,0,?,?,1,?,?,?,?,?,?,?,?,?,?)
                    """)
                defer { sqlite3_finalize(stmt) }
                for (w, s) in rows {
                    bind(stmt, 1, w.namespace); bind(stmt, 2, w.kind); bind(stmt, 3, w.name)
                    sqlite3_bind_double(stmt, 4, s.time.timeIntervalSince1970); sqlite3_bind_double(stmt, 5, s.windowSeconds)
                    sqlite3_bind_double(stmt, 6, s.pods); sqlite3_bind_double(stmt, 7, s.cpuTotalMillicores)
                    sqlite3_bind_double(stmt, 8, s.cpuAverageMillicores); sqlite3_bind_double(stmt, 9, s.memoryAverageBytes)
                    bind(stmt, 10, s.cpuUtilization); sqlite3_bind_int(stmt, 11, s.cpuUtilization == nil ? 0 : 1)
                    bind(stmt, 12, s.memoryUtilization); sqlite3_bind_int(stmt, 13, s.memoryUtilization == nil ? 0 : 1)
                    bind(stmt, 14, s.requestsPerSecond); sqlite3_bind_int(stmt, 15, s.requestsPerSecond == nil ? 0 : 1)
                    try step(stmt)
                }
            }
        } catch {
            // Put them back so that the next flush tries again; while the file stays unwritable
            // the buffer keeps the newest rows only (an hour's worth for 64 workloads).
            pending.withLock { p in p = Array((rows + p).suffix(Int(rawRetention) * 64)) }
            throw error
        }
        return rows.count
    }

    func maintainNow(now: Date) throws {
        let cutoff = floor((now.timeIntervalSince1970 - rawRetention) / 60) * 60
        let weighted = { (c: String) in "\(c) = (samples.\(c) * samples.n + excluded.\(c) * excluded.n) / (samples.n + excluded.n)" }
        let weightedUtil = { (c: String) in
            "\(c) = CASE WHEN samples.\(c)_n + excluded.\(c)_n = 0 THEN NULL ELSE (COALESCE(samples.\(c), 0) * samples.\(c)_n + COALESCE(excluded.\(c), 0) * excluded.\(c)_n) / (samples.\(c)_n + excluded.\(c)_n) END"
        }
        try transaction {
            // WHERE true: SQLite needs it to tell the upsert's ON from a join's.
            let fold = try prepare("""
                INSERT INTO samples(namespace, kind, name, minute, ts, window, n, pods, cpu_total, cpu_avg, mem_avg, cpu_util, cpu_util_n, mem_util, mem_util_n, rps, rps_n)
                SELECT * FROM (
                  SELECT namespace, kind, name, 1, (CAST(ts / 60 AS INTEGER) + 1) * 60.0, 60.0, SUM(n),
                         SUM(pods * n) / SUM(n), SUM(cpu_total * n) / SUM(n), SUM(cpu_avg * n) / SUM(n), SUM(mem_avg * n) / SUM(n),
                         SUM(cpu_util * cpu_util_n) / NULLIF(SUM(cpu_util_n), 0), SUM(cpu_util_n),
                         SUM(mem_util * mem_util_n) / NULLIF(SUM(mem_util_n), 0), SUM(mem_util_n),
                         SUM(rps * rps_n) / NULLIF(SUM(rps_n), 0), SUM(rps_n)
                  FROM samples WHERE minute = 0 AND ts < ?1
                  GROUP BY namespace, kind, name, CAST(ts / 60 AS INTEGER)) WHERE true
                ON CONFLICT(namespace, kind, name, minute, ts) DO UPDATE SET
                  \(["pods", "cpu_total", "cpu_avg", "mem_avg"].map(weighted).joined(separator: ", ")),
                  \(weightedUtil("cpu_util")), \(weightedUtil("mem_util")), \(weightedUtil("rps")),
                  cpu_util_n = samples.cpu_util_n + excluded.cpu_util_n, mem_util_n = samples.mem_util_n + excluded.mem_util_n,
                  rps_n = samples.rps_n + excluded.rps_n,
                  n = samples.n + excluded.n
                """)
            defer { sqlite3_finalize(fold) }
            sqlite3_bind_double(fold, 1, cutoff)
            try step(fold)
            let dropRaw = try prepare("DELETE FROM samples WHERE minute = 0 AND ts < ?")
            defer { sqlite3_finalize(dropRaw) }
            sqlite3_bind_double(dropRaw, 1, cutoff)
            try step(dropRaw)
            let dropOld = try prepare("DELETE FROM samples WHERE minute = 1 AND ts < ?")
            defer { sqlite3_finalize(dropOld) }
            sqlite3_bind_double(dropOld, 1, now.timeIntervalSince1970 - minuteRetention)
            try step(dropOld)
        }
    }

    // MARK: reading

    /// A workload's samples since `since`, oldest first, including buffered ones; with `step`,
    /// averaged into buckets of that many seconds (each weighted by the raw samples it holds).
    public func query(_ w: WorkloadRef, since: Date, step: Double? = nil) async throws -> [WorkloadMetricsSample] {
        // Both reads in one block on the queue: a flush (also on the queue) moves rows from the
        // buffer to the file between them otherwise, and they would be in neither.
        var all = try await onQueue {
            try self.rows(w, since: since) + self.pending.withLock { p in p.filter { $0.0 == w && $0.1.time >= since }.map { Row($0.1) } }
        }
        all.sort { $0.sample.time < $1.sample.time }
        guard let step, step > 0 else { return all.map(\.sample) }
        return Self.bucket(all, step: step)
    }

    /// Whether anything was ever recorded for the workload (stored or buffered).
    public func hasHistory(_ w: WorkloadRef) async throws -> Bool {
        return try await onQueue {
            if self.pending.withLock({ p in p.contains { $0.0 == w } }) { return true }
            let q = try self.prepare("SELECT 1 FROM samples WHERE namespace = ? AND kind = ? AND name = ? LIMIT 1")
            defer { sqlite3_finalize(q) }
            self.bind(q, 1, w.namespace); self.bind(q, 2, w.kind); self.bind(q, 3, w.name)
            return sqlite3_step(q) == SQLITE_ROW
        }
    }

    /// Row counts by resolution (raw, minute), for tests and the /metrics page.
    public func counts() async throws -> (raw: Int, minute: Int) {
        try await onQueue {
            let q = try self.prepare("SELECT minute, COUNT(*) FROM samples GROUP BY minute")
            defer { sqlite3_finalize(q) }
            var raw = 0, minute = 0
            while sqlite3_step(q) == SQLITE_ROW {
                if sqlite3_column_int(q, 0) == 0 { raw = Int(sqlite3_column_int64(q, 1)) } else { minute = Int(sqlite3_column_int64(q, 1)) }
            }
            return (raw, minute)
        }
    }

    func rows(_ w: WorkloadRef, since: Date) throws -> [Row] {
        let q = try prepare("""
            SELECT ts, window, n, pods, cpu_total, cpu_avg, mem_avg, cpu_util, cpu_util_n, mem_util, mem_util_n, rps, rps_n FROM samples
            WHERE namespace = ? AND kind = ? AND name = ? AND ts >= ? ORDER BY ts
            """)
        defer { sqlite3_finalize(q) }
        bind(q, 1, w.namespace); bind(q, 2, w.kind); bind(q, 3, w.name); sqlite3_bind_double(q, 4, since.timeIntervalSince1970)
        var out: [Row] = []
        while sqlite3_step(q) == SQLITE_ROW {
            func opt(_ i: Int32) -> Double? { sqlite3_column_type(q, i) == SQLITE_NULL ? nil : sqlite3_column_double(q, i) }
            let s = WorkloadMetricsSample(time: Date(timeIntervalSince1970: sqlite3_column_double(q, 0)), windowSeconds: sqlite3_column_double(q, 1),
                                          pods: sqlite3_column_double(q, 3), cpuTotalMillicores: sqlite3_column_double(q, 4),
                                          cpuAverageMillicores: sqlite3_column_double(q, 5), memoryAverageBytes: sqlite3_column_double(q, 6),
                                          cpuUtilization: opt(7), memoryUtilization: opt(9), requestsPerSecond: opt(11))
            out.append(Row(sample: s, count: Int(sqlite3_column_int64(q, 2)), cpuUtilizationCount: Int(sqlite3_column_int64(q, 8)),
                           memoryUtilizationCount: Int(sqlite3_column_int64(q, 10)), requestsCount: Int(sqlite3_column_int64(q, 12))))
        }
        return out
    }

    /// Weighted means per bucket of `step` seconds; a bucket's timestamp is its end, as for raw rows.
    static func bucket(_ rows: [Row], step: Double) -> [WorkloadMetricsSample] {
        var order: [Int64] = []
        var groups: [Int64: [Row]] = [:]
        for r in rows {
            let b = Int64(floor(r.sample.time.timeIntervalSince1970 / step))
            if groups[b] == nil { order.append(b) }
            groups[b, default: []].append(r)
        }
        return order.map { b in
            let g = groups[b]!
            let n = Double(g.reduce(0) { $0 + $1.count })
            func mean(_ f: (WorkloadMetricsSample) -> Double) -> Double { g.reduce(0.0) { $0 + f($1.sample) * Double($1.count) } / n }
            func util(_ f: (WorkloadMetricsSample) -> Double?, _ c: (Row) -> Int) -> Double? {
                let k = g.reduce(0) { $0 + c($1) }
                guard k > 0 else { return nil }
                return g.reduce(0.0) { $0 + (f($1.sample) ?? 0) * Double(c($1)) } / Double(k)
            }
            return WorkloadMetricsSample(time: Date(timeIntervalSince1970: Double(b + 1) * step), windowSeconds: step, pods: mean(\.pods),
                                         cpuTotalMillicores: mean(\.cpuTotalMillicores), cpuAverageMillicores: mean(\.cpuAverageMillicores),
                                         memoryAverageBytes: mean(\.memoryAverageBytes), cpuUtilization: util(\.cpuUtilization, \.cpuUtilizationCount),
                                         memoryUtilization: util(\.memoryUtilization, \.memoryUtilizationCount),
                                         requestsPerSecond: util(\.requestsPerSecond, \.requestsCount))
        }
    }

    // MARK: SQLite plumbing (on `queue` only)

    private func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            queue.async { c.resume(with: Result { try work() }) }
        }
    }

    private func errmsg() -> String { String(cString: sqlite3_errmsg(db)) }

    private func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &err) != SQLITE_OK {
            let m = err.map { String(cString: $0) } ?? errmsg()
            sqlite3_free(err)
            throw MetricsHistoryError("metrics history \(path): \(m)")
        }
    }

    private func transaction(_ body: () throws -> Void) throws {
        try exec("BEGIN IMMEDIATE")
        do { try body(); try exec("COMMIT") } catch { try? exec("ROLLBACK"); throw error }
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw MetricsHistoryError("metrics history \(path): preparing statement: \(errmsg())")
        }
        return stmt
    }

    private func bind(_ stmt: OpaquePointer?, _ i: Int32, _ s: String) { sqlite3_bind_text(stmt, i, s, -1, SQLITE_TRANSIENT) }
    private func bind(_ stmt: OpaquePointer?, _ i: Int32, _ d: Double?) {
        if let d { sqlite3_bind_double(stmt, i, d) } else { sqlite3_bind_null(stmt, i) }
    }

    private func step(_ stmt: OpaquePointer?) throws {
        let rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        guard rc == SQLITE_DONE else { throw MetricsHistoryError("metrics history \(path): \(errmsg())") }
    }
}
