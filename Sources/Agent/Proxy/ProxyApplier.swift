// Puts the proxy's nftables ruleset on the node: reads the live table, loads the rendered script
// in one `nft -f -` transaction, then clears the UDP conntrack entries the update made stale.
import Logging
import Synchronization

public struct ProxyApplyError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public final class ProxyApplier: Sendable {
    public typealias Runner = @Sendable (_ exe: String, _ args: [String], _ stdin: String?) async throws
        -> (status: Int32, stdout: String, stderr: String)

    public let config: ProxyConfig
    private let runner: Runner
    private let nftPath: String
    private let conntrackPath: String
    private let logger: Logger

    private struct State {
        var last: [ProxyService] = []
        /// Whether the kernel holds exactly `last` (a partial update may build on it).
        var exact = false
        var lastUnits: ProxyRules.Units? = nil
        var syncsSinceFull = 0
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    /// Paths are absolute because the agent's runner spawns without a PATH search.
    public init(config: ProxyConfig, nftPath: String = "/usr/sbin/nft", conntrackPath: String = "/usr/sbin/conntrack",
                logger: Logger = Logger(label: "proxy"), runner: @escaping Runner) {
        self.config = config; self.nftPath = nftPath; self.conntrackPath = conntrackPath
        self.logger = logger; self.runner = runner
    }

    /// Syncs between full rewrites.
    public let fullEvery = 100

    /// The services of the last successful sync.
    public var lastApplied: [ProxyService] { state.withLock { $0.last } }

    /// Makes the kernel's table match `services`. `rules` counts rules plus map elements loaded.
    /// On an nft failure nothing changed (the transaction is atomic) and the error names the line.
    @discardableResult
    public func sync(_ services: [ProxyService], full force: Bool = false) async throws -> (rules: Int, seconds: Double) {
        await acquire()
        defer { release() }
        let clock = ContinuousClock()
        let start = clock.now
        // Only what changed since the last sync, while the kernel holds exactly that; a full
        // rewrite (which also adopts and repairs) first, after a failure, and every 100 syncs.
        let (prevUnits, exact, count) = state.withLock { ($0.lastUnits, $0.exact, $0.syncsSinceFull) }
        let newUnits = ProxyRules.units(services, config: config)
        var script: String? = nil
        if exact && count < fullEvery && !force, let prevUnits { script = ProxyRules.renderPartial(old: prevUnits, new: newUnits, config: config) }
        let full = script == nil
        if script == nil {
            let existing = try await currentState()
            script = ProxyRules.render(services, config: config, existing: existing)
        }
        let text = script!
        if !text.isEmpty {
            let r = try await runner(nftPath, ["-f", "-"], text)
            guard r.status == 0 else {
                state.withLock { $0.exact = false }
                throw ProxyApplyError(Self.describeFailure(status: r.status, stderr: r.stderr, script: text))
            }
        }
        let old = state.withLock { s in
            let old = s.last
            s.last = services
            s.lastUnits = newUnits
            s.exact = true
            s.syncsSinceFull = full ? 0 : s.syncsSinceFull + 1
            return old
        }
        await clearConntrack(ProxyRules.staleConntrack(old: old, new: services))
        let rules = text.split(separator: "\n").count(where: { $0.hasPrefix("add rule ") || $0.hasPrefix("add element ") })
        let d = clock.now - start
        return (rules, Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }

    /// Deletes the whole table (clean shutdown); connections already NATed keep their conntrack entries.
    public func remove() async {
        await acquire()
        defer { release() }
        do {
            let r = try await runner(nftPath, ["delete", "table", "ip", config.table], nil)
            if r.status != 0 && !r.stderr.contains("No such file or directory") {
                logger.warning("nft delete table failed", metadata: ["stderr": "\(r.stderr)"])
            }
        } catch {
            logger.warning("nft delete table failed", metadata: ["error": "\(error)"])
        }
        state.withLock { $0.last = []; $0.exact = false; $0.lastUnits = nil }
    }

    /// Connections the node's rules have sent to each endpoint address since its counter was
    /// made (a full rewrite keeps counters; one is dropped once no Service uses its address).
    /// Empty before the first sync.
    public func connectionCounts() async throws -> [String: UInt64] {
        let r = try await runner(nftPath, ["-j", "list", "counters", "table", "ip", config.table], nil)
        if r.status == 0 { return try ProxyRules.parseCounters(r.stdout) }
        if r.stderr.contains("No such file or directory") { return [:] }
        throw ProxyApplyError("nft -j list counters table ip \(config.table) failed (status \(r.status)): \(r.stderr)")
    }

    private func currentState() async throws -> ProxyTableState {
        // -t leaves out set and map elements, which can be large and are not needed for names.
        let r = try await runner(nftPath, ["-t", "list", "table", "ip", config.table], nil)
        if r.status == 0 { return ProxyRules.parseState(r.stdout) }
        if r.stderr.contains("No such file or directory") { return .empty }
        throw ProxyApplyError("nft list table ip \(config.table) failed (status \(r.status)): \(r.stderr)")
    }

    /// Best effort: the rules are already in place, and a leftover entry only delays a UDP client.
    private func clearConntrack(_ commands: [[String]]) async {
        for args in commands {
            do {
                let r = try await runner(conntrackPath, args, nil)
                // Status 1 with "0 flow entries have been deleted" just means nothing matched.
                if r.status == 0 || (r.status == 1 && r.stderr.contains("0 flow entries")) { continue }
                logger.warning("conntrack failed", metadata: ["args": "\(args)", "status": "\(r.status)", "stderr": "\(r.stderr)"])
            } catch {
                logger.warning("conntrack not run; skipping the rest", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    /// nft's message plus the script line it points at ("/dev/stdin:12:1-40: Error: ...").
    static func describeFailure(status: Int32, stderr: String, script: String) -> String {
        var msg = "nft -f failed (status \(status)): \(stderr)"
        let lines = script.split(separator: "\n", omittingEmptySubsequences: false)
        for errLine in stderr.split(separator: "\n") {
            let fields = errLine.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
            if fields.count >= 3, let n = Int(fields[1]), n >= 1, n <= lines.count {
                msg += "\nscript line \(n): \(lines[n - 1])"
                break
            }
        }
        return msg
    }

    // One sync at a time: each computes its conntrack clean-up against the previous one's result.
    private func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let runNow = state.withLock { s -> Bool in
                if s.busy { s.waiters.append(c); return false }
                s.busy = true
                return true
            }
            if runNow { c.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.busy = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
