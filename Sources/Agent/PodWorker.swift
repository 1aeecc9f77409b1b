// The per-pod sync loop: level-triggered against the pod's spec and what the runtime holds.
// Each pass pulls images and starts missing containers, restarts exited ones as restartPolicy
// says with exponential back-off (CrashLoopBackOff), runs due probes, and writes PodStatus as
// the kubelet computes it. Deletion runs in its own task: preStop, SIGTERM, SIGKILL after the
// grace period, teardown, then the final delete of the pod object.
import Foundation
import Synchronization
import API
import Client

/// What the agent remembers about a pod between passes (lost on restart, rebuilt by probing).
struct PodMemo: Sendable {
    var probes: [String: ProbeTracker] = [:]           // "<containerID>/<kind>"
    var pullFailures: [String: (count: Int, until: Date, message: String)] = [:]   // container name
    var startFailures: [String: (count: Int, until: Date, reason: String, message: String)] = [:]
    var announced: Set<String> = []                     // container IDs we emitted Started for
    var volumes: [String: Volume] = [:]                  // persistentVolumeClaim volumes, resolved to directories
    var written: [String: (digest: Int, path: String)] = [:]   // config volumes as last written
    var tokens: [String: (token: String, issued: Date, expires: Date)] = [:]   // ServiceAccount tokens, by ConfigProjection.tokenKey
}

extension NodeAgent {
    func memo<R>(_ uid: String, _ f: (inout PodMemo) -> R) -> R {
        memos.withLock { m in
            var x = m[uid] ?? PodMemo()
            let r = f(&x)
            m[uid] = x
            return r
        }
    }

    func backoff(_ failures: Int) -> Double {
        min(config.backoffMax, config.backoffBase * pow(2, Double(max(0, failures - 1))))
    }

    static func shouldRestart(_ policy: String, exitCode: Int32) -> Bool {
        switch policy {
        case "Never": return false
        case "OnFailure": return exitCode != 0
        default: return true
        }
    }

