// Secrets at rest through the apiserver: the default configuration (made on first start) seals
// them; the SQLite files hold no plaintext; a bad configuration is refused naming the file.
import Testing
import Foundation
import API
import APIServer
import Client

@Suite(.serialized) struct EncryptionAtRestTests {
    @Test func secretsAreSealedInTheDatabaseFiles() async throws {
        let c = try await TestCluster.start()
        let dir = c.dir
        defer { Task { await c.cleanup() } }
        let k = try c.admin()
        _ = try await k.create(Secret(name: "db-pass", namespace: "default", stringData: ["password": "plaintext-marker-9137"]))
        let read = try await k.get(Secret.self, "db-pass", namespace: "default")
        #expect(read.data?["password"] == Data("plaintext-marker-9137".utf8).base64EncodedString())
        let config = try String(contentsOfFile: "\(dir)/encryption.yaml", encoding: .utf8)
        #expect(config.contains("aesgcm") && config.contains("name: key1"))
        await c.stop()
        var raw = Data()
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where f.hasPrefix("state.db") {
            raw += try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(f)"))
        }
        #expect(!raw.isEmpty)
        #expect(raw.range(of: Data("plaintext-marker-9137".utf8)) == nil)
        #expect(raw.range(of: Data(Data("plaintext-marker-9137".utf8).base64EncodedString().utf8)) == nil)
        #expect(raw.range(of: Data("k8s:enc:aesgcm:v1:key1:".utf8)) != nil)
    }

    @Test func aBadConfigurationIsRefusedNamingTheFile() throws {
        let dir = NSTemporaryDirectory() + "encbad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/enc.yaml"
        try """
            apiVersion: apiserver.config.k8s.io/v1
            kind: EncryptionConfiguration
            resources:
              - resources: [secrets]
                providers:
                  - aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try EncryptionConfigFile.load(path) }
        do { _ = try EncryptionConfigFile.load(path) } catch { #expect("\(error)".contains("\(path): resources[0].providers[0].aesgcm.keys[0] (k): secret must be 16, 24 or 32 bytes")) }
    }
}
