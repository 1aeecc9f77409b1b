// The shipped traces (hack/traces, written by hack/gen-traces) through the HPA's own code, on
// HPAReplay's modelled workload with a manual clock: the forecaster's error is bounded, and
// predictive scaling keeps its recorded advantage over reactive scaling.
import Testing
import Foundation
import API
import Controllers

func shippedTrace(_ name: String) throws -> RateTrace {
    let root = #filePath.components(separatedBy: "/Tests/")[0]
    let path = "\(root)/hack/traces/\(name).csv"
    return try RateTrace.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
}

@Suite struct HPAReplayTests {
    @Test func tracesParseAndBadOnesAreRefusedByLine() throws {
        let d = try shippedTrace("diurnal")
        #expect(d.seconds.count == 3 * 1440 && d.duration == 3 * 86400 - 60)
        #expect(abs(d.rate(at: 30) - 20) < 0.01)
        #expect(throws: (any Error).self) { try RateTrace.parse("seconds,rps\n0,1\n", file: "t.csv") }
        do { _ = try RateTrace.parse("seconds,requests_per_second\n0,1\n60,2\n30,3\n", file: "t.csv"); Issue.record("accepted") } catch {
            #expect("\(error)" == "t.csv: line 4: seconds 30 is not after the line before's 60")
        }
        do { _ = try RateTrace.parse("seconds,requests_per_second\n0,1\n60,-2\n", file: "t.csv"); Issue.record("accepted") } catch {
            #expect("\(error)" == "t.csv: line 3: requests_per_second \"-2\" is not a non-negative number")
        }
    }

    /// One-step-ahead error of the forecaster on the third day of the diurnal trace, with the two
    /// days before as history: MAPE of the demand forecast `lookahead` ahead, sampled hourly.
    @Test func forecastErrorOnTheDiurnalTraceIsBounded() throws {
        let trace = try shippedTrace("diurnal")
        let origin = Date(timeIntervalSince1970: 1_800_000_000)
        var history: [UtilizationSample] = []
        for t in stride(from: 0.0, to: 3 * 86400, by: 120) {
            let demand = trace.rate(at: t) * 10   // percent of one pod's request (10 req/s per pod)
            let pods = max(1, Int((demand / 70).rounded(.up)))
            history.append(UtilizationSample(time: origin.addingTimeInterval(t), utilization: demand / Double(pods), pods: pods))
        }
        var errors: [Double] = []
        for hour in 0..<24 {
            let now = 2 * 86400 + Double(hour) * 3600
            let f = try UtilizationPredictor.forecast(history.filter { $0.time.timeIntervalSince(origin) <= now && $0.time.timeIntervalSince(origin) > now - 2 * 86400 },
                                                      resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 300).get()
            #expect(f.period.map { abs($0 - 86400) < 600 } == true, "hour \(hour): \(f.describeMethod)")
            let actual = trace.rate(at: now + 300) * 10
            errors.append(abs(f.predicted - actual) / actual)
        }
        let mape = errors.reduce(0, +) / Double(errors.count) * 100
        // The trace's days repeat exactly, so the seasonal forecast should be nearly exact.
        #expect(mape < 2, "MAPE \(mape) %")
    }

    /// Holt-Winters (the other forecaster) on the same day: its error is bounded too, and
    /// quantile headroom raises a forecast by the backtested shortfall, never lowers it.
    @Test func holtWintersAndHeadroomOnTheShippedTraces() throws {
        let origin = Date(timeIntervalSince1970: 1_800_000_000)
        // Bounds: the diurnal days repeat exactly (measured 0.006 %); the weekly trace has ±8 %
        // noise a minute (measured 5.0 %). A weekday of the weekly trace whose two days before
        // are weekdays too: two days of history (what the controller reads) cannot know a
        // weekend from a Friday.
        for (name, day, bound) in [("diurnal", 2.0, 1.0), ("weekly-noise", 10.0, 7.0)] {
            let trace = try shippedTrace(name)
            var history: [UtilizationSample] = []
            for t in stride(from: 0.0, to: trace.duration, by: 120) {
                let demand = trace.rate(at: t) * 10
                let pods = max(1, Int((demand / 70).rounded(.up)))
                history.append(UtilizationSample(time: origin.addingTimeInterval(t), utilization: demand / Double(pods), pods: pods))
            }
            var hw = PredictorConfig(); hw.method = .holtWinters
            var headroom = PredictorConfig(); headroom.headroomQuantile = 0.9
            var errors: [Double] = []
            for hour in 0..<24 {
                let now = day * 86400 + Double(hour) * 3600
                let h = history.filter { $0.time.timeIntervalSince(origin) <= now && $0.time.timeIntervalSince(origin) > now - 2 * 86400 }
                let f = try UtilizationPredictor.forecast(h, resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 300, config: hw).get()
                #expect(f.period.map { abs($0 - 86400) < 600 } == true, "\(name) hour \(hour): \(f.describeMethod)")
                let actual = trace.rate(at: now + 300) * 10
                errors.append(abs(f.predicted - actual) / actual)
                let plain = try UtilizationPredictor.forecast(h, resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 300).get()
                let raised = try UtilizationPredictor.forecast(h, resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 300, config: headroom).get()
                #expect(raised.predicted >= plain.predicted, "\(name) hour \(hour): headroom lowered the forecast")
            }
            let mape = errors.reduce(0, +) / Double(errors.count) * 100
            #expect(mape < bound, "\(name): Holt-Winters MAPE \(mape) %")
        }
    }

