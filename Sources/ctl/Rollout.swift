// ctl rollout status|undo|history for Deployments.
import ArgumentParser
import Foundation
import API
import Client

struct Rollout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Follow or undo a Deployment's rollout.", subcommands: [RolloutStatus.self, RolloutUndo.self, RolloutHistory.self])
}

func deploymentName(_ args: [String]) throws -> String {
    let targets = try parseTargets(args)
    guard targets.count == 1, targets[0].0 == Resources.deployments, let n = targets[0].1 else { throw CtlError("expected deployment/NAME") }
    return n
}

func revisions(_ client: KubeClient, _ d: Deployment) async throws -> [(Int, ReplicaSet)] {
    let rss = try await client.list(ReplicaSet.self, namespace: d.namespace).items.filter { $0.metadata.controllerRef?.uid == d.metadata.uid }
    return rss.map { (Int($0.metadata.annotations?["deployment.kubernetes.io/revision"] ?? "") ?? 0, $0) }.sorted { $0.0 < $1.0 }
}

struct RolloutStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Watch until the rollout completes (or fails).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Give up after this many seconds (0: wait forever).") var timeout: Double = 0
    @Option(help: "Watch until done; false prints the state once.") var watch: Bool = true
    @Argument var args: [String] = []

    /// Kubernetes' rollout status messages, from the Deployment alone.
    static func state(_ d: Deployment) -> (done: Bool, failed: Bool, message: String) {
        let want = d.spec?.replicas ?? 1
        let s = d.status ?? DeploymentStatus()
        if (s.observedGeneration ?? 0) < (d.metadata.generation ?? 0) { return (false, false, "Waiting for deployment spec update to be observed...") }
        if let c = s.conditions?.first(where: { $0.type == "Progressing" }), c.reason == "ProgressDeadlineExceeded" {
            return (false, true, "deployment \"\(d.name)\" exceeded its progress deadline")
        }
        let updated = s.updatedReplicas ?? 0, total = s.replicas ?? 0, avail = s.availableReplicas ?? 0
        if updated < want { return (false, false, "Waiting for deployment \"\(d.name)\" rollout to finish: \(updated) out of \(want) new replicas have been updated...") }
        if total > updated { return (false, false, "Waiting for deployment \"\(d.name)\" rollout to finish: \(total - updated) old replicas are pending termination...") }
        if avail < updated { return (false, false, "Waiting for deployment \"\(d.name)\" rollout to finish: \(avail) of \(updated) updated replicas are available...") }
        return (true, false, "deployment \"\(d.name)\" successfully rolled out")
    }

    func run() async throws {
        let client = try global.client()
        do {
            let name = try deploymentName(args)
            let ns = global.namespace ?? client.namespace
            let start = Date()
            var last = ""
            while true {
                let d = try await client.get(Deployment.self, name, namespace: ns)
                let (done, failed, msg) = Self.state(d)
                if msg != last { print(msg); fflush(nil); last = msg }
                if done { break }
                if failed { throw ExitCode(1) }
                if !watch { break }
                if timeout > 0 && Date().timeIntervalSince(start) > timeout { fail("timed out waiting for the condition") }
                try await Task.sleep(for: .milliseconds(250))
            }
        } catch let e as ExitCode { throw e } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}

struct RolloutUndo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "undo", abstract: "Roll back to the previous (or a given) revision.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("to-revision"), help: "Revision to go back to (default: the previous one).") var toRevision: Int = 0
    @Argument var args: [String] = []

    func run() async throws {
        let client = try global.client()
        do {
            let name = try deploymentName(args)
            let ns = global.namespace ?? client.namespace
            let d = try await client.get(Deployment.self, name, namespace: ns)
            let revs = try await revisions(client, d)
            guard let current = revs.last else { throw CtlError("no rollout history found for deployment \"\(name)\"") }
            let target = toRevision > 0 ? revs.first { $0.0 == toRevision } : revs.dropLast().last
            guard let (rev, rs) = target else { throw CtlError(toRevision > 0 ? "unable to find specified revision \(toRevision) in history" : "no previous revision of deployment \"\(name)\" to roll back to") }
            _ = current
            // Apply the older template (without the pod-template-hash label the ReplicaSet carries).
            var template = rs.spec?.template ?? d.spec!.template
            template.metadata?.labels?.removeValue(forKey: "pod-template-hash")
            var next = d
            next.spec?.template = template
            _ = try await client.update(next)
            print("deployment.apps/\(name) rolled back (to revision \(rev))")
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}

struct RolloutHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "List a Deployment's revisions.")
    @OptionGroup var global: GlobalOptions
    @Argument var args: [String] = []
    func run() async throws {
        let client = try global.client()
        do {
            let name = try deploymentName(args)
            let d = try await client.get(Deployment.self, name, namespace: global.namespace ?? client.namespace)
            print("deployment.apps/\(name)")
            printTable(["REVISION", "REPLICASET", "IMAGES"], try await revisions(client, d).map { ["\($0.0)", $0.1.name, $0.1.spec?.template?.spec?.containers.map { $0.image ?? "" }.joined(separator: ",") ?? ""] })
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a pod's container logs (served by its node's agent).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .customLong("follow")]) var follow = false
    @Option(name: [.short, .customLong("container")]) var container: String?
    @Option(name: .customLong("tail")) var tail: Int?
    @Flag(name: [.short, .customLong("previous")]) var previous = false
    @Argument var pod: String
    func run() async throws {
        let client = try global.client()
        var q: [String: String] = [:]
        if follow { q["follow"] = "true" }
        if let c = container { q["container"] = c }
        if let t = tail { q["tailLines"] = "\(t)" }
        if previous { q["previous"] = "true" }
        let name = pod.hasPrefix("pod/") ? String(pod.dropFirst(4)) : pod
        do {
            let path = Resources.pods.path(namespace: global.namespace ?? client.namespace, name: name, subresource: "log")
            for try await chunk in client.stream(path: path, query: q) { FileHandle.standardOutput.write(chunk) }
        } catch { fail(describeError(error)) }
        await client.shutdown()
    }
}
