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

    /// The integer path gives what the Decimal path gives, or leaves the string to it.
    @Test func theIntegerPathAgreesWithDecimal() throws {
        let inputs = ["0", "1", "7", "500m", "1500m", "0.5", "0.001", "0.0001", "1.0005", "123.456m", "2.5Gi", "0.5Ki", "1Ei",
                      "3Pi", "9Ti", "100k", "1.5M", "64Mi", "999999999", "12345678901234", "1.123456789012345", "100P", "7.5P",
                      "110", "4096Mi", "0.1m", "1m", ".5", "5.", "0000012", "8E", "+1", "-1", "1e3", " 1", "1 ", "1.2.3", ".", "m", "Ki",
                      "1.5Xi", "9223372036854775807", "5000000P"]
        var fast = 0
        for s in inputs {
            let exact = try? Quantity.exactMilli(s)
            guard let plain = Quantity.plainMilli(s) else { continue }
            fast += 1
            #expect(exact?.0 == plain.0, "\(s): \(String(describing: exact)) against \(plain)")
            #expect(exact?.1 == plain.1, "\(s)")
        }
        #expect(fast >= 25)
        #expect(Quantity.plainMilli("-1") == nil && Quantity.plainMilli("1e3") == nil && Quantity.plainMilli(" 1") == nil)
    }

    @Test func comparesByValue() throws {
        #expect(try Quantity(parsing: "500m") < Quantity(parsing: "1"))
        #expect(try Quantity(parsing: "1Ki") == Quantity(parsing: "1024"))
    }
}

import Foundation
