// Config into pods: the files of configMap, secret, downwardAPI and projected volumes, the
// environment from envFrom and valueFrom, and the atomic on-disk layout with its swap.
import Testing
import Foundation
import API
@testable import Agent

private func json(_ s: String) -> JSONValue { try! JSONValue.parse(Data(s.utf8)) }

private let cm: ConfigMap = {
    var c = ConfigMap(name: "app", namespace: "default", data: ["app.conf": "port=80\n", "mode": "fast", "bad key": "x"])
    c.binaryData = ["blob": Data([0, 1, 2]).base64EncodedString()]
    return c
}()
private let secret: Secret = {
    var s = Secret(name: "creds", namespace: "default")
    s.data = ["password": Data("s3cr$(t)".utf8).base64EncodedString()]
    return s
}()
private let sources = ConfigSources(configMap: { ns, n in ns == "default" && n == "app" ? cm : nil },
                                    secret: { ns, n in ns == "default" && n == "creds" ? secret : nil },
                                    allocatable: ["cpu": try! Quantity(parsing: "4"), "memory": try! Quantity(parsing: "8Gi")])

private func pod(volumes: [Volume] = [], env: [EnvVar]? = nil, envFrom: String? = nil, limits: ResourceList? = nil) -> Pod {
    var c = Container(name: "c", image: "busybox")
    c.env = env
    c.envFrom = envFrom.map(json)
    if let limits { c.resources = ResourceRequirements(limits: limits) }
    var p = Pod(metadata: ObjectMeta(name: "p", namespace: "default", labels: ["app": "web", "tier": "a\"b"]), spec: PodSpec(containers: [c]))
    p.metadata.uid = "uid-1"
    p.spec?.volumes = volumes
    return p
}

private func volume(_ name: String, _ field: String, _ body: String) -> Volume {
    var v = Volume(name: name)
    switch field {
    case "configMap": v.configMap = json(body)
    case "secret": v.secret = json(body)
    case "downwardAPI": v.downwardAPI = json(body)
    default: v.projected = json(body)
    }
    return v
}

private func text(_ f: [ProjectedFile]) -> [String: String] { Dictionary(uniqueKeysWithValues: f.map { ($0.path, String(decoding: $0.data, as: UTF8.self)) }) }

