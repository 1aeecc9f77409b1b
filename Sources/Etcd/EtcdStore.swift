// The store on etcd. etcd decides every write: a create is a transaction that puts the key only
// if it has never existed, an update or delete one that compares the key's mod_revision, so a
// stale write is a conflict. An object's resourceVersion is the mod_revision of its key, a
// list's the revision of the read. Reads and watches are served from a WatchCache filled by one
// listing and kept current by one etcd watch (with previous values) from the listing's revision;
// a write returns once that watch has brought it into the cache, so a client reads its own
// writes, and `sync()` waits for the revision etcd reports now, so every read can be consistent.
//
// Keys follow kube-apiserver's layout under a prefix: PREFIX/GROUP/RESOURCE/NAMESPACE/NAME (GROUP
// "core" for the core group; no NAMESPACE for cluster-scoped objects). A value is a line of
// JSON with the object's labels and selectable fields, then the object's JSON with an empty
// resourceVersion; sealed as a whole for encrypted resources.
import Foundation
import Synchronization
import Logging
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import SwiftProtobuf
import Store

public struct EtcdConfig: Sendable {
    /// Client URLs: https://HOST:PORT (mutual TLS with the files below) or http://HOST:PORT.
    public var endpoints: [String]
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var prefix: String = "/registry"
    /// How long one etcd call may take before the request fails as unavailable.
    public var requestTimeout: Duration = .seconds(2)
    /// How often the oldest revisions are compacted (by one apiserver at a time); zero: never.
    public var compactionInterval: Duration = .seconds(300)
    public var encryption: EncryptionConfig?
    public init(endpoints: [String]) { self.endpoints = endpoints }
}

public final class EtcdStore: CacheBackedStore {
    typealias Transport = HTTP2ClientTransport.Posix
    public let cache: WatchCache
    let config: EtcdConfig
    let logger: Logger
    /// One client per etcd endpoint, the first in use (the apiserver's own member, by
    /// convention): a call that cannot be sent moves to the next. Separate clients rather than
    /// one channel over every address, so which member is used is ours to say.
    private let grpcs: [GRPCClient<Transport>]
    private let kvs: [Etcdserverpb_KV.Client<Transport>]
    private let watchClients: [Etcdserverpb_Watch.Client<Transport>]
    let activeEndpoint = Mutex(0)
    /// Whether each member answered the last health probe (a serializable read within 800 ms).
    private let healthy = Mutex<[Bool]>([])
    private var kv: Etcdserverpb_KV.Client<Transport> { kvs[activeEndpoint.withLock { $0 }] }
    /// Moves to the next healthy endpoint (the next one when none is), unless another call
    /// already moved on from `index`.
    private func moveOn(from index: Int) {
        guard grpcs.count > 1 else { return }
        let h = healthy.withLock { $0 }
        let order = (1..<grpcs.count).map { (index + $0) % grpcs.count }
        let next = order.first { h.indices.contains($0) && h[$0] } ?? order[0]
        use(endpoint: next, from: index)
    }
    private func use(endpoint next: Int, from index: Int) {
        let moved = activeEndpoint.withLock { a -> Bool in
            guard a == index, next != index else { return false }
            a = next
            return true
        }
        if moved { logger.notice("etcd: moving from \(config.endpoints[index]) to \(config.endpoints[next])") }
    }

