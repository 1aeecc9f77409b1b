import Testing
import Foundation
import API
@testable import APIServer
import Client
import Store

/// Events expire --event-ttl after their newest timestamp: from lists, from watches (DELETED)
/// and from state.db, so that a cluster running for months does not keep every Event forever.
@Suite(.serialized) struct EventTTLTests {
    func event(_ name: String, _ extra: String) -> Data {
        Data(#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"\#(name)"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"Test","message":"m","type":"Normal"\#(extra)}"#.utf8)
    }

    func names(_ k: KubeClient) async throws -> [String] {
        let r = try await k.request(.GET, "/api/v1/namespaces/default/events")
        let list = try JSONValue.parse(r.body)
        return (list["items"]?.arrayValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }.filter { $0.hasPrefix("ttl-") }.sorted()
    }

    @Test func expiredEventsLeaveTheListTheWatchAndTheDatabase() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apiserver-ttl-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = try await TestCluster.start(dir: dir) { $0.eventTTL = 3600 }
        let k = try c.admin()
        let now = Date()
        let later = { (s: Double) in KubeTime.format(now.addingTimeInterval(s)) }
        for (name, extra) in [
            ("ttl-old", #","firstTimestamp":"\#(later(0))","lastTimestamp":"\#(later(0))""#),
            // Its series was last seen half an hour on: that newest time counts.
            ("ttl-series", #","eventTime":"\#(later(0))","series":{"count":4,"lastObservedTime":"\#(later(1800))"},"reportingComponent":"t","reportingInstance":"t","action":"A""#),
        ] {
            let r = try await k.request(.POST, "/api/v1/namespaces/default/events", body: event(name, extra))
            #expect(r.status == 201, "\(name): \(String(decoding: r.body, as: UTF8.self))")
        }
        #expect(try await names(k) == ["ttl-old", "ttl-series"])
        #expect(await c.server.expireEvents(now: now) == 0)

        // A watch from here sees each expired Event go.
        let rv = try JSONValue.parse(try await k.request(.GET, "/api/v1/namespaces/default/events").body)["metadata"]?["resourceVersion"]?.stringValue ?? ""
        let sub = try c.server.store.watch(resource: Resources.events.groupResource, namespace: "default", fromRevision: Int64(rv))

        // An hour and 100 s on, the plain one is past its TTL.
        #expect(await c.server.expireEvents(now: now.addingTimeInterval(3700)) == 1)
        #expect(try await names(k) == ["ttl-series"])
        let deleted = await withTaskGroup(of: [String].self) { g in
            g.addTask {
                for await e in sub.events where e.type == .deleted { return [e.object.key.name] }
                return []
            }
            g.addTask { try? await Task.sleep(for: .seconds(10)); return ["no DELETED within 10 s"] }
            let first = await g.next() ?? []
            g.cancelAll()
            sub.cancel()
            return first
        }
        #expect(deleted == ["ttl-old"])
        // An hour after its series was last seen, the other goes too.
        #expect(await c.server.expireEvents(now: now.addingTimeInterval(5500)) == 1)
        #expect(try await names(k).isEmpty)

        // Gone from state.db too: a restarted apiserver does not bring them back.
        await c.stop()
        c = try await TestCluster.start(dir: dir) { $0.eventTTL = 3600 }
        #expect(try await names(try c.admin()).isEmpty)
        await c.stop()
    }

    @Test func theNewestTimestampOfAnEventCounts() {
        let d = Data(#"{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z"},"lastTimestamp":"2026-01-01T02:00:00Z","eventTime":"2026-01-01T01:00:00.000000Z"}"#.utf8)
        #expect(APIServer.newestTime(ofEvent: d) == KubeTime.parse("2026-01-01T02:00:00Z"))
        // The last write (managedFields' time) counts as Kubernetes' TTL from the last write does.
        let w = Data(#"{"metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","managedFields":[{"time":"2026-01-01T03:00:00Z"}]},"lastTimestamp":"2026-01-01T02:00:00Z"}"#.utf8)
        #expect(APIServer.newestTime(ofEvent: w) == KubeTime.parse("2026-01-01T03:00:00Z"))
        #expect(APIServer.newestTime(ofEvent: Data("{}".utf8)) == nil)
    }
}
