// discovery.k8s.io/v1 EndpointSlice: the endpoints of a Service, one slice per address family
// and port set, with ready/serving/terminating conditions per endpoint.
import Foundation

public struct EndpointConditions: Codable, Hashable, Sendable {
    public var ready: Bool?
    public var serving: Bool?
    public var terminating: Bool?
    public init(ready: Bool? = nil, serving: Bool? = nil, terminating: Bool? = nil) {
        self.ready = ready; self.serving = serving; self.terminating = terminating
    }
}

public struct EndpointHints: Codable, Hashable, Sendable {
    public var forZones: [JSONValue]?
    public var forNodes: [JSONValue]?
}

public struct Endpoint: Codable, Hashable, Sendable {
    public var addresses: [String]
    public var conditions: EndpointConditions?
    public var hostname: String?
    public var targetRef: ObjectReference?
    public var deprecatedTopology: [String: String]?
    public var nodeName: String?
    public var zone: String?
    public var hints: EndpointHints?
    public init(addresses: [String], conditions: EndpointConditions? = nil) { self.addresses = addresses; self.conditions = conditions }
}

public struct EndpointSlicePort: Codable, Hashable, Sendable {
    public var name: String?
    public var `protocol`: String?
    public var port: Int?
    public var appProtocol: String?
    public init(name: String?, protocol: String?, port: Int?, appProtocol: String? = nil) {
        self.name = name; self.protocol = `protocol`; self.port = port; self.appProtocol = appProtocol
    }
}

public struct EndpointSlice: KubeObject, Hashable {
    public static let resource = Resources.endpointslices
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var addressType: String
    public var endpoints: [Endpoint]
    public var ports: [EndpointSlicePort]?
    public init(metadata: ObjectMeta, addressType: String = "IPv4", endpoints: [Endpoint] = [], ports: [EndpointSlicePort]? = nil) {
        apiVersion = "discovery.k8s.io/v1"; kind = "EndpointSlice"; self.metadata = metadata
        self.addressType = addressType; self.endpoints = endpoints; self.ports = ports
    }
    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, addressType, endpoints, ports }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
        addressType = try c.decodeIfPresent(String.self, forKey: .addressType) ?? ""
        // endpoints is required but may be null/empty on the wire (a Service without pods).
        endpoints = try c.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? []
        ports = try c.decodeIfPresent([EndpointSlicePort].self, forKey: .ports)
    }

    /// The Service this slice belongs to (label kubernetes.io/service-name).
    public var serviceName: String? { metadata.labels?[EndpointSlice.serviceNameLabel] }
    public static let serviceNameLabel = "kubernetes.io/service-name"
    public static let managedByLabel = "endpointslice.kubernetes.io/managed-by"
    public static let controllerName = "endpointslice-controller.k8s.io"
}
