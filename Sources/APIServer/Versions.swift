// Other versions of a stored kind: autoscaling/v1 HorizontalPodAutoscalers are stored as
// autoscaling/v2 and converted on the way in and out, as Kubernetes does. What v1 cannot say
// (metrics other than CPU utilization, behavior, conditions) rides in the annotations
// Kubernetes uses, so a v1 round trip loses nothing.
import Foundation
import API

/// A served version of a resource stored in another one.
struct VersionView: Sendable {
    let group: String
    let version: String
    let info: ResourceInfo
    let toStored: @Sendable (JSONValue) throws -> JSONValue
    let fromStored: @Sendable (JSONValue) -> JSONValue
    var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// A list body (JSON) of stored items, in this version.
    func convertList(_ data: Data) -> Data {
        guard case .object(var o)? = try? JSONValue.parse(data) else { return data }
        o["apiVersion"] = .string(apiVersion)
        if case .array(let items)? = o["items"] { o["items"] = .array(items.map(fromStored)) }
        return (try? JSONValue.object(o).encoded()) ?? data
    }
    func convertObject(_ data: Data) -> Data {
        guard let v = try? JSONValue.parse(data), v["kind"]?.stringValue == info.kind else { return data }
        return (try? fromStored(v).encoded()) ?? data
    }
}

enum Versions {
    static let views: [VersionView] = [
        VersionView(group: "autoscaling", version: "v1", info: Resources.hpas, toStored: HPAConversion.v1ToV2, fromStored: HPAConversion.v2ToV1),
    ]

    static func view(group: String, version: String, plural: String) -> VersionView? {
        views.first { $0.group == group && $0.version == version && $0.info.plural == plural }
    }
    static func views(group: String, version: String) -> [VersionView] { views.filter { $0.group == group && $0.version == version } }
}

/// autoscaling/v1 <-> autoscaling/v2 HorizontalPodAutoscaler, on JSON trees.
enum HPAConversion {
    static let metricsAnnotation = "autoscaling.alpha.kubernetes.io/metrics"
    static let currentMetricsAnnotation = "autoscaling.alpha.kubernetes.io/current-metrics"
    static let conditionsAnnotation = "autoscaling.alpha.kubernetes.io/conditions"
    static let behaviorAnnotation = "autoscaling.alpha.kubernetes.io/behavior"

    static func isCPUUtilization(_ m: JSONValue) -> Bool {
        m["type"]?.stringValue == "Resource" && m["resource"]?["name"]?.stringValue == "cpu"
            && m["resource"]?["target"]?["type"]?.stringValue == "Utilization"
    }
    static func isCPUCurrent(_ m: JSONValue) -> Bool {
        m["type"]?.stringValue == "Resource" && m["resource"]?["name"]?.stringValue == "cpu" && m["resource"]?["current"]?["averageUtilization"] != nil
    }
    static func encode(_ v: JSONValue) -> JSONValue { .string(String(decoding: (try? v.encoded()) ?? Data(), as: UTF8.self)) }

    @Sendable static func v2ToV1(_ obj: JSONValue) -> JSONValue {
        var out = obj
        out["apiVersion"] = "autoscaling/v1"
        var ann = obj["metadata"]?["annotations"]?.objectValue ?? [:]
        if case .object(var spec)? = obj["spec"] {
            let metrics = spec["metrics"]?.arrayValue ?? []
            if let cpu = metrics.first(where: isCPUUtilization), let u = cpu["resource"]?["target"]?["averageUtilization"] {
                spec["targetCPUUtilizationPercentage"] = u
            }
            let others = metrics.filter { !isCPUUtilization($0) }
            if !others.isEmpty { ann[metricsAnnotation] = encode(.array(others)) }
            if let b = spec["behavior"], !b.isNull { ann[behaviorAnnotation] = encode(b) }
            spec["metrics"] = nil
            spec["behavior"] = nil
            out["spec"] = .object(spec)
        }
        if case .object(var st)? = obj["status"] {
            let current = st["currentMetrics"]?.arrayValue ?? []
            if let cpu = current.first(where: isCPUCurrent) { st["currentCPUUtilizationPercentage"] = cpu["resource"]?["current"]?["averageUtilization"] }
            let others = current.filter { !isCPUCurrent($0) }
            if !others.isEmpty { ann[currentMetricsAnnotation] = encode(.array(others)) }
            if let c = st["conditions"], !(c.arrayValue ?? []).isEmpty { ann[conditionsAnnotation] = encode(c) }
            st["currentMetrics"] = nil
            st["conditions"] = nil
            if st["currentReplicas"] == nil { st["currentReplicas"] = 0 }
            if st["desiredReplicas"] == nil { st["desiredReplicas"] = 0 }
            out["status"] = .object(st)
        }
        if !ann.isEmpty { out["metadata"]?["annotations"] = .object(ann) }
        return out
    }

    @Sendable static func v1ToV2(_ obj: JSONValue) throws -> JSONValue {
        guard case .object = obj else { return obj }
        var out = obj
        if out["apiVersion"]?.stringValue == "autoscaling/v1" || out["apiVersion"] == nil { out["apiVersion"] = "autoscaling/v2" }
        var ann = obj["metadata"]?["annotations"]?.objectValue ?? [:]
        func decoded(_ key: String) throws -> JSONValue? {
            guard let s = ann.removeValue(forKey: key)?.stringValue else { return nil }
            do { return try JSONValue.parse(Data(s.utf8)) } catch {
                throw Status.badRequest("metadata.annotations[\(key)]: Invalid value: not JSON")
            }
        }
        if case .object(var spec)? = obj["spec"] {
            var metrics = try decoded(metricsAnnotation)?.arrayValue ?? []
            if let t = spec.removeValue(forKey: "targetCPUUtilizationPercentage"), !t.isNull {
                metrics.insert(.object(["type": "Resource", "resource": .object(["name": "cpu", "target": .object(["type": "Utilization", "averageUtilization": t])])]), at: 0)
            }
            if !metrics.isEmpty { spec["metrics"] = .array(metrics) }
            if let b = try decoded(behaviorAnnotation) { spec["behavior"] = b }
            out["spec"] = .object(spec)
        }
        if case .object(var st)? = obj["status"] {
            var current = try decoded(currentMetricsAnnotation)?.arrayValue ?? []
            if let c = st.removeValue(forKey: "currentCPUUtilizationPercentage"), !c.isNull {
                current.insert(.object(["type": "Resource", "resource": .object(["name": "cpu", "current": .object(["averageUtilization": c])])]), at: 0)
            }
            if !current.isEmpty { st["currentMetrics"] = .array(current) }
            if let c = try decoded(conditionsAnnotation) { st["conditions"] = c }
            out["status"] = .object(st)
        } else {
            _ = try decoded(currentMetricsAnnotation); _ = try decoded(conditionsAnnotation)
        }
        if obj["metadata"]?["annotations"] != nil { out["metadata"]?["annotations"] = ann.isEmpty ? nil : .object(ann) }
        return out
    }
}
