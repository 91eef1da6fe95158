import Diagnostics
import Foundation
import Runtime

/// Runs grouped by configuration: runs whose configurations differ only in the seed (and the run's
/// name) form one group, and every figure is given over the group's seeds as mean, standard
/// deviation and a 95 % Student-t interval, with the seed count.
public struct SeedGroup {
    /// The group's configuration, as canonical JSON with the seed and run name blanked.
    public let key: String
    /// What sets this group apart from the others (the configuration fields that differ).
    public internal(set) var label: String
    public let runs: [RunFolder]
    public var seeds: [UInt64] { runs.map(\.manifest.configuration.seed) }
    /// More than one seed: figures can be given with their spread.
    public var hasSeveralSeeds: Bool { Set(seeds).count > 1 }

    /// Refuses a group holding two runs of the same seed: they would count as two seeds.
    public func checkDistinctSeeds() throws {
        var seen: [UInt64: RunFolder] = [:]
        for run in runs {
            let seed = run.manifest.configuration.seed
            if let twin = seen[seed] {
                throw ReportError(
                    "\(twin.directory.path) and \(run.directory.path): the same configuration and the same seed \(seed); give each seed once"
                )
            }
            seen[seed] = run
        }
    }

    /// Groups runs, keeping the order in which each group's first run appears.
    public static func group(_ runs: [RunFolder]) throws -> [SeedGroup] {
        var order: [String] = []
        var members: [String: [RunFolder]] = [:]
        var objects: [String: [String: Any]] = [:]
        for run in runs {
            var configuration = run.manifest.configuration
            configuration.seed = 0
            configuration.runName = ""
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(
                positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let data = try encoder.encode(configuration)
            let key = String(decoding: data, as: UTF8.self)
            if members[key] == nil {
                order.append(key)
                objects[key] = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            }
            members[key, default: []].append(run)
        }
        // Label each group by the top-level fields whose values differ between groups.
        let fields = Set(objects.values.flatMap(\.keys)).sorted()
        let differing = fields.filter { field in
            Set(order.map { describe(objects[$0]?[field]) }).count > 1
        }
        return order.map { key in
            let label =
                differing.isEmpty
                ? (members[key]!.first!.manifest.configuration.topology.name)
                : differing.map { "\($0)=\(describe(objects[key]?[$0]))" }.joined(separator: ", ")
            return SeedGroup(key: key, label: label, runs: members[key]!)
        }
    }

    /// A field's value in a label: scalars as they are, an object by its "name" when it has one.
    static func describe(_ value: Any?) -> String {
        switch value {
        case nil: return "–"
        case let string as String: return string
        case let number as NSNumber: return "\(number)"
        case let object as [String: Any]:
            if let name = object["name"] as? String { return name }
            return compactJSON(object)
        case let array as [Any]: return compactJSON(array)
        default: return "\(value!)"
        }
    }

    private static func compactJSON(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else {
            return "?"
        }
        let text = String(decoding: data, as: UTF8.self)
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }
}

/// One figure of a run at its end, as the seed tables report it.
public struct SeedFigure {
    public var name: String
    /// The figure's value in a run; nil when the run does not have it.
    public var value: (RunFolder) -> Double?
    /// printf format of one value.
    public var format: String

    /// x̄'s figures at the last evaluation, Ξ² at the end and over training, the last sharpness
    /// measurement of x̄, the workers' mean accuracy, and the wall time.
    public static var standard: [SeedFigure] {
        [
            SeedFigure(name: "test acc", value: { $0.lastEvaluation?.testAccuracy }, format: "%.4f"),
            SeedFigure(name: "train acc", value: { $0.lastEvaluation?.trainAccuracyAverageModel }, format: "%.4f"),
            SeedFigure(
                name: "gen. gap",
                value: { run in
                    run.lastEvaluation.flatMap { r in r.trainAccuracyAverageModel.map { $0 - r.testAccuracy! } }
                }, format: "%+.4f"),
            SeedFigure(name: "test loss", value: { $0.lastEvaluation?.testLoss }, format: "%.4f"),
            SeedFigure(
                name: "workers' acc", value: { $0.lastEvaluation?.workerTestAccuracyMean }, format: "%.4f"),
            SeedFigure(
                name: "final Ξ²",
                value: { $0.rounds.last { $0.consensusDistanceSquared != nil }?.consensusDistanceSquared },
                format: "%.3e"),
            SeedFigure(
                name: "mean Ξ²",
                value: { run in
                    let values = run.rounds.compactMap(\.consensusDistanceSquared)
                    return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
                }, format: "%.3e"),
            SeedFigure(
                name: "λ_max", value: { $0.sharpness.last { $0.model == "average" }?.lambdaMax }, format: "%.4g"),
            SeedFigure(name: "tr(H)", value: { $0.sharpness.last { $0.model == "average" }?.trace }, format: "%.4g"),
            SeedFigure(name: "wall s", value: { $0.summary?.wallSeconds }, format: "%.1f"),
        ]
    }
}

extension RunFolder {
    /// The last round with x̄'s test figures.
    var lastEvaluation: RoundRecord? { rounds.last { $0.testAccuracy != nil } }
}

extension ReportPage {
    /// One cell of a seed table: "mean ± sd [low, high] (n seeds)" with the 95 % t interval, or
    /// "value (1 seed)" when there is only one.
    static func seedCell(_ values: [Double], format: String) -> String {
        guard let summary = SampleSummary(values) else { return "–" }
        let f = { (value: Double) in String(format: format, value) }
        guard let sd = summary.standardDeviation, let half = summary.halfWidth else {
            return "\(f(summary.mean)) (1 seed)"
        }
        return
            "\(f(summary.mean)) ± \(String(format: "%.2g", sd)) [\(f(summary.mean - half)), \(f(summary.mean + half))] (\(summary.count) seeds)"
    }