@Suite struct ConfigVolumeTests {
    @Test func configMapVolumeHasEveryKeyOrTheListedItems() throws {
        let all = try ConfigProjection.files(volume("v", "configMap", #"{"name":"app"}"#), pod: pod(), sources: sources)
        #expect(all.map(\.path) == ["app.conf", "bad key", "blob", "mode"])
        #expect(all.allSatisfy { $0.mode == 0o644 })
        #expect(all.first { $0.path == "blob" }?.data == Data([0, 1, 2]))
        let items = try ConfigProjection.files(volume("v", "configMap", #"{"name":"app","defaultMode":256,"items":[{"key":"app.conf","path":"etc/app.conf","mode":384},{"key":"mode","path":"mode"}]}"#),
                                              pod: pod(), sources: sources)
        #expect(items.map(\.path) == ["etc/app.conf", "mode"] && items.map(\.mode) == [0o600, 0o400])
    }

    @Test func missingObjectsAndKeysWaitUnlessOptional() {
        #expect(throws: ConfigError("configmap \"nope\" not found")) { try ConfigProjection.files(volume("v", "configMap", #"{"name":"nope"}"#), pod: pod(), sources: sources) }
        #expect(throws: ConfigError("configmap references non-existent config key: x")) {
            try ConfigProjection.files(volume("v", "configMap", #"{"name":"app","items":[{"key":"x","path":"x"}]}"#), pod: pod(), sources: sources)
        }
        #expect((try? ConfigProjection.files(volume("v", "secret", #"{"secretName":"nope","optional":true}"#), pod: pod(), sources: sources))?.isEmpty == true)
    }

    @Test func secretVolumesAreDecodedAndOnTmpfs() throws {
        let v = volume("s", "secret", #"{"secretName":"creds","defaultMode":256}"#)
        let f = try ConfigProjection.files(v, pod: pod(), sources: sources)
        #expect(text(f) == ["password": "s3cr$(t)"] && f[0].mode == 0o400)
        #expect(ConfigProjection.needsTmpfs(v))
        #expect(!ConfigProjection.needsTmpfs(volume("v", "configMap", #"{"name":"app"}"#)))
    }

    @Test func downwardAPIAndProjectedVolumes() throws {
        let d = try ConfigProjection.files(volume("d", "downwardAPI", #"{"items":[{"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}},{"path":"name","fieldRef":{"fieldPath":"metadata.name"}},{"path":"mem","resourceFieldRef":{"containerName":"c","resource":"limits.memory","divisor":"1Mi"}}]}"#),
                                           pod: pod(limits: ["memory": try Quantity(parsing: "64Mi")]), sources: sources)
        #expect(text(d) == ["labels": "app=\"web\"\ntier=\"a\\\"b\"", "name": "p", "mem": "64"])
        let p = try ConfigProjection.files(volume("p", "projected", #"{"sources":[{"configMap":{"name":"app","items":[{"key":"mode","path":"mode"}]}},{"secret":{"name":"creds"}},{"downwardAPI":{"items":[{"path":"ns","fieldRef":{"fieldPath":"metadata.namespace"}}]}}]}"#),
                                           pod: pod(), sources: sources)
        #expect(text(p) == ["mode": "fast", "password": "s3cr$(t)", "ns": "default"])
    }

    @Test func serviceAccountTokenProjections() throws {
        let v = volume("t", "projected", #"{"defaultMode":420,"sources":[{"serviceAccountToken":{"path":"token","expirationSeconds":3607}},{"serviceAccountToken":{"path":"vault","audience":"vault"}}]}"#)
        var p = pod(volumes: [v])
        p.spec?.serviceAccountName = "robot"
        let wanted = ConfigProjection.tokenRequests(p)
        #expect(wanted.map(\.key) == ["|3607", "vault|3600"])
        #expect(wanted.map(\.audience) == [nil, "vault"])
        // Without the tokens fetched the volume waits, naming the account.
        #expect(throws: ConfigError("no token for service account \"robot\" yet")) { _ = try ConfigProjection.files(v, pod: p, sources: sources) }
        var s = sources
        s.tokens = ["|3607": "tok-api", "vault|3600": "tok-vault"]
        let files = try ConfigProjection.files(v, pod: p, sources: s)
        #expect(text(files) == ["token": "tok-api", "vault": "tok-vault"])
        #expect(files.allSatisfy { $0.mode == 420 })
        #expect(ConfigProjection.needsTmpfs(v))
    }

    @Test func environmentFromConfigMapsSecretsAndResources() throws {
        let p = pod(env: [EnvVar(name: "MODE", value: "override"),
                          EnvVar(name: "PW", valueFrom: json(#"{"secretKeyRef":{"name":"creds","key":"password"}}"#)),
                          EnvVar(name: "CPU", valueFrom: json(#"{"resourceFieldRef":{"resource":"limits.cpu"}}"#)),
                          EnvVar(name: "ME", valueFrom: json(#"{"fieldRef":{"fieldPath":"metadata.name"}}"#)),
                          EnvVar(name: "GONE", valueFrom: json(#"{"configMapKeyRef":{"name":"app","key":"none","optional":true}}"#))],
                    envFrom: #"[{"configMapRef":{"name":"app"},"prefix":"CFG_"},{"configMapRef":{"name":"app"}}]"#)
        let (env, invalid) = try ConfigProjection.environment(p.spec!.containers[0], pod: p, sources: sources)
        let m = Dictionary(env.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b })
        #expect(m["CFG_mode"] == "fast" && m["app.conf"] == "port=80\n" && m["MODE"] == "override")
        #expect(m["PW"] == "s3cr$$(t)")   // escaped: $(t) is not expanded
        #expect(m["CPU"] == "4")           // no limit: the node's allocatable
        #expect(m["ME"] == .some(nil) && env.first { $0.name == "ME" }?.valueFrom != nil)
        #expect(m["GONE"] == nil)
        #expect(invalid == ["CFG_bad key", "bad key"])
        let missing = pod(env: [EnvVar(name: "X", valueFrom: json(#"{"configMapKeyRef":{"name":"app","key":"x"}}"#))])
        #expect(throws: ConfigError("couldn't find key x in ConfigMap default/app")) { try ConfigProjection.environment(missing.spec!.containers[0], pod: missing, sources: sources) }
        #expect(ConfigProjection.references(p) == ["configmap/app", "secret/creds"])
    }

    @Test func theAtomicLayoutSwapsWholeVersions() throws {
        let dir = NSTemporaryDirectory() + "atomic-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicWriter.write([ProjectedFile(path: "a", data: Data("1".utf8), mode: 0o644), ProjectedFile(path: "sub/b", data: Data("2".utf8), mode: 0o600)], to: dir)
        let fm = FileManager.default
        #expect(try String(contentsOfFile: "\(dir)/a", encoding: .utf8) == "1")
        #expect(try String(contentsOfFile: "\(dir)/sub/b", encoding: .utf8) == "2")
        #expect(try fm.destinationOfSymbolicLink(atPath: "\(dir)/a") == "..data/a")
        let first = try fm.destinationOfSymbolicLink(atPath: "\(dir)/..data")
        #expect((try fm.attributesOfItem(atPath: "\(dir)/\(first)/sub/b")[.posixPermissions] as? Int) == 0o600)
        try AtomicWriter.write([ProjectedFile(path: "a", data: Data("3".utf8), mode: 0o644)], to: dir)
        #expect(try String(contentsOfFile: "\(dir)/a", encoding: .utf8) == "3")
        #expect(!fm.fileExists(atPath: "\(dir)/sub"))                 // gone with its version
        #expect(!fm.fileExists(atPath: "\(dir)/\(first)"))            // the old version is removed
        let entries = try fm.contentsOfDirectory(atPath: dir).sorted()
        #expect(entries.count == 3 && entries.contains("..data") && entries.contains("a"))
    }
}

@Suite struct RegistriesTests {
    @Test func theRegistriesFileAndPullSecretsAreRead() throws {
        let dir = NSTemporaryDirectory() + "reg-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            mirrors:
              docker.io:
                endpoint: ["http://198.18.0.1:5000/", "https://mirror.example"]
            configs:
              "mirror.example":
                auth: {username: me, password: pw}
                tls: {insecure_skip_verify: true}
            """.write(toFile: "\(dir)/r.yaml", atomically: true, encoding: .utf8)
        let c = try RegistriesConfig.load("\(dir)/r.yaml")
        let hub = try ImageReference(parsing: "busybox")
        #expect(c.endpoints(hub, insecure: []) == ["http://198.18.0.1:5000", "https://mirror.example", "https://registry-1.docker.io"])
        #expect(c.endpoints(try ImageReference(parsing: "ghcr.io/x/y:1"), insecure: []) == ["https://ghcr.io"])
        #expect(c.auth["mirror.example"] == RegistryAuth(username: "me", password: "pw"))
        #expect(c.tls["mirror.example"]?.insecureSkipVerify == true)

        try "mirrors:\n  docker.io:\n    endpoint: [ftp://x]\n".write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try RegistriesConfig.load("\(dir)/bad.yaml") }
        do { _ = try RegistriesConfig.load("\(dir)/bad.yaml") } catch { #expect("\(error)" == "\(dir)/bad.yaml: mirrors.docker.io.endpoint[0]: \"ftp://x\" must be an http:// or https:// URL") }

        var s = Secret(name: "pull", namespace: "default")
        s.type = "kubernetes.io/dockerconfigjson"
        let cfg = #"{"auths":{"https://index.docker.io/v1/":{"auth":"\#(Data("hub:pw1".utf8).base64EncodedString())"},"reg.example:5000":{"username":"u","password":"p"}}}"#
        s.data = [".dockerconfigjson": Data(cfg.utf8).base64EncodedString()]
        let creds = PullSecrets.credentials([s])
        #expect(creds["registry-1.docker.io"] == RegistryAuth(username: "hub", password: "pw1"))
        #expect(creds["reg.example:5000"] == RegistryAuth(username: "u", password: "p"))
    }
}
