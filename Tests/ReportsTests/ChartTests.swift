import XCTest

@testable import Reports

/// Axis ticks at round values and charts that read right.
final class ChartTests: XCTestCase {
    /// 1-2-5 steps covering the data: the first tick ≤ low, the last ≥ high, every tick a round
    /// multiple of the step, about five of them.
    func testLinearTicks_AreRoundMultiplesCoveringTheData() {
        XCTAssertEqual(Ticks.linear(low: 0.682, high: 0.843), [0.65, 0.7, 0.75, 0.8, 0.85])
        XCTAssertEqual(Ticks.linear(low: 0, high: 1), [0, 0.2, 0.4, 0.6, 0.8, 1])
        XCTAssertEqual(Ticks.linear(low: 3, high: 497), [0, 100, 200, 300, 400, 500])
        XCTAssertEqual(Ticks.linear(low: -1.4, high: 2.2), [-2, -1, 0, 1, 2, 3])
        XCTAssertEqual(Ticks.linear(low: 500, high: 500), [500], "one value, one tick")
        XCTAssertEqual(Ticks.linear(low: 0.1, high: 0.10000000000000002), [0.1], "equal within rounding")
        XCTAssertEqual(Ticks.linear(low: 1e-7, high: 3e-7), [1e-7, 1.5e-7, 2e-7, 2.5e-7, 3e-7])
        for (low, high) in [(0.1234, 9.87), (-37.0, 12.5), (1e4, 2.34e4), (0.00017, 0.00094)] {
            let ticks = Ticks.linear(low: low, high: high)
            XCTAssertLessThanOrEqual(ticks.first!, low)
            XCTAssertGreaterThanOrEqual(ticks.last!, high)
            XCTAssertTrue((4...8).contains(ticks.count), "\(low)…\(high): \(ticks)")
            let step = ticks[1] - ticks[0]
            let mantissa = step / pow(10, log10(step).rounded(.down))
            XCTAssertTrue(
                [1, 2, 5, 10].contains { abs(mantissa - $0) < 1e-9 }, "step \(step) is not 1-2-5 (\(ticks))")
        }
    }

    /// Labels carry as many decimals as the step needs, no more, and the same for every tick.
    func testLinearLabels() {
        XCTAssertEqual(Ticks.labels(linear: [0.65, 0.7, 0.75, 0.8]), ["0.65", "0.70", "0.75", "0.80"])
        XCTAssertEqual(Ticks.labels(linear: [0, 100, 200]), ["0", "100", "200"])
        XCTAssertEqual(Ticks.labels(linear: [-2, -1, 0, 1]), ["-2", "-1", "0", "1"])
        XCTAssertEqual(Ticks.labels(linear: [0, 2e-4, 4e-4]), ["0", "2e-04", "4e-04"])
    }

