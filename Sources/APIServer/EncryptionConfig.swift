// The encryption configuration (Kubernetes' apiserver.config.k8s.io/v1 EncryptionConfiguration):
// which resources are sealed at rest, by which providers, under which keys. Only `aesgcm` and
// `identity` are served. Without --encryption-provider-config the apiserver writes one with a
// fresh 32-byte key to DATA_DIR/encryption.yaml on first start, so Secrets are sealed by default.
import Foundation
import Crypto
import Store
import Yams

public enum EncryptionConfigFile {
    struct Key: Decodable { var name: String; var secret: String }
    struct Keys: Decodable { var keys: [Key] }
    struct Provider: Decodable {
        var aesgcm: Keys?
        var identity: [String: String]?
        var aescbc: Keys?
        var secretbox: Keys?
        var kms: [String: String]?
    }
    struct Entry: Decodable { var resources: [String]; var providers: [Provider] }
    struct File: Decodable { var apiVersion: String?; var kind: String?; var resources: [Entry] }

    public struct ConfigError: Error, CustomStringConvertible { public var description: String }

    /// Reads and checks the file; every error names the file and the entry.
    public static func load(_ path: String) throws -> EncryptionConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError(description: "\(path): cannot read the encryption configuration") }
        let file: File
        do { file = try YAMLDecoder().decode(File.self, from: text) }
        catch { throw ConfigError(description: "\(path): not an EncryptionConfiguration: \(error)") }
        if let k = file.kind, k != "EncryptionConfiguration" { throw ConfigError(description: "\(path): kind is \"\(k)\", expected EncryptionConfiguration") }
        var resources = Set<String>()
        var keys: [EncryptionKey] = []
        var identityFirst = false
        for (i, e) in file.resources.enumerated() {
            let f = "\(path): resources[\(i)]"
            guard !e.providers.isEmpty else { throw ConfigError(description: "\(f).providers: at least one provider is required") }
            for r in e.resources {
                guard r == "secrets" || r == "configmaps" || r.contains(".") else {
                    throw ConfigError(description: "\(f).resources: \"\(r)\": name a resource as Kubernetes does (secrets, configmaps, deployments.apps)")
                }
                resources.insert(r)
            }
            for (j, p) in e.providers.enumerated() {
                let pf = "\(f).providers[\(j)]"
                if p.aescbc != nil || p.secretbox != nil || p.kms != nil {
                    throw ConfigError(description: "\(pf): only the aesgcm and identity providers are served by this cluster")
                }
                if p.identity != nil { if j == 0 && i == 0 { identityFirst = true }; continue }
                guard let g = p.aesgcm, !g.keys.isEmpty else { throw ConfigError(description: "\(pf): aesgcm needs at least one key") }
                for (k, key) in g.keys.enumerated() {
                    guard let bytes = Data(base64Encoded: key.secret), [16, 24, 32].contains(bytes.count) else {
                        throw ConfigError(description: "\(pf).aesgcm.keys[\(k)] (\(key.name)): secret must be 16, 24 or 32 bytes, base64-encoded")
                    }
                    guard !key.name.isEmpty, !key.name.contains(":") else { throw ConfigError(description: "\(pf).aesgcm.keys[\(k)]: name must be non-empty and without ':'") }
                    if keys.contains(where: { $0.name == key.name }) { throw ConfigError(description: "\(pf).aesgcm.keys[\(k)]: key name \"\(key.name)\" is used twice") }
                    keys.append(EncryptionKey(name: key.name, key: SymmetricKey(data: bytes)))
                }
            }
        }
        return EncryptionConfig(resources: resources, keys: keys, identityFirst: identityFirst)
    }

    /// The default file: Secrets sealed under one new random key.
    public static func createDefault(_ path: String) throws {
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
        let text = """
            apiVersion: apiserver.config.k8s.io/v1
            kind: EncryptionConfiguration
            resources:
              - resources: [secrets]
                providers:
                  - aesgcm:
                      keys:
                        - name: key1
                          secret: \(key)
                  - identity: {}

            """
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigError(description: "\(path): cannot write the encryption configuration")
        }
    }
}
