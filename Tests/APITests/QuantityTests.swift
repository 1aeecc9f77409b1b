import Testing
@testable import API

@Suite struct QuantityTests {
    @Test(arguments: [
        ("500m", Int64(500), "500m"), ("1.5", 1500, "1500m"), ("2", 2000, "2"), ("128Mi", 128 * 1024 * 1024 * 1000, "128Mi"),
        ("1G", 1_000_000_000_000, "1G"), ("1Gi", 1_073_741_824_000, "1Gi"), ("0.5Gi", 536_870_912_000, "512Mi"),
        ("1e3", 1_000_000, "1k"), ("100k", 100_000_000, "100k"), ("0", 0, "0"), ("0.1", 100, "100m"),
    ] as [(String, Int64, String)])
    func parsesAndNormalises(input: String, milli: Int64, canonical: String) throws {
        let q = try Quantity(parsing: input)
        #expect(q.milli == milli)
        #expect(q.description == canonical)
    }

    @Test(arguments: ["", "abc", "1Qi", "m", "1.2.3", "--1"])
    func rejectsMalformed(input: String) {
        #expect(throws: QuantityError.self) { try Quantity(parsing: input) }
    }

    @Test func decodesNumbersAndStrings() throws {
        let r = try KubeJSON.decode(ResourceList.self, from: Data(#"{"cpu": 1, "memory": "64Mi", "x": 0.25}"#.utf8))
        #expect(r["cpu"]?.milli == 1000)
        #expect(r["memory"]?.description == "64Mi")
        #expect(r["x"]?.description == "250m")
    }

    @Test func comparesByValue() throws {
        #expect(try Quantity(parsing: "500m") < Quantity(parsing: "1"))
        #expect(try Quantity(parsing: "1Ki") == Quantity(parsing: "1024"))
    }
}

import Foundation
