// Kubernetes Events from controllers, the scheduler and agents.
import Foundation
import Logging
import Synchronization
import API

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
    public var failedEvents: Int { losses.failed.withLock { $0 } }
    public var droppedEvents: Int { losses.dropped.withLock { $0 } }
    static let logger = Logger(label: "events")

    public init(client: KubeClient, component: String, clock: any ControlClock = SystemControlClock(), buffer: Int = 1000, workers: Int = 4) {
        self.client = client; self.component = component; self.clock = clock
        let losses = Losses()
        self.losses = losses
        let (stream, cont) = AsyncStream<Pending>.makeStream(bufferingPolicy: .bufferingOldest(buffer))
        continuation = cont
        drainer = Task {
            // One consumer; at most `workers` sends in flight.
            await withTaskGroup(of: Void.self) { g in
                var inFlight = 0
                for await e in stream {
                    if inFlight >= workers { await g.next(); inFlight -= 1 }
                    g.addTask {
                        do { try await EventRecorder.send(e, client: client, component: component) }
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
        if case .dropped = continuation.yield(Pending(ref: ref, namespace: namespace, type: type, reason: reason, message: message, time: KubeTime.format(clock.now()))) {
            let n = losses.dropped.withLock { $0 += 1; return $0 }
            ComponentMetrics.shared.count("orchestrator_events_dropped_total", ["component": component])
            if n % 100 == 1 { Self.logger.warning("event buffer full: dropping events", metadata: ["component": "\(component)", "dropped so far": "\(n)"]) }
        }
    }

    static func send(_ p: Pending, client: KubeClient, component: String) async throws {
        // Same object, reason and message: one Event whose count grows (name is a stable hash).
        let h = FNV1a.hash64("\(p.ref.uid ?? p.ref.name ?? "")|\(p.reason)|\(p.message)".utf8)
        let name = "\(p.ref.name ?? "object").\(String(h, radix: 16))"
        var ev = Event(metadata: ObjectMeta(name: name, namespace: p.namespace), involvedObject: p.ref, reason: p.reason, message: p.message,
                       type: p.type, source: EventSource(component: component))
        ev.firstTimestamp = p.time; ev.lastTimestamp = p.time; ev.count = 1
        ev.reportingComponent = component
        do { _ = try await client.create(ev) } catch let s as Status where s.code == 409 {
            // Seen before: its count grows (a concurrent bump of the same Event may win; then
            // this one is not counted, as client-go's correlator also gives up after a conflict).
            var existing = try await client.get(Event.self, name, namespace: p.namespace)
            existing.count = (existing.count ?? 1) + 1
            existing.lastTimestamp = p.time
            do { _ = try await client.update(existing) } catch let s as Status where s.code == 409 {}
        } catch let s as Status where s.code == 403 && (s.message ?? "").contains("being terminated") {
            // The namespace is going: so is everything about it.
        }
    }
}