    func syncPod(_ key: String) async throws -> ReconcileResult {
        guard let pod = pods.get(key) else {
            if let uid = uids.withLock({ $0.removeValue(forKey: key) }), terminating.withLock({ $0[uid] == nil }) {
                try await runtime.remove(podUID: uid)
                memos.withLock { _ = $0.removeValue(forKey: uid) }
            }
            return .done
        }
        let uid = pod.metadata.uid ?? key
        if let prev = uids.withLock({ $0[key] }), prev != uid {
            try await runtime.remove(podUID: prev)
            memos.withLock { _ = $0.removeValue(forKey: prev) }
        }
        uids.withLock { $0[key] = uid }
        if pod.metadata.deletionTimestamp != nil { startTermination(pod, uid: uid, key: key); return .done }
        if pod.isTerminal {
            for c in await runtime.containers(podUID: uid) where c.isRunning { try await runtime.stop(podUID: uid, containerID: c.id, grace: 0) }
            return .done
        }

        // Claims first: a pod whose volume is not ready stays ContainerCreating, retried.
        var resolved: Pod
        do {
            resolved = try await resolveVolumes(pod)
            resolved = try await writeConfigVolumes(resolved)
        } catch let e as VolumeNotReady {
            events.record(pod, type: "Warning", reason: "FailedMount", message: "Unable to attach or mount volumes: \(e)")
            if pod.status?.containerStatuses == nil || pod.status?.condition("Ready")?.reason != "VolumesNotReady" {
                try? await writeStatus(pod, build: { st in
                    st.phase = "Pending"
                    st.containerStatuses = (pod.spec?.containers ?? []).map { c in
                        var cs = ContainerStatus(name: c.name, image: c.image ?? "")
                        cs.state = ContainerState(waiting: ContainerStateWaiting(reason: "ContainerCreating", message: nil))
                        return cs
                    }
                    st.setCondition(PodCondition(type: "Ready", status: "False", reason: "VolumesNotReady", message: "\(e)"), now: KubeTime.format(self.clock.now()))
                })
            }
            return .requeue(after: 2)
        }

        let sandbox: SandboxInfo
        do { sandbox = try await runtime.ensureSandbox(pod, resolvConf: resolvConf(for: pod)) } catch {
            events.record(pod, type: "Warning", reason: "FailedCreatePodSandBox", message: "Failed to create pod sandbox: \(error)")
            try? await writeStatus(pod, build: { st in
                st.phase = "Pending"
                st.setCondition(PodCondition(type: "Ready", status: "False", reason: "SandboxFailed", message: "\(error)"), now: KubeTime.format(self.clock.now()))
            })
            throw error
        }

        let spec = pod.spec!
        let policy = spec.restartPolicy ?? "Always"
        var infos = await runtime.containers(podUID: uid)
        var waiting: [String: ContainerStateWaiting] = [:]
        var wake = config.podResync
        let now = clock.now()

        for c in spec.containers {
            let latest = infos.filter { $0.name == c.name }.max { $0.attempt < $1.attempt }
            if let cur = latest, cur.isRunning {
                if let next = await probe(pod, c, cur, sandbox: sandbox, now: now) { wake = min(wake, next) }
                continue
            }
            var attempt = 0
            if let cur = latest, case .exited(let code, let startedAt, let finishedAt) = cur.state {
                guard Self.shouldRestart(policy, exitCode: code) else { continue }
                attempt = cur.attempt + 1
                // The back-off grows with restarts and resets after 10 minutes of good running.
                let ranLong = finishedAt.timeIntervalSince(startedAt) > 600
                let delay = ranLong ? 0 : backoff(attempt)
                let ready = finishedAt.addingTimeInterval(delay)
                if ready > now {
                    waiting[c.name] = ContainerStateWaiting(reason: "CrashLoopBackOff",
                        message: "back-off \(Int(delay))s restarting failed container=\(c.name) pod=\(pod.name)_\(pod.namespace)(\(uid))")
                    wake = min(wake, ready.timeIntervalSince(now))
                    continue
                }
            }
            if let f = memo(uid, { $0.startFailures[c.name] }), f.until > now {
                waiting[c.name] = ContainerStateWaiting(reason: f.reason, message: f.message)
                wake = min(wake, f.until.timeIntervalSince(now)); continue
            }
            if let f = memo(uid, { $0.pullFailures[c.name] }), f.until > now {
                waiting[c.name] = ContainerStateWaiting(reason: "ImagePullBackOff", message: "Back-off pulling image \"\(c.image ?? "")\": \(f.message)")
                wake = min(wake, f.until.timeIntervalSince(now)); continue
            }
            let image = c.image ?? ""
            do {
                _ = try await runtime.ensureImage(image, policy: c.imagePullPolicy ?? "IfNotPresent", credentials: pullCredentials(pod))
                memo(uid) { _ = $0.pullFailures.removeValue(forKey: c.name) }
            } catch {
                let count = memo(uid) { m -> Int in
                    let n = (m.pullFailures[c.name]?.count ?? 0) + 1
                    m.pullFailures[c.name] = (n, now.addingTimeInterval(backoff(n)), "\(error)")
                    return n
                }
                let never = (error as? ImagePullError)?.neverPull == true
                waiting[c.name] = ContainerStateWaiting(reason: never ? "ErrImageNeverPull" : "ErrImagePull", message: "\(error)")
                events.record(pod, type: "Warning", reason: "Failed", message: "\(error)")
                if count == 1 { events.record(pod, type: "Warning", reason: "Failed", message: "Error: \(never ? "ErrImageNeverPull" : "ErrImagePull")") }
                wake = min(wake, backoff(count)); continue
            }
            // envFrom and valueFrom references become literal values; a missing one waits.
            var container = c
            do {
                let (env, invalid) = try ConfigProjection.environment(c, pod: pod, sources: configSources)
                let api = apiServiceEnvironment().filter { e in !env.contains { $0.name == e.name } }
                container.env = api + env; container.envFrom = nil
                if !invalid.isEmpty && attempt == 0 && memo(uid, { !$0.announced.contains("env/\(c.name)") }) {
                    memo(uid) { _ = $0.announced.insert("env/\(c.name)") }
                    events.record(pod, type: "Warning", reason: "InvalidEnvironmentVariableNames",
                                  message: "Keys [\(invalid.joined(separator: ", "))] from the EnvFrom of container \(c.name) were skipped since they are invalid environment variable names.")
                }
            } catch {
                waiting[c.name] = ContainerStateWaiting(reason: "CreateContainerConfigError", message: "\(error)")
                events.record(pod, type: "Warning", reason: "Failed", message: "Error: \(error)")
                wake = min(wake, 2)
                continue
            }
            do {
                let started = try await runtime.start(resolved, container: container, attempt: attempt, sandbox: sandbox)
                infos.append(started)
                memo(uid) { _ = $0.startFailures.removeValue(forKey: c.name) }
                events.record(pod, reason: "Started", message: "Started container \(c.name)")
                // Keep the previous attempt (lastState, `logs --previous`); remove older ones.
                for old in infos where old.name == c.name && old.attempt < attempt - 1 {
                    do { try await runtime.removeContainer(podUID: uid, containerID: old.id) }
                    catch { logger.warning("removing an old container failed", metadata: ["id": "\(old.id)", "error": "\(error)"]) }
                }
                infos.removeAll { $0.name == c.name && $0.attempt < attempt - 1 }
            } catch {
                let n = memo(uid) { m -> Int in
                    let n = (m.startFailures[c.name]?.count ?? 0) + 1
                    m.startFailures[c.name] = (n, now.addingTimeInterval(backoff(n)), "RunContainerError", "\(error)")
                    return n
                }
                waiting[c.name] = ContainerStateWaiting(reason: "RunContainerError", message: "\(error)")
                events.record(pod, type: "Warning", reason: "Failed", message: "Error: \(error)")
                wake = min(wake, backoff(n))
            }
        }
        try await reportStatus(pod, sandbox: sandbox, containers: infos, waiting: waiting)
        return .requeue(after: max(0.05, wake))
    }

