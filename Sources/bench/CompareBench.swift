// The peers hack/bench-compare measures our apiserver against, on the same machine in the same run:
//   bench etcd-puts       — raw etcd puts through etcd's gRPC API (mutual TLS, one HTTP/2
//                           connection per 16 clients, as etcd's own benchmark tool shares them),
//                           N concurrent clients, values of a given size
//   bench sqlite-ceiling  — SQLite's group-commit ceiling on a disk: a tiny loop of transactions
//                           of B inserts each, WAL and synchronous=FULL as our store runs it
// Each prints one line `RESULT name=value ...` that the script reads.
import ArgumentParser
import Foundation
import Synchronization
import GRPCCore
import GRPCNIOTransportHTTP2
import Etcd
import CSQLite

struct EtcdPuts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "etcd-puts", abstract: "Raw etcd put throughput and latency (the peer of `bench writes`).")
    @Option(help: "https://HOST:PORT of one etcd member.") var endpoint: String
    @Option var cacert: String
    @Option var cert: String
    @Option var key: String
    @Option var clients: Int = 64
    @Option(help: "Seconds of puts.") var duration: Double = 10
    @Option(help: "Bytes per value (use the size of a stored pod).") var valueSize: Int = 1024
    @Option(help: "Clients per HTTP/2 connection.") var clientsPerConnection: Int = 16

    func validate() throws {
        guard clients > 0, duration > 0, valueSize > 0, clientsPerConnection > 0 else { throw ValidationError("--clients, --duration, --value-size and --clients-per-connection must be positive") }
    }

    func run() async throws {
        guard let u = URLComponents(string: endpoint), let host = u.host, let port = u.port, u.scheme == "https" else {
            throw ValidationError("--endpoint \"\(endpoint)\" is not of the form https://HOST:PORT")
        }
        let security = HTTP2ClientTransport.Posix.TransportSecurity.mTLS(certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem)) { c in
            c.trustRoots = .certificates([.file(path: cacert, format: .pem)])
        }
        let connections = (clients + clientsPerConnection - 1) / clientsPerConnection
        let grpcs = try (0..<connections).map { _ in
            GRPCClient(transport: try HTTP2ClientTransport.Posix(target: .ipv4(host: host, port: port), transportSecurity: security, config: .defaults))
        }
        let runners = grpcs.map { g in Task { try? await g.runConnections() } }
        defer { for g in grpcs { g.beginGracefulShutdown() }; for r in runners { r.cancel() } }
        let kvs = grpcs.map { Etcdserverpb_KV.Client(wrapping: $0) }
        let value = Data(repeating: UInt8(ascii: "x"), count: valueSize)
        // One put first, so that connecting is not measured.
        var first = Etcdserverpb_PutRequest(); first.key = Data("bench/warmup".utf8); first.value = value
        _ = try await kvs[0].put(first)
        let counter = Counter()
        let (lat, secs) = try await concurrentLatenciesIndexed(clients: clients, duration: duration) { w in
            var put = Etcdserverpb_PutRequest()
            put.key = Data("bench/\(w)/\(counter.next())".utf8)
            put.value = value
            _ = try await kvs[w / clientsPerConnection].put(put)
        }
        let s = lat.sorted()
        print(String(format: "etcd puts: %d clients on %d connections, %d-byte values: %d puts in %.1f s, %.0f/s, p50 %.2f ms, p99 %.2f ms",
                     clients, connections, valueSize, s.count, secs, Double(s.count) / secs, percentile(s, 0.5) * 1000, percentile(s, 0.99) * 1000))
        print(String(format: "RESULT etcd_puts_per_s=%.1f etcd_p50_ms=%.3f etcd_p99_ms=%.3f", Double(s.count) / secs, percentile(s, 0.5) * 1000, percentile(s, 0.99) * 1000))
    }
}

/// `concurrentLatencies` with the client's index passed to each call.
func concurrentLatenciesIndexed(clients: Int, duration: Double, _ op: @escaping @Sendable (Int) async throws -> Void) async throws -> (latencies: [Double], seconds: Double) {
    let start = ContinuousClock.now
    let deadline = start + .seconds(duration)
    let all = try await withThrowingTaskGroup(of: [Double].self) { group in
        for w in 0..<clients {
            group.addTask {
                var l: [Double] = []
                while ContinuousClock.now < deadline {
                    let t0 = ContinuousClock.now
                    try await op(w)
                    l.append(seconds(ContinuousClock.now - t0))
                }
                return l
            }
        }
        var all: [Double] = []
        for try await l in group { all += l }
        return all
    }
    return (all, seconds(ContinuousClock.now - start))
}

struct SQLiteCeiling: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sqlite-ceiling", abstract: "SQLite's durable group-commit ceiling on a disk.")
    @Option(help: "Directory for the database (on the disk to measure).") var dir: String
    @Option(help: "Inserts per transaction, comma separated: 1 is the fsync rate, the client count is our store's best case.") var batch: String = "1,64"
    @Option(help: "Seconds per batch size.") var duration: Double = 5
    @Option(help: "Bytes per row.") var valueSize: Int = 1024

    func run() throws {
        let sizes = batch.split(separator: ",").compactMap { Int($0) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else { throw ValidationError("--batch must be positive integers, comma separated, not \"\(batch)\"") }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/ceiling.db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db else {
            throw ValidationError("cannot open \(path)")
        }
        defer { sqlite3_close(db) }
        func exec(_ sql: String) throws {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw ValidationError("\(sql): \(String(cString: sqlite3_errmsg(db)))") }
        }
        // As SQLiteBackend opens its database.
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=FULL")
        try exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, "INSERT INTO kv (k, v) VALUES (?, ?)", -1, &stmt, nil) == SQLITE_OK, let stmt else { throw ValidationError("prepare failed") }
        defer { sqlite3_finalize(stmt) }
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: valueSize)
        var k: Int64 = 0
        var results: [String] = []
        for b in sizes {
            var commits = 0
            var commitTimes: [Double] = []
            let start = ContinuousClock.now
            let deadline = start + .seconds(duration)
            while ContinuousClock.now < deadline {
                let t0 = ContinuousClock.now
                try exec("BEGIN IMMEDIATE")
                for _ in 0..<b {
                    k += 1
                    sqlite3_bind_int64(stmt, 1, k)
                    _ = value.withUnsafeBytes { sqlite3_bind_blob(stmt, 2, $0.baseAddress, Int32($0.count), nil) }
                    guard sqlite3_step(stmt) == SQLITE_DONE else { throw ValidationError("insert: \(String(cString: sqlite3_errmsg(db)))") }
                    sqlite3_reset(stmt)
                }
                try exec("COMMIT")
                commits += 1
                commitTimes.append(seconds(ContinuousClock.now - t0))
            }
            let secs = seconds(ContinuousClock.now - start)
            let s = commitTimes.sorted()
            print(String(format: "sqlite: %d inserts of %d bytes per transaction: %d commits in %.1f s, %.0f commits/s, %.0f rows/s, commit p50 %.2f ms, p99 %.2f ms",
                         b, valueSize, commits, secs, Double(commits) / secs, Double(commits * b) / secs, percentile(s, 0.5) * 1000, percentile(s, 0.99) * 1000))
            results.append(String(format: "sqlite_rows_per_s_batch%d=%.1f", b, Double(commits * b) / secs))
        }
        print("RESULT " + results.joined(separator: " "))
    }
}
