// The collector's pure parts: which workload a pod counts for, what a workload's sample adds up
// to, and how cpu rates come out of successive cumulative samples (and when figures are dropped).
import Testing
import Foundation
import API
@testable import APIServer

func podWith(_ name: String, uid: String = UUID().uuidString, owner: OwnerReference? = nil, cpu: [String?] = ["100m"], memory: String? = "64Mi",
             sidecarCPU: String? = nil) -> Pod {
    var p = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: ["app": "x"]),
                spec: PodSpec(containers: cpu.enumerated().map { i, c in
                    var ct = Container(name: "c\(i)", image: "busybox")
                    var req: ResourceList = [:]
                    if let c { req["cpu"] = try! Quantity(parsing: c) }
                    if let memory { req["memory"] = try! Quantity(parsing: memory) }
                    ct.resources = ResourceRequirements(requests: req)
                    return ct
                }))
    p.metadata.uid = uid
    if let owner { p.metadata.ownerReferences = [owner] }
    if let sidecarCPU {
        var s = Container(name: "sidecar", image: "busybox")
        s.restartPolicy = "Always"
        s.resources = ResourceRequirements(requests: ["cpu": try! Quantity(parsing: sidecarCPU), "memory": try! Quantity(parsing: "1Mi")])
        p.spec?.initContainers = [s]
    }
    return p
}

@Suite struct WorkloadGroupingTests {
    let rsOfDeployment = OwnerReference(apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-abc", uid: "rs1", controller: true)
    let bareRS = OwnerReference(apiVersion: "apps/v1", kind: "ReplicaSet", name: "solo-rs", uid: "rs2", controller: true)
    func owners(_ ns: String, _ name: String) -> OwnerReference? {
        name == "web-abc" ? OwnerReference(apiVersion: "apps/v1", kind: "Deployment", name: "web", uid: "d1", controller: true) : nil
    }

    @Test func podsCountForTheirControllingWorkload() {
        #expect(PodFacts(pod: podWith("web-abc-1", owner: rsOfDeployment), replicaSetOwner: owners).workload
                == WorkloadRef(namespace: "default", kind: "Deployment", name: "web"))
        #expect(PodFacts(pod: podWith("solo-rs-1", owner: bareRS), replicaSetOwner: owners).workload
                == WorkloadRef(namespace: "default", kind: "ReplicaSet", name: "solo-rs"))
        #expect(PodFacts(pod: podWith("bare"), replicaSetOwner: owners).workload == WorkloadRef(namespace: "default", kind: "Pod", name: "bare"))
        let sts = OwnerReference(apiVersion: "apps/v1", kind: "StatefulSet", name: "db", uid: "s1", controller: true)
        #expect(PodFacts(pod: podWith("db-0", owner: sts), replicaSetOwner: owners).workload.kind == "StatefulSet")
        // An owner that is not the controller does not make a workload.
        let plain = OwnerReference(apiVersion: "v1", kind: "ConfigMap", name: "cm", uid: "c1")
        #expect(PodFacts(pod: podWith("owned", owner: plain), replicaSetOwner: owners).workload.kind == "Pod")
    }

    @Test func requestsSumContainersAndSidecarsOrAreUnknown() {
        let two = PodFacts(pod: podWith("a", cpu: ["100m", "150m"], sidecarCPU: "50m"), replicaSetOwner: owners)
        #expect(two.cpuRequestMillis == 300)
        #expect(two.memoryRequestBytes == Int64(2 * (64 << 20) + (1 << 20)))
        #expect(PodFacts(pod: podWith("b", cpu: ["100m", nil]), replicaSetOwner: owners).cpuRequestMillis == nil)
        #expect(PodFacts(pod: podWith("c", memory: nil), replicaSetOwner: owners).memoryRequestBytes == nil)
    }

    @Test func workloadSamplesAddUpAndUtilizationNeedsEveryRequest() throws {
        let web = WorkloadRef(namespace: "default", kind: "Deployment", name: "web")
        let other = WorkloadRef(namespace: "default", kind: "Pod", name: "other")
        func sample(_ ref: WorkloadRef, cpuReq: Int64?, cpuMilli: UInt64, mem: UInt64) -> WorkloadAggregation.PodSample {
            .init(facts: PodFacts(namespace: "default", name: UUID().uuidString, uid: "u", workload: ref, cpuRequestMillis: cpuReq, memoryRequestBytes: 8 << 20),
                  cpuNanoCores: cpuMilli * 1_000_000, memoryBytes: mem)
        }
        let t = Date(timeIntervalSince1970: 1000)
        let out = WorkloadAggregation.aggregate([
            sample(web, cpuReq: 200, cpuMilli: 400, mem: 4 << 20), sample(web, cpuReq: 200, cpuMilli: 200, mem: 2 << 20),
            sample(other, cpuReq: nil, cpuMilli: 50, mem: 1 << 20),
        ], at: t, window: 1)
        let w = try #require(out[web])
        #expect(w.pods == 2 && w.cpuTotalMillicores == 600 && w.cpuAverageMillicores == 300)
        #expect(w.memoryAverageBytes == Double(3 << 20))
        #expect(w.cpuUtilization == 150)           // 600m of 400m requested
        #expect(w.memoryUtilization == 37.5)       // 6Mi of 16Mi
        #expect(w.time == t && w.windowSeconds == 1)
        let o = try #require(out[other])
        #expect(o.pods == 1 && o.cpuUtilization == nil && o.memoryUtilization == 12.5)
        #expect(w.requestsPerSecond == nil)
        // Request rates add up over the pods that have one.
        var a = sample(web, cpuReq: 200, cpuMilli: 100, mem: 1), b = sample(web, cpuReq: 200, cpuMilli: 100, mem: 1)
        a.requestsPerSecond = 12.5; b.requestsPerSecond = nil
        let c = sample(web, cpuReq: 200, cpuMilli: 100, mem: 1)
        var d = c; d.requestsPerSecond = 7.5
        #expect(WorkloadAggregation.aggregate([a, b, d], at: t, window: 1)[web]?.requestsPerSecond == 20)
    }
}

