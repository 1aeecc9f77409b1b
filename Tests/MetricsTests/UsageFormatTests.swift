// Usage quantities and durations as metrics-server writes them and kubectl/the HPA read them,
// the history's CSV, and the terminal chart.
import Testing
import Foundation
import API
@testable import Controllers

@Suite struct UsageFormatTests {
    @Test(arguments: [
        (UInt64(0), "0"), (250_000_000, "250m"), (329_087_452, "329087452n"), (2_000_000_000, "2"),
        (1_500_000_000, "1500m"), (12_000, "12u"), (1_000, "1u"), (7, "7n"), (3_000_000_000_000, "3k"),
    ] as [(UInt64, String)])
    func cpuIsCanonicalDecimal(nanoCores: UInt64, text: String) {
        #expect(UsageQuantity.cpu(nanoCores: nanoCores) == text)
    }

    @Test(arguments: [
        (UInt64(0), "0"), (1023, "1023"), (1024, "1Ki"), (1536, "1536"), (4 << 20, "4Mi"), (2_748_180 * 1024, "2748180Ki"),
        (1 << 30, "1Gi"), (3 << 40, "3Ti"),
    ] as [(UInt64, String)])
    func memoryIsCanonicalBinary(bytes: UInt64, text: String) {
        #expect(UsageQuantity.memory(bytes: bytes) == text)
    }

    @Test func parsesBackRoundingUp() throws {
        #expect(try UsageQuantity.nanoValue("250m") == 250_000_000)
        #expect(try UsageQuantity.nanoValue("329087452n") == 329_087_452)
        #expect(try UsageQuantity.nanoValue("1.5") == 1_500_000_000)
        #expect(try UsageQuantity.nanoValue("12u") == 12_000)
        #expect(try UsageQuantity.value("2748180Ki") == 2_814_136_320)
        #expect(try UsageQuantity.value("1.5Ki") == 1536)
        #expect(try UsageQuantity.value("1k") == 1000)
        // Kubernetes' MilliValue rounds up: a nanocore over 400m is 401m.
        #expect(try UsageQuantity.milliValue("400000001n") == 401)
        #expect(try UsageQuantity.milliValue("399999999n") == 400)
        for bad in ["", "abc", "12X", "1.2.3Mi", "m"] {
            #expect(throws: QuantityError.self, "\(bad)") { try UsageQuantity.nanoValue(bad) }
        }
        // Every formatted value parses back to itself.
        for n: UInt64 in [0, 7, 12_000, 250_000_000, 329_087_452, 2_000_000_000] {
            #expect(try UsageQuantity.nanoValue(UsageQuantity.cpu(nanoCores: n)) == Int64(n))
        }
        for b: UInt64 in [0, 1023, 1536, 4 << 20, 2_748_180 * 1024] {
            #expect(try UsageQuantity.value(UsageQuantity.memory(bytes: b)) == Int64(b))
        }
    }

