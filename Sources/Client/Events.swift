// Kubernetes Events from controllers, the scheduler and agents.
import Foundation
import Logging
import Synchronization
import API

/// A rate for one reason's Events from one recorder: above it they are not written one by one
/// but counted, and each namespace gets one combined Event per window (see EventRecorder).
public struct EventRateLimit: Sendable {
    public var perSecond: Double
    public var burst: Double
    /// How long skipped Events are gathered before their combined Event is written.
    public var window: Double
    public init(perSecond: Double, burst: Double, window: Double = 1) { self.perSecond = perSecond; self.burst = burst; self.window = window }
    /// A `--*-events-qps` flag's limit: `qps` a second with bursts of twice that (at least one);
    /// nil, no limit, for 0.
    public static func qps(_ qps: Double) -> EventRateLimit? {
        qps > 0 ? EventRateLimit(perSecond: qps, burst: max(1, 2 * qps)) : nil
    }
}

/// Records core/v1 Events about objects, as Kubernetes components do; repeats bump `count`.
/// Events go through a bounded buffer drained by a few workers, so a burst of them never
/// crowds out the component's real work on the shared connection pool; when the buffer is full
/// the newest are dropped (as client-go's broadcaster does).
public final class EventRecorder: Sendable {
    let client: KubeClient
    let component: String
    let clock: any ControlClock
    struct Pending: Sendable { var ref: ObjectReference; var namespace: String; var type: String; var reason: String; var message: String; var time: String }
    private let continuation: AsyncStream<Pending>.Continuation
    private let drainer: Task<Void, Never>
    /// Events not recorded: refused by the apiserver, or dropped with the buffer full. The first
    /// of each kind is logged, then every 100th; the counts are kept.
    final class Losses: Sendable { let failed = Mutex(0), dropped = Mutex(0) }
    private let losses: Losses
    /// The count each Event this recorder wrote was last given, by namespace/name, so that a
    /// repeat is one merge patch of count and lastTimestamp (as client-go's correlator patches
    /// from its cache) and needs no read: a node may create and patch Events but not get them.
    /// -1: the Event was made by someone before this recorder (another process, or this one
    /// before a restart) and its count is unknown; repeats patch lastTimestamp only.
    /// Forgotten whole past `maxKnown` entries (a repeat after that starts from a fresh read).
    final class Known: Sendable { let counts = Mutex<[String: Int]>([:]) }
    private let known: Known
    static let maxKnown = 4096
    /// Per reason: a token bucket, and the Events skipped over it (per namespace: how many, and
    /// the last one) waiting for their combined Event.
    struct Limited {
        var tokens: Double
        var last: Date?
        var skipped: [String: (count: Int, last: Pending)] = [:]
        var flushing = false
    }
    private let limits: [String: EventRateLimit]
    /// Per reason, and under the same lock the number skipped in all.
    private let limited = Mutex<(reasons: [String: Limited], skipped: Int)>(([:], 0))
    public var failedEvents: Int { losses.failed.withLock { $0 } }
    /// Events not written one by one because their reason was over its rate (each counted in a
    /// combined Event instead).
    public var skippedEvents: Int { limited.withLock { $0.skipped } }
    public var droppedEvents: Int { losses.dropped.withLock { $0 } }
    static let logger = Logger(label: "events")

    /// `limits`: rates per reason (the scheduler's Scheduled, one per pod): Events over the rate
    /// are counted, and once per window each namespace gets one Event on the last of them,
    /// "(combined from similar events): MESSAGE (and N more REASON events in T s)", as
    /// client-go's correlator combines similar Events. Reasons not named are never limited.
    public init(client: KubeClient, component: String, clock: any ControlClock = SystemControlClock(), buffer: Int = 1000, workers: Int = 4,
                limits: [String: EventRateLimit] = [:]) {
        self.client = client; self.component = component; self.clock = clock
        self.limits = limits
        let losses = Losses()
        self.losses = losses
        let known = Known()
        self.known = known
        let (stream, cont) = AsyncStream<Pending>.makeStream(bufferingPolicy: .bufferingOldest(buffer))
        continuation = cont
        drainer = Task {
            // One consumer; at most `workers` sends in flight.
            await withTaskGroup(of: Void.self) { g in
                var inFlight = 0
                for await e in stream {
                    if inFlight >= workers { await g.next(); inFlight -= 1 }
                    g.addTask {
                        do { try await EventRecorder.send(e, client: client, component: component, known: known) }
                        catch {
                            let n = losses.failed.withLock { $0 += 1; return $0 }
                            ComponentMetrics.shared.count("orchestrator_events_failed_total", ["component": component])
                            if n % 100 == 1 {
                                EventRecorder.logger.warning("could not record an event", metadata: ["component": "\(component)", "reason": "\(e.reason)", "failed so far": "\(n)", "error": "\(error)"])
                            }
                        }
                    }
                    inFlight += 1
                }
            }
        }
    }

    deinit { continuation.finish(); drainer.cancel() }

    public func record<T: KubeObject>(_ obj: T, type: String = "Normal", reason: String, message: String) {
        let ref = ObjectReference(kind: T.resource.kind, namespace: obj.metadata.namespace, name: obj.name, uid: obj.metadata.uid, apiVersion: T.resource.apiVersion)
        record(ref, namespace: obj.metadata.namespace ?? "default", type: type, reason: reason, message: message)
    }

