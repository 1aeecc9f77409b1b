import Testing
import Foundation
@testable import Scheduler
import API

func node(_ name: String = "n", cpu: String = "2", memory: String = "4Gi", pods: String = "110", ready: Bool = true,
          labels: [String: String] = [:], taints: [Taint] = [], unschedulable: Bool = false) -> NodeInfo {
    var n = Node(name: name)
    n.metadata.labels = labels
    var st = NodeStatus()
    st.allocatable = ["cpu": try! Quantity(parsing: cpu), "memory": try! Quantity(parsing: memory), "pods": try! Quantity(parsing: pods)]
    st.conditions = [NodeCondition(type: "Ready", status: ready ? "True" : "False")]
    n.status = st
    var spec = NodeSpec(); spec.taints = taints.isEmpty ? nil : taints; spec.unschedulable = unschedulable
    n.spec = spec
    return NodeInfo(node: n)
}

func pod(cpu: String? = nil, memory: String? = nil, hostPort: Int? = nil, selector: [String: String]? = nil,
         tolerations: [Toleration]? = nil, affinity: String? = nil, owner: String? = nil) -> Pod {
    var c = Container(name: "c", image: "x")
    var req: ResourceList = [:]
    if let cpu { req["cpu"] = try! Quantity(parsing: cpu) }
    if let memory { req["memory"] = try! Quantity(parsing: memory) }
    if !req.isEmpty { c.resources = ResourceRequirements(requests: req) }
    if let hostPort { var p = ContainerPort(containerPort: 80); p.hostPort = hostPort; c.ports = [p] }
    var p = Pod(metadata: ObjectMeta(name: "p", namespace: "default"), spec: PodSpec(containers: [c]))
    p.spec?.nodeSelector = selector
    p.spec?.tolerations = tolerations
    if let affinity { p.spec?.affinity = try! JSONValue.parse(Data(affinity.utf8)) }
    if let owner { p.metadata.ownerReferences = [OwnerReference(apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: owner, controller: true)] }
    return p
}

func run(_ f: any FilterPlugin, _ p: Pod, _ n: NodeInfo) -> FilterResult { f.filter(p, PodRequest(p), n) }