    /// The comparison of seed groups: a table (text and Markdown) with every figure as mean ± sd
    /// [95 % t interval] (n seeds), and charts of the mean over the seeds with a ± 1 sd band.
    public static func seedComparison(_ groups: [SeedGroup], figures: [SeedFigure] = SeedFigure.standard) -> (
        html: String, table: String, markdown: String
    ) {
        let colors = palette
        let header = ["configuration", "seeds", "rounds"] + figures.map(\.name)
        var rows: [[String]] = []
        for group in groups {
            let rounds = Set(group.runs.map(\.rounds.count)).sorted().map(String.init).joined(separator: "/")
            rows.append(
                [group.label, group.seeds.map(String.init).joined(separator: ","), rounds]
                    + figures.map { figure in
                        seedCell(group.runs.compactMap(figure.value).filter(\.isFinite), format: figure.format)
                    })
        }
        let (text, markdown) = formatTable(header: header, rows: rows)

        /// The mean over the group's runs at every x all of them have, with ± 1 sd.
        func meanSeries(
            _ group: SeedGroup, index: Int, points: (RunFolder) -> [(x: Double, y: Double)]
        ) -> Chart.Series {
            let perRun = group.runs.map { Dictionary(points($0), uniquingKeysWith: { $1 }) }
            let shared = perRun.dropFirst().reduce(Set(perRun.first?.keys ?? [:].keys)) { $0.intersection($1.keys) }
            var line: [(x: Double, y: Double)] = []
            var band: [(x: Double, low: Double, high: Double)] = []
            for x in shared.sorted() {
                guard let summary = SampleSummary(perRun.map { $0[x]! }) else { continue }
                line.append((x, summary.mean))
                if let sd = summary.standardDeviation { band.append((x, summary.mean - sd, summary.mean + sd)) }
            }
            return Chart.Series(
                name: "\(group.label) (\(group.runs.count) seed\(group.runs.count == 1 ? "" : "s"))",
                color: colors[index % colors.count], points: line, band: band)
        }
        func meanChart(
            _ title: String, yLabel: String, logY: Bool = false, nonNegative: Bool = false, markers: Bool = false,
            points: @escaping (RunFolder) -> [(x: Double, y: Double)]
        ) -> Chart {
            Chart(
                title: "\(title): mean over seeds, band ± 1 sd", xLabel: "round", yLabel: yLabel,
                series: groups.enumerated().map { i, group in
                    var series = meanSeries(group, index: i, points: points)
                    series.markers = markers
                    // A band reaching zero or below cannot be drawn on a log axis: clip it there.
                    if logY { series.band = series.band.map { ($0.x, max($0.low, $0.high * 1e-3), $0.high) } }
                    return series
                }, logY: logY, nonNegative: nonNegative)
        }
        let accuracy = meanChart("Test accuracy of x̄", yLabel: "accuracy", nonNegative: true) { run in
            run.rounds.compactMap { r in r.testAccuracy.map { (Double(r.round), $0) } }
        }
        let consensus = meanChart("Consensus distance Ξ²", yLabel: "Ξ² (log scale)", logY: true) { run in
            run.rounds.compactMap { r in r.consensusDistanceSquared.map { (Double(r.round), $0) } }
        }
        let lambda = meanChart("λ_max of x̄", yLabel: "λ_max", markers: true) { run in
            run.sharpness.filter { $0.model == "average" }.map { (Double($0.round), $0.lambdaMax) }
        }
        let htmlTable =
            "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table>"
        let html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>dsgd comparison over seeds</title><style>\(style)</style></head>
            <body><h1>dsgd: \(groups.count) configurations, \(groups.map(\.runs.count).reduce(0, +)) runs</h1>
            <p>Each figure: mean ± standard deviation [95 % Student-t interval] over the seeds (the count in brackets);
            a figure from one seed is marked so and has no interval. Charts: the mean over the seeds at the rounds
            every seed recorded, with a band of ± 1 standard deviation.</p>
            \(htmlTable)
            <div class="grid2">\(accuracy.svg(id: "accuracy"))\(consensus.svg(id: "consensus"))\(lambda.svg(id: "lambda"))</div>
            </body></html>

            """
        return (html, text, markdown)
    }
}
