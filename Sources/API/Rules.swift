// Defaulting and validation per kind, following Kubernetes' documented defaults and rules for
// the fields this cluster supports. Errors carry the field path.
import Foundation

/// A kind the apiserver serves: defaulting, validation and the fields field selectors can use.
public protocol ServedKind: KubeObject {
    mutating func applyDefaults()
    /// What the apiserver adds to a new object only (finalizers that protect it, say).
    mutating func admitCreate()
    func validate() -> [FieldError]
    func validateUpdate(old: Self) -> [FieldError]
    var selectableFields: [String: String] { get }
}

extension ServedKind {
    public mutating func applyDefaults() {}
    public mutating func admitCreate() {}
    public func validate() -> [FieldError] { Validation.metadata(metadata, namespaced: Self.resource.namespaced) }
    public func validateUpdate(old: Self) -> [FieldError] { [] }
    public var selectableFields: [String: String] { baseFields }
    public var baseFields: [String: String] {
        var f = ["metadata.name": name]
        if Self.resource.namespaced { f["metadata.namespace"] = namespace }
        return f
    }
}

extension Namespace: ServedKind {
    public mutating func applyDefaults() {
        if spec == nil { spec = NamespaceSpec(finalizers: ["kubernetes"]) }
        if status?.phase == nil { status = NamespaceStatus(phase: "Active", conditions: status?.conditions) }
    }
    public func validate() -> [FieldError] { Validation.metadata(metadata, namespaced: false, nameIsLabel: true) }
    public var selectableFields: [String: String] { baseFields.merging(["status.phase": status?.phase ?? ""]) { $1 } }
}

extension Probe {
    mutating func applyDefaults() {
        timeoutSeconds = timeoutSeconds ?? 1; periodSeconds = periodSeconds ?? 10
        successThreshold = successThreshold ?? 1; failureThreshold = failureThreshold ?? 3
        if httpGet != nil { httpGet!.scheme = httpGet!.scheme ?? "HTTP"; httpGet!.path = httpGet!.path ?? "/" }
    }
    func validate(_ path: String, readiness: Bool) -> [FieldError] {
        var errs: [FieldError] = []
        let handlers = [exec != nil, httpGet != nil, tcpSocket != nil, grpc != nil].filter { $0 }.count
        if handlers == 0 { errs.append(.init(.required, path, "must specify a handler type")) }
        if handlers > 1 { errs.append(.init(.forbidden, path, "may not specify more than 1 handler type")) }
        if let e = exec, (e.command ?? []).isEmpty { errs.append(.init(.required, "\(path).exec.command", "")) }
        if let h = httpGet { errs += validatePort(h.port, "\(path).httpGet.port") }
        if let t = tcpSocket { errs += validatePort(t.port, "\(path).tcpSocket.port") }
        for (v, n) in [(initialDelaySeconds, "initialDelaySeconds"), (timeoutSeconds, "timeoutSeconds"), (periodSeconds, "periodSeconds"), (successThreshold, "successThreshold"), (failureThreshold, "failureThreshold")] {
            if let v, v < 0 { errs.append(.init(.invalid, "\(path).\(n)", "\(v): must be greater than or equal to 0")) }
        }
        if !readiness, let s = successThreshold, s != 1 { errs.append(.init(.invalid, "\(path).successThreshold", "\(s): must be 1")) }
        return errs
    }
}

func validatePort(_ p: IntOrString, _ path: String) -> [FieldError] {
    switch p {
    case .int(let i): return (1...65535).contains(i) ? [] : [.init(.invalid, path, "\(i): must be between 1 and 65535, inclusive")]
    case .string(let s): return Validation.dns1123Label(s) == nil && s.count <= 15 ? [] : [.init(.invalid, path, "\"\(s)\": must be a valid port name (at most 15 lower-case alphanumerics or '-')")]
    }
}