    // MARK: probes

    /// Runs the container's due probes; kills it when liveness or startup fails. Returns seconds
    /// until the next probe is due.
    func probe(_ pod: Pod, _ c: Container, _ info: ContainerInfo, sandbox: SandboxInfo, now: Date) async -> Double? {
        guard case .running(let startedAt) = info.state else { return nil }
        let uid = sandbox.podUID
        var next: Double? = nil
        let startupDone = c.startupProbe == nil || memo(uid, { $0.probes["\(info.id)/startup"]?.result }) == true
        let kinds: [(ProbeKind, Probe?)] = startupDone ? [(.liveness, c.livenessProbe), (.readiness, c.readinessProbe)] : [(.startup, c.startupProbe)]
        for (kind, p) in kinds {
            guard let p else { continue }
            let key = "\(info.id)/\(kind.rawValue)"
            let period = Double(max(1, p.periodSeconds ?? 10))
            let tracker = memo(uid) { $0.probes[key] ?? ProbeTracker() }
            let due = max(startedAt.addingTimeInterval(Double(p.initialDelaySeconds ?? 0)), tracker.lastRun.map { $0.addingTimeInterval(period) } ?? .distantPast)
            if due > now { next = min(next ?? .infinity, due.timeIntervalSince(now)); continue }
            let (ok, message) = await prober.run(p, pod: pod, container: c, containerID: info.id, podIP: sandbox.ip)
            let changed = memo(uid) { m -> Bool in
                var t = m.probes[key] ?? ProbeTracker()
                t.lastRun = clock.now()
                let changed = t.record(ok, message: message, probe: p, kind: kind)
                m.probes[key] = t
                return changed
            }
            next = min(next ?? .infinity, period)
            if !ok { events.record(pod, type: "Warning", reason: "Unhealthy", message: "\(kind.rawValue.capitalized) probe failed: \(message)") }
            let verdict = memo(uid) { $0.probes[key]?.result }
            if changed, verdict == false, kind != .readiness {
                events.record(pod, reason: "Killing", message: "Container \(c.name) failed \(kind.rawValue) probe, will be restarted")
                let grace = Double(p.terminationGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30)
                try? await runtime.stop(podUID: uid, containerID: info.id, grace: grace)
                return 0.05
            }
        }
        return next
    }

