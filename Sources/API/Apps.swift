// apps/v1 Deployment and ReplicaSet, autoscaling/v1 Scale, autoscaling/v2 HPA,
// coordination.k8s.io/v1 Lease, certificates.k8s.io/v1 CertificateSigningRequest.
import Foundation

public struct PodTemplateSpec: Codable, Hashable, Sendable {
    public var metadata: ObjectMeta?
    public var spec: PodSpec?
    public init(metadata: ObjectMeta?, spec: PodSpec?) { self.metadata = metadata; self.spec = spec }
}

public struct WorkloadCondition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var lastUpdateTime: String?
    public var lastTransitionTime: String?
    public var reason: String?
    public var message: String?
    public init(type: String, status: String, reason: String? = nil, message: String? = nil) {
        self.type = type; self.status = status; self.reason = reason; self.message = message
    }
}

public struct RollingUpdateDeployment: Codable, Hashable, Sendable {
    public var maxUnavailable: IntOrString?
    public var maxSurge: IntOrString?
    public init(maxUnavailable: IntOrString? = nil, maxSurge: IntOrString? = nil) { self.maxUnavailable = maxUnavailable; self.maxSurge = maxSurge }
}
public struct DeploymentStrategy: Codable, Hashable, Sendable {
    public var type: String?
    public var rollingUpdate: RollingUpdateDeployment?
    public init(type: String? = nil, rollingUpdate: RollingUpdateDeployment? = nil) { self.type = type; self.rollingUpdate = rollingUpdate }
}

public struct DeploymentSpec: Codable, Hashable, Sendable {
    public var replicas: Int?
    public var selector: LabelSelector?
    public var template: PodTemplateSpec
    public var strategy: DeploymentStrategy?
    public var minReadySeconds: Int?
    public var revisionHistoryLimit: Int?
    public var paused: Bool?
    public var progressDeadlineSeconds: Int?
    public init(replicas: Int?, selector: LabelSelector?, template: PodTemplateSpec, strategy: DeploymentStrategy? = nil) {
        self.replicas = replicas; self.selector = selector; self.template = template; self.strategy = strategy
    }
}
public struct DeploymentStatus: Codable, Hashable, Sendable {
    public var observedGeneration: Int64?
    public var replicas: Int?
    public var updatedReplicas: Int?
    public var readyReplicas: Int?
    public var availableReplicas: Int?
    public var unavailableReplicas: Int?
    public var terminatingReplicas: Int?
    public var conditions: [WorkloadCondition]?
    public var collisionCount: Int?
    public init() {}
}
public struct Deployment: KubeObject, Hashable {
    public static let resource = Resources.deployments
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: DeploymentSpec?
    public var status: DeploymentStatus?
    public init(metadata: ObjectMeta, spec: DeploymentSpec?) { apiVersion = "apps/v1"; kind = "Deployment"; self.metadata = metadata; self.spec = spec }
}

public struct ReplicaSetSpec: Codable, Hashable, Sendable {
    public var replicas: Int?
    public var minReadySeconds: Int?
    public var selector: LabelSelector?
    public var template: PodTemplateSpec?
    public init(replicas: Int?, minReadySeconds: Int?, selector: LabelSelector?, template: PodTemplateSpec?) {
        self.replicas = replicas; self.minReadySeconds = minReadySeconds; self.selector = selector; self.template = template
    }
}
public struct ReplicaSetStatus: Codable, Hashable, Sendable {
    public var replicas: Int
    public var fullyLabeledReplicas: Int?
    public var readyReplicas: Int?
    public var availableReplicas: Int?
    public var terminatingReplicas: Int?
    public var observedGeneration: Int64?
    public var conditions: [WorkloadCondition]?
    public init(replicas: Int = 0) { self.replicas = replicas }
}
public struct ReplicaSet: KubeObject, Hashable {
    public static let resource = Resources.replicasets
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: ReplicaSetSpec?
    public var status: ReplicaSetStatus?
    public init(apiVersion: String? = "apps/v1", kind: String? = "ReplicaSet", metadata: ObjectMeta, spec: ReplicaSetSpec?, status: ReplicaSetStatus? = nil) {
        self.apiVersion = apiVersion; self.kind = kind; self.metadata = metadata; self.spec = spec; self.status = status
    }
}

