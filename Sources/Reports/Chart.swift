import Foundation

/// Axis ticks at round values: 1-2-5 steps on linear axes (Heckbert, "Nice numbers for graph
/// labels", Graphics Gems 1990), decades on logarithmic ones (with 2 and 5 between them when the
/// range spans less than two decades).
public enum Ticks {
    /// About `target` ticks at multiples of a 1-2-5 step, the first ≤ low and the last ≥ high, so
    /// the axis spans them; a single value gets a single tick.
    public static func linear(low: Double, high: Double, target: Int = 5) -> [Double] {
        guard low.isFinite, high.isFinite else { return [] }
        // A range within rounding of a single value (0.1 and 0.10000000000000002) is one value.
        guard high - low > 1e-9 * max(abs(low), abs(high)) else { return [low] }
        let step = niceStep((high - low) / Double(max(target - 1, 1)))
        let first = (low / step).rounded(.down)
        let last = (high / step).rounded(.up)
        // k·step, not a running sum, so every tick is exactly a multiple of the step.
        return stride(from: first, through: last, by: 1).map { clean($0 * step, step: step) }
    }

    /// Decades 10ᵏ covering [low, high] (both positive), at most about eight of them (every other
    /// decade or sparser beyond that); with fewer than three decades, 1-2-5 multiples in between.
    public static func logarithmic(low: Double, high: Double) -> [Double] {
        guard low > 0, high > 0, low.isFinite, high.isFinite else { return [] }
        let first = Int(log10(low).rounded(.down))
        let last = Int(log10(high).rounded(.up))
        guard last > first else { return [pow(10, Double(first))] }
        let decades = last - first
        if decades < 3 {
            // 1-2-5 multiples of each decade, from the last one ≤ low to the first one ≥ high.
            let sequence = (first...last).flatMap { k in [1.0, 2, 5].map { $0 * pow(10, Double(k)) } }
            let start = sequence.lastIndex { $0 <= low * (1 + 1e-12) } ?? 0
            let end = sequence.firstIndex { $0 >= high * (1 - 1e-12) } ?? sequence.count - 1
            return Array(sequence[start...end])
        }
        let every = Int((Double(decades) / 8).rounded(.up))
        let start = Int((Double(first) / Double(every)).rounded(.down)) * every
        let end = Int((Double(last) / Double(every)).rounded(.up)) * every
        return stride(from: start, through: end, by: every).map { pow(10, Double($0)) }
    }

    /// The axis range of a log axis over [low, high]: the enclosing 1-2-5 values (…, 1, 2, 5, 10,
    /// …), so the data fill the plot while the labelled ticks stay at decades (or 1-2-5 values).
    public static func logarithmicBounds(low: Double, high: Double) -> (low: Double, high: Double) {
        guard low > 0, high > 0, low.isFinite, high.isFinite else { return (1, 10) }
        let first = Int(log10(low).rounded(.down))
        let last = Int(log10(high).rounded(.up))
        let sequence = (first...max(last, first + 1)).flatMap { k in [1.0, 2, 5].map { $0 * pow(10, Double(k)) } }
        let lower = sequence.last { $0 <= low * (1 + 1e-12) } ?? sequence[0]
        let upper = sequence.first { $0 >= high * (1 - 1e-12) } ?? sequence[sequence.count - 1]
        return (lower, max(upper, lower * 2))
    }

    /// The 1-2-5 number nearest to `raw` (1, 2, 5, 10, 20, …), rounding as Heckbert's "nice
    /// number" does: mantissas below 1.5 give 1, below 3 give 2, below 7 give 5, else 10.
    static func niceStep(_ raw: Double) -> Double {
        let exponent = log10(raw).rounded(.down)
        let fraction = raw / pow(10, exponent)
        let nice: Double = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        return nice * pow(10, exponent)
    }

    /// A multiple of `step` without the binary noise of k·step (0.30000000000000004 → 0.3).
    static func clean(_ value: Double, step: Double) -> Double {
        let decimals = max(0, Int(-log10(step).rounded(.down)) + 1)
        let scale = pow(10, Double(min(decimals, 15)))
        let rounded = (value * scale).rounded() / scale
        return rounded == 0 ? 0 : rounded
    }

    /// Labels for linear ticks: as many decimals as the step needs, the same for every tick.
    public static func labels(linear ticks: [Double]) -> [String] {
        let step = ticks.count > 1 ? abs(ticks[1] - ticks[0]) : 0
        guard step > 0, step.isFinite else { return ticks.map { label($0) } }
        let magnitude = ticks.map(abs).max() ?? 0
        if magnitude >= 1e5 || (magnitude > 0 && magnitude < 1e-3) {
            return ticks.map {
                $0 == 0 ? "0" : String(format: "%.\(max(0, significantDigits(step, magnitude) - 1))e", $0)
            }
        }
        let decimals = max(0, Int(-log10(step).rounded(.down)))
        return ticks.map { String(format: "%.\(decimals)f", $0 == 0 ? 0 : $0) }
    }

