// Kubernetes Status errors: one place that maps a failure to its HTTP code and reason.
import Foundation

extension Status {
    static func failure(_ code: Int, _ reason: String, _ message: String, details: StatusDetails? = nil) -> Status {
        Status(status: "Failure", message: message, reason: reason, code: code, details: details)
    }
    static func details(_ r: ResourceInfo?, _ name: String?) -> StatusDetails? {
        guard let r else { return name.map { StatusDetails(name: $0) } }
        return StatusDetails(name: name, group: r.group.isEmpty ? nil : r.group, kind: r.plural)
    }
    public static func badRequest(_ message: String) -> Status { failure(400, "BadRequest", message) }
    public static func unauthorized(_ message: String = "Unauthorized") -> Status { failure(401, "Unauthorized", message) }
    public static func forbidden(_ message: String, _ r: ResourceInfo? = nil, _ name: String? = nil) -> Status {
        failure(403, "Forbidden", message, details: details(r, name))
    }
    public static func notFound(_ r: ResourceInfo, _ name: String) -> Status {
        failure(404, "NotFound", "\(r.groupResource) \"\(name)\" not found", details: details(r, name))
    }
    public static func notFoundPath(_ message: String = "the server could not find the requested resource") -> Status {
        failure(404, "NotFound", message, details: StatusDetails())
    }
    public static func methodNotAllowed(_ message: String = "the server does not allow this method on the requested resource") -> Status {
        failure(405, "MethodNotAllowed", message, details: StatusDetails())
    }
    public static func alreadyExists(_ r: ResourceInfo, _ name: String) -> Status {
        failure(409, "AlreadyExists", "\(r.groupResource) \"\(name)\" already exists", details: details(r, name))
    }
    public static func conflict(_ r: ResourceInfo, _ name: String, _ why: String = "the object has been modified; please apply your changes to the latest version and try again") -> Status {
        failure(409, "Conflict", "Operation cannot be fulfilled on \(r.groupResource) \"\(name)\": \(why)", details: details(r, name))
    }
    public static func gone(_ message: String) -> Status { failure(410, "Expired", message) }
    public static func tooLarge(_ message: String = "Request entity too large: limit is 3145728") -> Status { failure(413, "RequestEntityTooLarge", message) }
    /// Kubernetes' refusal of fields a kind does not define (fieldValidation=Strict).
    public static func strictDecoding(_ unknown: [String]) -> Status {
        badRequest("strict decoding error: " + unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", "))
    }
    public static func unsupportedMediaType(_ type: String) -> Status { failure(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got \"\(type)\")") }
    public static func invalid(_ r: ResourceInfo, _ name: String, _ errors: [FieldError]) -> Status {
        let kind = r.kind
        let msg = "\(kind) \"\(name)\" is invalid: " + (errors.count == 1 ? errors[0].description : "[" + errors.map(\.description).joined(separator: ", ") + "]")
        var d = StatusDetails(name: name, group: r.group.isEmpty ? nil : r.group, kind: kind)
        d.causes = errors.map { StatusCause(reason: $0.kind.rawValue, message: $0.body, field: $0.field) }
        return failure(422, "Invalid", msg, details: d)
    }
    public static func internalError(_ message: String) -> Status { failure(500, "InternalError", "Internal error occurred: \(message)") }
    public static func serviceUnavailable(_ message: String) -> Status { failure(503, "ServiceUnavailable", message) }
    public static func timeout(_ message: String) -> Status { failure(504, "Timeout", message) }
}

/// A server socket that could not be opened (the port is taken, the address is not this
/// host's, or the port is privileged): said in one line, naming the address.
public struct ListenError: Error, CustomStringConvertible {
    public var address: String
    public var port: Int
    public var reason: String
    public init(address: String, port: Int, reason: String) { self.address = address; self.port = port; self.reason = reason }
    /// From the errno of the failed bind or listen.
    public init(address: String, port: Int, errno code: Int32) {
        self.init(address: address, port: port, reason: String(cString: strerror(code)).lowercased())
    }
    public var description: String { "cannot listen on \(address.contains(":") ? "[\(address)]" : address):\(port): \(reason)" }
}