extension Container {
    mutating func applyDefaults() {
        if imagePullPolicy == nil {
            let img = image ?? ""
            let last = img.split(separator: "/").last.map(String.init) ?? img
            imagePullPolicy = (!last.contains(":") && !img.contains("@")) || last.hasSuffix(":latest") ? "Always" : "IfNotPresent"
        }
        terminationMessagePath = terminationMessagePath ?? "/dev/termination-log"
        terminationMessagePolicy = terminationMessagePolicy ?? "File"
        if ports != nil { for i in ports!.indices { ports![i].protocol = ports![i].protocol ?? "TCP" } }
        livenessProbe?.applyDefaults(); readinessProbe?.applyDefaults(); startupProbe?.applyDefaults()
    }
    func validate(_ path: String, volumes: Set<String>) -> [FieldError] {
        var errs: [FieldError] = []
        if let e = Validation.dns1123Label(name) { errs.append(.init(.invalid, "\(path).name", "\"\(name)\": \(e)")) }
        if (image ?? "").trimmingCharacters(in: .whitespaces).isEmpty { errs.append(.init(.required, "\(path).image", "")) }
        if let p = imagePullPolicy, !["Always", "IfNotPresent", "Never"].contains(p) {
            errs.append(.init(.notSupported, "\(path).imagePullPolicy", "\"\(p)\": supported values: \"Always\", \"IfNotPresent\", \"Never\""))
        }
        var portNames = Set<String>()
        for (i, p) in (ports ?? []).enumerated() {
            if !(1...65535).contains(p.containerPort) { errs.append(.init(.invalid, "\(path).ports[\(i)].containerPort", "\(p.containerPort): must be between 1 and 65535, inclusive")) }
            if let h = p.hostPort, !(0...65535).contains(h) { errs.append(.init(.invalid, "\(path).ports[\(i)].hostPort", "\(h): must be between 1 and 65535, inclusive")) }
            if let pr = p.protocol, !["TCP", "UDP", "SCTP"].contains(pr) { errs.append(.init(.notSupported, "\(path).ports[\(i)].protocol", "\"\(pr)\": supported values: \"SCTP\", \"TCP\", \"UDP\"")) }
            if let n = p.name {
                if !portNames.insert(n).inserted { errs.append(.init(.duplicate, "\(path).ports[\(i)].name", "\"\(n)\"")) }
            }
        }
        for (i, e) in (env ?? []).enumerated() {
            let f = "\(path).env[\(i)]"
            if e.name.isEmpty { errs.append(.init(.required, "\(f).name", "")) }
            else if let why = Validation.envVarName(e.name) { errs.append(.init(.invalid, "\(f).name", "\"\(e.name)\": \(why)")) }
            if let from = e.valueFrom {
                if e.value != nil && e.value != "" { errs.append(.init(.invalid, "\(f).valueFrom", "may not be specified when `value` is not empty")) }
                let kinds = ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"].filter { from[$0] != nil }
                if kinds.count != 1 { errs.append(.init(.invalid, "\(f).valueFrom", "may not have more than one field specified at a time")) }
                for k in ["configMapKeyRef", "secretKeyRef"] {
                    guard let r = from[k] else { continue }
                    if (r["name"]?.stringValue ?? "").isEmpty { errs.append(.init(.required, "\(f).valueFrom.\(k).name", "")) }
                    if let key = r["key"]?.stringValue, !key.isEmpty {
                        if let why = Validation.configKey(key) { errs.append(.init(.invalid, "\(f).valueFrom.\(k).key", "\"\(key)\": \(why)")) }
                    } else { errs.append(.init(.required, "\(f).valueFrom.\(k).key", "")) }
                }
                if let r = from["resourceFieldRef"], let res = r["resource"]?.stringValue,
                   !["limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage"].contains(res) {
                    errs.append(.init(.notSupported, "\(f).valueFrom.resourceFieldRef.resource", "\"\(res)\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\""))
                }
            }
        }
        for (i, src) in (envFrom?.arrayValue ?? []).enumerated() {
            let f = "\(path).envFrom[\(i)]"
            let refs = ["configMapRef", "secretRef"].filter { src[$0] != nil }
            if refs.count != 1 { errs.append(.init(.invalid, f, "must specify one of: `configMapRef` or `secretRef`")); continue }
            if (src[refs[0]]?["name"]?.stringValue ?? "").isEmpty { errs.append(.init(.required, "\(f).\(refs[0]).name", "")) }
            if let p = src["prefix"]?.stringValue, !p.isEmpty, let why = Validation.envVarName(p) { errs.append(.init(.invalid, "\(f).prefix", "\"\(p)\": \(why)")) }
        }
        for (i, m) in (volumeMounts ?? []).enumerated() {
            if !volumes.contains(m.name) { errs.append(.init(.notFound, "\(path).volumeMounts[\(i)].name", "\"\(m.name)\"")) }
            if !m.mountPath.hasPrefix("/") { errs.append(.init(.invalid, "\(path).volumeMounts[\(i)].mountPath", "\"\(m.mountPath)\": must be an absolute path")) }
        }
        if let r = resources {
            for (k, q) in r.requests ?? [:] {
                if q.milli < 0 { errs.append(.init(.invalid, "\(path).resources.requests[\(k)]", "\"\(q)\": must be greater than or equal to 0")) }
                if let l = r.limits?[k], q > l { errs.append(.init(.invalid, "\(path).resources.requests", "\"\(q)\": must be less than or equal to \(k) limit of \(l)")) }
            }
            for (k, q) in r.limits ?? [:] where q.milli < 0 { errs.append(.init(.invalid, "\(path).resources.limits[\(k)]", "\"\(q)\": must be greater than or equal to 0")) }
        }
        if let p = livenessProbe { errs += p.validate("\(path).livenessProbe", readiness: false) }
        if let p = readinessProbe { errs += p.validate("\(path).readinessProbe", readiness: true) }
        if let p = startupProbe { errs += p.validate("\(path).startupProbe", readiness: false) }
        return errs
    }
}


extension PodSpec {
    public mutating func applyDefaults() {
        restartPolicy = restartPolicy ?? "Always"
        terminationGracePeriodSeconds = terminationGracePeriodSeconds ?? 30
        dnsPolicy = dnsPolicy ?? "ClusterFirst"
        schedulerName = schedulerName ?? "default-scheduler"
        securityContext = securityContext ?? .object([:])
        enableServiceLinks = enableServiceLinks ?? true
        for i in containers.indices { containers[i].applyDefaults() }
        if initContainers != nil { for i in initContainers!.indices { initContainers![i].applyDefaults() } }
        if serviceAccount != nil && serviceAccountName == nil { serviceAccountName = serviceAccount }
    }
    /// configMap, secret, downwardAPI and projected volumes: items' paths stay inside the
    /// volume, modes are file modes, references are named.
    static func validateProjection(_ v: Volume, _ f: String) -> [FieldError] {
        var errs: [FieldError] = []
        func mode(_ j: JSONValue?, _ field: String) {
            guard let j else { return }
            if let m = j.intValue, (0...0o777).contains(m) { return }
            errs.append(.init(.invalid, field, "\(j): must be a number between 0 and 0777 (octal), both inclusive"))
        }
        func items(_ list: JSONValue?, _ field: String, keyed: Bool) {
            var seen = Set<String>()
            for (i, it) in (list?.arrayValue ?? []).enumerated() {
                let p = it["path"]?.stringValue ?? ""
                if let why = Validation.volumePath(p) { errs.append(.init(p.isEmpty ? .required : .invalid, "\(field)[\(i)].path", p.isEmpty ? "" : "\"\(p)\": \(why)")) }
                else if !seen.insert(p).inserted { errs.append(.init(.duplicate, "\(field)[\(i)].path", "\"\(p)\"")) }
                if keyed, (it["key"]?.stringValue ?? "").isEmpty { errs.append(.init(.required, "\(field)[\(i)].key", "")) }
                if !keyed, it["fieldRef"] == nil && it["resourceFieldRef"] == nil { errs.append(.init(.required, "\(field)[\(i)]", "must specify fieldRef or resourceFieldRef")) }
                mode(it["mode"], "\(field)[\(i)].mode")
            }
        }
        if let cm = v.configMap {
            if (cm["name"]?.stringValue ?? "").isEmpty { errs.append(.init(.required, "\(f).configMap.name", "")) }
            items(cm["items"], "\(f).configMap.items", keyed: true); mode(cm["defaultMode"], "\(f).configMap.defaultMode")
        }
        if let s = v.secret {
            if (s["secretName"]?.stringValue ?? "").isEmpty { errs.append(.init(.required, "\(f).secret.secretName", "")) }
            items(s["items"], "\(f).secret.items", keyed: true); mode(s["defaultMode"], "\(f).secret.defaultMode")
        }
        if let d = v.downwardAPI { items(d["items"], "\(f).downwardAPI.items", keyed: false); mode(d["defaultMode"], "\(f).downwardAPI.defaultMode") }
        if let p = v.projected {
            mode(p["defaultMode"], "\(f).projected.defaultMode")
            for (i, src) in (p["sources"]?.arrayValue ?? []).enumerated() {
                let sf = "\(f).projected.sources[\(i)]"
                if let cm = src["configMap"] { items(cm["items"], "\(sf).configMap.items", keyed: true) }
                if let s = src["secret"] { items(s["items"], "\(sf).secret.items", keyed: true) }
                if let d = src["downwardAPI"] { items(d["items"], "\(sf).downwardAPI.items", keyed: false) }
                if let t = src["serviceAccountToken"], let p = t["path"]?.stringValue, let why = Validation.volumePath(p) {
                    errs.append(.init(.invalid, "\(sf).serviceAccountToken.path", "\"\(p)\": \(why)"))
                }
            }
        }
        return errs
    }

