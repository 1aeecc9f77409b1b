// core/v1 kinds: Namespace, Pod, Node, Service, Endpoints, Event, ConfigMap, Secret, Binding.
// Parts the cluster does not act on are kept verbatim as JSONValue, never dropped.
import Foundation

public struct Namespace: KubeObject, Hashable {
    public static let resource = Resources.namespaces
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: NamespaceSpec?
    public var status: NamespaceStatus?
    public struct NamespaceSpec: Codable, Hashable, Sendable { public var finalizers: [String]? }
    public struct NamespaceStatus: Codable, Hashable, Sendable {
        public var phase: String?
        public var conditions: JSONValue?
        public init(phase: String?, conditions: JSONValue? = nil) { self.phase = phase; self.conditions = conditions }
    }
    public init(name: String) { apiVersion = "v1"; kind = "Namespace"; metadata = ObjectMeta(name: name) }
}

public struct KeyValue: Codable, Hashable, Sendable {
    public var name: String
    public var value: String
}

public struct ContainerPort: Codable, Hashable, Sendable {
    public var name: String?
    public var containerPort: Int
    public var hostPort: Int?
    public var hostIP: String?
    public var `protocol`: String?
    public init(containerPort: Int, name: String? = nil) { self.containerPort = containerPort; self.name = name }
}

public struct EnvVar: Codable, Hashable, Sendable {
    public var name: String
    public var value: String?
    public var valueFrom: JSONValue?
    public init(name: String, value: String) { self.name = name; self.value = value }
    public init(name: String, valueFrom: JSONValue) { self.name = name; self.valueFrom = valueFrom }
}

public struct ResourceRequirements: Codable, Hashable, Sendable {
    public var limits: ResourceList?
    public var requests: ResourceList?
    public var claims: JSONValue?
    public init(limits: ResourceList? = nil, requests: ResourceList? = nil) { self.limits = limits; self.requests = requests }
}

public struct VolumeMount: Codable, Hashable, Sendable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool?
    public var subPath: String?
    public var subPathExpr: String?
    public var mountPropagation: String?
    public var recursiveReadOnly: String?
    public init(name: String, mountPath: String, readOnly: Bool? = nil, subPath: String? = nil) {
        self.name = name; self.mountPath = mountPath; self.readOnly = readOnly; self.subPath = subPath
    }
}

public struct ExecAction: Codable, Hashable, Sendable {
    public var command: [String]?
    public init(command: [String]) { self.command = command }
}
public struct HTTPHeader: Codable, Hashable, Sendable { public var name: String; public var value: String }
public struct HTTPGetAction: Codable, Hashable, Sendable {
    public var path: String?
    public var port: IntOrString
    public var host: String?
    public var scheme: String?
    public var httpHeaders: [HTTPHeader]?
    public init(path: String?, port: IntOrString) { self.path = path; self.port = port }
}
public struct TCPSocketAction: Codable, Hashable, Sendable {
    public var port: IntOrString
    public var host: String?
}
public struct SleepAction: Codable, Hashable, Sendable { public var seconds: Int64 }

public struct Probe: Codable, Hashable, Sendable {
    public var exec: ExecAction?
    public var httpGet: HTTPGetAction?
    public var tcpSocket: TCPSocketAction?
    public var grpc: JSONValue?
    public var initialDelaySeconds: Int?
    public var timeoutSeconds: Int?
    public var periodSeconds: Int?
    public var successThreshold: Int?
    public var failureThreshold: Int?
    public var terminationGracePeriodSeconds: Int64?
    public init() {}
}

public struct LifecycleHandler: Codable, Hashable, Sendable {
    public var exec: ExecAction?
    public var httpGet: HTTPGetAction?
    public var tcpSocket: TCPSocketAction?
    public var sleep: SleepAction?
}
public struct Lifecycle: Codable, Hashable, Sendable {
    public var postStart: LifecycleHandler?
    public var preStop: LifecycleHandler?
    public var stopSignal: String?
}

public struct Container: Codable, Hashable, Sendable {
    public var name: String
    public var image: String?
    public var command: [String]?
    public var args: [String]?
    public var workingDir: String?
    public var ports: [ContainerPort]?
    public var env: [EnvVar]?
    public var envFrom: JSONValue?
    public var resources: ResourceRequirements?
    public var resizePolicy: JSONValue?
    public var restartPolicy: String?
    public var volumeMounts: [VolumeMount]?
    public var volumeDevices: JSONValue?
    public var livenessProbe: Probe?
    public var readinessProbe: Probe?
    public var startupProbe: Probe?
    public var lifecycle: Lifecycle?
    public var terminationMessagePath: String?
    public var terminationMessagePolicy: String?
    public var imagePullPolicy: String?
    public var securityContext: JSONValue?
    public var stdin: Bool?
    public var stdinOnce: Bool?
    public var tty: Bool?
    public init(name: String, image: String) { self.name = name; self.image = image }
}

