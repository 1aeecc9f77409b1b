import Testing
@testable import API

@Suite struct SelectorTests {
    let labels = ["app": "web", "tier": "front", "env": "prod"]

    @Test(arguments: [
        ("app=web", true), ("app==web", true), ("app!=web", false), ("app=db", false), ("tier in (front,back)", true),
        ("tier notin (front)", false), ("env", true), ("!env", false), ("missing", false), ("!missing", true),
        ("app=web,tier=front", true), ("app=web,tier=back", false), ("missing!=x", true), ("", true),
        ("env in (prod, staging)", true), ("tier notin (back)", true),
    ])
    func matches(selector: String, expected: Bool) throws {
        #expect(try Selector.parse(selector).matches(labels) == expected)
    }

    @Test(arguments: ["app in web", "=web", "app in (a,", "app=we b", "a=b,,", "tier notin (x"])
    func rejectsMalformed(selector: String) {
        #expect(throws: SelectorError.self) { try Selector.parse(selector) }
    }

    @Test func fieldSelectors() throws {
        let s = try Selector.parse("spec.nodeName=n1,status.phase!=Failed", fieldSelector: true)
        #expect(s.matches(["spec.nodeName": "n1", "status.phase": "Running"]))
        #expect(!s.matches(["spec.nodeName": "n2", "status.phase": "Running"]))
        #expect(!s.matches(["spec.nodeName": "n1", "status.phase": "Failed"]))
    }

    @Test func labelSelectorStruct() throws {
        let ls = LabelSelector(matchLabels: ["app": "web"], matchExpressions: [LabelSelectorRequirement(key: "env", operator: "In", values: ["prod", "qa"])])
        #expect(ls.matches(labels))
        #expect(!ls.matches(["app": "web", "env": "dev"]))
        #expect(ls.stringForm == "app=web,env in (prod,qa)")
        let bad = LabelSelector(matchExpressions: [LabelSelectorRequirement(key: "a", operator: "Like")])
        #expect(throws: SelectorError.self) { try bad.toSelector() }
    }
}
