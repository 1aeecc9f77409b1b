import Testing
import Foundation
import API

@Suite struct WorkloadMetricsImportTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func refused(_ csv: String) -> String {
        do { _ = try WorkloadMetricsImport.parse(csv, now: now); return "accepted" } catch { return error.description }
    }

    @Test func anExportImportsBackUnchanged() throws {
        var samples: [WorkloadMetricsSample] = []
        for i in 0..<5 {
            let d = Double(i)
            let time: Date = now.addingTimeInterval((d - 5) * 60)
            let util: Double = 40 + d
            samples.append(WorkloadMetricsSample(time: time, windowSeconds: 60, pods: 2 + d, cpuTotalMillicores: 400,
                                                 cpuAverageMillicores: 200, memoryAverageBytes: 4_194_304, cpuUtilization: util, memoryUtilization: nil))
        }
        let back = try WorkloadMetricsImport.parse(WorkloadMetricsSample.csv(samples), now: now)
        #expect(back == samples)
    }

    @Test func theSmallestFileUnixSecondsAnyColumnOrderCommentsAndCRLF() throws {
        let t0 = Int(now.timeIntervalSince1970) - 600
        let csv = "# exported from the old balancer\r\ncpu_utilization_percent,timestamp,pods\r\n55.5,\(t0),3\r\n\r\n61,\(t0 + 300),4\r\n"
        let s = try WorkloadMetricsImport.parse(csv, now: now)
        #expect(s.map(\.pods) == [3, 4] && s.map(\.cpuUtilization) == [55.5, 61] && s.map(\.memoryUtilization) == [nil, nil])
        #expect(s[0].time == Date(timeIntervalSince1970: Double(t0)))
        // Unstated windows: the gap to the sample before (the first: to the next).
        #expect(s.map(\.windowSeconds) == [300, 300])
    }

    @Test func requestRatesAloneAreAHistory() throws {
        let t0 = Int(now.timeIntervalSince1970) - 600
        let s = try WorkloadMetricsImport.parse("timestamp,pods,requests_per_second\n\(t0),3,120\n\(t0 + 60),4,160.5\n", now: now)
        #expect(s.map(\.requestsPerSecond) == [120, 160.5] && s.map(\.cpuUtilization) == [nil, nil])
        #expect(refused("timestamp,pods,requests_per_second\n\(t0),3,-1\n") == "line 2: requests_per_second: -1 is negative")
        #expect(refused("timestamp,pods,requests_per_second\n\(t0),3,\n").hasPrefix("line 2: no utilization or request rate"))
        // An export with request rates imports back unchanged.
        let rows = [WorkloadMetricsSample(time: now.addingTimeInterval(-120), windowSeconds: 60, pods: 2, cpuTotalMillicores: 10, cpuAverageMillicores: 5,
                                          memoryAverageBytes: 0, cpuUtilization: nil, memoryUtilization: nil, requestsPerSecond: 33.5)]
        #expect(try WorkloadMetricsImport.parse(WorkloadMetricsSample.csv(rows), now: now) == rows)
    }

    @Test func badFilesAreRefusedNamingTheLine() {
        let t = { (m: Int) in KubeTime.format(self.now.addingTimeInterval(Double(-m) * 60)) }
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,50\n\(t(12)),2,50\n") .hasPrefix("line 3: timestamp \(t(12)) is not after line 2's"))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,50\n\(t(10)),2,50\n").hasPrefix("line 3: "))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,-5\n") == "line 2: cpu_utilization_percent: -5 is negative")
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),-2,5\n") == "line 2: pods: -2 is negative")
        #expect(refused("timestamp,cpu_utilization_percent\n\(t(10)),50\n").hasPrefix("line 1: missing column \"pods\""))
        #expect(refused("timestamp,pods\n\(t(10)),2\n") == "line 1: no utilization or request-rate column: the header needs cpu_utilization_percent, memory_utilization_percent or requests_per_second")
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,50\n\(t(9)),2\n") == "line 3: 2 fields, the header has 3")
        #expect(refused("timestamp,pods,cpu_utilization_percent,rps\n").hasPrefix("line 1: unknown column \"rps\""))
        #expect(refused("timestamp,pods,pods,cpu_utilization_percent\n") == "line 1: column \"pods\" appears twice")
        #expect(refused("timestamp,pods,cpu_utilization_percent\nyesterday,2,50\n").hasPrefix("line 2: timestamp \"yesterday\" is neither RFC 3339"))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(KubeTime.format(now.addingTimeInterval(3600))),2,50\n").hasPrefix("line 2: timestamp") == true)
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(KubeTime.format(now.addingTimeInterval(3600))),2,50\n").contains("in the future"))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),0,50\n").hasPrefix("line 2: pods: 0"))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,\n") .hasPrefix("line 2: no utilization"))
        #expect(refused("timestamp,pods,cpu_utilization_percent\n\(t(10)),2,NaN\n") == "line 2: cpu_utilization_percent: \"NaN\" is not a number")
        #expect(refused("timestamp,pods,cpu_utilization_percent\n") .hasPrefix("no samples"))
        #expect(refused("\n# nothing\n").hasPrefix("the file is empty"))
    }
}