@Suite struct MetricsStateTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    func summary(_ t: Date, node cpu: UInt64 = 500_000_000, pods: [(String, String, [(String, UInt64)])]) -> StatsSummary {
        let ts = KubeTime.formatMicro(t)
        let podsJSON = pods.map { name, uid, containers in
            let cs = containers.map { c, cum in #"{"name":"\#(c)","cpu":{"time":"\#(ts)","usageCoreNanoSeconds":\#(cum)},"memory":{"time":"\#(ts)","workingSetBytes":4194304}}"# }
            return #"{"podRef":{"name":"\#(name)","namespace":"default","uid":"\#(uid)"},"containers":[\#(cs.joined(separator: ","))]}"#
        }
        let json = #"{"node":{"nodeName":"n1","cpu":{"time":"\#(ts)","usageNanoCores":\#(cpu)},"memory":{"time":"\#(ts)","workingSetBytes":1073741824}},"pods":[\#(podsJSON.joined(separator: ","))]}"#
        return try! JSONDecoder().decode(StatsSummary.self, from: Data(json.utf8))
    }

    func facts(_ name: String, uid: String) -> PodFacts {
        PodFacts(namespace: "default", name: name, uid: uid, labels: ["app": "x"], workload: WorkloadRef(namespace: "default", kind: "Pod", name: name), cpuRequestMillis: 200)
    }

