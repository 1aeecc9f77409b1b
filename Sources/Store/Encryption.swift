// Encryption at rest: a backend wrapper that seals the stored bytes of chosen resources
// (Secrets) with AES-256-GCM before they reach the database, and opens them on load. The first
// key of the list seals; every key opens, so keys can be rotated: put the new key first,
// restart, and every object sealed under an older key (or stored in plain) is sealed again
// under the new one at load. The object's storage key is the authenticated data, so a sealed
// value cannot be moved to another object.
//
//   stored value = "k8s:enc:aesgcm:v1:" KEYNAME ":" nonce(12) ciphertext tag(16)
import Foundation
import Crypto

public struct EncryptionKey: Sendable {
    public var name: String
    public var key: SymmetricKey
    public init(name: String, key: SymmetricKey) { self.name = name; self.key = key }
}

/// Which resources are sealed, under which keys. An empty key list stores them in plain
/// (Kubernetes' `identity` provider); `identityFirst` does the same while still opening sealed ones.
public struct EncryptionConfig: Sendable {
    public var resources: Set<String>
    public var keys: [EncryptionKey]
    public var identityFirst: Bool
    public init(resources: Set<String>, keys: [EncryptionKey], identityFirst: Bool = false) {
        self.resources = resources; self.keys = keys; self.identityFirst = identityFirst
    }
}

public enum Sealing {
    static let prefix = Data("k8s:enc:aesgcm:v1:".utf8)

    static func aad(_ key: ObjectKey) -> Data { Data("/\(key.resource)/\(key.namespace)/\(key.name)".utf8) }

    public static func seal(_ data: Data, key: ObjectKey, with k: EncryptionKey) throws -> Data {
        let box = try AES.GCM.seal(data, using: k.key, authenticating: aad(key))
        guard let combined = box.combined else { throw StoreError.backend("sealing \(key) produced no output") }
        return prefix + Data("\(k.name):".utf8) + combined
    }

    /// The plain bytes, and whether they should be sealed again (plain, or under an older key).
    public static func open(_ data: Data, key: ObjectKey, config: EncryptionConfig) throws -> (plain: Data, stale: Bool) {
        guard data.starts(with: prefix) else {
            return (data, !config.identityFirst && !config.keys.isEmpty)
        }
        let rest = data.dropFirst(prefix.count)
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")) else { throw StoreError.backend("\(key): sealed value without a key name") }
        let name = String(decoding: rest[rest.startIndex..<colon], as: UTF8.self)
        guard let i = config.keys.firstIndex(where: { $0.name == name }) else {
            throw StoreError.backend("\(key) is sealed under key \"\(name)\", which the encryption configuration does not list")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: rest[rest.index(after: colon)...])
            let plain = try AES.GCM.open(box, using: config.keys[i].key, authenticating: aad(key))
            return (plain, i != 0 || config.identityFirst)
        } catch {
            throw StoreError.backend("\(key) does not open under key \"\(name)\": \(error)")
        }
    }

    /// The bytes as they go to the database.
    public static func store(_ data: Data, key: ObjectKey, config: EncryptionConfig) throws -> Data {
        guard config.resources.contains(key.resource), !config.identityFirst, let k = config.keys.first, !data.isEmpty else { return data }
        return try seal(data, key: key, with: k)
    }
}

/// Seals what goes into `inner` and opens what comes out.
public final class EncryptingBackend: StoreBackend {
    let inner: any StoreBackend
    public let config: EncryptionConfig
    /// How many objects load sealed again (rotation); for the log and tests.
    public private(set) nonisolated(unsafe) var resealed = 0

    public init(_ inner: any StoreBackend, config: EncryptionConfig) { self.inner = inner; self.config = config }

    public func load(logLimit: Int) throws -> (objects: [StoredObject], log: [StoreEvent], revision: Int64) {
        var (objects, log, revision) = try inner.load(logLimit: logLimit)
        var restObjects: [StoredObject] = [], restLog: [StoreEvent] = []
        for i in objects.indices where config.resources.contains(objects[i].key.resource) {
            let (plain, stale) = try Sealing.open(objects[i].data, key: objects[i].key, config: config)
            objects[i].data = plain
            if stale { var o = objects[i]; o.data = try Sealing.store(plain, key: o.key, config: config); restObjects.append(o) }
        }
        for i in log.indices where config.resources.contains(log[i].object.key.resource) {
            let (plain, stale) = try Sealing.open(log[i].object.data, key: log[i].object.key, config: config)
            log[i].object.data = plain
            if stale { var e = log[i]; e.object.data = try Sealing.store(plain, key: e.object.key, config: config); restLog.append(e) }
        }
        if !restObjects.isEmpty || !restLog.isEmpty {
            try inner.rewrite(objects: restObjects, log: restLog)
            resealed = restObjects.count
        }
        return (objects, log, revision)
    }

    public func commit(_ changes: [Change], revision: Int64) throws {
        var sealed = changes
        for i in sealed.indices where config.resources.contains(sealed[i].event.object.key.resource) {
            sealed[i].event.object.data = try Sealing.store(sealed[i].event.object.data, key: sealed[i].event.object.key, config: config)
        }
        try inner.commit(sealed, revision: revision)
    }

    public func compact(through revision: Int64) throws { try inner.compact(through: revision) }
    public func rewrite(objects: [StoredObject], log: [StoreEvent]) throws { try inner.rewrite(objects: objects, log: log) }
}
