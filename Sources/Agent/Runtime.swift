// The container runtime protocol the agent drives, and the hollow (fake) runtime that lets one
// machine simulate many nodes: pods are "running" at once and use no processes.
import Foundation
import Synchronization
import API

public struct ContainerInfo: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case running(startedAt: Date)
        case exited(code: Int32, startedAt: Date, finishedAt: Date)
    }
    public var name: String
    public var id: String          // runtime-specific; reported as containerID "runc://<id>"
    public var attempt: Int        // 0 for the first start, +1 per restart (restartCount)
    public var image: String
    public var imageID: String
    public var state: State
    public var isRunning: Bool { if case .running = state { return true }; return false }
    public init(name: String, id: String, attempt: Int, image: String, imageID: String, state: State) {
        self.name = name; self.id = id; self.attempt = attempt; self.image = image; self.imageID = imageID; self.state = state
    }
}

public struct SandboxInfo: Sendable, Equatable, Codable {
    public var podUID: String
    public var ip: String?
    public var netns: String?
    public init(podUID: String, ip: String?, netns: String? = nil) { self.podUID = podUID; self.ip = ip; self.netns = netns }
}

/// Cumulative usage of one container, as cgroups count it.
public struct ContainerStats: Sendable, Equatable, Codable {
    public var name: String
    public var cpuUsageNanoSeconds: UInt64
    public var memoryWorkingSetBytes: UInt64
    public var timestamp: Date
}

/// An image pull that failed; the agent reports ErrImagePull, then ImagePullBackOff.
public struct ImagePullError: Error, CustomStringConvertible {
    public var description: String
    public var neverPull: Bool = false
}

/// What a node needs from a runtime. `runc` for real nodes; `FakeRuntime` for hollow ones.
public protocol ContainerRuntime: Sendable {
    var name: String { get }
    /// Hollow runtimes run no processes and have no network: probes pass without traffic.
    var hollow: Bool { get }
    var version: String { get }
    /// Sets up the pod's sandbox (network namespace, addresses); idempotent.
    func ensureSandbox(_ pod: Pod, resolvConf: String) async throws -> SandboxInfo
    /// Makes the image present according to the pull policy; returns its imageID.
    /// `credentials`: registry host → auth, from the pod's imagePullSecrets.
    func ensureImage(_ image: String, policy: String, credentials: [String: RegistryAuth]) async throws -> String
    /// Starts attempt `attempt` of a container of the pod.
    func start(_ pod: Pod, container: Container, attempt: Int, sandbox: SandboxInfo) async throws -> ContainerInfo
    /// Stops a container: SIGTERM, then SIGKILL after `grace` seconds. Returns once it has exited.
    func stop(podUID: String, containerID: String, grace: Double) async throws
    /// Forgets an exited container (its log stays until the pod is removed).
    func removeContainer(podUID: String, containerID: String) async throws
    /// Removes the pod's containers, sandbox and files.
    func remove(podUID: String) async throws
    /// Every container attempt the runtime still holds for a pod (adoption after an agent restart).
    func containers(podUID: String) async -> [ContainerInfo]
    /// Pod UIDs with anything left on the node.
    func pods() async -> [String]
    /// Runs a command in a running container (exec probes, preStop hooks).
    func exec(podUID: String, containerID: String, command: [String], timeout: Double) async throws -> (status: Int32, output: String)
    /// The log file of a container attempt, if the runtime keeps one.
    func logPath(podUID: String, container: String, attempt: Int) -> String?
    /// The host command that runs `command` inside a running container for an interactive exec,
    /// with the agent's stdio passed through, writing the process's host pid to `pidFile`; nil
    /// when the runtime cannot (a hollow node).
    func streamingExec(podUID: String, containerID: String, command: [String], tty: Bool, size: (width: UInt16, height: UInt16)?, pidFile: String) -> (binary: String, args: [String])?
    /// Cumulative CPU and memory per running container of the pod.
    func stats(podUID: String) async -> [ContainerStats]
    /// The path of the pod's network namespace (for port-forward); nil when the runtime has none.
    func podNetworkNamespace(podUID: String) -> String?
    /// The unix socket that feeds a running container's stdin (containers with `stdin: true`).
    func attachStdin(podUID: String, containerID: String) -> String?
    /// Writes (or rewrites, atomically) the files of a configMap, secret, downwardAPI or
    /// projected volume; secret-bearing ones on tmpfs. Returns the directory to mount.
    func writeVolume(podUID: String, name: String, files: [ProjectedFile], tmpfs: Bool) async throws -> String
}

extension ContainerRuntime {
    public func streamingExec(podUID: String, containerID: String, command: [String], tty: Bool, size: (width: UInt16, height: UInt16)?, pidFile: String) -> (binary: String, args: [String])? { nil }
    public func podNetworkNamespace(podUID: String) -> String? { nil }
    public func attachStdin(podUID: String, containerID: String) -> String? { nil }
}

public final class FakeRuntime: ContainerRuntime {
    public let name = "fake"
    public let version = "fake://1.0"
    public let hollow = true
    struct State { var sandboxes: [String: SandboxInfo] = [:]; var containers: [String: [ContainerInfo]] = [:]; var nextIP = 2
        var cpu: [String: UInt64] = [:]; var lastStats: [String: Date] = [:]; var pods: [String: Pod] = [:]
        var volumes: [String: [String: [ProjectedFile]]] = [:]; var env: [String: [EnvVar]] = [:] }
    private let state = Mutex(State())
    let podCIDRPrefix: String

    public init(podCIDRPrefix: String = "198.19.0") { self.podCIDRPrefix = podCIDRPrefix }