    func readiness(_ uid: String, _ c: Container, _ info: ContainerInfo) -> (started: Bool, ready: Bool) {
        guard info.isRunning else { return (false, false) }
        let started = c.startupProbe == nil || memo(uid, { $0.probes["\(info.id)/startup"]?.result }) == true
        guard started else { return (false, false) }
        if c.readinessProbe == nil { return (true, true) }
        return (true, memo(uid, { $0.probes["\(info.id)/readiness"]?.result }) == true)
    }

    // MARK: status

    /// The containerID Kubernetes reports: "<runtime>://<id>" (runc://…, fake://…).
    func containerURI(_ info: ContainerInfo) -> String { "\(runtime.name)://\(info.id)" }

    func terminated(_ info: ContainerInfo) -> ContainerState? {
        guard case .exited(let code, let started, let finished) = info.state else { return nil }
        var t = ContainerStateTerminated(exitCode: code, reason: code == 0 ? "Completed" : "Error",
                                         startedAt: KubeTime.format(started), finishedAt: KubeTime.format(finished))
        t.containerID = containerURI(info)
        if code > 128 { t.signal = code - 128 }
        return ContainerState(terminated: t)
    }

    func reportStatus(_ pod: Pod, sandbox: SandboxInfo, containers: [ContainerInfo], waiting: [String: ContainerStateWaiting]) async throws {
        let uid = sandbox.podUID
        let now = KubeTime.format(clock.now())
        var statuses: [ContainerStatus] = []
        var running = 0, waitingCount = 0, stopped = 0, succeeded = 0
        let policy = pod.spec?.restartPolicy ?? "Always"
        for c in pod.spec?.containers ?? [] {
            var cs = ContainerStatus(name: c.name, image: c.image ?? "")
            let attempts = containers.filter { $0.name == c.name }.sorted { $0.attempt < $1.attempt }
            let latest = attempts.last
            if let latest {
                cs.containerID = containerURI(latest)
                cs.imageID = latest.imageID
                cs.restartCount = latest.attempt
                let rd = readiness(uid, c, latest)
                cs.started = rd.started
                cs.ready = rd.ready
            }
            if let w = waiting[c.name] {
                cs.state = ContainerState(waiting: w)
                // A container waiting to restart counts as stopped (the kubelet's getPhase).
                if let latest, let t = terminated(latest) { cs.lastState = t; stopped += 1 } else { waitingCount += 1 }
            } else if let latest {
                switch latest.state {
                case .running(let started):
                    cs.state = ContainerState(running: ContainerStateRunning(startedAt: KubeTime.format(started)))
                    running += 1
                case .exited(let code, _, _):
                    cs.state = terminated(latest)
                    stopped += 1
                    if code == 0 { succeeded += 1 }
                    // Restarting right now (the next attempt was not started in this pass).
                    if Self.shouldRestart(policy, exitCode: code) { cs.state = ContainerState(waiting: ContainerStateWaiting(reason: "ContainerCreating")); cs.lastState = terminated(latest) }
                }
                if latest.isRunning, attempts.count > 1, let prev = terminated(attempts[attempts.count - 2]) { cs.lastState = prev }
            } else {
                cs.state = ContainerState(waiting: ContainerStateWaiting(reason: "ContainerCreating"))
                waitingCount += 1
            }
            statuses.append(cs)
        }
        // The kubelet's getPhase.
        let phase: String
        if waitingCount > 0 { phase = "Pending" }
        else if running > 0 { phase = "Running" }
        else if stopped > 0 {
            if policy == "Always" { phase = "Running" }
            else if stopped == succeeded, statuses.allSatisfy({ $0.state?.terminated != nil }) { phase = "Succeeded" }
            else if policy == "Never", statuses.allSatisfy({ $0.state?.terminated != nil }) { phase = "Failed" }
            else { phase = "Running" }
        } else { phase = "Pending" }

        try await writeStatus(pod) { st in
            st.phase = phase
            st.podIP = sandbox.ip
            st.podIPs = sandbox.ip.map { [PodIP(ip: $0)] }
            st.hostIP = self.config.address
            st.hostIPs = self.config.address.map { [PodIP(ip: $0)] }
            st.startTime = st.startTime ?? now
            st.containerStatuses = statuses
            st.qosClass = st.qosClass ?? Self.qosClass(pod)
            let unready = statuses.filter { !$0.ready }.map(\.name)
            let ready = unready.isEmpty && phase == "Running"
            let msg = unready.isEmpty ? nil : "containers with unready status: [\(unready.joined(separator: " "))]"
            st.setCondition(PodCondition(type: "PodReadyToStartContainers", status: "True"), now: now)
            st.setCondition(PodCondition(type: "Initialized", status: "True"), now: now)
            st.setCondition(PodCondition(type: "ContainersReady", status: ready ? "True" : "False", reason: ready ? nil : "ContainersNotReady", message: msg), now: now)
            st.setCondition(PodCondition(type: "Ready", status: ready ? "True" : "False", reason: ready ? nil : "ContainersNotReady", message: msg), now: now)
            st.setCondition(PodCondition(type: "PodScheduled", status: "True"), now: now)
        }
    }