@Suite struct FilterPluginTests {
    @Test(arguments: [
        (pod(cpu: "1"), node(cpu: "2"), FilterResult.fit),
        (pod(cpu: "3"), node(cpu: "2"), .unfit("Insufficient cpu")),
        (pod(memory: "5Gi"), node(memory: "4Gi"), .unfit("Insufficient memory")),
        (pod(), node(pods: "0"), .unfit("Too many pods")),
        (pod(cpu: "2", memory: "4Gi"), node(cpu: "2", memory: "4Gi"), .fit),
    ])
    func resourcesFit(p: Pod, n: NodeInfo, want: FilterResult) { #expect(run(NodeResourcesFit(), p, n) == want) }

    @Test func resourcesFitCountsWhatIsPlaced() {
        var n = node(cpu: "2")
        n.add(PodRequest(cpuMilli: 1500, memory: 0))
        #expect(run(NodeResourcesFit(), pod(cpu: "600m"), n) == .unfit("Insufficient cpu"))
        #expect(run(NodeResourcesFit(), pod(cpu: "500m"), n) == .fit)
    }

    @Test(arguments: [(true, FilterResult.fit), (false, .unfit("node(s) were not ready"))])
    func ready(isReady: Bool, want: FilterResult) { #expect(run(NodeReady(), pod(), node(ready: isReady)) == want) }

    @Test(arguments: [
        (pod(), false, FilterResult.fit),
        (pod(), true, .unfit("node(s) were unschedulable")),
        (pod(tolerations: [Toleration(key: "node.kubernetes.io/unschedulable", operator: "Exists")]), true, .fit),
    ])
    func unschedulable(p: Pod, cordoned: Bool, want: FilterResult) { #expect(run(NodeUnschedulable(), p, node(unschedulable: cordoned)) == want) }

    static let inZoneA = #"{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}"#
    static let notGPU = #"{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"gpu","operator":"DoesNotExist"}]},{"matchExpressions":[{"key":"size","operator":"Gt","values":["4"]}]}]}}}"#
    @Test(arguments: [
        (pod(selector: ["disk": "ssd"]), ["disk": "ssd"], FilterResult.fit),
        (pod(selector: ["disk": "ssd"]), ["disk": "hdd"], .unfit("node(s) didn't match Pod's node affinity/selector")),
        (pod(affinity: inZoneA), ["zone": "a"], .fit),
        (pod(affinity: inZoneA), ["zone": "b"], .unfit("node(s) didn't match Pod's node affinity/selector")),
        (pod(affinity: notGPU), ["gpu": "1", "size": "8"], .fit),
        (pod(affinity: notGPU), ["gpu": "1", "size": "2"], .unfit("node(s) didn't match Pod's node affinity/selector")),
    ])
    func affinity(p: Pod, labels: [String: String], want: FilterResult) { #expect(run(NodeAffinity(), p, node(labels: labels)) == want) }

    @Test(arguments: [
        (pod(), [Taint(key: "dedicated", value: "db", effect: "NoSchedule")], FilterResult.unfit("node(s) had untolerated taint {dedicated: db}")),
        (pod(tolerations: [Toleration(key: "dedicated", operator: "Equal", value: "db", effect: "NoSchedule")]), [Taint(key: "dedicated", value: "db", effect: "NoSchedule")], .fit),
        (pod(tolerations: [Toleration(key: "dedicated", operator: "Equal", value: "web")]), [Taint(key: "dedicated", value: "db", effect: "NoSchedule")], .unfit("node(s) had untolerated taint {dedicated: db}")),
        (pod(tolerations: [Toleration(operator: "Exists")]), [Taint(key: "anything", effect: "NoExecute")], .fit),
        (pod(), [Taint(key: "soft", effect: "PreferNoSchedule")], .fit),
    ])
    func taints(p: Pod, taints: [Taint], want: FilterResult) { #expect(run(TaintToleration(), p, node(taints: taints)) == want) }

    @Test func hostPorts() {
        var n = node()
        #expect(run(NodePorts(), pod(hostPort: 8080), n) == .fit)
        n.add(PodRequest(pod(hostPort: 8080)))
        #expect(run(NodePorts(), pod(hostPort: 8080), n) == .unfit("node(s) didn't have free ports for the requested pod ports"))
        #expect(run(NodePorts(), pod(hostPort: 9090), n) == .fit)
    }
}

@Suite struct ScorePluginTests {
    @Test(arguments: [("0", 100), ("1", 50), ("2", 0)])
    func leastAllocatedPrefersEmptier(usedCPU: String, want: Int) {
        var n = node(cpu: "2", memory: "4Gi")
        let used = try! Quantity(parsing: usedCPU).milli
        n.add(PodRequest(cpuMilli: used, memory: used * 2 * 1024 * 1024 * 1024 / 1000))
        #expect(LeastAllocated().score(pod(), PodRequest(pod()), n) == want)
    }

    @Test func balancedPrefersEvenUse() {
        let n = node(cpu: "2", memory: "4Gi")
        #expect(BalancedAllocation().score(pod(cpu: "1", memory: "2Gi"), PodRequest(pod(cpu: "1", memory: "2Gi")), n) == 100)
        #expect(BalancedAllocation().score(pod(cpu: "2"), PodRequest(pod(cpu: "2")), n) == 0)
    }

    @Test func spreadPrefersNodesWithFewerSiblings() {
        var busy = node("busy"), empty = node("empty")
        for _ in 0..<2 { busy.add(PodRequest(pod(owner: "rs-1"))) }
        let p = pod(owner: "rs-1")
        #expect(OwnerSpread().score(p, PodRequest(p), empty) > OwnerSpread().score(p, PodRequest(p), busy))
        _ = empty
    }

    @Test func decisionSpreadsAndExplains() {
        let cache = SchedulerCache()
        for name in ["a", "b", "c"] { cache.setNode(node(name, cpu: "1").node) }
        var placed: [String: Int] = [:]
        for i in 0..<6 {
            if case .bind(let n) = cache.decide(pod(cpu: "300m", owner: "rs"), key: "default/p\(i)", filters: Plugins.filters, scores: Plugins.scores) { placed[n, default: 0] += 1 }
        }
        #expect(placed == ["a": 2, "b": 2, "c": 2])
        guard case .unschedulable(let why) = cache.decide(pod(cpu: "500m"), key: "default/big", filters: Plugins.filters, scores: Plugins.scores) else {
            Issue.record("expected unschedulable"); return
        }
        #expect(why == "0/3 nodes are available: 3 Insufficient cpu.")
    }
}