    @Test func windowsAreGoDurations() {
        #expect(goDuration(seconds: 1.001) == "1.001s")
        #expect(goDuration(seconds: 15) == "15s")
        #expect(goDuration(seconds: 0.5) == "500ms")
        #expect(goDuration(seconds: 90) == "1m30s")
        #expect(goDuration(seconds: 3600) == "1h0m0s")
        #expect(goDuration(seconds: 0) == "0s")
        for s in [0.0, 0.25, 1.001, 20.064, 90, 3661.5] { #expect(parseGoDuration(goDuration(seconds: s)).map { abs($0 - s) < 1e-9 } == true, "\(s)") }
        #expect(parseGoDuration("1m30s") == 90)
        #expect(parseGoDuration("500ms") == 0.5)
        #expect(parseGoDuration("1.5x") == nil)
        #expect(parseGoDuration("") == nil)
    }

    @Test func podMetricsBecomeHPASamples() throws {
        let json = """
        {"kind":"PodMetrics","apiVersion":"metrics.k8s.io/v1beta1","metadata":{"name":"web-1","namespace":"default"},
         "timestamp":"2026-01-02T03:04:05Z","window":"1.5s",
         "containers":[{"name":"a","usage":{"cpu":"250000001n","memory":"4Mi"}},{"name":"b","usage":{"cpu":"150m","memory":"1Ki"}}]}
        """
        let m = try KubeJSON.decode(PodMetrics.self, from: Data(json.utf8))
        let s = try MetricsAPIPodSource.sample(m)
        #expect(s.pod == "web-1")
        #expect(s.cpuMillicores == 401)       // 400.000001m, rounded up as MilliValue does
        #expect(s.memoryBytes == (4 << 20) + 1024)
        #expect(s.window == 1.5)
        #expect(s.timestamp == KubeTime.parse("2026-01-02T03:04:05Z"))
    }

    @Test func csvHasAHeaderAndEmptyCellsForUnknownUtilization() throws {
        let t = try #require(KubeTime.parse("2026-01-02T03:04:05.5Z"))
        let rows = [
            WorkloadMetricsSample(time: t, windowSeconds: 1, pods: 3, cpuTotalMillicores: 1200, cpuAverageMillicores: 400,
                                  memoryAverageBytes: 4_194_304, cpuUtilization: 200, memoryUtilization: 25, requestsPerSecond: 42.5),
            WorkloadMetricsSample(time: t.addingTimeInterval(60), windowSeconds: 60, pods: 2.5, cpuTotalMillicores: 100.0 / 3,
                                  cpuAverageMillicores: 13.3333, memoryAverageBytes: 1000, cpuUtilization: nil, memoryUtilization: nil),
        ]
        let lines = WorkloadMetricsSample.csv(rows).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines == [
            "timestamp,window_seconds,pods,cpu_total_millicores,cpu_average_millicores,memory_average_bytes,cpu_utilization_percent,memory_utilization_percent,requests_per_second",
            "2026-01-02T03:04:05.500Z,1,3,1200,400,4194304,200,25,42.5",
            "2026-01-02T03:05:05.500Z,60,2.5,33.333,13.333,1000,,,",
            "",
        ])
        // Every line has as many cells as the header.
        for l in lines.dropLast() { #expect(l.split(separator: ",", omittingEmptySubsequences: false).count == 9) }
        // JSON round trip keeps the figures (to three decimals) and the absent utilization.
        let list = WorkloadMetricsList(workload: WorkloadRef(namespace: "default", kind: "Deployment", name: "web"), items: rows)
        let back = try KubeJSON.decode(WorkloadMetricsList.self, from: try KubeJSON.encode(list))
        #expect(back.items[0] == rows[0])
        #expect(back.items[1].cpuUtilization == nil && back.items[1].cpuTotalMillicores == 33.333 && back.items[1].requestsPerSecond == nil)
    }

    @Test func workloadKindsAreNormalised() {
        #expect(WorkloadMetricsGroup.canonicalKind("deployment") == "Deployment")
        #expect(WorkloadMetricsGroup.canonicalKind("deploy") == "Deployment")
        #expect(WorkloadMetricsGroup.canonicalKind("replicasets") == "ReplicaSet")
        #expect(WorkloadMetricsGroup.canonicalKind("po") == "Pod")
        #expect(WorkloadMetricsGroup.canonicalKind("StatefulSet") == "StatefulSet")
        #expect(WorkloadMetricsGroup.canonicalKind("nodes") == nil)
        #expect(WorkloadMetricsGroup.canonicalKind("") == nil)
    }
}

@Suite struct TextChartTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    @Test func pointsFillTheColumnsTheirWindowCovers() {
        let chart = TextChart(title: "t", width: 10, height: 2)
        // 100 s over 10 columns: a 30 s sample ending at +60 covers columns 3, 4 and 5.
        let cols = chart.columns([.init(time: t0.addingTimeInterval(60), value: 5, window: 30)], from: t0, to: t0.addingTimeInterval(100))
        #expect(cols.map { $0 != nil } == [false, false, false, true, true, true, false, false, false, false])
        // An instant lands in exactly one column; mean and max reduce differently.
        let pts: [TextChart.Point] = [.init(time: t0.addingTimeInterval(15), value: 2), .init(time: t0.addingTimeInterval(16), value: 4)]
        #expect(chart.columns(pts, from: t0, to: t0.addingTimeInterval(100))[1] == 3)
        #expect(TextChart(title: "t", width: 10, height: 2, reduce: .max).columns(pts, from: t0, to: t0.addingTimeInterval(100))[1] == 4)
    }