    public func record(_ ref: ObjectReference, namespace: String, type: String = "Normal", reason: String, message: String) {
        let now = clock.now()
        let pending = Pending(ref: ref, namespace: namespace, type: type, reason: reason, message: message, time: KubeTime.format(now))
        if let limit = limits[reason] {
            let (admitted, startFlush) = limited.withLock { m -> (Bool, Bool) in
                var l = m.reasons[reason] ?? Limited(tokens: limit.burst)
                if let last = l.last { l.tokens = min(limit.burst, l.tokens + max(0, now.timeIntervalSince(last)) * limit.perSecond) }
                l.last = now
                defer { m.reasons[reason] = l }
                if l.tokens >= 1 { l.tokens -= 1; return (true, false) }
                let n = (l.skipped[namespace]?.count ?? 0) + 1
                l.skipped[namespace] = (n, pending)
                m.skipped += 1
                let start = !l.flushing
                l.flushing = true
                return (false, start)
            }
            if !admitted {
                ComponentMetrics.shared.count("orchestrator_events_skipped_total", ["component": component, "reason": reason])
                if startFlush {
                    Task { [weak self] in
                        try? await self?.clock.sleep(for: limit.window)
                        self?.flush(reason, window: limit.window)
                    }
                }
                return
            }
        }
        enqueue(pending)
    }

    /// Writes one combined Event per namespace for the Events of `reason` skipped in the window.
    func flush(_ reason: String, window: Double) {
        let skipped = limited.withLock { m -> [String: (count: Int, last: Pending)] in
            let s = m.reasons[reason]?.skipped ?? [:]
            m.reasons[reason]?.skipped = [:]
            m.reasons[reason]?.flushing = false
            return s
        }
        for (_, (count, last)) in skipped.sorted(by: { $0.key < $1.key }) {
            var combined = last
            combined.message = "(combined from similar events): \(last.message)" + (count > 1 ? " (and \(count - 1) more \(reason) events in \(String(format: "%g", window)) s)" : "")
            combined.time = KubeTime.format(clock.now())
            enqueue(combined)
        }
    }

    private func enqueue(_ p: Pending) {
        if case .dropped = continuation.yield(p) {
            let n = losses.dropped.withLock { $0 += 1; return $0 }
            ComponentMetrics.shared.count("orchestrator_events_dropped_total", ["component": component])
            if n % 100 == 1 { Self.logger.warning("event buffer full: dropping events", metadata: ["component": "\(component)", "dropped so far": "\(n)"]) }
        }
    }

    static func send(_ p: Pending, client: KubeClient, component: String, known: Known) async throws {
        // Same object, reason and message: one Event whose count grows (name is a stable hash).
        let h = FNV1a.hash64("\(p.ref.uid ?? p.ref.name ?? "")|\(p.reason)|\(p.message)".utf8)
        let name = "\(p.ref.name ?? "object").\(String(h, radix: 16))"
        let key = "\(p.namespace)/\(name)"
        func remember(_ count: Int) {
            known.counts.withLock { m in
                if m.count >= maxKnown && m[key] == nil { m.removeAll(keepingCapacity: true) }
                m[key] = count
            }
        }
        func bump(to count: Int?) async throws {
            var fields: [String: JSONValue] = ["lastTimestamp": .string(p.time)]
            if let count { fields["count"] = .int(Int64(count)) }
            _ = try await client.patch(Event.self, name, namespace: p.namespace, mergePatch: .object(fields))
            remember(count ?? -1)
        }
        if let last = known.counts.withLock({ $0[key] }) {
            do { try await bump(to: last >= 1 ? last + 1 : nil); return }
            catch let s as Status where s.code == 404 {
                known.counts.withLock { _ = $0.removeValue(forKey: key) }   // expired (event TTL): a new one
            }
        }
        var ev = Event(metadata: ObjectMeta(name: name, namespace: p.namespace), involvedObject: p.ref, reason: p.reason, message: p.message,
                       type: p.type, source: EventSource(component: component))
        ev.firstTimestamp = p.time; ev.lastTimestamp = p.time; ev.count = 1
        ev.reportingComponent = component
        do {
            _ = try await client.create(ev)
            remember(1)
        } catch let s as Status where s.code == 409 {
            // Made before this recorder knew of it: read its count where allowed; a node may not
            // read Events, so it bumps lastTimestamp only. (A concurrent bump of the same Event
            // may win the update; then this one is not counted, as client-go's correlator also
            // gives up after a conflict.)
            do {
                var existing = try await client.get(Event.self, name, namespace: p.namespace)
                existing.count = (existing.count ?? 1) + 1
                existing.lastTimestamp = p.time
                do { _ = try await client.update(existing); remember(existing.count ?? 1) } catch let s as Status where s.code == 409 {}
            } catch let s as Status where s.code == 403 {
                try await bump(to: nil)
            }
        } catch let s as Status where s.code == 403 && (s.message ?? "").contains("being terminated") {
            // The namespace is going: so is everything about it.
        }
    }
}

