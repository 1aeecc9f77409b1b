// bench codec        — decode + encode cost per object, JSON and protobuf, on the same objects
// bench create-rate  — the apiserver's pod create rate from JSON clients and protobuf clients,
//                      measured in one run against one apiserver
import ArgumentParser
import Foundation
import API
import Client

/// A pod and a deployment as clients send them (the pod of `bench writes`, a two-container deployment).
func codecSamples() throws -> [(String, JSONValue)] {
    var pod = try JSONValue.from(benchPod("codec", ns: "bench"))
    pod["apiVersion"] = "v1"; pod["kind"] = "Pod"
    let deploy = try JSONValue.parse(Data("""
    {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"app":"web"},
     "annotations":{"note":"bench"}},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
     "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":0}},
     "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[
       {"name":"web","image":"127.0.0.1:5000/demo/busybox:1.0","command":["/bin/httpd","-f","-p","8080"],
        "ports":[{"containerPort":8080,"protocol":"TCP"}],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
        "resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"500m","memory":"128Mi"}},
        "readinessProbe":{"httpGet":{"path":"/","port":8080},"periodSeconds":1}},
       {"name":"sidecar","image":"127.0.0.1:5000/demo/busybox:1.0","command":["sleep","3600"]}]}}}}
    """.utf8))
    return [("Pod", pod), ("Deployment", deploy)]
}

struct CodecBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "codec", abstract: "Decode + encode cost per object, JSON and protobuf.")
    @Option(help: "Round trips per object and format.") var iterations: Int = 20_000

    func run() async throws {
        print("| object | format | bytes | decode+encode µs/object | objects/s |")
        print("|---|---|---|---|---|")
        for (name, obj) in try codecSamples() {
            let json = try obj.encoded()
            let proto = Data(try KubeProtobuf.encodeObject(obj))
            // Both paths do what the apiserver does per request body: bytes -> tree -> bytes.
            for (format, bytes) in [("JSON", json), ("protobuf", proto)] {
                var sink = 0
                let t0 = ContinuousClock.now
                for _ in 0..<iterations {
                    if format == "JSON" {
                        sink &+= try JSONValue.parse(bytes).encoded().count
                    } else {
                        sink &+= try KubeProtobuf.encodeObject(KubeProtobuf.decodeObject(bytes)).count
                    }
                }
                let secs = seconds(ContinuousClock.now - t0)
                precondition(sink > 0)
                print(String(format: "| %@ | %@ | %d | %.2f | %.0f |", name, format, bytes.count, secs / Double(iterations) * 1e6, Double(iterations) / secs))
            }
        }
        // Typed objects: Foundation's coders against the tree coders (TreeDecoder, TreeEncoder and
        // the byte-level writer), on the same bytes, with the same output.
        print("\n| object | coder | decode µs | encode µs | decode+encode µs | tree / Foundation |")
        print("|---|---|---|---|---|---|")
        let samples = try codecSamples()
        try typedRow(Pod.self, "Pod", samples[0].1.encoded())
        try typedRow(Deployment.self, "Deployment", samples[1].1.encoded())
    }

    func typedRow<T: Codable>(_ type: T.Type, _ name: String, _ bytes: Data) throws {
        func time(_ body: () throws -> Int) rethrows -> Double {
            var sink = 0
            let t0 = ContinuousClock.now
            for _ in 0..<iterations { sink &+= try body() }
            precondition(sink != 0)
            return seconds(ContinuousClock.now - t0) / Double(iterations) * 1e6
        }
        let obj = try JSONDecoder().decode(type, from: bytes)
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let fd = try time { _ = try JSONDecoder().decode(type, from: bytes); return 1 }
        let fe = try time { try enc.encode(obj).count }
        let td = try time { _ = try TreeDecoder.decode(type, from: JSONValue.parse(bytes)); return 1 }
        let te = try time { try TreeEncoder.encode(obj).encoded().count }
        print(String(format: "| %@ | Foundation | %.2f | %.2f | %.2f | |", name, fd, fe, fd + fe))
        print(String(format: "| %@ | tree | %.2f | %.2f | %.2f | %.2f |", name, td, te, td + te, (td + te) / (fd + fe)))
    }
}

struct CreateRate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create-rate",
        abstract: "Pod creates/s from JSON clients and from protobuf clients (client-go's default), in one run.")
    @Option var kubeconfig: String
    @Option(help: "Concurrent clients.") var clients: Int = 16
    @Option(help: "Seconds per phase.") var duration: Double = 10
    @Option(help: "Phases, alternating formats, so that drift in the machine affects both.") var rounds: Int = 2
    @Option var namespace: String = "bench-codec"

    func run() async throws {
        let client = try KubeClient(kubeconfig: kubeconfig)
        _ = try? await client.create(Namespace(name: namespace))
        let counter = Counter()
        let path = Resources.pods.path(namespace: namespace)
        print("| round | format | clients | creates | seconds | creates/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|---|")
        var totals: [String: (Int, Double)] = [:]
        for round in 1...rounds {
            for format in ["JSON", "protobuf"] {
                let (unsorted, secs) = try await concurrentLatencies(clients: clients, duration: duration) {
                    var pod = try JSONValue.from(benchPod("c-\(counter.next())", ns: namespace))
                    pod["apiVersion"] = "v1"; pod["kind"] = "Pod"
                    let r: RawResponse
                    if format == "JSON" {
                        r = try await client.request(.POST, path, body: try pod.encoded())
                    } else {
                        r = try await client.request(.POST, path, body: Data(try KubeProtobuf.encodeObject(pod)),
                                                     contentType: KubeProtobuf.mediaType, accept: "\(KubeProtobuf.mediaType),application/json")
                    }
                    guard r.status == 201 else { throw CtlBenchError("create answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))") }
                }
                let lat = unsorted.sorted()
                let t = totals[format] ?? (0, 0)
                totals[format] = (t.0 + lat.count, t.1 + secs)
                print(String(format: "| %d | %@ | %d | %d | %.1f | %.0f | %.2f | %.2f |", round, format, clients, lat.count, secs,
                             Double(lat.count) / secs, percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000))
            }
        }
        let j = totals["JSON"].map { Double($0.0) / $0.1 } ?? 0, p = totals["protobuf"].map { Double($0.0) / $0.1 } ?? 0
        print(String(format: "\nall rounds: JSON %.0f creates/s, protobuf %.0f creates/s, protobuf/JSON = %.2f", j, p, j > 0 ? p / j : 0))
        await client.shutdown()
    }
}

struct CtlBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}
