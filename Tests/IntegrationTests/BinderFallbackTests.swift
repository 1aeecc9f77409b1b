// The scheduler's binder against a server without the batch bindings extension: the first batch
// request is answered 404 and every pod is then bound with its own pods/binding call; the binder
// does not ask for the batch again.
import Testing
import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1
import Synchronization
import API
import PKI
@testable import Client
@testable import Scheduler

/// A plain-HTTP server that answers the batch bindings path 404 (as an apiserver without the
/// extension does) and every pods/binding POST 201, and records each request's path.
final class NoBatchServer: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let server: NIOAsyncChannel<Connection, Never>
    let paths = Mutex<[String]>([])
    var port: Int { server.channel.localAddress?.port ?? 0 }

    init() async throws {
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0) { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try Connection(wrappingChannelSynchronously: ch)
                }
            }
    }

    func run() async {
        try? await server.executeThenClose { accepted in
            try await withThrowingDiscardingTaskGroup { g in
                for try await conn in accepted { g.addTask { try? await self.serve(conn) } }
            }
        }
    }

    func serve(_ conn: Connection) async throws {
        try await conn.executeThenClose { input, output in
            var head: HTTPRequestHead?
            for try await part in input {
                guard case .end = part else { if case .head(let h) = part { head = h }; continue }
                guard let h = head else { return }
                paths.withLock { $0.append("\(h.method.rawValue) \(h.uri)") }
                let (status, body): (HTTPResponseStatus, String) = h.uri.hasSuffix("/binding")
                    ? (.created, #"{"kind":"Status","apiVersion":"v1","status":"Success","code":201}"#)
                    : (.notFound, #"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the server could not find the requested resource"}"#)
                try await output.write(.head(HTTPResponseHead(version: h.version, status: status,
                                                              headers: ["Content-Type": "application/json", "Content-Length": "\(body.utf8.count)"])))
                try await output.write(.body(.byteBuffer(ByteBuffer(string: body))))
                try await output.write(.end(nil))
            }
        }
    }
}

@Suite struct BinderFallbackTests {
    @Test func aServerWithoutBatchBindingsGetsOneBindingPerPod() async throws {
        let server = try await NoBatchServer()
        let serving = Task { await server.run() }
        defer { serving.cancel(); server.server.channel.close(promise: nil) }
        let client = try KubeClient(config: .init(server: "http://127.0.0.1:\(server.port)", caPEM: nil, certPEM: nil, keyPEM: nil,
                                                  token: nil, namespace: "default", tlsServerName: nil))
        let binder = Binder(client: client, maxBatch: 50, maxInFlight: 1)

        func bindAll(_ names: [String]) async -> [String: Bool] {
            await withCheckedContinuation { (c: CheckedContinuation<[String: Bool], Never>) in
                let results = Mutex<[String: Bool]>([:])
                for name in names {
                    binder.submit(namespace: "default", name: name, node: "n1") { r in
                        let all = results.withLock { s -> [String: Bool]? in
                            if case .success = r { s[name] = true } else { s[name] = false }
                            return s.count == names.count ? s : nil
                        }
                        if let all { c.resume(returning: all) }
                    }
                }
            }
        }

        let first = await bindAll((1...20).map { "p\($0)" })
        #expect(first.count == 20 && first.values.allSatisfy { $0 }, "\(first)")
        let afterFirst = server.paths.withLock { $0 }
        #expect(afterFirst.filter { $0.contains(BindingList.path) }.count == 1, "\(afterFirst)")
        #expect(Set(afterFirst.filter { $0.hasSuffix("/binding") }) == Set((1...20).map { "POST /api/v1/namespaces/default/pods/p\($0)/binding" }))

        // Known now: later pods go straight to pods/binding.
        let second = await bindAll(["q1", "q2", "q3"])
        #expect(second.values.allSatisfy { $0 } && second.count == 3)
        let all = server.paths.withLock { $0 }
        #expect(all.filter { $0.contains(BindingList.path) }.count == 1, "the batch path was asked for again: \(all)")
        #expect(all.count == 24)
    }
}