/// autoscaling/v1 Scale: the body of the `scale` subresource.
public struct Scale: Codable, Hashable, Sendable {
    public struct Spec: Codable, Hashable, Sendable { public var replicas: Int?; public init(replicas: Int?) { self.replicas = replicas } }
    public struct ScaleStatus: Codable, Hashable, Sendable { public var replicas: Int; public var selector: String?
        public init(replicas: Int, selector: String?) { self.replicas = replicas; self.selector = selector } }
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: Spec?
    public var status: ScaleStatus?
    public init(metadata: ObjectMeta, replicas: Int, statusReplicas: Int, selector: String?) {
        apiVersion = "autoscaling/v1"; kind = "Scale"; self.metadata = metadata
        spec = Spec(replicas: replicas); status = ScaleStatus(replicas: statusReplicas, selector: selector)
    }
}

public struct CrossVersionObjectReference: Codable, Hashable, Sendable {
    public var kind: String
    public var name: String
    public var apiVersion: String?
    public init(kind: String, name: String, apiVersion: String? = nil) { self.kind = kind; self.name = name; self.apiVersion = apiVersion }
}
public struct MetricTarget: Codable, Hashable, Sendable {
    public var type: String
    public var value: Quantity?
    public var averageValue: Quantity?
    public var averageUtilization: Int?
    public init(type: String, value: Quantity? = nil, averageValue: Quantity? = nil, averageUtilization: Int? = nil) {
        self.type = type; self.value = value; self.averageValue = averageValue; self.averageUtilization = averageUtilization
    }
}
public struct ResourceMetricSource: Codable, Hashable, Sendable {
    public var name: String
    public var target: MetricTarget
    public init(name: String, target: MetricTarget) { self.name = name; self.target = target }
}
public struct MetricSpec: Codable, Hashable, Sendable {
    public var type: String
    public var resource: ResourceMetricSource?
    public var containerResource: JSONValue?
    public var pods: JSONValue?
    public var object: JSONValue?
    public var external: JSONValue?
    public init(type: String, resource: ResourceMetricSource? = nil) { self.type = type; self.resource = resource }
    /// A Resource metric: `resource` ("cpu", "memory") against `target`.
    public static func resource(_ name: String, _ target: MetricTarget) -> MetricSpec {
        MetricSpec(type: "Resource", resource: ResourceMetricSource(name: name, target: target))
    }
}
public struct HPAScalingPolicy: Codable, Hashable, Sendable {
    public var type: String
    public var value: Int
    public var periodSeconds: Int
    public init(type: String, value: Int, periodSeconds: Int) { self.type = type; self.value = value; self.periodSeconds = periodSeconds }
}
public struct HPAScalingRules: Codable, Hashable, Sendable {
    public var stabilizationWindowSeconds: Int?
    public var selectPolicy: String?
    public var policies: [HPAScalingPolicy]?
    public var tolerance: Quantity?
    public init(stabilizationWindowSeconds: Int? = nil, selectPolicy: String? = nil, policies: [HPAScalingPolicy]? = nil, tolerance: Quantity? = nil) {
        self.stabilizationWindowSeconds = stabilizationWindowSeconds; self.selectPolicy = selectPolicy; self.policies = policies; self.tolerance = tolerance
    }
}
public struct HPABehavior: Codable, Hashable, Sendable {
    public var scaleUp: HPAScalingRules?
    public var scaleDown: HPAScalingRules?
    public init(scaleUp: HPAScalingRules? = nil, scaleDown: HPAScalingRules? = nil) { self.scaleUp = scaleUp; self.scaleDown = scaleDown }
}
public struct MetricValueStatus: Codable, Hashable, Sendable {
    public var value: Quantity?
    public var averageValue: Quantity?
    public var averageUtilization: Int?
    public init(value: Quantity? = nil, averageValue: Quantity? = nil, averageUtilization: Int? = nil) {
        self.value = value; self.averageValue = averageValue; self.averageUtilization = averageUtilization
    }
}
public struct ResourceMetricStatus: Codable, Hashable, Sendable {
    public var name: String
    public var current: MetricValueStatus
    public init(name: String, current: MetricValueStatus) { self.name = name; self.current = current }
}
public struct MetricStatus: Codable, Hashable, Sendable {
    public var type: String
    public var resource: ResourceMetricStatus?
    public var containerResource: JSONValue?
    public var pods: JSONValue?
    public var object: JSONValue?
    public var external: JSONValue?
    public init(type: String, resource: ResourceMetricStatus? = nil) { self.type = type; self.resource = resource }
}
public struct HPASpec: Codable, Hashable, Sendable {
    public var scaleTargetRef: CrossVersionObjectReference
    public var minReplicas: Int?
    public var maxReplicas: Int
    public var metrics: [MetricSpec]?
    public var behavior: HPABehavior?
    public init(scaleTargetRef: CrossVersionObjectReference, minReplicas: Int? = nil, maxReplicas: Int, metrics: [MetricSpec]? = nil, behavior: HPABehavior? = nil) {
        self.scaleTargetRef = scaleTargetRef; self.minReplicas = minReplicas; self.maxReplicas = maxReplicas; self.metrics = metrics; self.behavior = behavior
    }
}
public struct HPAStatus: Codable, Hashable, Sendable {
    public var observedGeneration: Int64?
    public var lastScaleTime: String?
    public var currentReplicas: Int?
    public var desiredReplicas: Int
    public var currentMetrics: [MetricStatus]?
    /// AbleToScale, ScalingActive, ScalingLimited (and PredictiveScaling for predictive HPAs).
    public var conditions: [WorkloadCondition]?
    public init(currentReplicas: Int? = nil, desiredReplicas: Int = 0) { self.currentReplicas = currentReplicas; self.desiredReplicas = desiredReplicas }

