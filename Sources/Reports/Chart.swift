import Foundation

/// A line chart as inline SVG. Every series' values are also written, at full precision, into a
/// `data-values` attribute, so tests (and scripts) can check that the page shows the recorded numbers.
struct Chart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
        /// Optional lower/upper band drawn behind the line (e.g. the workers' min–max).
        var band: [(x: Double, low: Double, high: Double)] = []
        var dashed = false
        var markers = false
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var logY = false
    var logX = false
    var width = 640.0
    var height = 300.0

    private let left = 64.0
    private let right = 16.0
    private let top = 28.0
    private let bottom = 44.0

    var hasData: Bool { series.contains { !$0.points.isEmpty } }

    func svg(id: String) -> String {
        var parts = [
            "<svg id=\"\(id)\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">",
            "<text x=\"\(left)\" y=\"18\" class=\"title\">\(escape(title))</text>",
        ]
        let ys = series.flatMap { $0.points.map(\.y) + $0.band.flatMap { [$0.low, $0.high] } }.filter {
            $0.isFinite && (!logY || $0 > 0)
        }
        let xs = series.flatMap { $0.points.map(\.x) + $0.band.map(\.x) }.filter { $0.isFinite && (!logX || $0 > 0) }
        guard let yMin0 = ys.min(), let yMax0 = ys.max(), let xMin0 = xs.min(), let xMax0 = xs.max() else {
            parts.append(
                "<text x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>"
            )
            return parts.joined(separator: "\n")
        }
        func t(_ v: Double, log: Bool) -> Double { log ? log10(v) : v }
        var (yLow, yHigh) = (t(yMin0, log: logY), t(yMax0, log: logY))
        if yHigh - yLow < 1e-12 { yLow -= 0.5; yHigh += 0.5 }
        let pad = (yHigh - yLow) * 0.05
        yLow -= pad
        yHigh += pad
        var (xLow, xHigh) = (t(xMin0, log: logX), t(xMax0, log: logX))
        if xHigh - xLow < 1e-12 { xLow -= 0.5; xHigh += 0.5 }
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (t(x, log: logX) - xLow) / (xHigh - xLow) * plotWidth }
        func py(_ y: Double) -> Double { top + (1 - (t(y, log: logY) - yLow) / (yHigh - yLow)) * plotHeight }
        // Axes and ticks.
        parts.append(
            "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotWidth)\" height=\"\(plotHeight)\" class=\"frame\"/>")
        for k in 0...4 {
            let value = yLow + (yHigh - yLow) * Double(k) / 4
            let y = top + (1 - Double(k) / 4) * plotHeight
            let label = logY ? format(pow(10, value)) : format(value)
            parts.append(
                "<line x1=\"\(left)\" y1=\"\(f(y))\" x2=\"\(left + plotWidth)\" y2=\"\(f(y))\" class=\"grid\"/>")
            parts.append("<text x=\"\(left - 6)\" y=\"\(f(y + 4))\" text-anchor=\"end\" class=\"tick\">\(label)</text>")
        }
        for k in 0...4 {
            let value = xLow + (xHigh - xLow) * Double(k) / 4
            let x = left + Double(k) / 4 * plotWidth
            parts.append(
                "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\" class=\"tick\">\(logX ? format(pow(10, value)) : format(value))</text>"
            )
        }
        parts.append(
            "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" class=\"axis\">\(escape(xLabel))</text>"
        )
        parts.append(
            "<text x=\"14\" y=\"\(f(top + plotHeight / 2))\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 \(f(top + plotHeight / 2)))\">\(escape(yLabel))</text>"
        )
        let valid = { (x: Double, y: Double) in x.isFinite && y.isFinite && (!logY || y > 0) && (!logX || x > 0) }
        for (index, s) in series.enumerated() {
            let band = s.band.filter { valid($0.x, $0.low) && valid($0.x, $0.high) }
            if band.count > 1 {
                let upper = band.map { "\(f(px($0.x))),\(f(py($0.high)))" }
                let lower = band.reversed().map { "\(f(px($0.x))),\(f(py($0.low)))" }
                parts.append(
                    "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(s.color)\" fill-opacity=\"0.18\" stroke=\"none\"/>"
                )
            }
            let points = s.points.filter { valid($0.x, $0.y) }
            let values = s.points.map { "\($0.x):\($0.y)" }.joined(separator: " ")
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            parts.append(
                "<polyline class=\"series\" data-series=\"\(escape(s.name))\" data-values=\"\(values)\" points=\"\(points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(dash)/>"
            )
            if s.markers || points.count == 1 {
                for p in points {
                    parts.append("<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.8\" fill=\"\(s.color)\"/>")
                }
            }
            let legendY = top + 14 + Double(index) * 15
            parts.append(
                "<line x1=\"\(f(left + plotWidth - 170))\" y1=\"\(f(legendY - 4))\" x2=\"\(f(left + plotWidth - 150))\" y2=\"\(f(legendY - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>"
            )
            parts.append(
                "<text x=\"\(f(left + plotWidth - 145))\" y=\"\(f(legendY))\" class=\"legend\">\(escape(s.name))</text>"
            )
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
        parts.append("<text x=\"64\" y=\"\(Int(28 + plotHeight + 16))\" class=\"tick\">\(format(low))</text>")
        parts.append(
            "<text x=\"\(Int(64 + plotWidth))\" y=\"\(Int(28 + plotHeight + 16))\" text-anchor=\"end\" class=\"tick\">\(format(high))</text>"
        )
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

func format(_ value: Double) -> String {
    if value == 0 { return "0" }
    let magnitude = abs(value)
    if magnitude >= 1e4 || magnitude < 1e-3 { return String(format: "%.2e", value) }
    if magnitude >= 100 { return String(format: "%.0f", value) }
    if magnitude >= 1 { return String(format: "%.2f", value) }
    return String(format: "%.3f", value)
}