    /// Labels for decade (and 1-2-5) ticks on a log axis.
    public static func labels(logarithmic ticks: [Double]) -> [String] { ticks.map { label($0) } }

    private static func significantDigits(_ step: Double, _ magnitude: Double) -> Int {
        max(1, Int(log10(magnitude).rounded(.down) - log10(step).rounded(.down)) + 1)
    }

    /// One value, as short as it can be written exactly enough for an axis.
    static func label(_ value: Double) -> String {
        if value == 0 { return "0" }
        let magnitude = abs(value)
        if magnitude >= 1e5 || magnitude < 1e-3 {
            let exponent = Int(log10(magnitude).rounded(.down))
            let mantissa = value / pow(10, Double(exponent))
            let text =
                abs(mantissa - mantissa.rounded()) < 1e-9
                ? String(Int(mantissa.rounded())) : String(format: "%.2g", mantissa)
            return "\(text)e\(exponent)"
        }
        var text = String(format: "%.6g", value)
        if text.contains("e") { text = String(format: "%.6f", value) }
        return text
    }
}

/// A line chart as inline SVG. Every series' values are also written, at full precision, into a
/// `data-values` attribute, so tests (and scripts) can check that the page shows the recorded numbers.
///
/// Axes carry round tick values (`Ticks`); a chart of a quantity that is never negative keeps its
/// axis at or above zero; fitted lines are clipped to the plot and do not set its range; a series
/// with a single point is drawn as a labelled point; the legend sits above the plot, off the data;
/// and values that are not finite (a diverged run) end the lines, with a marker at the first.
struct Chart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
        /// Optional lower/upper band drawn behind the line (e.g. the workers' min–max).
        var band: [(x: Double, low: Double, high: Double)] = []
        var dashed = false
        var markers = false
        /// A fitted or reference line: clipped to the plot, it does not set the axis range.
        var fitted = false
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var logY = false
    var logX = false
    /// The quantity is never negative (a distance, a loss, an accuracy): the y axis stays ≥ 0.
    var nonNegative = false
    var width = 640.0
    var height = 300.0

    private let left = 64.0
    private let right = 16.0
    private let bottom = 44.0

    var hasData: Bool { series.contains { !$0.points.isEmpty } }

    /// The legend's rows: entries laid out left to right, wrapping at the plot's width.
    private func legendLayout(plotWidth: Double) -> [(index: Int, x: Double, row: Int)] {
        var placed: [(Int, Double, Int)] = []
        var x = 0.0
        var row = 0
        for (index, s) in series.enumerated() {
            let entryWidth = 30 + 6.5 * Double(s.name.count)
            if x > 0 && x + entryWidth > plotWidth {
                row += 1
                x = 0
            }
            placed.append((index, x, row))
            x += entryWidth + 12
        }
        return placed
    }

    func svg(id: String) -> String {
        var parts = [
            "<svg id=\"\(id)\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">",
            "<text x=\"\(left)\" y=\"18\" class=\"title\">\(escape(title))</text>",
        ]
        let plotWidth = width - left - right
        let legend = legendLayout(plotWidth: plotWidth)
        let legendRows = (legend.map(\.row).max() ?? -1) + 1
        let top = 30 + 15 * Double(legendRows)
        let plotHeight = height - top - bottom
        let usableY = { (y: Double) in y.isFinite && (!logY || y > 0) }
        let usableX = { (x: Double) in x.isFinite && (!logX || x > 0) }
        let ranged = series.filter { !$0.fitted }
        let ys = ranged.flatMap { $0.points.map(\.y) + $0.band.flatMap { [$0.low, $0.high] } }.filter(usableY)
        let xs = series.flatMap { $0.points.map(\.x) + $0.band.map(\.x) }.filter(usableX)
        guard let yMin = ys.min(), let yMax = ys.max(), let xMin = xs.min(), let xMax = xs.max() else {
            parts.append(
                "<text x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>"
            )
            return parts.joined(separator: "\n")
        }
        // Y axis: round ticks spanning the data (and zero's side of it for a non-negative quantity).
        let yTicks: [Double]
        if logY {
            yTicks = Ticks.logarithmic(low: yMin, high: yMax)
        } else if Ticks.linear(low: yMin, high: yMax).count < 2 {
            let pad = yMin == 0 ? 1 : abs(yMin) * 0.1
            yTicks = Ticks.linear(low: nonNegative ? max(0, yMin - pad) : yMin - pad, high: yMax + pad)
        } else {
            let linear = Ticks.linear(low: yMin, high: yMax)
            yTicks = nonNegative ? linear.filter { $0 >= 0 } : linear
        }
        func t(_ v: Double, log: Bool) -> Double { log ? log10(v) : v }
        let yBounds = logY ? Ticks.logarithmicBounds(low: yMin, high: yMax) : (yTicks.first!, yTicks.last!)
        let yLow = t(yBounds.0, log: logY)
        let yHigh = max(t(yBounds.1, log: logY), yLow + 1e-12)
        // X axis: round ticks over the data; a single x value gets one tick in the middle.
        let singleX = logX ? xMin == xMax : Ticks.linear(low: xMin, high: xMax).count < 2
        let xBounds = logX ? Ticks.logarithmicBounds(low: xMin, high: xMax) : (0, 0)
        let xTicks =
            logX
            ? Ticks.logarithmic(low: xMin, high: xMax).filter { $0 >= xBounds.0 && $0 <= xBounds.1 }
            : Ticks.linear(low: xMin, high: xMax)
        var xLow = t(logX ? xBounds.0 : xTicks.first!, log: logX)
        var xHigh = t(logX ? xBounds.1 : xTicks.last!, log: logX)
        if singleX {
            xLow = t(xMin, log: logX) - 1
            xHigh = t(xMin, log: logX) + 1
        }
        func px(_ x: Double) -> Double { left + (t(x, log: logX) - xLow) / (xHigh - xLow) * plotWidth }
        func py(_ y: Double) -> Double { top + (1 - (t(y, log: logY) - yLow) / (yHigh - yLow)) * plotHeight }
        let clipID = "\(id)-plot"
        parts.append(
            "<defs><clipPath id=\"\(clipID)\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\"/></clipPath></defs>"
        )
        parts.append(
            "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" class=\"frame\"/>"
        )
        let shownY = logY ? yTicks.filter { $0 >= yBounds.0 * (1 - 1e-12) && $0 <= yBounds.1 * (1 + 1e-12) } : yTicks
        let yLabels = logY ? Ticks.labels(logarithmic: shownY) : Ticks.labels(linear: shownY)
        for (value, label) in zip(shownY, yLabels) {
            let y = py(value)
            parts.append(
                "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" class=\"grid\"/>")
            parts.append(
                "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\" class=\"tick\" data-tick=\"\(value)\">\(label)</text>"
            )
        }
        let shownX = singleX ? [xMin] : xTicks
        let xLabels = logX ? Ticks.labels(logarithmic: shownX) : Ticks.labels(linear: shownX)
        for (value, label) in zip(shownX, xLabels) {
            parts.append(
                "<text x=\"\(f(px(value)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\" data-tick=\"\(value)\">\(label)</text>"
            )
        }
        parts.append(
            "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" class=\"axis\">\(escape(xLabel))</text>"
        )
        parts.append(
            "<text x=\"14\" y=\"\(f(top + plotHeight / 2))\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 \(f(top + plotHeight / 2)))\">\(escape(yLabel))</text>"
        )
        let valid = { (x: Double, y: Double) in usableX(x) && usableY(y) }
        for s in series {
            let clip = " clip-path=\"url(#\(clipID))\""
            let band = s.band.filter { valid($0.x, $0.low) && valid($0.x, $0.high) }
            if band.count > 1 {
                let upper = band.map { "\(f(px($0.x))),\(f(py($0.high)))" }
                let lower = band.reversed().map { "\(f(px($0.x))),\(f(py($0.low)))" }
                parts.append(
                    "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(s.color)\" fill-opacity=\"0.18\" stroke=\"none\"\(clip)/>"
                )
            }
            // A diverged series ends at its first value that is not finite.
            let finitePrefix = s.points.prefix { $0.x.isFinite && $0.y.isFinite }
            let points = finitePrefix.filter { valid($0.x, $0.y) }
            let values = s.points.map { "\($0.x):\($0.y)" }.joined(separator: " ")
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            parts.append(
                "<polyline class=\"series\" data-series=\"\(escape(s.name))\" data-values=\"\(values)\" points=\"\(points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(dash)\(clip)/>"
            )
            if s.markers || points.count == 1 {
                for p in points {
                    parts.append(
                        "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" fill=\"\(s.color)\"\(clip)/>")
                }
            }
            if points.count == 1, let p = points.first {
                // A single measurement: labelled with its value.
                let x = px(p.x)
                let anchor = x > left + plotWidth * 0.7 ? "end" : "start"
                parts.append(
                    "<text x=\"\(f(x + (anchor == "end" ? -6 : 6)))\" y=\"\(f(py(p.y) - 6))\" text-anchor=\"\(anchor)\" class=\"point-label\" fill=\"\(s.color)\">\(escape(s.name)) = \(Ticks.label(p.y))</text>"
                )
            }
            if s.points.count > finitePrefix.count, let bad = s.points.dropFirst(finitePrefix.count).first,
                usableX(bad.x)
            {
                let x = px(bad.x)
                parts.append(
                    "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight))\" stroke=\"\(s.color)\" stroke-dasharray=\"2 3\" class=\"diverged\"/>"
                )
                parts.append(
                    "<text x=\"\(f(x - 4))\" y=\"\(f(top + 12))\" text-anchor=\"end\" class=\"point-label\" fill=\"\(s.color)\">\(escape(s.name)) not finite (\(bad.y)) from \(Ticks.label(bad.x))</text>"
                )
            }
        }
        for entry in legend {
            let s = series[entry.index]
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            let x = left + entry.x
            let y = 30 + 15 * Double(entry.row) + 4
            parts.append(
                "<line x1=\"\(f(x))\" y1=\"\(f(y - 4))\" x2=\"\(f(x + 20))\" y2=\"\(f(y - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>"
            )
            parts.append("<text x=\"\(f(x + 25))\" y=\"\(f(y))\" class=\"legend\">\(escape(s.name))</text>")
        }
        parts.append("</svg>")
        return parts.joined(separator: "\n")
    }

    private func f(_ x: Double) -> String { String(format: "%.2f", x) }
}

