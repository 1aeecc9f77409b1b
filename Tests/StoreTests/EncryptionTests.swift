// Encryption at rest: Secrets reach SQLite sealed (no plaintext in the database files), open on
// load, are re-sealed under a new first key, and refuse to load under a configuration that no
// longer has their key.
import Testing
import Foundation
import Crypto
@testable import Store

private func key(_ name: String, _ byte: UInt8) -> EncryptionKey { EncryptionKey(name: name, key: SymmetricKey(data: Data(repeating: byte, count: 32))) }

/// Every byte of the database and its write-ahead log.
private func rawBytes(_ dir: String) -> Data {
    var d = Data()
    for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { d += (try? Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(f)"))) ?? Data() }
    return d
}

@Suite(.serialized) struct EncryptionTests {
    @Test func secretsAreSealedOnDiskAndOpenOnLoad() async throws {
        let dir = NSTemporaryDirectory() + "enc-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = EncryptionConfig(resources: ["secrets"], keys: [key("key1", 1)])
        do {
            let s = try Store(backend: EncryptingBackend(SQLiteBackend(path: "\(dir)/db"), config: config))
            _ = try await s.write(.create(obj("pw", resource: "secrets", payload: "plaintext-marker-4711")))
            _ = try await s.write(.create(obj("cm", resource: "configmaps", payload: "visible-marker-0815")))
            let got = s.get(ObjectKey(resource: "secrets", namespace: "default", name: "pw"))
            #expect(got.map { String(decoding: $0.data, as: UTF8.self).contains("plaintext-marker-4711") } == true)
        }
        let raw = rawBytes(dir)
        #expect(raw.range(of: Data("plaintext-marker-4711".utf8)) == nil)
        #expect(raw.range(of: Data("visible-marker-0815".utf8)) != nil)   // not a sealed resource
        #expect(raw.range(of: Data("k8s:enc:aesgcm:v1:key1:".utf8)) != nil)

        // Reopened with the same key: the store holds the plain object.
        let reopened = try Store(backend: EncryptingBackend(SQLiteBackend(path: "\(dir)/db"), config: config))
        #expect(reopened.get(ObjectKey(resource: "secrets", namespace: "default", name: "pw")).map { String(decoding: $0.data, as: UTF8.self).contains("plaintext-marker-4711") } == true)
    }

    @Test func rotationReSealsUnderTheNewKeyAndAMissingKeyIsAnError() async throws {
        let dir = NSTemporaryDirectory() + "enc-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let s = try Store(backend: EncryptingBackend(SQLiteBackend(path: "\(dir)/db"), config: EncryptionConfig(resources: ["secrets"], keys: [key("key1", 1)])))
            _ = try await s.write(.create(obj("pw", resource: "secrets", payload: "rotate-me")))
        }
        // key2 first, key1 still listed: loads, and everything is sealed again under key2.
        let rotating = EncryptingBackend(try SQLiteBackend(path: "\(dir)/db"), config: EncryptionConfig(resources: ["secrets"], keys: [key("key2", 2), key("key1", 1)]))
        _ = try Store(backend: rotating)
        #expect(rotating.resealed == 1)
        let raw = rawBytes(dir)
        #expect(raw.range(of: Data("k8s:enc:aesgcm:v1:key2:".utf8)) != nil)
        // Now key1 can go.
        let only2 = try Store(backend: EncryptingBackend(SQLiteBackend(path: "\(dir)/db"), config: EncryptionConfig(resources: ["secrets"], keys: [key("key2", 2)])))
        #expect(only2.get(ObjectKey(resource: "secrets", namespace: "default", name: "pw")).map { String(decoding: $0.data, as: UTF8.self).contains("rotate-me") } == true)
        // A configuration without the sealing key cannot load the data: a clear error, no data lost.
        #expect(throws: StoreError.backend("secrets/default/pw is sealed under key \"key2\", which the encryption configuration does not list")) {
            _ = try Store(backend: EncryptingBackend(SQLiteBackend(path: "\(dir)/db"), config: EncryptionConfig(resources: ["secrets"], keys: [key("key3", 3)])))
        }
    }

    @Test func aSealedValueDoesNotOpenUnderAnotherObjectsKey() throws {
        let k = key("k", 9)
        let a = ObjectKey(resource: "secrets", namespace: "default", name: "a")
        let sealed = try Sealing.seal(Data("x".utf8), key: a, with: k)
        let config = EncryptionConfig(resources: ["secrets"], keys: [k])
        #expect(try Sealing.open(sealed, key: a, config: config).plain == Data("x".utf8))
        #expect(throws: (any Error).self) { try Sealing.open(sealed, key: ObjectKey(resource: "secrets", namespace: "default", name: "b"), config: config) }
    }
}