    public func validate(_ path: String) -> [FieldError] {
        var errs: [FieldError] = []
        var volumeNames = Set<String>()
        for (i, v) in (volumes ?? []).enumerated() {
            if let e = Validation.dns1123Label(v.name) { errs.append(.init(.invalid, "\(path).volumes[\(i)].name", "\"\(v.name)\": \(e)")) }
            if !volumeNames.insert(v.name).inserted { errs.append(.init(.duplicate, "\(path).volumes[\(i)].name", "\"\(v.name)\"")) }
            if let h = v.hostPath, !h.path.hasPrefix("/") { errs.append(.init(.invalid, "\(path).volumes[\(i)].hostPath.path", "\"\(h.path)\": must be an absolute path")) }
            errs += Self.validateProjection(v, "\(path).volumes[\(i)]")
            if v.persistentVolumeClaim != nil {
                let n = v.claimName ?? ""
                if n.isEmpty { errs.append(.init(.required, "\(path).volumes[\(i)].persistentVolumeClaim.claimName", "")) }
                else if let e = Validation.dns1123Subdomain(n) { errs.append(.init(.invalid, "\(path).volumes[\(i)].persistentVolumeClaim.claimName", "\"\(n)\": \(e)")) }
            }
        }
        if containers.isEmpty { errs.append(.init(.required, "\(path).containers", "")) }
        var names = Set<String>()
        for (i, c) in containers.enumerated() {
            errs += c.validate("\(path).containers[\(i)]", volumes: volumeNames)
            if !names.insert(c.name).inserted { errs.append(.init(.duplicate, "\(path).containers[\(i)].name", "\"\(c.name)\"")) }
        }
        for (i, c) in (initContainers ?? []).enumerated() {
            errs += c.validate("\(path).initContainers[\(i)]", volumes: volumeNames)
            if !names.insert(c.name).inserted { errs.append(.init(.duplicate, "\(path).initContainers[\(i)].name", "\"\(c.name)\"")) }
        }
        if let r = restartPolicy, !["Always", "OnFailure", "Never"].contains(r) {
            errs.append(.init(.notSupported, "\(path).restartPolicy", "\"\(r)\": supported values: \"Always\", \"OnFailure\", \"Never\""))
        }
        if let g = terminationGracePeriodSeconds, g < 0 { errs.append(.init(.invalid, "\(path).terminationGracePeriodSeconds", "\(g): must be greater than or equal to 0")) }
        if let d = activeDeadlineSeconds, d <= 0 { errs.append(.init(.invalid, "\(path).activeDeadlineSeconds", "\(d): must be between 1 and 2147483647, inclusive")) }
        for (i, t) in (tolerations ?? []).enumerated() {
            if let op = t.operator, !["Exists", "Equal"].contains(op) { errs.append(.init(.notSupported, "\(path).tolerations[\(i)].operator", "\"\(op)\": supported values: \"Equal\", \"Exists\"")) }
            if t.operator == "Exists", let v = t.value, !v.isEmpty { errs.append(.init(.invalid, "\(path).tolerations[\(i)].operator", "value must be empty when `operator` is 'Exists'")) }
            if let e = t.effect, !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(e) { errs.append(.init(.notSupported, "\(path).tolerations[\(i)].effect", "\"\(e)\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"")) }
        }
        for (k, v) in nodeSelector ?? [:] {
            if let e = Validation.qualifiedName(k) { errs.append(.init(.invalid, "\(path).nodeSelector", "\"\(k)\": \(e)")) }
            if let e = Validation.labelValue(v) { errs.append(.init(.invalid, "\(path).nodeSelector", "\"\(v)\": \(e)")) }
        }
        errs += validateDNS(path)
        return errs
    }

    func validateDNS(_ path: String) -> [FieldError] {
        var errs: [FieldError] = []
        let policies = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
        if let d = dnsPolicy, !policies.contains(d) {
            errs.append(.init(.notSupported, "\(path).dnsPolicy", "\"\(d)\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""))
        }
        let servers = dnsConfig?["nameservers"]?.arrayValue ?? []
        if dnsPolicy == "None" && servers.isEmpty {
            errs.append(.init(.required, "\(path).dnsConfig.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"))
        }
        if servers.count > 3 { errs.append(.init(.invalid, "\(path).dnsConfig.nameservers", "must not have more than 3 nameservers")) }
        for (i, s) in servers.enumerated() where s.stringValue.flatMap(IPv4.init) == nil {
            errs.append(.init(.invalid, "\(path).dnsConfig.nameservers[\(i)]", "\(s): must be a valid IPv4 address"))
        }
        let searches = dnsConfig?["searches"]?.arrayValue ?? []
        if searches.count > 32 { errs.append(.init(.invalid, "\(path).dnsConfig.searches", "must not have more than 32 search paths")) }
        for (i, s) in searches.enumerated() {
            guard let v = s.stringValue, Validation.dns1123Subdomain(v.hasSuffix(".") ? String(v.dropLast()) : v) == nil else {
                errs.append(.init(.invalid, "\(path).dnsConfig.searches[\(i)]", "\(s): must be a valid DNS subdomain")); continue
            }
        }
        for (i, o) in (dnsConfig?["options"]?.arrayValue ?? []).enumerated() where (o["name"]?.stringValue ?? "").isEmpty {
            errs.append(.init(.required, "\(path).dnsConfig.options[\(i)].name", "must not be empty"))
        }
        return errs
    }
}

extension Pod: ServedKind {
    public mutating func applyDefaults() {
        spec?.applyDefaults()
        if status == nil { status = PodStatus(phase: "Pending") }
        if status?.phase == nil { status?.phase = "Pending" }
        if status?.qosClass == nil, let s = spec { status?.qosClass = Pod.qosClass(s) }
    }
    static func qosClass(_ s: PodSpec) -> String {
        var anyRequest = false, guaranteed = true
        for c in s.containers {
            let req = c.resources?.requests ?? [:], lim = c.resources?.limits ?? [:]
            if !req.isEmpty || !lim.isEmpty { anyRequest = true }
            for r in ["cpu", "memory"] {
                guard let l = lim[r] else { guaranteed = false; continue }
                if let q = req[r], q != l { guaranteed = false }
            }
        }
        if !anyRequest { return "BestEffort" }
        return guaranteed ? "Guaranteed" : "Burstable"
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        errs += spec.validate("spec")
        return errs
    }
    public func validateUpdate(old: Pod) -> [FieldError] {
        guard var a = spec, var b = old.spec else { return [] }
        // Kubernetes lets only images, activeDeadlineSeconds and added tolerations change.
        for i in a.containers.indices { a.containers[i].image = nil }
        for i in b.containers.indices { b.containers[i].image = nil }
        a.activeDeadlineSeconds = nil; b.activeDeadlineSeconds = nil
        a.tolerations = nil; b.tolerations = nil
        if old.spec?.nodeName == nil || old.spec?.nodeName == "" { a.nodeName = b.nodeName }
        if a != b {
            return [.init(.forbidden, "spec", "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")]
        }
        return []
    }
    public var selectableFields: [String: String] {
        var f = baseFields
        f["spec.nodeName"] = spec?.nodeName ?? ""
        f["spec.schedulerName"] = spec?.schedulerName ?? ""
        f["spec.restartPolicy"] = spec?.restartPolicy ?? ""
        f["spec.serviceAccountName"] = spec?.serviceAccountName ?? ""
        f["status.phase"] = status?.phase ?? ""
        f["status.podIP"] = status?.podIP ?? ""
        f["status.nominatedNodeName"] = status?.nominatedNodeName ?? ""
        return f
    }
}

extension Node: ServedKind {
    public var selectableFields: [String: String] { baseFields.merging(["spec.unschedulable": (spec?.unschedulable ?? false) ? "true" : "false"]) { $1 } }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: false)
        for (i, t) in (spec?.taints ?? []).enumerated() {
            if let e = Validation.qualifiedName(t.key) { errs.append(.init(.invalid, "spec.taints[\(i)].key", "\"\(t.key)\": \(e)")) }
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(t.effect) { errs.append(.init(.notSupported, "spec.taints[\(i)].effect", "\"\(t.effect)\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"")) }
        }
        errs += Self.validateAddresses(status?.addresses ?? [])
        return errs
    }

    /// What a node reports as its addresses is used to reach its agent (logs, exec, stats): each
    /// must be an IP address for the IP types and a DNS name for the others, and none repeated.
    static func validateAddresses(_ addrs: [NodeAddress]) -> [FieldError] {
        var errs: [FieldError] = [], seen = Set<NodeAddress>()
        for (i, a) in addrs.enumerated() {
            let f = "status.addresses[\(i)]"
            switch a.type {
            case "InternalIP", "ExternalIP":
                if !Validation.isIPAddress(a.address) { errs.append(.init(.invalid, "\(f).address", "\"\(a.address)\": must be a valid IP address")) }
            case "Hostname", "InternalDNS", "ExternalDNS":
                if let e = Validation.dns1123Subdomain(a.address) { errs.append(.init(.invalid, "\(f).address", "\"\(a.address)\": \(e)")) }
            default:
                errs.append(.init(.notSupported, "\(f).type", "\"\(a.type)\": supported values: \"ExternalDNS\", \"ExternalIP\", \"Hostname\", \"InternalDNS\", \"InternalIP\""))
            }
            if !seen.insert(a).inserted { errs.append(.init(.duplicate, f, "{\"type\": \"\(a.type)\", \"address\": \"\(a.address)\"}")) }
        }
        return errs
    }
}

extension Service: ServedKind {
    public var isHeadless: Bool { spec?.clusterIP == "None" }
    /// Whether the type needs a cluster IP from the allocator (headless and ExternalName do not).
    public var wantsClusterIP: Bool { spec?.type != "ExternalName" && !isHeadless }
    public var wantsNodePorts: Bool { spec?.type == "NodePort" || spec?.type == "LoadBalancer" }

    public mutating func applyDefaults() {
        if spec == nil { spec = ServiceSpec() }
        spec!.type = spec!.type ?? "ClusterIP"
        spec!.sessionAffinity = spec!.sessionAffinity ?? "None"
        if spec!.sessionAffinity == "ClientIP", spec!.sessionAffinityConfig == nil {
            spec!.sessionAffinityConfig = .object(["clientIP": .object(["timeoutSeconds": .int(10800)])])
        }
        if spec!.ports != nil {
            for i in spec!.ports!.indices {
                spec!.ports![i].protocol = spec!.ports![i].protocol ?? "TCP"
                spec!.ports![i].targetPort = spec!.ports![i].targetPort ?? .int(spec!.ports![i].port)
            }
        }
        if spec!.type != "ExternalName" {
            spec!.internalTrafficPolicy = spec!.internalTrafficPolicy ?? "Cluster"
            spec!.ipFamilies = spec!.ipFamilies ?? ["IPv4"]
            spec!.ipFamilyPolicy = spec!.ipFamilyPolicy ?? "SingleStack"
            if let ip = spec!.clusterIP, !ip.isEmpty, spec!.clusterIPs == nil { spec!.clusterIPs = [ip] }
            if (spec!.clusterIP ?? "").isEmpty, let first = spec!.clusterIPs?.first { spec!.clusterIP = first }
        }
        if wantsNodePorts { spec!.externalTrafficPolicy = spec!.externalTrafficPolicy ?? "Cluster" }
        if status == nil { status = .object(["loadBalancer": .object([:])]) }
    }

    public var affinityTimeout: Int? {
        guard spec?.sessionAffinity == "ClientIP" else { return nil }
        if case .int(let t)? = spec?.sessionAffinityConfig?["clientIP"]?["timeoutSeconds"] { return Int(t) }
        return 10800
    }

    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true, nameIsLabel: true)
        let ports = spec?.ports ?? []
        let type = spec?.type ?? "ClusterIP"
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(type) {
            errs.append(.init(.notSupported, "spec.type", "\"\(type)\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""))
        }
        if ports.isEmpty && type != "ExternalName" && spec?.clusterIP != "None" { errs.append(.init(.required, "spec.ports", "")) }
        if type == "ExternalName" {
            let n = spec?.externalName ?? ""
            if n.isEmpty { errs.append(.init(.required, "spec.externalName", "")) }
            else if let e = Validation.dns1123Subdomain(n.hasSuffix(".") ? String(n.dropLast()) : n) { errs.append(.init(.invalid, "spec.externalName", "\"\(n)\": \(e)")) }
        }
        if let ip = spec?.clusterIP, !ip.isEmpty, ip != "None" {
            if type == "ExternalName" { errs.append(.init(.forbidden, "spec.clusterIP", "may not be set for ExternalName services")) }
            else if IPv4(ip) == nil { errs.append(.init(.invalid, "spec.clusterIP", "\"\(ip)\": must be a valid IPv4 address or None")) }
        }
        if let ips = spec?.clusterIPs, let first = ips.first, let ip = spec?.clusterIP, !ip.isEmpty, first != ip {
            errs.append(.init(.invalid, "spec.clusterIPs[0]", "\"\(first)\": must match spec.clusterIP \"\(ip)\""))
        }
        if (spec?.clusterIPs?.count ?? 0) > 1 { errs.append(.init(.invalid, "spec.clusterIPs", "only IPv4 single-stack services are supported")) }
        if spec?.clusterIP == "None" && (type == "NodePort" || type == "LoadBalancer") {
            errs.append(.init(.invalid, "spec.clusterIP", "\"None\": may not be None for \(type) services"))
        }
        if let a = spec?.sessionAffinity, !["None", "ClientIP"].contains(a) {
            errs.append(.init(.notSupported, "spec.sessionAffinity", "\"\(a)\": supported values: \"ClientIP\", \"None\""))
        }
        if let t = affinityTimeout, !(1...86400).contains(t) {
            errs.append(.init(.invalid, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "\(t): must be greater than 0 and less than 86400"))
        }
        for (i, ip) in (spec?.externalIPs ?? []).enumerated() where IPv4(ip) == nil {
            errs.append(.init(.invalid, "spec.externalIPs[\(i)]", "\"\(ip)\": must be a valid IPv4 address"))
        }
        var names = Set<String>()
        var seen = Set<String>()
        for (i, p) in ports.enumerated() {
            if !(1...65535).contains(p.port) { errs.append(.init(.invalid, "spec.ports[\(i)].port", "\(p.port): must be between 1 and 65535, inclusive")) }
            if let t = p.targetPort { errs += validatePort(t, "spec.ports[\(i)].targetPort") }
            if ports.count > 1 && (p.name ?? "").isEmpty { errs.append(.init(.required, "spec.ports[\(i)].name", "")) }
            if let n = p.name, !n.isEmpty {
                if !names.insert(n).inserted { errs.append(.init(.duplicate, "spec.ports[\(i)].name", "\"\(n)\"")) }
                else if let e = Validation.dns1123Label(n) { errs.append(.init(.invalid, "spec.ports[\(i)].name", "\"\(n)\": \(e)")) }
            }
            let proto = p.protocol ?? "TCP"
            if !["TCP", "UDP", "SCTP"].contains(proto) { errs.append(.init(.notSupported, "spec.ports[\(i)].protocol", "\"\(proto)\": supported values: \"SCTP\", \"TCP\", \"UDP\"")) }
            if !seen.insert("\(proto)/\(p.port)").inserted { errs.append(.init(.duplicate, "spec.ports[\(i)]", "{Port:\(p.port) Protocol:\(proto)}")) }
            if let np = p.nodePort, np != 0 {
                if !(type == "NodePort" || type == "LoadBalancer") { errs.append(.init(.forbidden, "spec.ports[\(i)].nodePort", "may not be used when `type` is '\(type)'")) }
                else if !(1...65535).contains(np) { errs.append(.init(.invalid, "spec.ports[\(i)].nodePort", "\(np): must be between 1 and 65535, inclusive")) }
            }
        }
        return errs
    }

    public func validateUpdate(old: Service) -> [FieldError] {
        var errs: [FieldError] = []
        // A cluster IP, once assigned, stays until the Service goes (clients and DNS hold it).
        let was = old.spec?.clusterIP ?? "", now = spec?.clusterIP ?? ""
        if !was.isEmpty, was != now, old.spec?.type != "ExternalName", spec?.type != "ExternalName" {
            errs.append(.init(.invalid, "spec.clusterIPs[0]", "\"\(now)\": may not change once set"))
        }
        return errs
    }
}

extension Endpoints: ServedKind {}

extension EndpointSlice: ServedKind {
    public mutating func applyDefaults() {
        if ports != nil { for i in ports!.indices { ports![i].protocol = ports![i].protocol ?? "TCP"; ports![i].name = ports![i].name ?? "" } }
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        if !["IPv4", "IPv6", "FQDN"].contains(addressType) {
            errs.append(.init(.notSupported, "addressType", "\"\(addressType)\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""))
        }
        if endpoints.count > 1000 { errs.append(.init(.tooLong, "endpoints", "must have at most 1000 items")) }
        for (i, e) in endpoints.enumerated() {
            if e.addresses.isEmpty || e.addresses.count > 100 { errs.append(.init(.invalid, "endpoints[\(i)].addresses", "must contain between 1 and 100 addresses")) }
            for (j, a) in e.addresses.enumerated() where addressType == "IPv4" && IPv4(a) == nil {
                errs.append(.init(.invalid, "endpoints[\(i)].addresses[\(j)]", "\"\(a)\": must be a valid IPv4 address"))
            }
            if let h = e.hostname, let m = Validation.dns1123Label(h) { errs.append(.init(.invalid, "endpoints[\(i)].hostname", "\"\(h)\": \(m)")) }
        }
        for (i, p) in (ports ?? []).enumerated() {
            if let n = p.port, !(1...65535).contains(n) { errs.append(.init(.invalid, "ports[\(i)].port", "\(n): must be between 1 and 65535, inclusive")) }
            if let pr = p.protocol, !["TCP", "UDP", "SCTP"].contains(pr) { errs.append(.init(.notSupported, "ports[\(i)].protocol", "\"\(pr)\": supported values: \"SCTP\", \"TCP\", \"UDP\"")) }
        }
        return errs
    }
    public func validateUpdate(old: EndpointSlice) -> [FieldError] {
        addressType == old.addressType ? [] : [.init(.invalid, "addressType", "\"\(addressType)\": field is immutable")]
    }
}
/// The most a ConfigMap's or Secret's data may hold (Kubernetes: 1 MiB).
let maxConfigBytes = 1024 * 1024

extension ConfigMap: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        var total = 0
        for k in (data ?? [:]).keys.sorted() {
            if let why = Validation.configKey(k) { errs.append(.init(.invalid, "data[\(k)]", "\"\(k)\": \(why)")) }
            total += data![k]!.utf8.count
        }
        for k in (binaryData ?? [:]).keys.sorted() {
            if let why = Validation.configKey(k) { errs.append(.init(.invalid, "binaryData[\(k)]", "\"\(k)\": \(why)")) }
            if data?[k] != nil { errs.append(.init(.invalid, "binaryData[\(k)]", "\"\(k)\": duplicate of key present in data")) }
            total += Data(base64Encoded: binaryData![k]!)?.count ?? binaryData![k]!.utf8.count
        }
        if total > maxConfigBytes { errs.append(.init(.tooLong, "data", "must have at most \(maxConfigBytes) bytes")) }
        return errs
    }
    public func validateUpdate(old: ConfigMap) -> [FieldError] {
        if old.immutable == true && (data != old.data || binaryData != old.binaryData || immutable != true) {
            return [.init(.forbidden, "data", "field is immutable when `immutable` is set")]
        }
        return []
    }
}
extension Secret: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        var total = 0
        for k in (data ?? [:]).keys.sorted() {
            if let why = Validation.configKey(k) { errs.append(.init(.invalid, "data[\(k)]", "\"\(k)\": \(why)")) }
            guard let bytes = Data(base64Encoded: data![k]!) else { errs.append(.init(.invalid, "data[\(k)]", "not valid base64")); continue }
            total += bytes.count
        }
        if total > maxConfigBytes { errs.append(.init(.tooLong, "data", "must have at most \(maxConfigBytes) bytes")) }
        if type == "kubernetes.io/dockerconfigjson", data?[".dockerconfigjson"] == nil {
            errs.append(.init(.required, "data[.dockerconfigjson]", ""))
        }
        return errs
    }
    public func validateUpdate(old: Secret) -> [FieldError] {
        var errs: [FieldError] = []
        if (type ?? "Opaque") != (old.type ?? "Opaque") { errs.append(.init(.invalid, "type", "field is immutable")) }
        if old.immutable == true && (data != old.data || immutable != true) { errs.append(.init(.forbidden, "data", "field is immutable when `immutable` is set")) }
        return errs
    }
    public mutating func applyDefaults() {
        type = type ?? "Opaque"
        if let sd = stringData {
            var d = data ?? [:]
            for (k, v) in sd { d[k] = Data(v.utf8).base64EncodedString() }
            data = d; stringData = nil
        }
    }
    public var selectableFields: [String: String] { baseFields.merging(["type": type ?? ""]) { $1 } }
}

extension Event: ServedKind {
    public var selectableFields: [String: String] {
        var f = baseFields
        f["involvedObject.kind"] = involvedObject.kind ?? ""
        f["involvedObject.name"] = involvedObject.name ?? ""
        f["involvedObject.namespace"] = involvedObject.namespace ?? ""
        f["involvedObject.uid"] = involvedObject.uid ?? ""
        f["reason"] = reason ?? ""
        f["type"] = type ?? ""
        f["source"] = source?.component ?? ""
        return f
    }
}

func validateTemplate(_ selector: LabelSelector?, _ template: PodTemplateSpec?, replicas: Int?) -> [FieldError] {
    var errs: [FieldError] = []
    if let r = replicas, r < 0 { errs.append(.init(.invalid, "spec.replicas", "\(r): must be greater than or equal to 0")) }
    guard let selector, !(selector.matchLabels ?? [:]).isEmpty || !(selector.matchExpressions ?? []).isEmpty else {
        return errs + [.init(.required, "spec.selector", "")]
    }
    do {
        let sel = try selector.toSelector()
        if !sel.matches(template?.metadata?.labels ?? [:]) {
            errs.append(.init(.invalid, "spec.template.metadata.labels", "\(template?.metadata?.labels ?? [:]): `selector` does not match template `labels`"))
        }
    } catch { errs.append(.init(.invalid, "spec.selector", "\(error)")) }
    if let spec = template?.spec {
        errs += spec.validate("spec.template.spec")
        if let r = spec.restartPolicy, r != "Always" { errs.append(.init(.notSupported, "spec.template.spec.restartPolicy", "\"\(r)\": supported values: \"Always\"")) }
    } else { errs.append(.init(.required, "spec.template.spec", "")) }
    return errs
}

extension Deployment: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.replicas = spec!.replicas ?? 1
        var strategy = spec!.strategy ?? DeploymentStrategy()
        strategy.type = strategy.type ?? "RollingUpdate"
        if strategy.type == "RollingUpdate" {
            var ru = strategy.rollingUpdate ?? RollingUpdateDeployment()
            ru.maxSurge = ru.maxSurge ?? .string("25%"); ru.maxUnavailable = ru.maxUnavailable ?? .string("25%")
            strategy.rollingUpdate = ru
        }
        spec!.strategy = strategy
        spec!.revisionHistoryLimit = spec!.revisionHistoryLimit ?? 10
        spec!.progressDeadlineSeconds = spec!.progressDeadlineSeconds ?? 600
        spec!.template.spec?.applyDefaults()
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        errs += validateTemplate(spec.selector, spec.template, replicas: spec.replicas)
        if let s = spec.strategy {
            if let t = s.type, !["RollingUpdate", "Recreate"].contains(t) { errs.append(.init(.notSupported, "spec.strategy.type", "\"\(t)\": supported values: \"Recreate\", \"RollingUpdate\"")) }
            if s.type == "Recreate" && s.rollingUpdate != nil { errs.append(.init(.forbidden, "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")) }
            if let ru = s.rollingUpdate {
                let surge = ru.maxSurge?.scaled(total: 100, roundUp: true) ?? 0
                let unavail = ru.maxUnavailable?.scaled(total: 100, roundUp: false) ?? 0
                if surge == 0 && unavail == 0 { errs.append(.init(.invalid, "spec.strategy.rollingUpdate.maxUnavailable", "\(ru.maxUnavailable?.description ?? "0"): may not be 0 when `maxSurge` is 0")) }
                if surge < 0 { errs.append(.init(.invalid, "spec.strategy.rollingUpdate.maxSurge", "must be greater than or equal to 0")) }
                if unavail < 0 { errs.append(.init(.invalid, "spec.strategy.rollingUpdate.maxUnavailable", "must be greater than or equal to 0")) }
                if case .string(let p) = ru.maxUnavailable ?? .int(0), p.hasSuffix("%"), (Int(p.dropLast()) ?? 0) > 100 {
                    errs.append(.init(.invalid, "spec.strategy.rollingUpdate.maxUnavailable", "\"\(p)\": must not be greater than 100%"))
                }
            }
        }
        if let m = spec.minReadySeconds, m < 0 { errs.append(.init(.invalid, "spec.minReadySeconds", "\(m): must be greater than or equal to 0")) }
        if let p = spec.progressDeadlineSeconds, p <= (spec.minReadySeconds ?? 0) { errs.append(.init(.invalid, "spec.progressDeadlineSeconds", "\(p): must be greater than minReadySeconds")) }
        return errs
    }
    public func validateUpdate(old: Deployment) -> [FieldError] {
        old.spec?.selector != spec?.selector ? [.init(.invalid, "spec.selector", "field is immutable")] : []
    }
}

extension ReplicaSet: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.replicas = spec!.replicas ?? 1
        spec!.template?.spec?.applyDefaults()
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        errs += validateTemplate(spec.selector, spec.template, replicas: spec.replicas)
        return errs
    }
    public func validateUpdate(old: ReplicaSet) -> [FieldError] {
        old.spec?.selector != spec?.selector ? [.init(.invalid, "spec.selector", "field is immutable")] : []
    }
}

