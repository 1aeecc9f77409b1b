// v1 ServiceAccount: an identity for processes in pods. Every namespace has a `default` one,
// made by the controller-manager. Tokens for them come from TokenRequest
// (APIServer/ServiceAccountTokens.swift).
import Foundation

public struct ServiceAccount: KubeObject, Hashable {
    public static let resource = Resources.serviceaccounts
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var secrets: [ObjectReference]?
    public var imagePullSecrets: JSONValue?
    public var automountServiceAccountToken: Bool?
    public init(name: String, namespace: String) { apiVersion = "v1"; kind = "ServiceAccount"; metadata = ObjectMeta(name: name, namespace: namespace) }
}

extension ServiceAccount: ServedKind {
    public func validate() -> [FieldError] {
        var errs = Validation.metadata(metadata, namespaced: true)
        for (i, s) in (imagePullSecrets?.arrayValue ?? []).enumerated() where (s["name"]?.stringValue ?? "").isEmpty {
            errs.append(.init(.required, "imagePullSecrets[\(i)].name", ""))
        }
        return errs
    }
}

extension ServiceAccount: TablePrintable {
    public static let columns = [nameCol, TableColumn("Secrets", "integer"), ageCol]
    public func cells(now: Date) -> [JSONValue] { [.string(name), .int(Int64(secrets?.count ?? 0)), age] }
}