/// A bar chart (the spectral density histogram).
struct BarChart {
    var title: String
    var xLabel: String
    var edges: [Double]
    var masses: [Double]
    var width = 640.0
    var height = 260.0

    func svg(id: String) -> String {
        var parts = [
            "<svg id=\"\(id)\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">",
            "<text x=\"64\" y=\"18\" class=\"title\">\(escape(title))</text>",
        ]
        guard !masses.isEmpty, let maximum = masses.max(), maximum > 0, let low = edges.first else {
            parts.append(
                "<text x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>"
            )
            return parts.joined(separator: "\n")
        }
        let high = edges.count > 1 ? edges.last! + (edges[1] - edges[0]) : low + 1
        let plotWidth = width - 80
        let plotHeight = height - 72
        let barWidth = plotWidth / Double(masses.count)
        parts.append(
            "<g class=\"bars\" data-values=\"\(zip(edges, masses).map { "\($0):\($1)" }.joined(separator: " "))\">")
        // Log-scaled heights: the bulk near zero and the few outliers (the top eigenvalues) both show.
        let floor = log10(max(masses.filter { $0 > 0 }.min() ?? maximum, maximum * 1e-8)) - 0.3
        let span = max(log10(maximum) - floor, 1e-12)
        for (k, mass) in masses.enumerated() {
            let h = mass > 0 ? (log10(mass) - floor) / span * plotHeight : 0
            parts.append(
                "<rect x=\(q(64 + Double(k) * barWidth)) y=\(q(28 + plotHeight - h)) width=\(q(max(barWidth - 1, 0.5))) height=\(q(h)) fill=\"#1f77b4\"/>"
            )
        }
        parts.append("</g>")
        parts.append("<rect x=\"64\" y=\"28\" width=\"\(plotWidth)\" height=\"\(plotHeight)\" class=\"frame\"/>")
        // Round ticks inside the histogram's range.
        let ticks = Ticks.linear(low: low, high: high).filter { $0 >= low && $0 <= high }
        for (value, label) in zip(ticks, Ticks.labels(linear: ticks)) {
            let x = 64 + (value - low) / (high - low) * plotWidth
            parts.append(
                "<text x=\"\(String(format: "%.2f", x))\" y=\"\(Int(28 + plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\" data-tick=\"\(value)\">\(label)</text>"
            )
        }
        parts.append(
            "<text x=\"\(Int(64 + plotWidth / 2))\" y=\"\(Int(height - 8))\" text-anchor=\"middle\" class=\"axis\">\(escape(xLabel))</text>"
        )
        parts.append(
            "<text x=\"14\" y=\"\(Int(28 + plotHeight / 2))\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 \(Int(28 + plotHeight / 2)))\">mass (log scale)</text>"
        )
        parts.append("</svg>")
        return parts.joined(separator: "\n")
    }

    private func q(_ x: Double) -> String { "\"\(String(format: "%.2f", x))\"" }
}

func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
