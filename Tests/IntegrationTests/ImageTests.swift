import Testing
import Foundation
import Agent
import API
import PKI

/// Real registry, real image: docker-registry on 127.0.0.1 and a busybox image built with umoci
/// and pushed with skopeo (hack/lib/images.sh). hack/test installs those packages.
let imageToolsPresent = ["/usr/bin/docker-registry", "/usr/bin/umoci", "/usr/bin/skopeo", "/bin/busybox", "/bin/tar"].allSatisfy {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// Runs a bash script (through the agent's spawn helper, which never hangs on children).
func shell(_ script: String) throws -> String {
    let r = try Command.runSync("/bin/bash", ["-c", script])
    guard r.status == 0 else { throw ImageError("script failed (\(r.status)): \(r.stderr.suffix(400))") }
    return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite(.serialized, .enabled(if: imageToolsPresent, "needs docker-registry, umoci, skopeo, busybox-static")) struct ImageTests {
    @Test func pullsVerifiesAndUnpacksFromARealRegistry() async throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("images-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = Int.random(in: 30000...40000)
        let ref = "127.0.0.1:\(port)/demo/busybox:1.0"
        let pid = try shell(". \(root)/hack/lib/common.sh; . \(root)/hack/lib/images.sh; start_registry \(dir)/reg \(port); build_busybox_image \(dir) \(ref) >&2")
            .split(separator: "\n").last.map(String.init) ?? ""
        defer {
            _ = try? shell("kill \(pid) 2>/dev/null; true")
            try? FileManager.default.removeItem(atPath: dir)
        }
        let store = ImageStore(root: "\(dir)/agent")
        let image = try await store.pull(ref)
        #expect(image.digest.hasPrefix("sha256:"))
        #expect(FileManager.default.isExecutableFile(atPath: "\(image.rootfs)/bin/busybox"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(image.rootfs)/bin/sh")) == "busybox")
        #expect(image.config["Cmd"]?.arrayValue?.first?.stringValue == "/bin/sh")
        #expect(store.local(ref)?.digest == image.digest)
        // Pulling again lands on the same rootfs: it is unpacked once per manifest digest.
        #expect(try await store.pull(ref).rootfs == image.rootfs)
        await store.shutdown()

        // Docker Hub names through a mirror (the registries file): a dead endpoint first, then this
        // registry, which holds the image as library/busybox:latest. Nothing leaves the machine.
        _ = try shell("skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false docker://\(ref) docker://127.0.0.1:\(port)/library/busybox:latest")
        try "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:1\", \"http://127.0.0.1:\(port)\"]\n".write(toFile: "\(dir)/registries.yaml", atomically: true, encoding: .utf8)
        let registries = try RegistriesConfig.load("\(dir)/registries.yaml")
        let mirrored = ImageStore(root: "\(dir)/agent2", registries: registries)
        let fromHub = try await mirrored.pull("busybox")
        #expect(fromHub.digest == image.digest)
        #expect(FileManager.default.isExecutableFile(atPath: "\(fromHub.rootfs)/bin/busybox"))
        #expect(mirrored.local("docker.io/library/busybox:latest")?.digest == image.digest)

        // Two names of one image pulled at the same time (here 8 pulls, alternating) share one
        // unpack: a second one would empty the directory while the first is writing it.
        let both = ImageStore(root: "\(dir)/agent4", registries: registries)
        let pulled = try await withThrowingTaskGroup(of: PulledImage.self) { g in
            for i in 0..<8 { g.addTask { try await both.pull(i % 2 == 0 ? ref : "busybox") } }
            return try await g.reduce(into: [PulledImage]()) { $0.append($1) }
        }
        #expect(Set(pulled.map(\.rootfs)).count == 1)
        for f in ["bin/busybox", "bin/sh", "bin/httpd", "bin/hostname", "etc/passwd", "lib64/ld-linux-x86-64.so.2"] {
            #expect(FileManager.default.fileExists(atPath: "\(pulled[0].rootfs)/\(f)"), "missing \(f)")
        }
        #expect(both.local(ref) != nil && both.local("busybox") != nil)
        await both.shutdown()

        // A corrupted blob in the registry is refused, naming the digest.
        let layer = try shell("ls -S \(dir)/reg/storage/docker/registry/v2/blobs/sha256/*/*/data | head -1")
        let size = (try FileManager.default.attributesOfItem(atPath: layer)[.size] as? Int) ?? 0
        try Data(repeating: 0x42, count: size).write(to: URL(fileURLWithPath: layer))
        let fresh = ImageStore(root: "\(dir)/agent3")
        await #expect { _ = try await fresh.pull(ref) } throws: { "\($0)".contains("failed verification") }
        await fresh.shutdown()

        // Bad references are refused before any network traffic.
        #expect(throws: ImageError.self) { try ImageReference(parsing: "Bad Name") }
        let hub = try ImageReference(parsing: "busybox")
        #expect(hub.registry == "registry-1.docker.io" && hub.repository == "library/busybox" && hub.tag == "latest")
    }

    /// A private registry behind TLS and htpasswd (docker-registry), reached through the registries
    /// file (a mirror endpoint and its CA): refused without credentials and with wrong ones, and
    /// pulled with those of a kubernetes.io/dockerconfigjson pull Secret. Without the CA the TLS
    /// handshake fails.
    @Test func pullsFromAPrivateTLSRegistryWithAPullSecret() async throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("images-auth-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir + "/auth/storage", withIntermediateDirectories: true)
        let open = Int.random(in: 30000...35000), closed = Int.random(in: 35001...40000)
        let src = "127.0.0.1:\(open)/demo/busybox:1.0"
        let pid = try shell(". \(root)/hack/lib/common.sh; . \(root)/hack/lib/images.sh; start_registry \(dir)/reg \(open); build_busybox_image \(dir) \(src) >&2")
            .split(separator: "\n").last.map(String.init) ?? ""
        let ca = try CertificateAuthority.generate(commonName: "registry-ca")
        let serving = try ca.issue(commonName: "registry", ipAddresses: ["127.0.0.1"], usage: .server)
        try ca.certificatePEM.write(toFile: "\(dir)/auth/ca.crt", atomically: true, encoding: .utf8)
        try serving.certificatePEM.write(toFile: "\(dir)/auth/tls.crt", atomically: true, encoding: .utf8)
        try serving.keyPEM.write(toFile: "\(dir)/auth/tls.key", atomically: true, encoding: .utf8)
        let hash = try shell("python3 -W ignore -c 'import crypt; print(crypt.crypt(\"s3cret\", crypt.METHOD_BLOWFISH))'")
        try "puller:\(hash)\n".write(toFile: "\(dir)/auth/htpasswd", atomically: true, encoding: .utf8)
        try """
            version: 0.1
            log: {level: error}
            storage: {filesystem: {rootdirectory: \(dir)/auth/storage}}
            http: {addr: 127.0.0.1:\(closed), tls: {certificate: \(dir)/auth/tls.crt, key: \(dir)/auth/tls.key}}
            auth: {htpasswd: {realm: private, path: \(dir)/auth/htpasswd}}
            """.write(toFile: "\(dir)/auth/config.yml", atomically: true, encoding: .utf8)
        let authPid = try shell("docker-registry serve \(dir)/auth/config.yml >\(dir)/auth/log 2>&1 & echo $!; . \(root)/hack/lib/common.sh; wait_for 20 bash -c 'curl -sk -o /dev/null -w %{http_code} https://127.0.0.1:\(closed)/v2/ | grep -q 401' >&2")
            .split(separator: "\n").first.map(String.init) ?? ""
        defer {
            _ = try? shell("kill \(pid) \(authPid) 2>/dev/null; true")
            try? FileManager.default.removeItem(atPath: dir)
        }
        _ = try shell("skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --dest-creds puller:s3cret docker://\(src) docker://127.0.0.1:\(closed)/private/busybox:1.0")
        let file = "\(dir)/registries.yaml"
        func registries(ca: Bool) throws -> RegistriesConfig {
            try """
                mirrors:
                  private.test: {endpoint: ["https://127.0.0.1:\(closed)"]}
                \(ca ? "configs:\n  \"127.0.0.1:\(closed)\": {tls: {ca_file: \(dir)/auth/ca.crt}}" : "")
                """.write(toFile: file, atomically: true, encoding: .utf8)
            return try RegistriesConfig.load(file)
        }
        let ref = "private.test/private/busybox:1.0"
        func unauthorized(_ e: any Error) -> Bool { "\(e)".contains("401") || "\(e)".lowercased().contains("unauthorized") }
        let store = ImageStore(root: "\(dir)/agent", registries: try registries(ca: true))
        await #expect { _ = try await store.pull(ref) } throws: { unauthorized($0) }
        func pullSecret(_ entry: String) -> Secret {
            var s = Secret(name: "regcred", namespace: "default")
            s.type = "kubernetes.io/dockerconfigjson"
            s.data = [".dockerconfigjson": Data(#"{"auths":{"private.test":\#(entry)}}"#.utf8).base64EncodedString()]
            return s
        }
        let wrong = pullSecret(#"{"username":"puller","password":"nope"}"#)
        await #expect { _ = try await store.pull(ref, credentials: PullSecrets.credentials([wrong])) } throws: { unauthorized($0) }
        let good = pullSecret(#"{"auth":"\#(Data("puller:s3cret".utf8).base64EncodedString())"}"#)
        let image = try await store.pull(ref, credentials: PullSecrets.credentials([good]))
        #expect(FileManager.default.isExecutableFile(atPath: "\(image.rootfs)/bin/busybox"))
        await store.shutdown()
        // Without the registry's CA the certificate is not trusted.
        let untrusting = ImageStore(root: "\(dir)/agent2", registries: try registries(ca: false))
        await #expect { _ = try await untrusting.pull(ref, credentials: PullSecrets.credentials([good])) } throws: { !unauthorized($0) }
        await untrusting.shutdown()
    }
}
