// Label selectors (string form "a=b,c!=d,e in (x,y),!f" and metav1.LabelSelector) and field selectors.
import Foundation

public struct LabelSelectorRequirement: Codable, Hashable, Sendable {
    public var key: String
    public var `operator`: String
    public var values: [String]?
    public init(key: String, operator op: String, values: [String]? = nil) { self.key = key; self.operator = op; self.values = values }
}

/// metav1.LabelSelector as it appears in specs.
public struct LabelSelector: Codable, Hashable, Sendable {
    public var matchLabels: [String: String]?
    public var matchExpressions: [LabelSelectorRequirement]?
    public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels; self.matchExpressions = matchExpressions
    }

    public func toSelector() throws -> Selector {
        var reqs: [Selector.Requirement] = []
        for (k, v) in (matchLabels ?? [:]).sorted(by: { $0.key < $1.key }) { reqs.append(.init(key: k, op: .equals, values: [v])) }
        for e in matchExpressions ?? [] {
            let op: Selector.Op
            switch e.operator {
            case "In": op = .in
            case "NotIn": op = .notIn
            case "Exists": op = .exists
            case "DoesNotExist": op = .doesNotExist
            default: throw SelectorError("\"\(e.operator)\" is not a valid label selector operator")
            }
            reqs.append(.init(key: e.key, op: op, values: e.values ?? []))
        }
        return Selector(requirements: reqs)
    }
    public func matches(_ labels: [String: String]) -> Bool {
        (try? toSelector().matches(labels)) ?? false
    }
    /// The string form, e.g. for `status.selector` of the scale subresource.
    public var stringForm: String { (try? toSelector().description) ?? "" }
}

public struct SelectorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ s: String) { description = s }
}

/// A parsed label or field selector.
public struct Selector: Hashable, Sendable, CustomStringConvertible {
    public enum Op: Hashable, Sendable { case equals, notEquals, `in`, notIn, exists, doesNotExist }
    public struct Requirement: Hashable, Sendable {
        public var key: String
        public var op: Op
        public var values: [String]
        public func matches(_ labels: [String: String]) -> Bool {
            let v = labels[key]
            switch op {
            case .equals: return v != nil && v == values.first
            case .notEquals: return v != values.first
            case .in: return v.map { values.contains($0) } ?? false
            case .notIn: return v.map { !values.contains($0) } ?? true
            case .exists: return v != nil
            case .doesNotExist: return v == nil
            }
        }
        var text: String {
            switch op {
            case .equals: return "\(key)=\(values.first ?? "")"
            case .notEquals: return "\(key)!=\(values.first ?? "")"
            case .in: return "\(key) in (\(values.sorted().joined(separator: ",")))"
            case .notIn: return "\(key) notin (\(values.sorted().joined(separator: ",")))"
            case .exists: return key
            case .doesNotExist: return "!\(key)"
            }
        }
    }
    public var requirements: [Requirement]
    public init(requirements: [Requirement] = []) { self.requirements = requirements }
    public var isEmpty: Bool { requirements.isEmpty }
    public func matches(_ labels: [String: String]) -> Bool { requirements.allSatisfy { $0.matches(labels) } }
    public var description: String { requirements.map(\.text).joined(separator: ",") }

    /// Parses Kubernetes' selector grammar. Field selectors use the same grammar with only =, ==, !=.
    public static func parse(_ input: String, fieldSelector: Bool = false) throws -> Selector {
        var reqs: [Requirement] = []
        var s = Substring(input)
        func skipSpace() { while s.first == " " { s.removeFirst() } }
        func readKey() -> String {
            var k = ""
            while let c = s.first, !" ,=!()".contains(c) { k.append(c); s.removeFirst() }
            return k
        }
        func readValue() -> String {
            var v = ""
            while let c = s.first, !" ,()".contains(c) { v.append(c); s.removeFirst() }
            return v
        }
        while true {
            skipSpace()
            if s.isEmpty { break }
            if s.first == "!" && !fieldSelector {
                s.removeFirst(); skipSpace()
                let k = readKey()
                guard !k.isEmpty else { throw SelectorError("invalid selector \"\(input)\": expected a key after '!'") }
                try validateKey(k, input)
                reqs.append(.init(key: k, op: .doesNotExist, values: []))
            } else {
                let k = readKey()
                guard !k.isEmpty else { throw SelectorError("invalid selector \"\(input)\": expected a key") }
                skipSpace()
                if s.hasPrefix("==") || s.hasPrefix("!=") || s.hasPrefix("=") {
                    let op: Op = s.hasPrefix("!=") ? .notEquals : .equals
                    s.removeFirst(s.hasPrefix("=") && !s.hasPrefix("==") ? 1 : 2)
                    skipSpace()
                    let v = readValue()
                    if !fieldSelector { try validateKey(k, input); try validateValue(v, input) }
                    reqs.append(.init(key: k, op: op, values: [v]))
                } else if !fieldSelector, s.hasPrefix("in ") || s.hasPrefix("in(") || s.hasPrefix("notin ") || s.hasPrefix("notin(") {
                    let op: Op = s.hasPrefix("in") ? .in : .notIn
                    s.removeFirst(op == .in ? 2 : 5)
                    skipSpace()
                    guard s.first == "(" else { throw SelectorError("invalid selector \"\(input)\": expected '(' after \(op == .in ? "in" : "notin")") }
                    s.removeFirst()
                    var values: [String] = []
                    while true {
                        skipSpace()
                        let v = readValue()
                        try validateValue(v, input)
                        if !v.isEmpty { values.append(v) }
                        skipSpace()
                        if s.first == "," { s.removeFirst(); continue }
                        if s.first == ")" { s.removeFirst(); break }
                        throw SelectorError("invalid selector \"\(input)\": expected ',' or ')' in value set")
                    }
                    try validateKey(k, input)
                    reqs.append(.init(key: k, op: op, values: values))
                } else if s.isEmpty || s.first == "," {
                    guard !fieldSelector else { throw SelectorError("invalid field selector \"\(input)\": expected operator") }
                    try validateKey(k, input)
                    reqs.append(.init(key: k, op: .exists, values: []))
                } else {
                    throw SelectorError("invalid selector \"\(input)\": unexpected \"\(s.prefix(10))\" after key \"\(k)\"")
                }
            }
            skipSpace()
            if s.isEmpty { break }
            guard s.first == "," else { throw SelectorError("invalid selector \"\(input)\": expected ',' but found \"\(s.prefix(10))\"") }
            s.removeFirst()
        }
        return Selector(requirements: reqs)
    }

    static func validateKey(_ k: String, _ input: String) throws {
        if let e = Validation.qualifiedName(k) { throw SelectorError("invalid label key \"\(k)\" in selector \"\(input)\": \(e)") }
    }
    static func validateValue(_ v: String, _ input: String) throws {
        if let e = Validation.labelValue(v) { throw SelectorError("invalid label value \"\(v)\" in selector \"\(input)\": \(e)") }
    }
}
