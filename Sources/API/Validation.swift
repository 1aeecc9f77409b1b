// Field-level validation errors and the name/label rules Kubernetes applies.
import Foundation

public struct FieldError: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable { case required = "FieldValueRequired", invalid = "FieldValueInvalid", notSupported = "FieldValueNotSupported", forbidden = "FieldValueForbidden", duplicate = "FieldValueDuplicate", tooLong = "FieldValueTooLong", notFound = "FieldValueNotFound" }
    public var kind: Kind
    public var field: String
    public var message: String
    public init(_ kind: Kind, _ field: String, _ message: String) { self.kind = kind; self.field = field; self.message = message }
    /// The error without its field (a Status cause's message, as Kubernetes' ErrorBody).
    public var body: String {
        let d = description
        return d.hasPrefix(field + ": ") ? String(d.dropFirst(field.count + 2)) : d
    }
    public var description: String {
        switch kind {
        case .required: return "\(field): Required value\(message.isEmpty ? "" : ": \(message)")"
        case .forbidden: return "\(field): Forbidden: \(message)"
        case .notSupported: return "\(field): Unsupported value: \(message)"
        case .duplicate: return "\(field): Duplicate value: \(message)"
        case .notFound: return "\(field): Not found: \(message)"
        case .tooLong: return "\(field): Too long: \(message)"
        default: return "\(field): Invalid value: \(message)"
        }
    }
}

public enum Validation {
    /// An IPv4 address in dotted decimal (no leading zeros) or an IPv6 address.
    public static func isIPAddress(_ s: String) -> Bool {
        if IPv4(s) != nil { return true }
        guard s.contains(":"), s.count <= 45, s.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
        var buf = in6_addr()
        return inet_pton(AF_INET6, s, &buf) == 1
    }
    static func isAlnumLower(_ c: Character) -> Bool { c.isASCII && (c.isLowercase || c.isNumber) }
    static func isAlnum(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber) }

    /// RFC 1123 subdomain: lower-case alphanumerics, '-' or '.', start and end alphanumeric, <= 253.
    public static func dns1123Subdomain(_ s: String) -> String? {
        if s.isEmpty { return "must not be empty" }
        if s.count > 253 { return "must be no more than 253 characters" }
        for part in s.split(separator: ".", omittingEmptySubsequences: false) {
            if dns1123Label(String(part)) != nil {
                return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            }
        }
        return nil
    }
    /// RFC 1123 label: lower-case alphanumerics or '-', start and end alphanumeric, <= 63.
    public static func dns1123Label(_ s: String) -> String? {
        if s.isEmpty { return "must not be empty" }
        if s.count > 63 { return "must be no more than 63 characters" }
        guard let f = s.first, let l = s.last, isAlnumLower(f), isAlnumLower(l),
              s.allSatisfy({ isAlnumLower($0) || $0 == "-" }) else {
            return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        }
        return nil
    }
    /// An environment variable's name, as Kubernetes allows it.
    public static func envVarName(_ s: String) -> String? {
        guard let f = s.first, !f.isNumber, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) else {
            return "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        }
        return nil
    }
    /// A ConfigMap or Secret key.
    public static func configKey(_ s: String) -> String? {
        if s.isEmpty || s.count > 253 || s == "." || s == ".." || !s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) {
            return "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        }
        return nil
    }
    /// A relative file path inside a volume: no '..' element, not absolute.
    public static func volumePath(_ s: String) -> String? {
        if s.isEmpty { return "must not be empty" }
        if s.hasPrefix("/") { return "must be a relative path" }
        if s.split(separator: "/").contains("..") { return "must not contain '..'" }
        if s.hasPrefix("..") { return "must not start with '..'" }
        return nil
    }

    /// Label/annotation key: optional DNS subdomain prefix and '/', then a name of <= 63 chars.
    public static func qualifiedName(_ s: String) -> String? {
        var name = Substring(s)
        if let slash = s.firstIndex(of: "/") {
            let prefix = String(s[..<slash])
            if let e = dns1123Subdomain(prefix) { return "prefix part \(e)" }
            name = s[s.index(after: slash)...]
        }
        if name.isEmpty { return "name part must be non-empty" }
        if name.count > 63 { return "name part must be no more than 63 characters" }
        guard let f = name.first, let l = name.last, isAlnum(f), isAlnum(l),
              name.allSatisfy({ isAlnum($0) || "-_.".contains($0) }) else {
            return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        }
        return nil
    }
    public static func labelValue(_ s: String) -> String? {
        if s.isEmpty { return nil }
        if s.count > 63 { return "must be no more than 63 characters" }
        guard let f = s.first, let l = s.last, isAlnum(f), isAlnum(l), s.allSatisfy({ isAlnum($0) || "-_.".contains($0) }) else {
            return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        }
        return nil
    }

    /// A name that is one URL path segment (RBAC objects: "system:node" is valid).
    public static func pathSegmentName(_ s: String) -> String? {
        if s == "." || s == ".." { return "may not be '\(s)'" }
        if s.contains("/") { return "may not contain '/'" }
        if s.contains("%") { return "may not contain '%'" }
        return nil
    }

    public static func metadata(_ m: ObjectMeta, namespaced: Bool, nameIsLabel: Bool = false, name check: ((String) -> String?)? = nil) -> [FieldError] {
        var errs: [FieldError] = []
        if let n = m.name, !n.isEmpty {
            if let e = check.map({ $0(n) }) ?? (nameIsLabel ? dns1123Label(n) : dns1123Subdomain(n)) { errs.append(.init(.invalid, "metadata.name", "\"\(n)\": \(e)")) }
        } else if m.generateName == nil {
            errs.append(.init(.required, "metadata.name", "name or generateName is required"))
        }
        for (k, v) in m.labels ?? [:] {
            if let e = qualifiedName(k) { errs.append(.init(.invalid, "metadata.labels", "\"\(k)\": \(e)")) }
            if let e = labelValue(v) { errs.append(.init(.invalid, "metadata.labels", "\"\(v)\": \(e)")) }
        }
        for k in (m.annotations ?? [:]).keys {
            if let e = qualifiedName(k.lowercased()) { errs.append(.init(.invalid, "metadata.annotations", "\"\(k)\": \(e)")) }
        }
        if (m.annotations ?? [:]).reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count }) > 256 * 1024 {
            errs.append(.init(.tooLong, "metadata.annotations", "must have at most 262144 bytes"))
        }
        return errs
    }
}