    /// History recorded at another scale (here 1.25 times the present's load: back data from a
    /// system where a request cost more, or a busier week): both ways of meeting the present
    /// (adding the difference, or scaling by the ratio) keep the forecast error small.
    @Test func historyAtAnotherScaleIsCorrected() throws {
        let trace = try shippedTrace("diurnal")
        let origin = Date(timeIntervalSince1970: 1_800_000_000)
        var history: [UtilizationSample] = []
        for t in stride(from: 0.0, to: 3 * 86400, by: 60) {
            let demand = trace.rate(at: t) * 10 * (t < 2 * 86400 ? 1.25 : 1)
            let pods = max(1, Int((demand / 70).rounded(.up)))
            history.append(UtilizationSample(time: origin.addingTimeInterval(t), utilization: demand / Double(pods), pods: pods))
        }
        for adjustment in PredictorConfig.SeasonalAdjustment.allCases {
            var config = PredictorConfig()
            config.seasonalAdjustment = adjustment
            var errors: [Double] = []
            // Every hour of the third day after the first (the present needs a window of its own).
            for hour in 1..<24 {
                let now = 2 * 86400 + Double(hour) * 3600
                let f = try UtilizationPredictor.forecast(history.filter { $0.time.timeIntervalSince(origin) <= now && $0.time.timeIntervalSince(origin) > now - 2 * 86400 },
                                                          resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 1800, config: config).get()
                let actual = trace.rate(at: now + 1800) * 10
                errors.append(abs(f.predicted - actual) / actual)
            }
            let mape = errors.reduce(0, +) / Double(errors.count) * 100
            #expect(mape < 3, "\(adjustment): MAPE \(mape) %")
        }
    }

    /// A replay compressed 72 times, with the history read in 15-second buckets (as the
    /// controller reads metrics.db): the compressed trend window (about 4 s) holds no sample,
    /// yet the forecast still meets the present rather than repeating past cycles as they were.
    @Test func aCompressedReplayStillMeetsThePresent() throws {
        let trace = try shippedTrace("diurnal")
        let c = 72.0, origin = Date(timeIntervalSince1970: 1_800_000_000)
        let now = (2 * 86400 + 7 * 3600) / c                          // 07:00 on day 3, compressed
        var history: [UtilizationSample] = []
        // Buckets every 15 real seconds; the newest is 10 s old. The days before ran 1.3 times higher.
        for t in stride(from: now - 2 * 86400 / c, through: now - 10, by: 15) {
            let demand = trace.rate(at: t * c) * 10 * (t < 2 * 86400 / c ? 1.3 : 1)
            history.append(UtilizationSample(time: origin.addingTimeInterval(t), utilization: demand / 10, pods: 10))
        }
        let f = try UtilizationPredictor.forecast(history, resource: "cpu", now: origin.addingTimeInterval(now), lookahead: 2,
                                                  config: PredictorConfig().compressed(by: c)).get()
        let actual = trace.rate(at: (now + 2) * c) * 10
        #expect(f.period.map { abs($0 - 86400 / c) < 60 } == true, "\(f.describeMethod)")
        // Past cycles as they were would be 30 % high; what is left is the ramp's growth over
        // the present's window (three buckets, 54 trace minutes of a steep morning).
        #expect(abs(f.predicted - actual) / actual < 0.12, "predicted \(f.predicted), actual \(actual)")
    }

    /// The morning ramp of the diurnal trace's third day (05:00 to 10:00), the two days before
    /// imported as history: the forecast must buy less time over the target than reactive
    /// scaling alone, for at most 10 % more pod-seconds and no more direction changes.
    @Test func predictiveBeatsReactiveOnTheMorningRamp() async throws {
        let trace = try shippedTrace("diurnal")
        var cfg = HPAReplayConfig()
        cfg.start = 2 * 86400 + 5 * 3600
        cfg.end = 2 * 86400 + 10 * 3600
        cfg.syncPeriod = 60
        let reactive = await HPAReplay.run(trace, cfg)
        cfg.predictive = true
        let predictive = await HPAReplay.run(trace, cfg)
        let figures = "reactive \(Int(reactive.overloadedSeconds)) s over target, \(Int(reactive.podSeconds)) pod-s, \(reactive.directionChanges) changes; " +
            "predictive \(Int(predictive.overloadedSeconds)) s, \(Int(predictive.podSeconds)) pod-s, \(predictive.directionChanges) changes"
        #expect(reactive.scaleUps > 0 && reactive.overloadedSeconds > 0, "\(figures)")
        #expect(predictive.overloadedSeconds < reactive.overloadedSeconds, "\(figures)")
        #expect(predictive.podSeconds <= reactive.podSeconds * 1.1, "\(figures)")
        #expect(predictive.directionChanges <= reactive.directionChanges, "\(figures)")
        // Recorded 2026-12-03 (predictive scaling up on any forecast above target): reactive
        // 11,261 s over target and 138,590 pod-s, predictive 1,250 s and 152,148 pod-s, no
        // direction changes. The replay is deterministic; 5 % is room for a deliberate change of
        // the algorithm, not noise.
        #expect(predictive.overloadedSeconds <= 1250 * 1.05, "overloaded time got worse than recorded: \(figures)")
    }
}
