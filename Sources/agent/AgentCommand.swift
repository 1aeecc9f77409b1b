// The agent executable: argument parsing only; see NodeAgent.
import ArgumentParser
import Foundation
import Logging
import Agent
import Client
import API

/// glibc's mallopt(3); malloc.h is not in the Glibc module.
@_silgen_name("mallopt") func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32

nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Joins a node to the cluster and runs the pods bound to it.", version: BuildInfo.versionLine)
    @Option(help: "The apiserver, e.g. https://198.18.0.1:6443.") var server: String
    @Option(help: "Join token from the apiserver's DATA_DIR/join-token (needed on first start only).") var token: String?
    @Option(name: .customLong("node-name"), help: "Node name (default: host name).") var nodeName: String?
    @Option(name: .customLong("data-dir"), help: "Where the agent keeps its certificate and state.") var dataDir: String
    @Option(help: "Container runtime: fake (hollow pods, no processes) or runc.") var runtime: String = "runc"
    @Option(name: .customLong("node-labels"), help: "Labels for the Node, k=v,k2=v2.") var nodeLabels: String = ""
    @Option(name: .customLong("register-with-taints"), help: "Taints for the Node, key=value:Effect,... (registration only).") var taints: String = ""
    @Option(name: .customLong("node-ip"), help: "The node's address, reported as InternalIP.") var nodeIP: String?
    @Option(name: .customLong("lease-interval"), help: "Seconds between Lease renewals.") var leaseInterval: Double = 1
    @Option(name: .customLong("pod-cidr"), help: "The node's pod address range (required for runc), e.g. 198.19.1.0/24.") var podCIDR: String?
    @Option(name: .customLong("cni-bridge"), help: "The bridge pods attach to.") var cniBridge: String = "orch0"
    @Option(name: .customLong("registries-file"), help: "Registry mirrors, credentials and TLS in k3s's registries.yaml format (mirrors: per registry, configs: per endpoint).") var registriesFile: String?
    @Option(name: .customLong("insecure-registry"), help: "A registry reached over plain HTTP (repeatable; loopback ones always are).") var insecureRegistries: [String] = []
    @Option(name: .customLong("listen-port"), help: "Port of the agent's HTTPS endpoint (logs, stats).") var listenPort: Int = 10250
    @Option(name: .customLong("cluster-cidr"), help: "The pods' address range across the cluster (traffic to Services from outside it is masqueraded).") var clusterCIDR: String = "198.19.0.0/16"
    @Option(name: .customLong("cluster-domain"), help: "The cluster's DNS domain.") var clusterDomain: String = "cluster.local"
    @Option(name: .customLong("cluster-dns"), help: "The address this node answers DNS on and pods use (default: the kube-dns Service's cluster IP).") var clusterDNS: String?
    @Option(name: .customLong("dns-upstream"), help: "Where names outside the cluster are forwarded, IP[:PORT] (repeatable; default: the node's resolv.conf nameservers).") var dnsUpstreams: [String] = []
    @Flag(name: .customLong("no-dns-forward"), help: "Answer only cluster names; others fail at once (nodes without a way to the host's resolvers).") var noDNSForward = false
    @Option(name: .customLong("proxy-mode"), help: "Service proxy: nftables, or none (default: nftables with --runtime runc, none with fake).") var proxyMode: String?
    @Option(name: .customLong("drain-timeout"), help: "Seconds a terminating pod waits for every node's proxy to drop it before SIGTERM.") var drainTimeout: Double = 10
    @Option(name: .customLong("streaming-connection-idle-timeout"), help: "How long an exec, attach or port-forward session may be idle before it is closed, e.g. 4h, 30m, 90s.")
    var streamingIdleTimeout: String = "4h"
    @Option(name: .customLong("local-path-root"), help: "Where the built-in local-path provisioner makes this node's volumes (default: DATA_DIR/storage).") var localPathRoot: String?
    @Option(name: .customLong("memory-trim-period"), help: "Seconds between giving freed heap back to the kernel and unmapping code pages not run since (mapped again from the page cache when run); 0 turns it off.") var memoryTrimPeriod: Double = 30
    @Option(name: .customLong("log-level")) var logLevel: String = "info"

    func run() async throws {
        // At most two glibc malloc arenas (as MALLOC_ARENA_MAX=2 in its units): glibc gives each
        // thread that allocates under contention an arena of its own, up to 8 per core, and an
        // arena's freed pages stay resident; the agent is mostly idle, so few arenas cost little.
        if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = glibcMallopt(-8 /* M_ARENA_MAX, malloc.h */, 2) }
        bootstrapLogging(level: logLevel)
        guard memoryTrimPeriod >= 0, memoryTrimPeriod.isFinite else { throw ValidationError("--memory-trim-period: \(memoryTrimPeriod) must be 0 or more seconds") }
        if memoryTrimPeriod > 0 {
            let period = memoryTrimPeriod
            Task.detached(priority: .background) {
                let logger = Logger(label: "memory-trim")
                while true {
                    try? await Task.sleep(for: .milliseconds(Int64(period * 1000)))
                    let r = MemoryTrim.trim()
                    logger.debug("trimmed", metadata: ["codeMappings": "\(r.mappings)", "codeResidentKB": "\(r.codeResidentKB)", "failed": "\(r.failed)"])
                }
            }
        }
        let name = nodeName ?? ProcessInfo.processInfo.hostName
        let rt: any ContainerRuntime
        switch runtime {
        case "fake":
            // A stable /24 per node name so hollow pod IPs do not repeat across nodes.
            rt = FakeRuntime(podCIDRPrefix: "198.19.\(FNV1a.hash32(name.utf8) % 250)")
        case "runc":
            guard getuid() == 0 else { throw ValidationError("--runtime runc needs root (containers, mounts, network namespaces)") }
            guard let cidr = podCIDR else { throw ValidationError("--runtime runc needs --pod-cidr (the node's pod address range)") }
            let net = CNINetwork(bridge: cniBridge, podCIDR: cidr, ipamDataDir: "\(dataDir)/cni")
            var rc = RuncRuntimeConfig(dataDir: dataDir, nodeName: name, network: net, shim: RuncRuntimeConfig.locateShim())
            rc.insecureRegistries = insecureRegistries
            if let f = registriesFile {
                do { rc.registries = try RegistriesConfig.load(f) } catch { throw ValidationError("--registries-file: \(error)") }
            }
            rt = try await RuncRuntime(rc)
        default: throw ValidationError("--runtime must be fake or runc")
        }
        var labels: [String: String] = [:]
        for kv in nodeLabels.split(separator: ",") {
            let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
            guard p.count == 2 else { throw ValidationError("--node-labels: \"\(kv)\" is not key=value") }
            labels[p[0]] = p[1]
        }
        var taintList: [Taint] = []
        for t in taints.split(separator: ",") {
            let kv = t.split(separator: ":", maxSplits: 1).map(String.init)
            let effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
            guard kv.count == 2, effects.contains(kv[1]) else { throw ValidationError("--register-with-taints: \"\(t)\" is not key=value:Effect (Effect one of \(effects.joined(separator: ", ")))") }
            let k = kv[0].split(separator: "=", maxSplits: 1).map(String.init)
            taintList.append(Taint(key: k[0], value: k.count > 1 ? k[1] : nil, effect: kv[1]))
        }
        let mode = proxyMode ?? (runtime == "runc" ? "nftables" : "none")
        guard ["nftables", "none"].contains(mode) else { throw ValidationError("--proxy-mode must be nftables or none") }
        guard CIDR(clusterCIDR) != nil else { throw ValidationError("--cluster-cidr: \"\(clusterCIDR)\" is not an IPv4 network such as 198.19.0.0/16") }
        if let d = clusterDNS, IPv4(d) == nil { throw ValidationError("--cluster-dns: \"\(d)\" is not an IPv4 address") }
        var proxyConfig = ServiceProxyConfig()
        proxyConfig.mode = mode
        proxyConfig.clusterCIDR = clusterCIDR
        proxyConfig.domain = clusterDomain
        proxyConfig.dnsAddress = clusterDNS
        proxyConfig.dnsEnabled = mode == "nftables"
        let hostResolv = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        proxyConfig.upstreams = noDNSForward ? [] : dnsUpstreams.isEmpty ? PodDNS.nameservers(hostResolv).filter { !$0.hasPrefix("127.") } : dnsUpstreams
        if mode == "nftables" {
            // A clean stop takes the node's Service rules with it; a crash leaves them for the next agent to adopt.
            let table = proxyConfig.table
            signal(SIGTERM, SIG_IGN)
            let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
            term.setEventHandler {
                ServiceProxy.cleanUpNode(table: table)
                Foundation.exit(0)
            }
            term.resume()
            signalSources.append(term)
        }
        var creds = try await Join.credentials(server: server, token: token, nodeName: name, dataDir: dataDir)
        // Runs until the certificate is due for renewal, renews it, and starts again with the new
        // identity; running containers are adopted, not restarted.
        while true {
            // With several apiservers, one that stops answering is left within about a Lease
            // interval, so the Lease is renewed elsewhere before the node's grace period ends.
            let client = try KubeClient(config: .init(server: server, caPEM: creds.caPEM, certPEM: creds.certPEM, keyPEM: creds.keyPEM, token: nil, namespace: "default", tlsServerName: nil),
                                        attemptTimeout: .milliseconds(Int64(max(1, min(4, leaseInterval)) * 1000)))
            var config = AgentConfig(nodeName: name)
            config.labels = labels
            config.address = nodeIP
            config.leaseInterval = leaseInterval
            config.podCIDR = podCIDR
            config.taints = taintList
            config.serverPort = listenPort
            config.proxy = proxyConfig
            config.drainTimeout = drainTimeout
            guard let idle = parseGoDuration(streamingIdleTimeout), idle > 0 else {
                throw ValidationError("--streaming-connection-idle-timeout: \"\(streamingIdleTimeout)\" must be a positive duration such as 4h, 30m or 90s")
            }
            config.streamingIdleTimeout = idle
            config.hostResolvConf = hostResolv
            config.storageRoot = localPathRoot ?? "\(dataDir)/storage"
            let agent = NodeAgent(client: client, config: config, runtime: rt)
            let endpoint = try AgentServer(agent: agent, port: listenPort, certPEM: creds.certPEM, keyPEM: creds.keyPEM, caPEM: creds.caPEM)
            let renewAt = creds.renewAt
            let due = try await withThrowingTaskGroup(of: Bool.self) { g in
                g.addTask { try await agent.run(with: endpoint); return false }
                g.addTask {
                    while Date() < renewAt { try await Task.sleep(for: .seconds(min(3600, max(1, renewAt.timeIntervalSinceNow)))) }
                    return true
                }
                let r = try await g.next() ?? false
                g.cancelAll()
                return r
            }
            await client.shutdown()
            guard due else { return }
            do {
                creds = try await Join.renew(server: server, current: creds, nodeName: name, dataDir: dataDir)
                Logger(label: "agent").info("renewed the node certificate", metadata: ["renewAt": "\(creds.renewAt)"])
            } catch {
                Logger(label: "agent").warning("certificate renewal failed; retrying in a minute", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(60))
            }
        }
    }
}