public struct Toleration: Codable, Hashable, Sendable {
    public var key: String?
    public var `operator`: String?
    public var value: String?
    public var effect: String?
    public var tolerationSeconds: Int64?
    public init(key: String? = nil, operator op: String? = nil, value: String? = nil, effect: String? = nil, tolerationSeconds: Int64? = nil) {
        self.key = key; self.operator = op; self.value = value; self.effect = effect; self.tolerationSeconds = tolerationSeconds
    }
    /// Whether this toleration tolerates the taint (Kubernetes' ToleratesTaint).
    public func tolerates(_ t: Taint) -> Bool {
        if let effect, !effect.isEmpty, effect != t.effect { return false }
        if let key, !key.isEmpty, key != t.key { return false }
        switch `operator` ?? "Equal" {
        case "Exists": return true
        default: return (key ?? "").isEmpty ? false : (value ?? "") == (t.value ?? "")
        }
    }
}

public struct Volume: Codable, Hashable, Sendable {
    public struct EmptyDir: Codable, Hashable, Sendable { public var medium: String?; public var sizeLimit: Quantity? }
    public struct HostPath: Codable, Hashable, Sendable {
        public var path: String; public var type: String?
        public init(path: String, type: String? = nil) { self.path = path; self.type = type }
    }
    public var name: String
    public var emptyDir: EmptyDir?
    public var hostPath: HostPath?
    public var configMap: JSONValue?
    public var secret: JSONValue?
    public var projected: JSONValue?
    public var downwardAPI: JSONValue?
    public var persistentVolumeClaim: JSONValue?
    public var ephemeral: JSONValue?
    public var nfs: JSONValue?
    public var csi: JSONValue?
    public var image: JSONValue?
    public init(name: String, persistentVolumeClaim: JSONValue? = nil) { self.name = name; self.persistentVolumeClaim = persistentVolumeClaim }
    /// The claim a persistentVolumeClaim volume names.
    public var claimName: String? { persistentVolumeClaim?["claimName"]?.stringValue }
}

public struct PodSpec: Codable, Hashable, Sendable {
    public var containers: [Container]
    public var initContainers: [Container]?
    public var ephemeralContainers: JSONValue?
    public var volumes: [Volume]?
    public var restartPolicy: String?
    public var terminationGracePeriodSeconds: Int64?
    public var activeDeadlineSeconds: Int64?
    public var dnsPolicy: String?
    public var dnsConfig: JSONValue?
    public var nodeSelector: [String: String]?
    public var serviceAccountName: String?
    public var serviceAccount: String?
    public var automountServiceAccountToken: Bool?
    public var nodeName: String?
    public var hostNetwork: Bool?
    public var hostPID: Bool?
    public var hostIPC: Bool?
    public var hostUsers: Bool?
    public var shareProcessNamespace: Bool?
    public var securityContext: JSONValue?
    public var imagePullSecrets: JSONValue?
    public var hostname: String?
    public var subdomain: String?
    public var affinity: JSONValue?
    public var schedulerName: String?
    public var tolerations: [Toleration]?
    public var hostAliases: JSONValue?
    public var priorityClassName: String?
    public var priority: Int?
    public var readinessGates: JSONValue?
    public var runtimeClassName: String?
    public var enableServiceLinks: Bool?
    public var preemptionPolicy: String?
    public var overhead: ResourceList?
    public var topologySpreadConstraints: JSONValue?
    public var setHostnameAsFQDN: Bool?
    public var os: JSONValue?
    public var schedulingGates: JSONValue?
    public var resourceClaims: JSONValue?
    public init(containers: [Container]) { self.containers = containers }
}

public struct PodCondition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var lastProbeTime: String?
    public var lastTransitionTime: String?
    public var reason: String?
    public var message: String?
    public var observedGeneration: Int64?
    public init(type: String, status: String, reason: String? = nil, message: String? = nil, lastTransitionTime: String? = nil) {
        self.type = type; self.status = status; self.reason = reason; self.message = message; self.lastTransitionTime = lastTransitionTime
    }
}