extension HorizontalPodAutoscaler: ServedKind {
    public mutating func applyDefaults() {
        guard spec != nil else { return }
        spec!.minReplicas = spec!.minReplicas ?? 1
        if (spec!.metrics ?? []).isEmpty {
            spec!.metrics = [MetricSpec(type: "Resource", resource: ResourceMetricSource(name: "cpu", target: MetricTarget(type: "Utilization", averageUtilization: 80)))]
        }
        // As Kubernetes: a behavior that is present gets every missing part defaulted; an absent one
        // stays absent (the controller then applies its own downscale window and legacy scale-up limit).
        if let b = spec!.behavior {
            spec!.behavior = HPABehavior(scaleUp: HPAScalingRules.defaultedScaleUp(b.scaleUp), scaleDown: HPAScalingRules.defaultedScaleDown(b.scaleDown))
        }
    }
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        if spec.scaleTargetRef.kind.isEmpty { errs.append(.init(.required, "spec.scaleTargetRef.kind", "")) }
        if spec.scaleTargetRef.name.isEmpty { errs.append(.init(.required, "spec.scaleTargetRef.name", "")) }
        if spec.maxReplicas < 1 { errs.append(.init(.invalid, "spec.maxReplicas", "\(spec.maxReplicas): must be greater than or equal to 1")) }
        if let m = spec.minReplicas {
            if m < 1 { errs.append(.init(.invalid, "spec.minReplicas", "\(m): must be greater than or equal to 1")) }
            if m > spec.maxReplicas { errs.append(.init(.invalid, "spec.maxReplicas", "\(spec.maxReplicas): must be greater than or equal to `minReplicas`")) }
        }
        for (i, m) in (spec.metrics ?? []).enumerated() {
            let p = "spec.metrics[\(i)]"
            guard ["Resource", "ContainerResource", "Pods", "Object", "External"].contains(m.type) else {
                errs.append(.init(.notSupported, "\(p).type", "\"\(m.type)\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"")); continue
            }
            if m.type == "Resource" {
                guard let r = m.resource else { errs.append(.init(.required, "\(p).resource", "must populate information for the given metric source")); continue }
                switch r.target.type {
                case "Utilization": if (r.target.averageUtilization ?? 0) < 1 { errs.append(.init(.required, "\(p).resource.target.averageUtilization", "must be set to a positive value")) }
                case "AverageValue": if (r.target.averageValue?.milli ?? 0) <= 0 { errs.append(.init(.required, "\(p).resource.target.averageValue", "must be set to a positive value")) }
                default: errs.append(.init(.notSupported, "\(p).resource.target.type", "\"\(r.target.type)\": supported values: \"AverageValue\", \"Utilization\""))
                }
            }
            if m.type == "Pods" {
                guard let raw = m.pods else { errs.append(.init(.required, "\(p).pods", "must populate information for the given metric source")); continue }
                let src: PodsMetricSource
                do { src = try raw.decode(PodsMetricSource.self) } catch {
                    errs.append(.init(.invalid, "\(p).pods", "\(error)")); continue
                }
                if src.metric.name.isEmpty { errs.append(.init(.required, "\(p).pods.metric.name", "must specify a metric name")) }
                if !["Utilization", "Value", "AverageValue"].contains(src.target.type) {
                    errs.append(.init(src.target.type.isEmpty ? .required : .notSupported, "\(p).pods.target.type",
                                      src.target.type.isEmpty ? "must specify a metric target type" : "\"\(src.target.type)\": supported values: \"AverageValue\", \"Utilization\", \"Value\""))
                }
                if let v = src.target.averageValue, v.milli <= 0 {
                    errs.append(.init(.invalid, "\(p).pods.target.averageValue", "\(v): must be positive"))
                } else if src.target.averageValue == nil {
                    errs.append(.init(.required, "\(p).pods.target.averageValue", "must specify a positive target averageValue"))
                }
            }
        }
        for (name, rules) in [("scaleUp", spec.behavior?.scaleUp), ("scaleDown", spec.behavior?.scaleDown)] {
            guard let rules else { continue }
            let p = "spec.behavior.\(name)"
            if let w = rules.stabilizationWindowSeconds, w < 0 || w > 3600 { errs.append(.init(.invalid, "\(p).stabilizationWindowSeconds", "\(w): must be between 0 and 3600")) }
            if let t = rules.tolerance, t.milli < 0 { errs.append(.init(.invalid, "\(p).tolerance", "\(t): must be greater than or equal to 0")) }
            if let s = rules.selectPolicy, !["Max", "Min", "Disabled"].contains(s) { errs.append(.init(.notSupported, "\(p).selectPolicy", "\"\(s)\": supported values: \"Disabled\", \"Max\", \"Min\"")) }
            for (i, pol) in (rules.policies ?? []).enumerated() {
                if !["Pods", "Percent"].contains(pol.type) { errs.append(.init(.notSupported, "\(p).policies[\(i)].type", "\"\(pol.type)\": supported values: \"Percent\", \"Pods\"")) }
                if pol.value <= 0 { errs.append(.init(.invalid, "\(p).policies[\(i)].value", "\(pol.value): must be greater than zero")) }
                if pol.periodSeconds <= 0 || pol.periodSeconds > 1800 { errs.append(.init(.invalid, "\(p).policies[\(i)].periodSeconds", "\(pol.periodSeconds): must be between 1 and 1800")) }
            }
        }
        return errs
    }
}

extension HPAScalingRules {
    /// Kubernetes' scale-up default: no stabilization; per 15 s, double or add 4 pods, whichever is more.
    public static let defaultScaleUp = HPAScalingRules(stabilizationWindowSeconds: 0, selectPolicy: "Max", policies: [
        HPAScalingPolicy(type: "Pods", value: 4, periodSeconds: 15), HPAScalingPolicy(type: "Percent", value: 100, periodSeconds: 15)])
    /// Kubernetes' scale-down default: may remove all surplus pods per 15 s. The 300 s window is
    /// left unset here, as Kubernetes does, so the controller's --downscale-stabilization applies.
    public static let defaultScaleDown = HPAScalingRules(stabilizationWindowSeconds: nil, selectPolicy: "Max", policies: [
        HPAScalingPolicy(type: "Percent", value: 100, periodSeconds: 15)])