    /// Every second, probes each member; the endpoint in use becomes the first healthy one in
    /// the configured order (the apiserver's own member when it answers), so a member that
    /// vanished (whose connections hang rather than fail) is left within about a second, and
    /// the own member is used again once it is back.
    func healthLoop() async {
        guard grpcs.count > 1 else { return }
        while !Task.isCancelled {
            let results = await withTaskGroup(of: (Int, Bool).self) { g in
                for i in kvs.indices {
                    let client = kvs[i]
                    var req = Etcdserverpb_RangeRequest()
                    req.key = Data((config.prefix + "/health").utf8)
                    req.serializable = true
                    g.addTask {
                        var o = CallOptions.defaults
                        o.timeout = .milliseconds(800)
                        return (i, (try? await client.range(req, options: o)) != nil)
                    }
                }
                var out = Array(repeating: false, count: kvs.count)
                for await (i, ok) in g { out[i] = ok }
                return out
            }
            healthy.withLock { $0 = results }
            let current = activeEndpoint.withLock { $0 }
            if let best = results.firstIndex(of: true), best != current, !results[current] || best < current {
                use(endpoint: best, from: current)
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let progressRequests = Mutex<AsyncStream<Etcdserverpb_WatchRequest>.Continuation?>(nil)
    private let metricsState = Mutex(StoreMetrics())
    public var backendName: String { "etcd" }
    private let prefixBytes: Data
    private let rangeEnd: Data

    private init(config: EtcdConfig, options: StoreOptions, logger: Logger) throws {
        self.config = config
        self.logger = logger
        cache = WatchCache(options: options, logger: logger)
        var targets: [(host: String, port: Int)] = []
        var tls = false
        for e in config.endpoints {
            guard let u = URLComponents(string: e), let host = u.host, let port = u.port, u.scheme == "https" || u.scheme == "http" else {
                throw StoreError.backend("etcd endpoint \"\(e)\" is not of the form https://HOST:PORT or http://HOST:PORT")
            }
            tls = tls || u.scheme == "https"
            targets.append((host == "localhost" ? "127.0.0.1" : host, port))
        }
        guard !targets.isEmpty else { throw StoreError.backend("no etcd endpoints given") }
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if tls {
            guard let ca = config.caFile, let cert = config.certFile, let key = config.keyFile else {
                throw StoreError.backend("an https etcd endpoint needs a CA file, a client certificate and its key")
            }
            security = .mTLS(certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem)) { c in
                c.trustRoots = .certificates([.file(path: ca, format: .pem)])
            }
        } else {
            security = .plaintext
        }
        var transportConfig = HTTP2ClientTransport.Posix.Config.defaults
        transportConfig.backoff.initial = .milliseconds(200)
        transportConfig.backoff.max = .seconds(2)
        transportConfig.connection.maxIdleTime = nil
        transportConfig.http2.maxFrameSize = 1 << 20
        grpcs = try targets.map { t in
            GRPCClient(transport: try HTTP2ClientTransport.Posix(target: .ipv4(host: t.host, port: t.port), transportSecurity: security, config: transportConfig))
        }
        kvs = grpcs.map { Etcdserverpb_KV.Client(wrapping: $0) }
        watchClients = grpcs.map { Etcdserverpb_Watch.Client(wrapping: $0) }
        prefixBytes = Data((config.prefix + "/").utf8)
        var end = [UInt8](prefixBytes)
        end[end.count - 1] += 1
        rangeEnd = Data(end)
    }

    /// Connects, lists everything under the prefix into the cache and starts following it. An
    /// etcd that cannot be reached is reported in one line per attempt and retried until
    /// `patience` runs out.
    public static func open(config: EtcdConfig, options: StoreOptions = StoreOptions(), logger: Logger = Logger(label: "etcd"),
                            patience: Duration = .seconds(3600)) async throws -> EtcdStore {
        let s = try EtcdStore(config: config, options: options, logger: logger)
        for grpc in s.grpcs { s.tasks.withLock { $0.append(Task { try? await grpc.runConnections() }) } }
        s.healthy.withLock { $0 = Array(repeating: true, count: s.grpcs.count) }
        s.tasks.withLock { $0.append(Task { await s.healthLoop() }) }
        let deadline = ContinuousClock.now + patience
        var attempt = 0
        while true {
            do {
                let (objects, revision) = try await s.listAll()
                s.cache.load(objects: objects, log: [], revision: revision)
                logger.info("etcd store ready", metadata: ["endpoints": "\(config.endpoints.joined(separator: ","))", "objects": "\(objects.count)", "revision": "\(revision)"])
                break
            } catch {
                attempt += 1
                if ContinuousClock.now >= deadline { s.shutdown(); throw error }
                logger.error("cannot reach etcd at \(config.endpoints.joined(separator: ",")): \(Self.describe(error)); retrying")
                try? await Task.sleep(for: .seconds(min(5, attempt)))
            }
        }
        s.tasks.withLock {
            $0.append(Task { await s.follow() })
            if config.compactionInterval > .zero { $0.append(Task { await s.compactLoop() }) }
        }
        return s
    }

    /// A store that never connects: for checking the key layout.
    static func layoutOnly() throws -> EtcdStore {
        try EtcdStore(config: EtcdConfig(endpoints: ["http://127.0.0.1:1"]), options: StoreOptions(), logger: Logger(label: "etcd"))
    }

    /// Stops following etcd and closes the connection.
    public func shutdown() {
        cache.closeWatches()
        for t in tasks.withLock({ $0 }) { t.cancel() }
        for g in grpcs { g.beginGracefulShutdown() }
    }

    deinit { for t in tasks.withLock({ $0 }) { t.cancel() } }

    // MARK: keys and values

    func etcdKey(_ k: ObjectKey) -> Data {
        let (group, resource): (String, String)
        if let dot = k.resource.firstIndex(of: ".") {
            (group, resource) = (String(k.resource[k.resource.index(after: dot)...]), String(k.resource[..<dot]))
        } else {
            (group, resource) = ("core", k.resource)
        }
        let path = k.namespace.isEmpty ? "\(group)/\(resource)/\(k.name)" : "\(group)/\(resource)/\(k.namespace)/\(k.name)"
        return prefixBytes + Data(path.utf8)
    }

    func objectKey(_ key: Data) -> ObjectKey? {
        guard key.starts(with: prefixBytes) else { return nil }
        let parts = String(decoding: key.dropFirst(prefixBytes.count), as: UTF8.self).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 || parts.count == 4, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        let resource = parts[0] == "core" ? parts[1] : "\(parts[1]).\(parts[0])"
        return ObjectKey(resource: resource, namespace: parts.count == 4 ? parts[2] : "", name: parts[parts.count - 1])
    }

    struct Envelope: Codable { var l: [String: String]; var f: [String: String] }

    func encodeValue(_ o: StoredObject) throws -> Data {
        var v = try JSONEncoder().encode(Envelope(l: o.labels, f: o.fields))
        v.append(0x0A)
        v.append(Store.replacePlaceholder(o.data, with: Array("\"\"".utf8)))
        if let enc = config.encryption { v = try Sealing.store(v, key: o.key, config: enc) }
        return v
    }

    func decode(_ kv: Etcdserverpb_KeyValue) throws -> StoredObject? {
        guard let key = objectKey(kv.key) else { return nil }
        var v = kv.value
        if let enc = config.encryption, enc.resources.contains(key.resource) { v = try Sealing.open(v, key: key, config: enc).plain }
        guard let nl = v.firstIndex(of: 0x0A) else { throw StoreError.backend("\(key): stored value has no header line") }
        let env = try JSONDecoder().decode(Envelope.self, from: v[v.startIndex..<nl])
        let data = ResourceVersion.set(Data(v[v.index(after: nl)...]), String(kv.modRevision))
        return StoredObject(key: key, revision: kv.modRevision, data: data, labels: env.l, fields: env.f)
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? RPCError { return "\(e.code): \(e.message)" }
        return "\(error)"
    }

    var callOptions: CallOptions {
        var o = CallOptions.defaults
        o.timeout = config.requestTimeout
        return o
    }

    /// Runs one call; failures to reach etcd or to get an answer in time become `unavailable`.
    /// A call that was never sent (no connection to the member the channel picked: it died, or
    /// is being reconnected) is tried again, on whichever member the channel picks next, until
    /// the request timeout; a write is safe to send again then, since etcd never saw it.
    func call<T: Sendable>(_ what: String, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + config.requestTimeout
        var tried = 0
        while true {
            let index = activeEndpoint.withLock { $0 }
            do { return try await body() }
            catch let e as RPCError {
                if e.code == .unavailable, Self.neverSent(e), ContinuousClock.now + .milliseconds(50) < deadline {
                    moveOn(from: index)
                    tried += 1
                    // Once round every endpoint, wait a little before the next round.
                    if tried % grpcs.count == 0 { try await Task.sleep(for: .milliseconds(100)) }
                    continue
                }
                throw StoreError.unavailable("etcd \(what): \(e.code): \(e.message)")
            }
        }
    }

    /// A write transaction. Besides what `call` retries, an attempt whose outcome is unknown (no
    /// answer in time, the connection lost after sending, etcd between leaders) is sent again
    /// to the next member that answers health probes, for up to three request timeouts in all; `retried` says whether that
    /// happened, so the caller can recognise its own earlier success in a failed compare. Every
    /// write compares a revision (or that the key exists), so a repeat never applies twice.
    func writeCall(_ txn: Etcdserverpb_TxnRequest) async throws -> (Etcdserverpb_TxnResponse, retried: Bool) {
        let deadline = ContinuousClock.now + config.requestTimeout * 3
        var retried = false
        while true {
            let index = activeEndpoint.withLock { $0 }
            do {
                return (try await call("write") { try await kv.txn(txn, options: callOptions) }, retried)
            } catch let e as StoreError {
                // Only when another member answers health probes: with one member, or none
                // answering, the write fails at once as before.
                let others = healthy.withLock { h in h.indices.contains { $0 != index && h[$0] } }
                guard case .unavailable = e, others, ContinuousClock.now + .milliseconds(100) < deadline, !Task.isCancelled else { throw e }
                logger.notice("etcd write: \(e); sending it again")
                moveOn(from: index)
                retried = true
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    static func neverSent(_ e: RPCError) -> Bool {
        e.message.contains("establish a connection") || e.message.contains("transient failure")
    }

    // MARK: reads

    /// Everything under the prefix at one revision, in pages.
    func listAll() async throws -> ([StoredObject], Int64) {
        var objects: [StoredObject] = []
        var revision: Int64 = 0
        var from = prefixBytes
        while true {
            var req = Etcdserverpb_RangeRequest()
            req.key = from
            req.rangeEnd = rangeEnd
            req.limit = 1000
            req.revision = revision
            let resp = try await call("list") { try await kv.range(req, options: callOptions) }
            if revision == 0 { revision = resp.header.revision }
            for kv in resp.kvs { if let o = try decode(kv) { objects.append(o) } }
            guard resp.more, let last = resp.kvs.last else { break }
            from = last.key + Data([0])
        }
        return (objects, revision)
    }

    /// nil when etcd answers a quorum read of one key within a second (it has a leader and this
    /// apiserver reaches it), else why not.
    public func readiness() async -> String? {
        var req = Etcdserverpb_RangeRequest()
        req.key = Data((config.prefix + "/health").utf8)
        var o = CallOptions.defaults
        o.timeout = .seconds(1)
        do { _ = try await kv.range(req, options: o); return nil } catch { return "etcd: \(Self.describe(error))" }
    }

    /// The revision etcd is at now (a quorum read).
    func etcdRevision() async throws -> Int64 {
        var req = Etcdserverpb_RangeRequest()
        req.key = prefixBytes
        req.rangeEnd = rangeEnd
        req.countOnly = true
        req.limit = 1
        return try await call("read") { try await kv.range(req, options: callOptions) }.header.revision
    }

    public var metrics: StoreMetrics { metricsState.withLock { $0 } }

    public func sync() async throws {
        let rev = try await etcdRevision()
        if cache.revision >= rev { return }
        // The newest revision may belong to a key outside the prefix: a progress report moves
        // the cache to it without an event.
        var progress = Etcdserverpb_WatchRequest()
        progress.progressRequest = Etcdserverpb_WatchProgressRequest()
        progressRequests.withLock { $0 }?.yield(progress)
        guard await cache.waitFor(revision: rev, timeout: config.requestTimeout) else {
            throw StoreError.unavailable("the etcd watch is behind (at revision \(cache.revision), etcd at \(rev))")
        }
    }

    // MARK: writes

    public func write(_ op: WriteOp) async throws -> StoredObject {
        let started = ContinuousClock.now
        let key = etcdKey(op.key)
        var txn = Etcdserverpb_TxnRequest()
        var cmp = Etcdserverpb_Compare()
        cmp.key = key
        var get = Etcdserverpb_RequestOp()
        get.requestRange = { var r = Etcdserverpb_RangeRequest(); r.key = key; return r }()
        var data = Data()
        var guardCompare: Etcdserverpb_Compare?
        switch op {
        case .create(let o, let unchanged):
            cmp.target = .create; cmp.result = .equal; cmp.createRevision = 0
            var put = Etcdserverpb_PutRequest(); put.key = key; put.value = try encodeValue(o)
            txn.success = [{ var r = Etcdserverpb_RequestOp(); r.requestPut = put; return r }()]
            data = o.data
            if let (gk, grev) = unchanged {
                var g = Etcdserverpb_Compare()
                g.key = etcdKey(gk); g.target = .mod; g.result = .equal; g.modRevision = grev
                guardCompare = g
            }
        case .update(let o, let expected):
            if let expected { cmp.target = .mod; cmp.result = .equal; cmp.modRevision = expected }
            else { cmp.target = .create; cmp.result = .greater; cmp.createRevision = 0 }
            var put = Etcdserverpb_PutRequest(); put.key = key; put.value = try encodeValue(o)
            txn.success = [{ var r = Etcdserverpb_RequestOp(); r.requestPut = put; return r }()]
            data = o.data
        case .delete(_, let expected, let finalData):
            if let expected { cmp.target = .mod; cmp.result = .equal; cmp.modRevision = expected }
            else { cmp.target = .create; cmp.result = .greater; cmp.createRevision = 0 }
            var del = Etcdserverpb_DeleteRangeRequest(); del.key = key; del.prevKv = true
            txn.success = [{ var r = Etcdserverpb_RequestOp(); r.requestDeleteRange = del; return r }()]
            data = finalData
        }
        txn.compare = [cmp] + (guardCompare.map { [$0] } ?? [])
        txn.failure = [get]
        if let g = guardCompare {
            txn.failure.append({ var r = Etcdserverpb_RequestOp(); r.requestRange = { var q = Etcdserverpb_RangeRequest(); q.key = g.key; return q }(); return r }())
        }
        let (resp, retried) = try await writeCall(txn)
        let current = resp.responses.first?.responseRange.kvs.first
        // After an attempt whose outcome is unknown, a failed compare may be that attempt's own
        // success: the key holds exactly what we wrote (or, for a delete, is gone).
        var resolvedRevision: Int64? = nil
        if !resp.succeeded, retried {
            switch op {
            case .create, .update:
                if let current, let put = txn.success.first?.requestPut, current.value == put.value { resolvedRevision = current.modRevision }
            case .delete:
                if current == nil { resolvedRevision = resp.header.revision }
            }
            if let r = resolvedRevision { logger.notice("an etcd write whose answer was lost had been applied", metadata: ["key": "\(op.key)", "revision": "\(r)"]) }
        }
        guard resp.succeeded || resolvedRevision != nil else {
            switch op {
            case .create(_, let unchanged):
                if current == nil, let (gk, _) = unchanged {
                    throw StoreError.conflict(gk, current: resp.responses.dropFirst().first?.responseRange.kvs.first?.modRevision ?? 0)
                }
                throw StoreError.alreadyExists(op.key)
            case .update, .delete:
                guard let current else { throw StoreError.notFound(op.key) }
                throw StoreError.conflict(op.key, current: current.modRevision)
            }
        }
        let rev = resolvedRevision ?? resp.header.revision
        var result: StoredObject
        switch op {
        case .create(let o, _), .update(let o, _):
            result = o
        case .delete(let k, _, _):
            let prev = resp.succeeded ? resp.responses.first?.responseDeleteRange.prevKvs.first : nil
            result = (try prev.flatMap { try decode($0) }) ?? StoredObject(key: k, data: data, labels: [:], fields: [:])
        }
        result.revision = rev
        result.data = Store.stamp(data, rev)
        if !(await cache.waitFor(revision: rev, timeout: config.requestTimeout)) {
            logger.warning("a committed write is not in the cache yet", metadata: ["revision": "\(rev)", "cache": "\(cache.revision)"])
        }
        let took = ContinuousClock.now - started
        let elapsed = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        metricsState.withLock { $0.record(ops: 1, batch: 1, seconds: elapsed) }
        return result
    }

    /// Copies objects kept elsewhere (a SQLite store) into an etcd that holds none yet under the
    /// prefix. Every object keeps its key, labels, fields and contents; its resourceVersion
    /// becomes the revision etcd gives it. Returns how many were written.
    public func importObjects(_ objects: [StoredObject]) async throws -> Int {
        try await sync()
        let present = cache.resourcesCount()
        guard present == 0 else {
            throw StoreError.backend("etcd already holds \(present) objects under \(config.prefix)/; import only into an empty prefix")
        }
        var written = 0
        for chunk in stride(from: 0, to: objects.count, by: 64).map({ Array(objects[$0..<min($0 + 64, objects.count)]) }) {
            written += try await withThrowingTaskGroup(of: Int.self) { g in
                for var o in chunk {
                    o.data = ResourceVersion.set(o.data, "")
                    g.addTask { _ = try await self.write(.create(o)); return 1 }
                }
                return try await g.reduce(0, +)
            }
        }
        return written
    }

    // MARK: following etcd

    struct Compacted: Error { let revision: Int64 }

    /// One etcd watch over the prefix, from the cache's revision, with previous values; on a
    /// broken stream it watches again from where it was, after a compaction it lists again.
    func follow() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await watchOnce()
            } catch let c as Compacted {
                logger.warning("etcd compacted past the cache; listing again", metadata: ["compacted": "\(c.revision)", "cache": "\(cache.revision)"])
                do {
                    let (objects, revision) = try await listAll()
                    cache.load(objects: objects, log: [], revision: revision)
                    cache.closeWatches(refuseNew: false)   // clients watch again, and list again on 410
                } catch {
                    try? await Task.sleep(for: .seconds(1))
                }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.error("etcd watch broke: \(Self.describe(error)); watching again from revision \(cache.revision + 1)")
                }
                try? await Task.sleep(for: .milliseconds(min(2000, 100 * failures)))
            }
        }
    }

    private func watchOnce() async throws {
        let (requests, requestsCont) = AsyncStream<Etcdserverpb_WatchRequest>.makeStream()
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = prefixBytes
        create.rangeEnd = rangeEnd
        create.startRevision = cache.revision + 1
        create.prevKv = true
        create.progressNotify = true
        var first = Etcdserverpb_WatchRequest()
        first.createRequest = create
        requestsCont.yield(first)
        progressRequests.withLock { $0 = requestsCont }
        defer { requestsCont.finish(); progressRequests.withLock { $0 = nil } }
        // hasleader: the member ends the watch when it has no leader (cut off from the majority),
        // instead of going quiet; the watch then moves to another member.
        let index = activeEndpoint.withLock { $0 }
        do {
        try await withThrowingTaskGroup(of: Void.self) { g in
        // The watch ends when the endpoint in use changes (a member that vanished never ends
        // it by itself); follow() then watches again on the new one.
        g.addTask { [self] in
            while activeEndpoint.withLock({ $0 }) == index { try await Task.sleep(for: .milliseconds(200)) }
            throw StoreError.unavailable("etcd endpoint changed")
        }
        g.addTask { [self] in
        try await watchClients[index].watch(metadata: ["hasleader": "true"], requestProducer: { writer in
            for await r in requests { try await writer.write(r) }
        }, onResponse: { [self] response in
            for try await msg in response.messages {
                if msg.compactRevision > 0 { throw Compacted(revision: msg.compactRevision) }
                if msg.canceled { throw StoreError.unavailable("etcd cancelled the watch: \(msg.cancelReason)") }
                // The answer to the create request carries etcd's revision at that moment, but the
                // events up to it are still to come: it says nothing about progress.
                if msg.created { continue }
                var events: [StoreEvent] = []
                events.reserveCapacity(msg.events.count)
                for e in msg.events {
                    let prev = e.hasPrevKv ? try decode(e.prevKv) : nil
                    if e.type == .put {
                        guard let o = try decode(e.kv) else { continue }
                        events.append(StoreEvent(type: prev == nil ? .added : .modified, object: o, previous: prev))
                    } else {
                        guard var gone = prev else { continue }
                        gone.revision = e.kv.modRevision
                        gone.data = ResourceVersion.set(gone.data, String(e.kv.modRevision))
                        events.append(StoreEvent(type: .deleted, object: gone, previous: prev))
                    }
                }
                // A progress report (no events) carries the revision etcd has reached.
                let revision = msg.events.last?.kv.modRevision ?? msg.header.revision
                cache.apply(events, revision: revision)
            }
        })
        }
        _ = try await g.next()
        g.cancelAll()
        }
        } catch let e as RPCError {
            // A stream that broke or could not be opened, or a member without a leader: the next
            // watch goes to the next member.
            moveOn(from: index)
            throw e
        }
    }

    // MARK: compaction

    /// Every interval, compacts etcd to the revision seen one interval earlier. A transaction on a
    /// shared key lets only one apiserver of several do it per interval (as kube-apiserver does).
    func compactLoop() async {
        let key = prefixBytes + Data("compact_rev_key".utf8)
        var version: Int64 = 0
        var previous: Int64 = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: config.compactionInterval)
            if Task.isCancelled { return }
            do {
                var cmp = Etcdserverpb_Compare()
                cmp.key = key; cmp.target = .version; cmp.result = .equal; cmp.version = version
                var put = Etcdserverpb_PutRequest(); put.key = key; put.value = Data(String(previous).utf8)
                var txn = Etcdserverpb_TxnRequest()
                txn.compare = [cmp]
                txn.success = [{ var r = Etcdserverpb_RequestOp(); r.requestPut = put; return r }()]
                txn.failure = [{ var r = Etcdserverpb_RequestOp(); r.requestRange = { var g = Etcdserverpb_RangeRequest(); g.key = key; return g }(); return r }()]
                let resp = try await call("compaction") { try await kv.txn(txn, options: callOptions) }
                guard resp.succeeded else {
                    // Another apiserver compacted this interval: follow its count.
                    version = resp.responses.first?.responseRange.kvs.first?.version ?? 0
                    continue
                }
                version += 1
                if previous > 0 {
                    var c = Etcdserverpb_CompactionRequest(); c.revision = previous
                    _ = try await call("compaction") { try await kv.compact(c, options: callOptions) }
                    logger.info("compacted etcd", metadata: ["revision": "\(previous)"])
                }
                previous = resp.header.revision
            } catch {
                logger.warning("etcd compaction failed: \(Self.describe(error))")
            }
        }
    }
}