    @Test func axisTopIsARoundFigure() {
        #expect(TextChart.niceCeiling(6) == 6)
        #expect(TextChart.niceCeiling(7) == 8)
        #expect(TextChart.niceCeiling(1201) == 1500)
        #expect(TextChart.niceCeiling(2400) == 2500)
        #expect(TextChart.niceCeiling(0) == 1)
        #expect(abs(TextChart.niceCeiling(0.29) - 0.3) < 1e-12)
    }

    @Test func rendersBarsAxisLabelsAndGaps() {
        // Columns 0-3 at 0, 4, 8 and 2; columns 4-5 without data; 6-7 at 8.
        let values: [Double?] = [0, 4, 8, 2, nil, nil, 8, 8]
        let pts = values.enumerated().compactMap { i, v in v.map { TextChart.Point(time: t0.addingTimeInterval(Double(i) * 10 + 10), value: $0, window: 10) } }
        let lines = TextChart(title: "CPU", width: 8, height: 2, label: { "\(Int($0))m" }).render(pts, from: t0, to: t0.addingTimeInterval(80))
        #expect(lines == [
            "CPU",
            "8m ┤  █   ██",
            "   │ ██▄  ██",     // 4 of 8 fills the lower row; 2 is half of it (▄); 0 draws nothing
            "0m └────╌╌──",     // dotted under the columns without data
            "    -80s now",
        ])
    }

    @Test func historyReportSummarisesAndCharts() {
        let now = t0.addingTimeInterval(600)
        let items = (0..<600).map { (i: Int) -> WorkloadMetricsSample in
            let high = i >= 300
            let pods: Double = high ? 3 : 1, cpu: Double = high ? 1200 : 100, avg: Double = high ? 400 : 100, util: Double = high ? 200 : 50
            return WorkloadMetricsSample(time: t0.addingTimeInterval(Double(i + 1)), windowSeconds: 1, pods: pods, cpuTotalMillicores: cpu,
                                         cpuAverageMillicores: avg, memoryAverageBytes: Double(4 << 20), cpuUtilization: util, memoryUtilization: nil)
        }
        let out = HistoryReport.render(WorkloadMetricsList(workload: WorkloadRef(namespace: "default", kind: "Deployment", name: "web"), items: items),
                                       since: 600, now: now, width: 40)
        #expect(out[0] == "deployment/web (namespace default): 600 samples over the last 10m")
        #expect(out[1].contains("3 pods, cpu 1200m total (400m per pod, 200% of requests), memory 4Mi per pod"))
        #expect(out.contains("CPU, all pods (cores)") && out.contains("Pods") && out.contains("CPU utilization (% of requests)"))
        // 1200m of a 1500m axis is 51 of 64 eighths: the second half's bars end in row 7 of 8
        // with ▃; the first half (100m) stays in the bottom row.
        let chart = out.firstIndex(of: "CPU, all pods (cores)")!
        let blank20 = String(repeating: " ", count: 20)
        let topRow: String = "1500m ┤" + blank20 + blank20
        let row7: String = "      │" + blank20 + String(repeating: "▃", count: 20)
        let row1: String = "      │" + String(repeating: "▄", count: 20) + String(repeating: "█", count: 20)
        #expect(out[chart + 1] == topRow)
        #expect(out[chart + 2] == row7)
        #expect(out[chart + 8] == row1)
        #expect(!out.contains("Requests per second, all pods (through Services)"))
        // Request rates, when Services sent the pods traffic: in the summary and their own chart.
        let withRates = items.map { s -> WorkloadMetricsSample in var s = s; s.requestsPerSecond = s.pods * 10.04; return s }
        let rated = HistoryReport.render(WorkloadMetricsList(workload: WorkloadRef(namespace: "default", kind: "Deployment", name: "web"), items: withRates),
                                         since: 600, now: now, width: 40)
        #expect(rated[1].hasSuffix("memory 4Mi per pod, 30.1 requests/s"))
        #expect(rated.contains("Requests per second, all pods (through Services)"))
        let empty = HistoryReport.render(WorkloadMetricsList(workload: WorkloadRef(namespace: "default", kind: "Pod", name: "p"), items: []),
                                         since: 60, now: now, width: 40)
        #expect(empty.count == 2 && empty[1].hasPrefix("no samples"))
    }
}