    /// Decades on log axes; 1-2-5 between them when the data spans less than three decades.
    func testLogTicks_AreDecades() {
        XCTAssertEqual(
            Ticks.logarithmic(low: 1e-9, high: 3e-2), [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
        XCTAssertEqual(Ticks.logarithmic(low: 1, high: 22.36), [1, 2, 5, 10, 20, 50])
        XCTAssertEqual(Ticks.logarithmic(low: 4.73, high: 4.73), [2, 5], "the enclosing 1-2-5 values")
        let wide = Ticks.logarithmic(low: 1e-20, high: 1)
        XCTAssertLessThanOrEqual(wide.count, 11)
        for tick in wide { XCTAssertEqual(log10(tick), log10(tick).rounded(), accuracy: 1e-9, "decades only") }
        XCTAssertEqual(Ticks.labels(logarithmic: [1e-6, 0.01, 1, 100, 1e6]), ["1e-6", "0.01", "1", "100", "1e6"])
    }

    private func ticks(_ svg: String, axis: String) -> [Double] {
        // y ticks are right-aligned ("end"), x ticks centred ("middle").
        let anchor = axis == "y" ? "end" : "middle"
        let pattern = #"text-anchor="\#(anchor)" class="tick" data-tick="([^"]+)""#
        let regex = try! NSRegularExpression(pattern: pattern)
        return regex.matches(in: svg, range: NSRange(svg.startIndex..., in: svg)).map {
            Double(svg[Range($0.range(at: 1), in: svg)!])!
        }
    }

    /// A non-negative quantity with a fitted line that dips below zero: the axis stays at zero,
    /// the fit is clipped to the plot, and the axis range comes from the data.
    func testNonNegativeAxis_WithAFittedLine() {
        let chart = Chart(
            title: "d", xLabel: "round", yLabel: "distance",
            series: [
                .init(name: "d", color: "#000", points: [(10, 0.5), (100, 1.5), (1000, 2.4)]),
                .init(
                    name: "fit", color: "#333", points: [(1, -1.4), (10, 0.5), (100, 1.5), (1000, 2.4)],
                    fitted: true),
            ], logX: true, nonNegative: true)
        let svg = chart.svg(id: "t")
        let y = ticks(svg, axis: "y")
        XCTAssertGreaterThanOrEqual(y.first!, 0, "never below zero, whatever the fit does")
        XCTAssertEqual(y.last, 2.5)
        XCTAssertTrue(svg.contains("clip-path=\"url(#t-plot)\""))
        // Decades labelled; the axis ends at the 1-2-5 value enclosing the data (1000), and a
        // 200-round run's axis would end at 200, not at the next decade.
        XCTAssertEqual(ticks(svg, axis: "x"), [1, 10, 100, 1000])
        XCTAssertEqual(Ticks.logarithmicBounds(low: 1, high: 200).high, 200)
        XCTAssertEqual(Ticks.logarithmicBounds(low: 3e-4, high: 0.0021).low, 2e-4)
    }

    /// One measurement: one x tick, a labelled point; no five ticks all reading 500.
    func testSinglePoint_IsALabelledPoint() {
        let chart = Chart(
            title: "λ", xLabel: "round", yLabel: "λ_max",
            series: [.init(name: "λ_max", color: "#d62728", points: [(500, 12.34)], markers: true)])
        let svg = chart.svg(id: "s")
        XCTAssertEqual(ticks(svg, axis: "x"), [500])
        XCTAssertTrue(svg.contains("λ_max = 12.34"), svg)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 1)
    }

    /// The legend is above the plot frame, never over the data.
    func testLegend_IsAboveThePlot() throws {
        let chart = Chart(
            title: "x", xLabel: "round", yLabel: "y",
            series: (0..<6).map { .init(name: "a long series name \($0)", color: "#000", points: [(1, 1), (2, 2)]) })
        let svg = chart.svg(id: "l")
        let frame = try XCTUnwrap(svg.range(of: #"class="frame""#))
        let frameTop = Double(
            svg[..<frame.lowerBound].components(separatedBy: "y=\"").last!.prefix { $0 != "\"" })!
        let legendYs = svg.components(separatedBy: "class=\"legend\"").dropLast().map {
            Double($0.components(separatedBy: "y=\"").last!.prefix { $0 != "\"" })!
        }
        XCTAssertEqual(legendYs.count, 6)
        for y in legendYs { XCTAssertLessThan(y, frameTop, "legend entry inside the plot") }
    }

    /// A diverged series ends at its first non-finite value, marked; the values keep the NaN.
    func testDivergedSeries_EndsWithAMarker() {
        let chart = Chart(
            title: "loss", xLabel: "round", yLabel: "loss",
            series: [.init(name: "loss", color: "#000", points: [(1, 2), (2, 1.5), (3, .nan), (4, 1)])],
            nonNegative: true)
        let svg = chart.svg(id: "d")
        XCTAssertTrue(svg.contains("class=\"diverged\""))
        XCTAssertTrue(svg.contains("loss not finite (nan) from 3"), svg)
        let points = svg.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }
        XCTAssertEqual(points.split(separator: " ").count, 2, "drawn up to the divergence")
    }

    /// Values equal within rounding (a constant accuracy summed in another order) draw a flat
    /// line on a padded axis, not a crash or a pile of identical ticks.
    func testValuesEqualWithinRounding_DrawAFlatLine() {
        let chart = Chart(
            title: "a", xLabel: "round", yLabel: "accuracy",
            series: [.init(name: "mean", color: "#000", points: [(10, 0.1), (20, 0.10000000000000002), (30, 0.1)])],
            nonNegative: true)
        let svg = chart.svg(id: "f")
        let y = ticks(svg, axis: "y")
        XCTAssertEqual(Set(y).count, y.count, "distinct ticks")
        XCTAssertGreaterThan(y.count, 1)
        XCTAssertLessThanOrEqual(y.first!, 0.1)
        XCTAssertGreaterThanOrEqual(y.last!, 0.1)
        XCTAssertEqual(Ticks.labels(linear: [0.1]), ["0.1"])
    }
}