public struct ContainerStateWaiting: Codable, Hashable, Sendable { public var reason: String?; public var message: String?
    public init(reason: String?, message: String? = nil) { self.reason = reason; self.message = message } }
public struct ContainerStateRunning: Codable, Hashable, Sendable { public var startedAt: String?
    public init(startedAt: String?) { self.startedAt = startedAt } }
public struct ContainerStateTerminated: Codable, Hashable, Sendable {
    public var exitCode: Int32
    public var signal: Int32?
    public var reason: String?
    public var message: String?
    public var startedAt: String?
    public var finishedAt: String?
    public var containerID: String?
    public init(exitCode: Int32, reason: String?, startedAt: String? = nil, finishedAt: String? = nil) {
        self.exitCode = exitCode; self.reason = reason; self.startedAt = startedAt; self.finishedAt = finishedAt
    }
}
public struct ContainerState: Codable, Hashable, Sendable {
    public var waiting: ContainerStateWaiting?
    public var running: ContainerStateRunning?
    public var terminated: ContainerStateTerminated?
    public init(waiting: ContainerStateWaiting? = nil, running: ContainerStateRunning? = nil, terminated: ContainerStateTerminated? = nil) {
        self.waiting = waiting; self.running = running; self.terminated = terminated
    }
}
public struct ContainerStatus: Codable, Hashable, Sendable {
    public var name: String
    public var state: ContainerState?
    public var lastState: ContainerState?
    public var ready: Bool
    public var restartCount: Int
    public var image: String
    public var imageID: String
    public var containerID: String?
    public var started: Bool?
    public var resources: JSONValue?
    public var allocatedResources: ResourceList?
    public var volumeMounts: JSONValue?
    public var user: JSONValue?
    public var stopSignal: String?
    public init(name: String, image: String) { self.name = name; self.image = image; self.imageID = ""; self.ready = false; self.restartCount = 0 }
}

public struct PodIP: Codable, Hashable, Sendable { public var ip: String; public init(ip: String) { self.ip = ip } }

public struct PodStatus: Codable, Hashable, Sendable {
    public var phase: String?
    public var conditions: [PodCondition]?
    public var message: String?
    public var reason: String?
    public var nominatedNodeName: String?
    public var hostIP: String?
    public var hostIPs: [PodIP]?
    public var podIP: String?
    public var podIPs: [PodIP]?
    public var startTime: String?
    public var initContainerStatuses: [ContainerStatus]?
    public var containerStatuses: [ContainerStatus]?
    public var ephemeralContainerStatuses: JSONValue?
    public var qosClass: String?
    public var resize: String?
    public var resourceClaimStatuses: JSONValue?
    public var observedGeneration: Int64?
    public init(phase: String? = nil) { self.phase = phase }

    public func condition(_ type: String) -> PodCondition? { conditions?.first { $0.type == type } }
    /// Sets a condition, keeping lastTransitionTime when the status did not change.
    public mutating func setCondition(_ c: PodCondition, now: String) {
        var list = conditions ?? []
        var c = c
        if let i = list.firstIndex(where: { $0.type == c.type }) {
            c.lastTransitionTime = list[i].status == c.status ? list[i].lastTransitionTime : now
            list[i] = c
        } else {
            c.lastTransitionTime = c.lastTransitionTime ?? now
            list.append(c)
        }
        conditions = list
    }
}

public struct Pod: KubeObject, Hashable {
    public static let resource = Resources.pods
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PodSpec?
    public var status: PodStatus?
    public init(metadata: ObjectMeta, spec: PodSpec) { apiVersion = "v1"; kind = "Pod"; self.metadata = metadata; self.spec = spec }

    public var isReady: Bool { status?.condition("Ready")?.status == "True" }
    public var phase: String { status?.phase ?? "Pending" }
    public var isTerminal: Bool { phase == "Succeeded" || phase == "Failed" }
}

public struct Taint: Codable, Hashable, Sendable {
    public var key: String
    public var value: String?
    public var effect: String
    public var timeAdded: String?
    public init(key: String, value: String? = nil, effect: String, timeAdded: String? = nil) {
        self.key = key; self.value = value; self.effect = effect; self.timeAdded = timeAdded
    }
}

public struct NodeCondition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var lastHeartbeatTime: String?
    public var lastTransitionTime: String?
    public var reason: String?
    public var message: String?
    public init(type: String, status: String, reason: String? = nil, message: String? = nil) {
        self.type = type; self.status = status; self.reason = reason; self.message = message
    }
}
public struct NodeAddress: Codable, Hashable, Sendable { public var type: String; public var address: String
    public init(type: String, address: String) { self.type = type; self.address = address } }
