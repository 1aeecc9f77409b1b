// Pod networking with the standard CNI plugins (Debian's containernetworking-plugins): one
// network namespace per pod, a veth into the node's bridge with an address from host-local IPAM
// over the node's pod CIDR, and loopback. The plugins are executables driven by environment
// variables and a JSON config on stdin (the CNI spec); we call them directly, as the kubelet's
// CNI library does.
import Foundation
import API

public struct CNIError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

public struct CNINetwork: Sendable {
    public var pluginDir: String
    public var bridge: String
    public var podCIDR: String
    public var ipamDataDir: String
    public var mtu: Int = 1500

    public init(pluginDir: String = CNINetwork.locatePlugins(), bridge: String, podCIDR: String, ipamDataDir: String) {
        self.pluginDir = pluginDir; self.bridge = bridge; self.podCIDR = podCIDR; self.ipamDataDir = ipamDataDir
    }

    public static func locatePlugins() -> String {
        for d in ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"] where FileManager.default.isExecutableFile(atPath: "\(d)/bridge") { return d }
        return "/usr/lib/cni"
    }

    var bridgeConfig: JSONValue {
        .object([
            "cniVersion": "1.0.0", "name": "orchestrator", "type": "bridge",
            "bridge": .string(bridge), "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
            "mtu": .int(Int64(mtu)),
            "ipam": .object([
                "type": "host-local",
                "ranges": .array([.array([.object(["subnet": .string(podCIDR)])])]),
                "dataDir": .string(ipamDataDir),
            ]),
        ])
    }
    var loopbackConfig: JSONValue { .object(["cniVersion": "1.0.0", "name": "lo", "type": "loopback"]) }

    func invoke(_ plugin: String, command: String, containerID: String, netns: String, config: JSONValue) async throws -> JSONValue? {
        let exe = "\(pluginDir)/\(plugin)"
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            throw CNIError("CNI plugin \(exe) not found (install containernetworking-plugins)")
        }
        var env = ProcessInfo.processInfo.environment
        env["CNI_COMMAND"] = command
        env["CNI_CONTAINERID"] = containerID
        env["CNI_NETNS"] = netns
        env["CNI_IFNAME"] = plugin == "loopback" ? "lo" : "eth0"
        env["CNI_PATH"] = pluginDir
        let input = String(decoding: try config.encoded(), as: UTF8.self)
        let r = try await Command.run(exe, [], stdin: input, environment: env, timeout: 30)
        guard r.status == 0 else {
            // Plugins report errors as JSON {"code","msg","details"} on stdout.
            let j = try? JSONValue.parse(Data(r.stdout.utf8))
            let msg = j?["msg"]?.stringValue.map { m in m + (j?["details"]?.stringValue.map { ": \($0)" } ?? "") } ?? (r.stdout + r.stderr)
            throw CNIError("CNI \(plugin) \(command) failed: \(msg.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let out = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return out.isEmpty ? nil : try JSONValue.parse(Data(out.utf8))
    }

    /// Creates /run/netns/`name` and wires it; returns the pod's IPv4 address.
    public func add(containerID: String, netnsName: String) async throws -> String {
        let netns = "/run/netns/\(netnsName)"
        if !FileManager.default.fileExists(atPath: netns) {
            let r = try await Command.run("/usr/sbin/ip", ["netns", "add", netnsName])
            guard r.status == 0 || FileManager.default.fileExists(atPath: netns) else { throw CNIError("ip netns add \(netnsName): \(r.stderr)") }
        }
        _ = try await invoke("loopback", command: "ADD", containerID: containerID, netns: netns, config: loopbackConfig)
        let result = try await invoke("bridge", command: "ADD", containerID: containerID, netns: netns, config: bridgeConfig)
        guard let addr = result?["ips"]?.arrayValue?.first?["address"]?.stringValue, let ip = addr.split(separator: "/").first else {
            throw CNIError("CNI bridge ADD returned no address")
        }
        return String(ip)
    }

    /// Releases the address and the veth, then removes the namespace. Safe to repeat.
    public func delete(containerID: String, netnsName: String) async {
        let netns = "/run/netns/\(netnsName)"
        let exists = FileManager.default.fileExists(atPath: netns)
        // DEL must succeed even when the namespace is gone (CNI spec), so the IPAM lease is freed.
        _ = try? await invoke("bridge", command: "DEL", containerID: containerID, netns: exists ? netns : "", config: bridgeConfig)
        if exists { _ = try? await Command.run("/usr/sbin/ip", ["netns", "delete", netnsName]) }
    }
}