    static func filled(_ r: HPAScalingRules?, from d: HPAScalingRules) -> HPAScalingRules {
        guard var r else { return d }
        r.stabilizationWindowSeconds = r.stabilizationWindowSeconds ?? d.stabilizationWindowSeconds
        r.selectPolicy = r.selectPolicy ?? d.selectPolicy
        r.policies = r.policies ?? d.policies
        return r
    }
    public static func defaultedScaleUp(_ r: HPAScalingRules?) -> HPAScalingRules { filled(r, from: defaultScaleUp) }
    public static func defaultedScaleDown(_ r: HPAScalingRules?) -> HPAScalingRules { filled(r, from: defaultScaleDown) }
}

extension Lease: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        if let d = spec?.leaseDurationSeconds, d <= 0 { errs.append(.init(.invalid, "spec.leaseDurationSeconds", "\(d): must be greater than 0")) }
        return errs
    }
}

extension CertificateSigningRequest: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: false)
        guard let spec else { return errs + [.init(.required, "spec", "")] }
        if Data(base64Encoded: spec.request) == nil { errs.append(.init(.invalid, "spec.request", "must be base64-encoded PEM")) }
        if spec.signerName.isEmpty { errs.append(.init(.required, "spec.signerName", "")) }
        return errs
    }
    public var selectableFields: [String: String] { baseFields.merging(["spec.signerName": spec?.signerName ?? ""]) { $1 } }
}
