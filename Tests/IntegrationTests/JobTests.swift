// Jobs end to end on a hollow node: the apiserver, controller-manager and scheduler in process,
// a hollow agent whose pods end after fake.orchestrator.io/run-seconds.
import Testing
import Foundation
import API
import APIServer
import Agent
import Client
import Controllers
import Scheduler

@Suite(.serialized) struct JobTests {
    @Test func indexedJobRunsEachIndexOnceAndFailuresStopAtTheBackoffLimit() async throws {
        let c = try await TestCluster.start(inMemory: true)
        defer { Task { await c.cleanup() } }
        let hollow = try await startControlPlaneAndHollowNode(c, node: "j1", address: "198.18.0.21")
        defer { hollow.stop() }
        let k = try c.admin()

        // Bad input: refused whole, with the fields named.
        do {
            _ = try await k.create(try jobFrom("""
                apiVersion: batch/v1
                kind: Job
                metadata: {name: bad}
                spec:
                  completions: -1
                  completionMode: Indexed
                  template:
                    spec:
                      containers: [{name: c, image: busybox}]
                """))
            Issue.record("a bad Job was accepted")
        } catch let s as Status {
            #expect(s.code == 422)
            #expect(s.message?.contains("spec.completions") == true && s.message?.contains("spec.template.spec.restartPolicy") == true, "\(s.message ?? "")")
        }

        // Indexed, 6 completions, 3 at a time, each pod one second.
        let created = try await k.create(try jobFrom("""
            apiVersion: batch/v1
            kind: Job
            metadata: {name: idx}
            spec:
              completions: 6
              parallelism: 3
              completionMode: Indexed
              template:
                metadata:
                  annotations: {fake.orchestrator.io/run-seconds: "1"}
                spec:
                  restartPolicy: Never
                  containers: [{name: c, image: busybox}]
            """))
        #expect(created.spec?.selector?.matchLabels?[JobLabels.controllerUID] == created.metadata.uid)
        var mostActive = 0
        let done = try await eventually(60, "the indexed job completes") { () -> Job? in
            let pods = try await k.list(Pod.self, labelSelector: "\(JobLabels.jobName)=idx").items
            mostActive = max(mostActive, pods.filter { !["Succeeded", "Failed"].contains($0.phase) && $0.metadata.deletionTimestamp == nil }.count)
            let j = try await k.get(Job.self, "idx")
            return j.status?.condition("Complete") != nil ? j : nil
        }
        #expect(done.status?.succeeded == 6 && done.status?.completedIndexes == "0-5")
        #expect(done.status?.uncountedTerminatedPods?.isEmpty ?? true)
        #expect(mostActive <= 3, "up to \(mostActive) pods ran at once")
        let pods = try await k.list(Pod.self, labelSelector: "\(JobLabels.jobName)=idx").items
        let indexes = pods.filter { $0.phase == "Succeeded" }.compactMap { JobLogic.index(of: $0) }.sorted()
        #expect(indexes == [0, 1, 2, 3, 4, 5], "succeeded pods' indexes: \(indexes)")
        #expect(pods.allSatisfy { ($0.metadata.finalizers ?? []).isEmpty })
        #expect(pods.allSatisfy { $0.spec?.hostname == "idx-\(JobLogic.index(of: $0) ?? -1)" })

        // Exit code 1 with backoffLimit 1: two failures, then Failed, and no more pods.
        _ = try await k.create(try jobFrom("""
            apiVersion: batch/v1
            kind: Job
            metadata: {name: broken}
            spec:
              backoffLimit: 0
              template:
                metadata:
                  annotations: {fake.orchestrator.io/run-seconds: "0.2", fake.orchestrator.io/exit-code: "1"}
                spec:
                  restartPolicy: Never
                  containers: [{name: c, image: busybox}]
            """))
        let failed = try await eventually(30, "the broken job fails") { () -> Job? in
            let j = try await k.get(Job.self, "broken"); return j.status?.condition("Failed") != nil ? j : nil
        }
        #expect(failed.status?.condition("Failed")?.reason == "BackoffLimitExceeded")
        #expect(failed.status?.failed == 1)
        #expect(try await k.list(Pod.self, labelSelector: "\(JobLabels.jobName)=broken").items.count == 1)

        // Deleting a job takes its pods (their tracking finalizers do not hold them).
        try await k.delete(Job.self, "idx")
        _ = try await eventually(30, "the job's pods are gone") { () -> Bool? in
            try await k.list(Pod.self, labelSelector: "\(JobLabels.jobName)=idx").items.isEmpty ? true : nil
        }
    }
}

func jobFrom(_ yaml: String) throws -> Job {
    let doc = try Manifests.parse(yaml, file: "job.yaml")[0]
    return try KubeJSON.decode(Job.self, from: doc.object.encoded())
}