    static func qosClass(_ pod: Pod) -> String {
        let cs = pod.spec?.containers ?? []
        let any = cs.contains { !($0.resources?.requests ?? [:]).isEmpty || !($0.resources?.limits ?? [:]).isEmpty }
        if !any { return "BestEffort" }
        let guaranteed = cs.allSatisfy { c in
            let l = c.resources?.limits ?? [:], r = c.resources?.requests ?? l
            return ["cpu", "memory"].allSatisfy { l[$0] != nil && (r[$0] ?? l[$0]) == l[$0] }
        }
        return guaranteed ? "Guaranteed" : "Burstable"
    }

    /// Writes the status built from the pod's current one, if it changed.
    func writeStatus(_ pod: Pod, build: (inout PodStatus) -> Void) async throws {
        var st = pod.status ?? PodStatus()
        build(&st)
        guard st != pod.status else { return }
        var next = pod
        next.status = st
        do { _ = try await client.updateStatus(next) }
        catch let s as Status where s.code == 409 || s.code == 404 {
            // A newer pod object is on its way through the informer; the next pass writes again.
        }
    }

    // MARK: termination

    func startTermination(_ pod: Pod, uid: String, key: String) {
        terminating.withLock { t in
            guard t[uid] == nil else { return }
            t[uid] = Task {
                defer { terminating.withLock { _ = $0.removeValue(forKey: uid) } }
                do { try await terminate(pod, uid: uid, key: key) }
                catch {
                    if Task.isCancelled { return }   // the agent stops; its successor goes on
                    logger.warning("terminating pod failed; retrying", metadata: ["pod": "\(key)", "error": "\(error)"])
                    try? await clock.sleep(for: 1)
                    if !Task.isCancelled { queue.add(key) }
                }
            }
        }
    }

    func terminate(_ pod: Pod, uid: String, key: String) async throws {
        let grace = Double(pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30)
        let deadline = clock.now().addingTimeInterval(grace)
        if grace > 0 { await waitForProxies(pod, until: min(deadline, clock.now().addingTimeInterval(config.drainTimeout))) }
        let running = await runtime.containers(podUID: uid).filter(\.isRunning)
        try await withThrowingTaskGroup(of: Void.self) { g in
            for info in running {
                let spec = pod.spec?.containers.first { $0.name == info.name }
                g.addTask {
                    if let hook = spec?.lifecycle?.preStop, grace > 0 { await self.runPreStop(hook, pod: pod, container: spec!, info: info, deadline: deadline) }
                    self.events.record(pod, reason: "Killing", message: "Stopping container \(info.name)")
                    try await self.runtime.stop(podUID: uid, containerID: info.id, grace: max(0, deadline.timeIntervalSince(self.clock.now())))
                }
            }
            try await g.waitForAll()
        }
        try await runtime.remove(podUID: uid)
        memos.withLock { _ = $0.removeValue(forKey: uid) }
        uids.withLock { m in if m[key] == uid { m.removeValue(forKey: key) } }
        // The node finishes the graceful delete (uid precondition: never a newer pod of the same name).
        var opts = DeleteOptions(gracePeriodSeconds: 0)
        opts.preconditions = Preconditions(uid: uid, resourceVersion: nil)
        do { try await client.delete(Pod.self, pod.name, namespace: pod.namespace, options: opts) }
        catch let s as Status where s.code == 404 || s.code == 409 {}
    }