    /// Hollow pods have no processes; their CPU use comes from this annotation (millicores) so
    /// autoscaling can be exercised at scale.
    public static let cpuAnnotation = "fake.orchestrator.io/cpu-millicores"
    /// Hollow containers of a pod with this annotation exit that many seconds after they start,
    /// with the code in `exitCodeAnnotation` (0 if unset): batch work at scale.
    public static let runSecondsAnnotation = "fake.orchestrator.io/run-seconds"
    public static let exitCodeAnnotation = "fake.orchestrator.io/exit-code"
    /// Hollow containers of a pod with this annotation take that many seconds to stop (at most
    /// the grace period), as a process that ignores SIGTERM does.
    public static let stopSecondsAnnotation = "fake.orchestrator.io/stop-seconds"

    public func ensureSandbox(_ pod: Pod, resolvConf: String) async throws -> SandboxInfo {
        let uid = pod.metadata.uid ?? pod.name
        return state.withLock { s in
            s.pods[uid] = pod
            if let sb = s.sandboxes[uid] { return sb }
            let sb = SandboxInfo(podUID: uid, ip: "\(podCIDRPrefix).\(s.nextIP % 250 + 2)")
            s.nextIP += 1
            s.sandboxes[uid] = sb
            return sb
        }
    }
    public func ensureImage(_ image: String, policy: String, credentials: [String: RegistryAuth]) async throws -> String { "fake://\(image)" }
    public func start(_ pod: Pod, container: Container, attempt: Int, sandbox: SandboxInfo) async throws -> ContainerInfo {
        let uid = pod.metadata.uid ?? pod.name
        let info = ContainerInfo(name: container.name, id: "\(uid).\(container.name).\(attempt)", attempt: attempt, image: container.image ?? "",
                                 imageID: "fake://\(container.image ?? "")", state: .running(startedAt: Date()))
        state.withLock { s in
            s.env["\(uid)/\(container.name)"] = container.env ?? []
            var list = s.containers[uid] ?? []
            list.removeAll { $0.name == container.name }
            list.append(info)
            s.containers[uid] = list
        }
        return info
    }
    public func stop(podUID: String, containerID: String, grace: Double) async throws {
        let slow = state.withLock { $0.pods[podUID]?.metadata.annotations?[Self.stopSecondsAnnotation].flatMap(Double.init) } ?? 0
        if min(slow, grace) > 0 { try await Task.sleep(for: .seconds(min(slow, grace))) }
        state.withLock { s in
            guard var list = s.containers[podUID], let i = list.firstIndex(where: { $0.id == containerID }) else { return }
            if case .running(let started) = list[i].state { list[i].state = .exited(code: 0, startedAt: started, finishedAt: Date()) }
            s.containers[podUID] = list
        }
    }
    public func removeContainer(podUID: String, containerID: String) async throws {
        state.withLock { s in s.containers[podUID]?.removeAll { $0.id == containerID } }
    }
    public func remove(podUID: String) async throws {
        state.withLock { s in s.sandboxes.removeValue(forKey: podUID); s.containers.removeValue(forKey: podUID); s.pods.removeValue(forKey: podUID); s.volumes.removeValue(forKey: podUID) }
    }
    public func containers(podUID: String) async -> [ContainerInfo] {
        let now = Date()
        return state.withLock { s in
            let ann = s.pods[podUID]?.metadata.annotations
            guard let run = ann?[Self.runSecondsAnnotation].flatMap(Double.init), var list = s.containers[podUID] else { return s.containers[podUID] ?? [] }
            let code = Int32(ann?[Self.exitCodeAnnotation] ?? "") ?? 0
            for i in list.indices {
                if case .running(let started) = list[i].state, now.timeIntervalSince(started) >= run {
                    list[i].state = .exited(code: code, startedAt: started, finishedAt: started.addingTimeInterval(run))
                }
            }
            s.containers[podUID] = list
            return list
        }
    }
    /// Hollow volumes are kept in memory, for tests to read.
    public func writeVolume(podUID: String, name: String, files: [ProjectedFile], tmpfs: Bool) async throws -> String {
        state.withLock { $0.volumes[podUID, default: [:]][name] = files }
        return "/fake/\(podUID)/volumes/\(name)"
    }
    public func volumeFiles(podUID: String, name: String) -> [ProjectedFile]? { state.withLock { $0.volumes[podUID]?[name] } }
    /// The environment a hollow container was started with.
    public func startedEnv(podUID: String, container: String) -> [EnvVar]? {
        state.withLock { $0.env["\(podUID)/\(container)"] }
    }

    public func pods() async -> [String] { state.withLock { Array(Set($0.sandboxes.keys).union($0.containers.keys)) } }
    public func exec(podUID: String, containerID: String, command: [String], timeout: Double) async throws -> (status: Int32, output: String) { (0, "") }
    public func logPath(podUID: String, container: String, attempt: Int) -> String? { nil }
    public func stats(podUID: String) async -> [ContainerStats] {
        let now = Date()
        return state.withLock { s in
            let milli = UInt64(s.pods[podUID]?.metadata.annotations?[Self.cpuAnnotation] ?? "") ?? 0
            return (s.containers[podUID] ?? []).filter(\.isRunning).map { c in
                let key = c.id
                let dt = s.lastStats[key].map { now.timeIntervalSince($0) } ?? 0
                s.cpu[key, default: 0] += UInt64(Double(milli) * 1_000_000 * dt)
                s.lastStats[key] = now
                return ContainerStats(name: c.name, cpuUsageNanoSeconds: s.cpu[key]!, memoryWorkingSetBytes: 4 << 20, timestamp: now)
            }
        }
    }
}
