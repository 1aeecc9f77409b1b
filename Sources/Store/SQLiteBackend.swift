// SQLite persistence: WAL mode, synchronous=FULL, one transaction per group-committed batch.
// Tables: objects (current state), log (revision history for watch replay), meta (revision).
import Foundation
import CSQLite

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

public final class SQLiteBackend: StoreBackend, @unchecked Sendable {
    private var db: OpaquePointer?
    private let path: String
    // Only the store's commit queue calls commit/compact; load runs once before any of them.
    private var upsert: OpaquePointer?
    private var remove: OpaquePointer?
    private var insertLog: OpaquePointer?
    private var setRevision: OpaquePointer?

    public init(path: String) throws {
        self.path = path
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            throw StoreError.backend("opening \(path): \(msg)")
        }
        // The busy timeout first: switching to WAL takes a lock, and a store closing on another
        // connection (a restart) may hold one for a moment.
        try exec("PRAGMA busy_timeout=5000")
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=FULL")
        try exec("""
            CREATE TABLE IF NOT EXISTS objects(resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
              rev INTEGER NOT NULL, data BLOB NOT NULL, labels TEXT NOT NULL, fields TEXT NOT NULL,
              PRIMARY KEY(resource, namespace, name)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS log(rev INTEGER PRIMARY KEY, type TEXT NOT NULL, resource TEXT NOT NULL,
              namespace TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, labels TEXT NOT NULL, fields TEXT NOT NULL,
              prev_labels TEXT, prev_fields TEXT, prev_rev INTEGER);
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """)
        upsert = try prepare("INSERT OR REPLACE INTO objects(resource, namespace, name, rev, data, labels, fields) VALUES(?,?,?,?,?,?,?)")
        remove = try prepare("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?")
        insertLog = try prepare("INSERT INTO log(rev, type, resource, namespace, name, data, labels, fields, prev_labels, prev_fields, prev_rev) VALUES(?,?,?,?,?,?,?,?,?,?,?)")
        setRevision = try prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('revision', ?)")
    }

    deinit {
        for s in [upsert, remove, insertLog, setRevision] { sqlite3_finalize(s) }
        sqlite3_close_v2(db)
    }

    private func errmsg() -> String { String(cString: sqlite3_errmsg(db)) }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &err) != SQLITE_OK {
            let m = err.map { String(cString: $0) } ?? errmsg()
            sqlite3_free(err)
            throw StoreError.backend("\(path): \(m)")
        }
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { throw StoreError.backend("prepare: \(errmsg())") }
        return stmt
    }

    private static func encodeMap(_ m: [String: String]) -> String {
        (try? String(decoding: JSONEncoder().encode(m), as: UTF8.self)) ?? "{}"
    }
    /// A stored labels or fields column. One that does not decode is an error naming the row
    /// (it was read as no labels, which silently dropped the object from every selector).
    static func decodeMap(_ s: String?, _ column: String, of row: @autoclosure () -> String) throws -> [String: String] {
        guard let s else { return [:] }
        do { return try JSONDecoder().decode([String: String].self, from: Data(s.utf8)) }
        catch {
            throw StoreError.backend("state.db is corrupt: the \(column) of \(row()) are not a JSON object of strings (\(s.prefix(80)))")
        }
    }

    private func bind(_ stmt: OpaquePointer?, _ i: Int32, _ s: String) { sqlite3_bind_text(stmt, i, s, -1, SQLITE_TRANSIENT) }
    private func bind(_ stmt: OpaquePointer?, _ i: Int32, _ d: Data) {
        d.withUnsafeBytes { p in _ = sqlite3_bind_blob(stmt, i, p.baseAddress, Int32(p.count), SQLITE_TRANSIENT) }
    }
    private func step(_ stmt: OpaquePointer?) throws {
        let rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        guard rc == SQLITE_DONE else { throw StoreError.backend("step: \(errmsg())") }
    }

    private func column(_ stmt: OpaquePointer?, _ i: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, i) else { return nil }
        return String(cString: p)
    }
    private func blob(_ stmt: OpaquePointer?, _ i: Int32) -> Data {
        let n = Int(sqlite3_column_bytes(stmt, i))
        guard n > 0, let p = sqlite3_column_blob(stmt, i) else { return Data() }
        return Data(bytes: p, count: n)
    }

    public func load(logLimit: Int) throws -> (objects: [StoredObject], log: [StoreEvent], revision: Int64) {
        var objects: [StoredObject] = []
        var byKey: [ObjectKey: StoredObject] = [:]
        let q = try prepare("SELECT resource, namespace, name, rev, data, labels, fields FROM objects")
        defer { sqlite3_finalize(q) }
        while sqlite3_step(q) == SQLITE_ROW {
            let key = ObjectKey(resource: column(q, 0) ?? "", namespace: column(q, 1) ?? "", name: column(q, 2) ?? "")
            let o = StoredObject(key: key, revision: sqlite3_column_int64(q, 3), data: blob(q, 4),
                                 labels: try Self.decodeMap(column(q, 5), "labels", of: "object \(key)"),
                                 fields: try Self.decodeMap(column(q, 6), "fields", of: "object \(key)"))
            objects.append(o)
            byKey[key] = o
        }
        var log: [StoreEvent] = []
        let l = try prepare("SELECT rev, type, resource, namespace, name, data, labels, fields, prev_labels, prev_fields, prev_rev FROM (SELECT * FROM log ORDER BY rev DESC LIMIT ?) ORDER BY rev ASC")
        defer { sqlite3_finalize(l) }
        sqlite3_bind_int64(l, 1, Int64(logLimit))
        while sqlite3_step(l) == SQLITE_ROW {
            let key = ObjectKey(resource: column(l, 2) ?? "", namespace: column(l, 3) ?? "", name: column(l, 4) ?? "")
            let rev = sqlite3_column_int64(l, 0)
            let obj = StoredObject(key: key, revision: rev, data: blob(l, 5),
                                   labels: try Self.decodeMap(column(l, 6), "labels", of: "revision \(rev) (\(key)) in the watch log"),
                                   fields: try Self.decodeMap(column(l, 7), "fields", of: "revision \(rev) (\(key)) in the watch log"))
            var prev: StoredObject? = nil
            if sqlite3_column_type(l, 8) != SQLITE_NULL {
                prev = StoredObject(key: key, revision: sqlite3_column_int64(l, 10), data: Data(),
                                    labels: try Self.decodeMap(column(l, 8), "previous labels", of: "revision \(rev) (\(key)) in the watch log"),
                                    fields: try Self.decodeMap(column(l, 9), "previous fields", of: "revision \(rev) (\(key)) in the watch log"))
            }
            log.append(StoreEvent(type: EventType(rawValue: column(l, 1) ?? "") ?? .modified, object: obj, previous: prev))
        }
        var revision: Int64 = 0
        let m = try prepare("SELECT value FROM meta WHERE key='revision'")
        defer { sqlite3_finalize(m) }
        if sqlite3_step(m) == SQLITE_ROW { revision = sqlite3_column_int64(m, 0) }
        revision = max(revision, log.last?.revision ?? 0, objects.map(\.revision).max() ?? 0)
        return (objects, log, revision)
    }

    public func commit(_ changes: [Change], revision: Int64) throws {
        try exec("BEGIN IMMEDIATE")
        do {
            for ch in changes {
                let e = ch.event
                let o = e.object
                let labels = Self.encodeMap(o.labels), fields = Self.encodeMap(o.fields)
                if e.type == .deleted {
                    bind(remove, 1, o.key.resource); bind(remove, 2, o.key.namespace); bind(remove, 3, o.key.name)
                    try step(remove)
                } else {
                    bind(upsert, 1, o.key.resource); bind(upsert, 2, o.key.namespace); bind(upsert, 3, o.key.name)
                    sqlite3_bind_int64(upsert, 4, o.revision); bind(upsert, 5, o.data); bind(upsert, 6, labels); bind(upsert, 7, fields)
                    try step(upsert)
                }
                sqlite3_bind_int64(insertLog, 1, o.revision)
                bind(insertLog, 2, e.type.rawValue); bind(insertLog, 3, o.key.resource); bind(insertLog, 4, o.key.namespace)
                bind(insertLog, 5, o.key.name); bind(insertLog, 6, o.data); bind(insertLog, 7, labels); bind(insertLog, 8, fields)
                if let p = e.previous {
                    bind(insertLog, 9, Self.encodeMap(p.labels)); bind(insertLog, 10, Self.encodeMap(p.fields))
                    sqlite3_bind_int64(insertLog, 11, p.revision)
                } else {
                    sqlite3_bind_null(insertLog, 9); sqlite3_bind_null(insertLog, 10); sqlite3_bind_null(insertLog, 11)
                }
                try step(insertLog)
            }
            sqlite3_bind_int64(setRevision, 1, revision)
            try step(setRevision)
            try exec("COMMIT")
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    public func rewrite(objects: [StoredObject], log: [StoreEvent]) throws {
        let o = try prepare("UPDATE objects SET data=? WHERE resource=? AND namespace=? AND name=?")
        let l = try prepare("UPDATE log SET data=? WHERE rev=?")
        defer { sqlite3_finalize(o); sqlite3_finalize(l) }
        try exec("BEGIN IMMEDIATE")
        do {
            for x in objects {
                bind(o, 1, x.data); bind(o, 2, x.key.resource); bind(o, 3, x.key.namespace); bind(o, 4, x.key.name)
                try step(o)
            }
            for e in log {
                bind(l, 1, e.object.data); sqlite3_bind_int64(l, 2, e.revision)
                try step(l)
            }
            try exec("COMMIT")
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    public func compact(through revision: Int64) throws {
        let s = try prepare("DELETE FROM log WHERE rev <= ?")
        defer { sqlite3_finalize(s) }
        sqlite3_bind_int64(s, 1, revision)
        try step(s)
    }
}