public struct NodeSystemInfo: Codable, Hashable, Sendable {
    public var machineID: String = ""
    public var systemUUID: String = ""
    public var bootID: String = ""
    public var kernelVersion: String = ""
    public var osImage: String = ""
    public var containerRuntimeVersion: String = ""
    public var kubeletVersion: String = ""
    public var kubeProxyVersion: String = ""
    public var operatingSystem: String = ""
    public var architecture: String = ""
    public var swap: JSONValue?
    public init() {}
}
public struct DaemonEndpoint: Codable, Hashable, Sendable { public var Port: Int; public init(Port: Int) { self.Port = Port } }
public struct NodeDaemonEndpoints: Codable, Hashable, Sendable { public var kubeletEndpoint: DaemonEndpoint?
    public init(kubeletEndpoint: DaemonEndpoint?) { self.kubeletEndpoint = kubeletEndpoint } }

public struct NodeSpec: Codable, Hashable, Sendable {
    public var podCIDR: String?
    public var podCIDRs: [String]?
    public var providerID: String?
    public var unschedulable: Bool?
    public var taints: [Taint]?
    public var configSource: JSONValue?
    public var externalID: String?
    public init() {}
}
public struct NodeStatus: Codable, Hashable, Sendable {
    public var capacity: ResourceList?
    public var allocatable: ResourceList?
    public var phase: String?
    public var conditions: [NodeCondition]?
    public var addresses: [NodeAddress]?
    public var daemonEndpoints: NodeDaemonEndpoints?
    public var nodeInfo: NodeSystemInfo?
    public var images: JSONValue?
    public var volumesInUse: [String]?
    public var volumesAttached: JSONValue?
    public var config: JSONValue?
    public var runtimeHandlers: JSONValue?
    public var features: JSONValue?
    public init() {}
    public func condition(_ type: String) -> NodeCondition? { conditions?.first { $0.type == type } }
}

public struct Node: KubeObject, Hashable {
    public static let resource = Resources.nodes
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: NodeSpec?
    public var status: NodeStatus?
    public init(name: String) { apiVersion = "v1"; kind = "Node"; metadata = ObjectMeta(name: name) }
    public var isReady: Bool { status?.condition("Ready")?.status == "True" }
}

public struct ServicePort: Codable, Hashable, Sendable {
    public var name: String?
    public var `protocol`: String?
    public var appProtocol: String?
    public var port: Int
    public var targetPort: IntOrString?
    public var nodePort: Int?
}
public struct ServiceSpec: Codable, Hashable, Sendable {
    public var ports: [ServicePort]?
    public var selector: [String: String]?
    public var clusterIP: String?
    public var clusterIPs: [String]?
    public var type: String?
    public var externalIPs: [String]?
    public var sessionAffinity: String?
    public var sessionAffinityConfig: JSONValue?
    public var loadBalancerIP: String?
    public var loadBalancerSourceRanges: [String]?
    public var loadBalancerClass: String?
    public var externalName: String?
    public var externalTrafficPolicy: String?
    public var internalTrafficPolicy: String?
    public var healthCheckNodePort: Int?
    public var publishNotReadyAddresses: Bool?
    public var ipFamilies: [String]?
    public var ipFamilyPolicy: String?
    public var allocateLoadBalancerNodePorts: Bool?
    public var trafficDistribution: String?
}
public struct Service: KubeObject, Hashable {
    public static let resource = Resources.services
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: ServiceSpec?
    public var status: JSONValue?
}

public struct EndpointAddress: Codable, Hashable, Sendable {
    public var ip: String
    public var hostname: String?
    public var nodeName: String?
    public var targetRef: JSONValue?
    public init(ip: String) { self.ip = ip }
}
public struct EndpointPort: Codable, Hashable, Sendable {
    public var name: String?
    public var port: Int
    public var `protocol`: String?
    public var appProtocol: String?
    public init(name: String?, port: Int, protocol: String?, appProtocol: String? = nil) {
        self.name = name; self.port = port; self.protocol = `protocol`; self.appProtocol = appProtocol
    }
}
public struct EndpointSubset: Codable, Hashable, Sendable {
    public var addresses: [EndpointAddress]?
    public var notReadyAddresses: [EndpointAddress]?
    public var ports: [EndpointPort]?
    public init(addresses: [EndpointAddress]?, notReadyAddresses: [EndpointAddress]?, ports: [EndpointPort]?) {
        self.addresses = addresses; self.notReadyAddresses = notReadyAddresses; self.ports = ports
    }
}
public struct Endpoints: KubeObject, Hashable {
    public static let resource = Resources.endpoints
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var subsets: [EndpointSubset]?
    public init(metadata: ObjectMeta) { apiVersion = "v1"; kind = "Endpoints"; self.metadata = metadata }
}

