// The container runtime protocol the agent drives, and the hollow (fake) runtime that lets one
// machine simulate many nodes: pods are "running" at once and use no processes.
import Foundation
import Synchronization
import API

public struct ContainerInfo: Sendable, Equatable {
    public enum State: Sendable, Equatable { case running(startedAt: Date), exited(code: Int32, startedAt: Date, finishedAt: Date) }
    public var name: String
    public var id: String
    public var image: String
    public var state: State
}

public struct SandboxInfo: Sendable, Equatable {
    public var podUID: String
    public var ip: String?
}

/// What a node needs from a runtime. `runc` for real nodes; `FakeRuntime` for hollow ones.
public protocol ContainerRuntime: Sendable {
    var name: String { get }
    var version: String { get }
    /// Sets up the pod's sandbox (network namespace, addresses); idempotent.
    func ensureSandbox(_ pod: Pod) async throws -> SandboxInfo
    /// Starts a container of the pod; returns its id.
    func start(_ pod: Pod, container: Container) async throws -> ContainerInfo
    /// Stops a container: SIGTERM, then SIGKILL after `grace` seconds.
    func stop(podUID: String, container: String, grace: Double) async throws
    /// Removes the pod's containers and sandbox.
    func remove(podUID: String) async throws
    /// Containers the runtime knows of for a pod (adoption after an agent restart).
    func containers(podUID: String) async -> [ContainerInfo]
    /// Pod UIDs with anything left on the node.
    func pods() async -> [String]
}

public final class FakeRuntime: ContainerRuntime {
    public let name = "fake"
    public let version = "fake://1.0"
    struct State { var sandboxes: [String: SandboxInfo] = [:]; var containers: [String: [ContainerInfo]] = [:]; var nextIP = 2 }
    private let state = Mutex(State())
    let podCIDRPrefix: String

    public init(podCIDRPrefix: String = "198.19.0") { self.podCIDRPrefix = podCIDRPrefix }

    public func ensureSandbox(_ pod: Pod) async throws -> SandboxInfo {
        let uid = pod.metadata.uid ?? pod.name
        return state.withLock { s in
            if let sb = s.sandboxes[uid] { return sb }
            let sb = SandboxInfo(podUID: uid, ip: "\(podCIDRPrefix).\(s.nextIP % 250 + 2)")
            s.nextIP += 1
            s.sandboxes[uid] = sb
            return sb
        }
    }
    public func start(_ pod: Pod, container: Container) async throws -> ContainerInfo {
        let uid = pod.metadata.uid ?? pod.name
        let info = ContainerInfo(name: container.name, id: "fake://\(uid)/\(container.name)", image: container.image ?? "", state: .running(startedAt: Date()))
        state.withLock { s in
            var list = s.containers[uid] ?? []
            list.removeAll { $0.name == container.name }
            list.append(info)
            s.containers[uid] = list
        }
        return info
    }
    public func stop(podUID: String, container: String, grace: Double) async throws {
        state.withLock { s in
            guard var list = s.containers[podUID], let i = list.firstIndex(where: { $0.name == container }) else { return }
            if case .running(let started) = list[i].state { list[i].state = .exited(code: 0, startedAt: started, finishedAt: Date()) }
            s.containers[podUID] = list
        }
    }
    public func remove(podUID: String) async throws {
        state.withLock { s in s.sandboxes.removeValue(forKey: podUID); s.containers.removeValue(forKey: podUID) }
    }
    public func containers(podUID: String) async -> [ContainerInfo] { state.withLock { $0.containers[podUID] ?? [] } }
    public func pods() async -> [String] { state.withLock { Array(Set($0.sandboxes.keys).union($0.containers.keys)) } }
}