    @Test func cpuIsTheRateBetweenTwoSamples() throws {
        var s = MetricsState()
        let f = ["default/a": facts("a", uid: "ua")]
        s.apply(summary(t0, pods: [("a", "ua", [("c", 1_000_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0)
        // One sample is no rate: the pod is not listed yet (no made-up zero), the node is.
        #expect(s.pods.isEmpty)
        #expect(s.nodes["n1"]?.cpuNanoCores == 500_000_000 && s.nodes["n1"]?.window == 1)
        s.apply(summary(t0 + 2, pods: [("a", "ua", [("c", 1_800_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 2)
        let u = try #require(s.pods["default/a"])
        #expect(u.cpuNanoCores == 400_000_000 && u.window == 2 && u.timestamp == t0 + 2)
        #expect(s.nodes["n1"]?.window == 2)
        let obj = u.object(now: t0 + 3)
        #expect(obj.containers == [ContainerMetrics(name: "c", usage: ["cpu": "400m", "memory": "4Mi"])])
        #expect(obj.window == "2s" && obj.metadata.labels == ["app": "x"] && obj.timestamp == KubeTime.format(t0 + 2))
        // The agent has not sampled again: the same figures stay.
        s.apply(summary(t0 + 2, pods: [("a", "ua", [("c", 1_800_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 2.5)
        #expect(s.pods["default/a"]?.cpuNanoCores == 400_000_000)
        // The counter went back (container restarted): no figure until the next sample.
        s.apply(summary(t0 + 3, pods: [("a", "ua", [("c", 100_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 3)
        #expect(s.pods["default/a"]?.timestamp == t0 + 2)
        s.apply(summary(t0 + 4, pods: [("a", "ua", [("c", 350_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 4)
        #expect(s.pods["default/a"]?.cpuNanoCores == 250_000_000)
    }

    @Test func podsThatDisappearAreDropped() {
        var s = MetricsState()
        let f = ["default/a": facts("a", uid: "ua"), "default/b": facts("b", uid: "ub")]
        for (i, t) in [t0, t0 + 1].enumerated() {
            s.apply(summary(t, pods: [("a", "ua", [("c", UInt64(i) * 100_000_000)]), ("b", "ub", [("c", UInt64(i) * 200_000_000)]),
                                      ("ghost", "ug", [("c", UInt64(i))])]),
                    node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t)
        }
        // A pod the store does not have is never listed.
        #expect(Set(s.pods.keys) == ["default/a", "default/b"])
        // The node stops reporting b: gone at once.
        s.apply(summary(t0 + 2, pods: [("a", "ua", [("c", 200_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 2)
        #expect(Set(s.pods.keys) == ["default/a"])
        // A pod re-created under the same name (new uid) does not inherit the old figures.
        s.prune(liveNodes: ["n1"], stillThere: { _ in nil }, staleBefore: t0)
        #expect(s.pods.isEmpty)
        // Stale figures go, and so does everything of a node that left.
        s.apply(summary(t0 + 3, pods: [("a", "ua", [("c", 300_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 3)
        s.apply(summary(t0 + 4, pods: [("a", "ua", [("c", 400_000_000)])]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 4)
        #expect(s.pods.count == 1)
        s.prune(liveNodes: ["n1"], stillThere: { $0.facts }, staleBefore: t0 + 10)
        #expect(s.pods.isEmpty && s.nodes.isEmpty && s.counters.isEmpty)
        s.apply(summary(t0 + 11, pods: []), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 11)
        #expect(s.nodes.count == 1)
        s.prune(liveNodes: [], stillThere: { $0.facts }, staleBefore: t0)
        #expect(s.nodes.isEmpty)
    }

    func connections(_ t: Date, node: String, _ pods: [(String, String, UInt64)]) -> StatsSummary {
        let ts = KubeTime.formatMicro(t)
        let items = pods.map { name, uid, n in #"{"podRef":{"name":"\#(name)","namespace":"default","uid":"\#(uid)"},"ip":"198.19.1.1","connections":\#(n)}"# }
        let json = #"{"node":{"nodeName":"\#(node)"},"pods":[],"serviceConnections":{"time":"\#(ts)","pods":[\#(items.joined(separator: ","))]}}"#
        return try! JSONDecoder().decode(StatsSummary.self, from: Data(json.utf8))
    }

    /// requests_per_second: each node's counter gives a rate over the span, and a pod's figure is
    /// the sum over the nodes that send it traffic.
    @Test func requestRatesAreSummedOverNodes() throws {
        var s = MetricsState()
        let f = ["default/a": facts("a", uid: "ua"), "default/b": facts("b", uid: "ub")]
        func rate(_ name: String) -> Double? { s.requestRates.first { $0.facts.name == name }?.perSecond }
        s.apply(connections(t0, node: "n1", [("a", "ua", 100), ("b", "ub", 0), ("ghost", "ug", 5)]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0)
        s.apply(connections(t0, node: "n2", [("a", "ua", 1000)]), node: "n2", labels: [:], facts: f, fallbackWindow: 1, now: t0)
        // One sample per node is no rate yet.
        #expect(s.requestRates.isEmpty)
        s.apply(connections(t0 + 2, node: "n1", [("a", "ua", 140), ("b", "ub", 6), ("ghost", "ug", 9)]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 2)
        #expect(rate("a") == 20 && rate("b") == 3)
        s.apply(connections(t0 + 2, node: "n2", [("a", "ua", 1010)]), node: "n2", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 2)
        #expect(rate("a") == 25)
        // A pod the store does not have is never listed.
        #expect(Set(s.requestRates.map(\.facts.name)) == ["a", "b"])
        let a = try #require(s.requestRates.first { $0.facts.name == "a" })
        #expect(a.timestamp == t0 + 2 && a.window == 2)
        // The same sample again changes nothing; a counter that went back starts over on that node.
        s.apply(connections(t0 + 2, node: "n1", [("a", "ua", 140), ("b", "ub", 6)]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 3)
        #expect(rate("a") == 25)
        s.apply(connections(t0 + 3, node: "n2", [("a", "ua", 3)]), node: "n2", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 3)
        s.apply(connections(t0 + 4, node: "n2", [("a", "ua", 13)]), node: "n2", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 4)
        #expect(rate("a") == 30)     // 20 from n1 (its last rate) + 10 from n2
        // n1 stops listing b (its endpoint left): b's rate from n1 goes.
        s.apply(connections(t0 + 4, node: "n1", [("a", "ua", 180)]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + 4)
        #expect(rate("b") == nil)
        // The rate spans `rateSpan` seconds of samples.
        for i in 5...12 { s.apply(connections(t0 + Double(i), node: "n1", [("a", "ua", 180 + UInt64(i - 4) * 50)]), node: "n1", labels: [:], facts: f, fallbackWindow: 1, now: t0 + Double(i)) }
        #expect(rate("a")! - 10 == 50)
        // Stale figures, pods gone from the store and nodes that left are dropped.
        s.prune(liveNodes: ["n1"], stillThere: { $0.facts }, staleBefore: t0 + 5)
        #expect(rate("a") == 50)
        s.prune(liveNodes: ["n1"], stillThere: { _ in nil }, staleBefore: t0 + 5)
        #expect(s.requestRates.isEmpty && s.connectionPods.isEmpty)
    }
}