    /// Holds the pod's SIGTERM until no proxy sends it new connections: its endpoints show it
    /// not ready, and every live node that runs a proxy has applied that EndpointSlice
    /// revision (each publishes it on its Lease). Bounded by `until`.
    func waitForProxies(_ pod: Pod, until: Date) async {
        guard let ip = pod.status?.podIP, !ip.isEmpty else { return }
        let started = clock.now()
        var leaseCheck = Date.distantPast
        while clock.now() < until {
            let mine = proxy.slices.list().filter { s in s.endpoints.contains { $0.addresses.contains(ip) && ($0.targetRef?.uid == nil || $0.targetRef?.uid == pod.metadata.uid) } }
            if mine.isEmpty { return }   // behind no Service
            let stillReady = mine.contains { s in s.endpoints.contains { $0.addresses.contains(ip) && $0.conditions?.ready != false } }
            if !stillReady && clock.now() >= leaseCheck {
                let needed = mine.compactMap { $0.metadata.resourceVersion.flatMap { Int64($0) } }.max() ?? 0
                leaseCheck = clock.now().addingTimeInterval(0.1)
                if let leases = try? await client.list(Lease.self, namespace: "kube-node-lease") {
                    let now = clock.now()
                    var behind = leases.items.filter { l in
                        guard let v = l.metadata.annotations?[Self.proxySyncedAnnotation], let rev = Int64(v) else { return false }
                        return rev < needed
                    }
                    // A node silent for a few seconds is waited for only while the control plane
                    // still counts it Ready: a slow one (a loaded VM can miss renewals for 6 s)
                    // still routes, a dead one is let go once it is marked NotReady.
                    let silent = Set(behind.filter { l in KubeTime.parse(l.spec?.renewTime).map { now.timeIntervalSince($0) >= 5 } ?? true }.map(\.name))
                    if !silent.isEmpty {
                        let ready = Set(((try? await client.list(Node.self))?.items ?? []).filter(\.isReady).map(\.name))
                        behind.removeAll { silent.contains($0.name) && !ready.contains($0.name) }
                    }
                    if behind.isEmpty {
                        logger.debug("proxies drained", metadata: ["pod": "\(pod.namespace)/\(pod.name)", "seconds": "\(now.timeIntervalSince(started))"])
                        return
                    }
                }
            }
            try? await clock.sleep(for: 0.05)
        }
        logger.info("stopping a pod before every proxy confirmed it gone", metadata: ["pod": "\(pod.namespace)/\(pod.name)"])
    }

    func resolvConf(for pod: Pod) -> String {
        let addr = config.proxy.dnsEnabled ? proxy.dnsAddress : config.proxy.dnsAddress
        return PodDNS.resolvConf(pod, cluster: ClusterDNSSettings(address: addr, domain: config.proxy.domain), hostResolvConf: config.hostResolvConf)
    }

    func runPreStop(_ hook: LifecycleHandler, pod: Pod, container: Container, info: ContainerInfo, deadline: Date) async {
        let left = max(0.1, deadline.timeIntervalSince(clock.now()))
        if let s = hook.sleep { try? await clock.sleep(for: min(Double(s.seconds), left)); return }
        var p = Probe()
        p.exec = hook.exec; p.httpGet = hook.httpGet; p.tcpSocket = hook.tcpSocket
        p.timeoutSeconds = Int(left.rounded(.up))
        let (ok, message) = await prober.run(p, pod: pod, container: container, containerID: info.id, podIP: pod.status?.podIP)
        if !ok { events.record(pod, type: "Warning", reason: "FailedPreStopHook", message: "PreStop hook for container \(container.name) failed: \(message)") }
    }
}