public struct ObjectReference: Codable, Hashable, Sendable {
    public var kind: String?
    public var namespace: String?
    public var name: String?
    public var uid: String?
    public var apiVersion: String?
    public var resourceVersion: String?
    public var fieldPath: String?
    public init(kind: String?, namespace: String?, name: String?, uid: String? = nil, apiVersion: String? = nil) {
        self.kind = kind; self.namespace = namespace; self.name = name; self.uid = uid; self.apiVersion = apiVersion
    }
}
public struct EventSource: Codable, Hashable, Sendable { public var component: String?; public var host: String?
    public init(component: String?, host: String? = nil) { self.component = component; self.host = host } }

public struct Event: KubeObject, Hashable {
    public static let resource = Resources.events
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var involvedObject: ObjectReference
    public var reason: String?
    public var message: String?
    public var source: EventSource?
    public var firstTimestamp: String?
    public var lastTimestamp: String?
    public var count: Int?
    public var type: String?
    public var eventTime: String?
    public var series: JSONValue?
    public var action: String?
    public var related: ObjectReference?
    public var reportingComponent: String?
    public var reportingInstance: String?
    public init(metadata: ObjectMeta, involvedObject: ObjectReference, reason: String, message: String, type: String, source: EventSource) {
        apiVersion = "v1"; kind = "Event"; self.metadata = metadata; self.involvedObject = involvedObject
        self.reason = reason; self.message = message; self.type = type; self.source = source
    }
}

public struct ConfigMap: KubeObject, Hashable {
    public static let resource = Resources.configmaps
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var data: [String: String]?
    public var binaryData: [String: String]?
    public var immutable: Bool?
    public init(name: String, namespace: String, data: [String: String]? = nil) {
        apiVersion = "v1"; kind = "ConfigMap"; metadata = ObjectMeta(name: name, namespace: namespace); self.data = data
    }
}

public struct Secret: KubeObject, Hashable {
    public static let resource = Resources.secrets
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var data: [String: String]?
    public var stringData: [String: String]?
    public var type: String?
    public var immutable: Bool?
    public init(name: String, namespace: String, stringData: [String: String]? = nil) {
        apiVersion = "v1"; kind = "Secret"; metadata = ObjectMeta(name: name, namespace: namespace); self.stringData = stringData
    }
}

public struct Binding: Codable, Sendable, Hashable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var target: ObjectReference
    public init(podName: String, namespace: String, nodeName: String) {
        apiVersion = "v1"; kind = "Binding"
        metadata = ObjectMeta(name: podName, namespace: namespace)
        target = ObjectReference(kind: "Node", namespace: nil, name: nodeName, apiVersion: "v1")
    }
}

/// Many pod bindings in one request: our extension `POST /apis/scheduling.orchestrator.io/v1/bindings`.
/// The server binds every item (as pods/binding would, each on its own) and commits them
/// together; the answer has one result per item, in order.
public struct BindingList: Codable, Sendable, Hashable {
    public static let group = "scheduling.orchestrator.io"
    public static let path = "/apis/scheduling.orchestrator.io/v1/bindings"
    public static let maxItems = 5000
    public var apiVersion: String? = "scheduling.orchestrator.io/v1"
    public var kind: String? = "BindingList"
    public var items: [Binding]
    public init(items: [Binding]) { self.items = items }
}

/// One item's outcome in a BindingResultList: code 201 when bound, else the Status it would have had.
public struct BindingResult: Codable, Sendable, Hashable {
    public var namespace: String
    public var name: String
    public var code: Int
    public var reason: String?
    public var message: String?
    public init(namespace: String, name: String, code: Int, reason: String? = nil, message: String? = nil) {
        self.namespace = namespace; self.name = name; self.code = code; self.reason = reason; self.message = message
    }
    /// The Status a single pods/binding call would have thrown, when this one failed.
    public var failure: Status? {
        code < 300 ? nil : Status(status: "Failure", message: message ?? "", reason: reason ?? "", code: code)
    }
}

public struct BindingResultList: Codable, Sendable, Hashable {
    public var apiVersion: String? = "scheduling.orchestrator.io/v1"
    public var kind: String? = "BindingResultList"
    public var items: [BindingResult]
    public init(items: [BindingResult]) { self.items = items }
}