    public func condition(_ type: String) -> WorkloadCondition? { conditions?.first { $0.type == type } }
}
public struct HorizontalPodAutoscaler: KubeObject, Hashable {
    public static let resource = Resources.hpas
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: HPASpec?
    public var status: HPAStatus?
    public init(metadata: ObjectMeta, spec: HPASpec?) {
        apiVersion = "autoscaling/v2"; kind = "HorizontalPodAutoscaler"; self.metadata = metadata; self.spec = spec
    }
}

public struct LeaseSpec: Codable, Hashable, Sendable {
    public var holderIdentity: String?
    public var leaseDurationSeconds: Int?
    public var acquireTime: String?
    public var renewTime: String?
    public var leaseTransitions: Int?
    public var strategy: String?
    public var preferredHolder: String?
    public init() {}
}
public struct Lease: KubeObject, Hashable {
    public static let resource = Resources.leases
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: LeaseSpec?
    public init(name: String, namespace: String, spec: LeaseSpec) {
        apiVersion = "coordination.k8s.io/v1"; kind = "Lease"; metadata = ObjectMeta(name: name, namespace: namespace); self.spec = spec
    }

    /// On a node's Lease: how often its agent renews it, in milliseconds. The node-lifecycle
    /// controller reads it to tell a few missed renewals from ordinary jitter.
    public static let renewIntervalAnnotation = "node.orchestrator.io/renew-interval-ms"
    /// The renew interval a node's agent announces, in seconds (nil when absent or not a
    /// positive whole number of milliseconds).
    public var renewInterval: Double? {
        guard let v = metadata.annotations?[Self.renewIntervalAnnotation], let ms = Int(v), ms > 0 else { return nil }
        return Double(ms) / 1000
    }
}

public struct CSRSpec: Codable, Hashable, Sendable {
    public var request: String
    public var signerName: String
    public var expirationSeconds: Int?
    public var usages: [String]?
    public var username: String?
    public var uid: String?
    public var groups: [String]?
    public var extra: [String: [String]]?
    public init(request: String, signerName: String, expirationSeconds: Int? = nil, usages: [String]? = nil) {
        self.request = request; self.signerName = signerName; self.expirationSeconds = expirationSeconds; self.usages = usages
    }
}
public struct CSRCondition: Codable, Hashable, Sendable {
    public var type: String
    public var status: String
    public var reason: String?
    public var message: String?
    public var lastUpdateTime: String?
    public var lastTransitionTime: String?
    public init(type: String, status: String, reason: String? = nil, message: String? = nil, lastUpdateTime: String? = nil, lastTransitionTime: String? = nil) {
        self.type = type; self.status = status; self.reason = reason; self.message = message
        self.lastUpdateTime = lastUpdateTime; self.lastTransitionTime = lastTransitionTime
    }
}
public struct CSRStatus: Codable, Hashable, Sendable {
    public var conditions: [CSRCondition]?
    public var certificate: String?
    public init(conditions: [CSRCondition]? = nil, certificate: String? = nil) { self.conditions = conditions; self.certificate = certificate }
}
public struct CertificateSigningRequest: KubeObject, Hashable {
    public static let resource = Resources.csrs
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: CSRSpec?
    public var status: CSRStatus?
    public init(name: String, spec: CSRSpec) {
        apiVersion = "certificates.k8s.io/v1"; kind = "CertificateSigningRequest"; metadata = ObjectMeta(name: name); self.spec = spec
    }
}
