import Diagnostics
import Foundation
import RunRecords

/// Runs grouped by configuration: runs whose configurations differ only in the seed (and the run's
/// name) form one group, and every figure is given over the group's seeds as mean, standard
/// deviation and a 95 % Student-t interval, with the seed count.
public struct SeedGroup {
    /// The group's configuration, as canonical JSON with the seed and run name blanked.
    public let key: String
    /// What sets this group apart from the others (the configuration fields that differ).
    public var label: String
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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        for run in runs {
            var configuration = run.manifest.configuration
            configuration.seed = 0
            configuration.runName = ""
            let data = try encoder.encode(configuration)
            let key = String(decoding: data, as: UTF8.self)
            if members[key] == nil {
                order.append(key)
                var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
                // Fields whose encoding is not what a reader calls them: the topology by its name.
                object["topology"] = configuration.topology.name
                objects[key] = object
            }
            members[key, default: []].append(run)
        }
        // Label each group by the configuration values (leaves of its JSON) that differ between
        // groups, named by their path.
        let leaves = order.map { flatten(objects[$0] ?? [:]) }
        let paths = Set(leaves.flatMap(\.keys)).sorted()
        let differing = paths.filter { path in Set(leaves.map { $0[path] ?? "–" }).count > 1 }
        return zip(order, leaves).map { key, leaf in
            let label =
                differing.isEmpty
                ? (members[key]!.first!.manifest.configuration.topology.name)
                : differing.map { "\($0)=\(leaf[$0] ?? "–")" }.joined(separator: ", ")
            return SeedGroup(key: key, label: label, runs: members[key]!)
        }
    }

    /// A JSON object's scalar leaves by path ("optimizer.schedule.constant"; the "_0" of an enum's
    /// payload left out).
    static func flatten(_ value: Any, path: String = "") -> [String: String] {
        func join(_ key: String) -> String {
            key == "_0" ? path : path.isEmpty ? key : "\(path).\(key)"
        }
        switch value {
        case let object as [String: Any]:
            return object.reduce(into: [:]) { result, entry in
                result.merge(flatten(entry.value, path: join(entry.key))) { $1 }
            }
        case let array as [Any]:
            let data = try? JSONSerialization.data(withJSONObject: array, options: [.sortedKeys])
            return [path: data.map { String(decoding: $0, as: UTF8.self) } ?? "?"]
        case let string as String:
            return [path: string]
        default:  // a number, a Boolean or null
            return [path: "\(value)"]
        }
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
    /// measurement of x̄ (also as fractions of the stability threshold 2/η and of the threshold of
    /// the optimizer in use), the workers' mean accuracy, and the wall time.
    public static var standard: [SeedFigure] { standard(sharpnessAt: .last) }

    /// Which of a run's sharpness measurements of x̄ the sharpness figures take.
    public enum SharpnessMeasurement: Equatable, Sendable {
        /// The measurement after this round (a run without one has no sharpness figures).
        case round(Int)
        /// Each run's first measurement (e.g. at the end of a constant-rate phase).
        case first
        /// Each run's last measurement.
        case last
    }

    /// The standard figures, with the sharpness figures taken from the measurement `sharpnessAt`.
    public static func standard(sharpnessAt: SharpnessMeasurement) -> [SeedFigure] {
        func growth(_ run: RunFolder, _ law: GrowthFit.Law) -> GrowthFit? {
            let points = GrowthFit.constantRatePhase(run.rounds, localSteps: run.manifest.configuration.localSteps)
            return law == .logarithmic ? GrowthFit.logarithmic(points) : GrowthFit.powerLaw(points)
        }
        func measurement(_ run: RunFolder) -> SharpnessRecord? {
            switch sharpnessAt {
            case .round(let round): run.sharpness.last { $0.model == "average" && $0.round == round }
            case .first: run.sharpness.first { $0.model == "average" }
            case .last: run.sharpness.last { $0.model == "average" }
            }
        }
        let at: String
        switch sharpnessAt {
        case .round(let round): at = " @\(round)"
        case .first: at = " @first"
        case .last: at = ""
        }
        return [
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
            // ‖x̄_t − x₀‖ over the constant-rate phase: Hoffer et al.'s logarithmic law and the
            // power-law alternative, each with its R² (in distance space; `GrowthFit`).
            SeedFigure(name: "dist ~ ln t", value: { growth($0, .logarithmic)?.slope }, format: "%.4g"),
            SeedFigure(name: "R² ln t", value: { growth($0, .logarithmic)?.rSquared }, format: "%.4f"),
            SeedFigure(name: "dist ~ t^α", value: { growth($0, .powerLaw)?.slope }, format: "%.4g"),
            SeedFigure(name: "R² t^α", value: { growth($0, .powerLaw)?.rSquared }, format: "%.4f"),
            SeedFigure(name: "λ_max\(at)", value: { measurement($0)?.lambdaMax }, format: "%.4g"),
            SeedFigure(name: "tr(H)\(at)", value: { measurement($0)?.trace }, format: "%.4g"),
            // Zhu et al.'s average-direction sharpness (the loss increase averaged over random
            // directions, D-SGD's implicit regularizer).
            SeedFigure(
                name: "avg-dir sharpness\(at)", value: { measurement($0)?.averageDirectionSharpness }, format: "%.4g"),
            // Against the stability threshold 2/η of the measurement's learning rate.
            SeedFigure(
                name: "λ_max·η/2\(at)", value: { measurement($0).map { $0.lambdaMax / $0.twoOverLearningRate } },
                format: "%.3f"),
            SeedFigure(
                name: "tr(H)·η/2\(at)", value: { measurement($0).map { $0.trace / $0.twoOverLearningRate } },
                format: "%.3f"),
            // The measurement's own uncertainty, beside the spread over seeds: the Lanczos residual
            // bound on λ_max (an eigenvalue of H lies within it) and the half-width of the
            // Hutchinson trace's 95 % interval (its probes' standard error ×1.96 when the record
            // has no interval).
            SeedFigure(
                name: "λ_max residual\(at)", value: { measurement($0)?.topEigenvalueResidualBounds?.first },
                format: "%.1e"),
            SeedFigure(
                name: "tr(H) ±95 %\(at)",
                value: { run in
                    measurement(run).map { record in
                        record.traceInterval95.map { ($0[1] - $0[0]) / 2 } ?? 1.96 * record.traceStandardError
                    }
                }, format: "%.3g"),
            // The stability threshold of the optimizer in use (2/η for SGD, 2(1+β)/η with heavy-ball
            // momentum β; `OptimizerSettings.stabilityThreshold`) and λ_max against it.
            SeedFigure(
                name: "threshold\(at)",
                value: { measurement($0).map { $0.stabilityThreshold ?? $0.twoOverLearningRate } },
                format: "%.4g"),
            SeedFigure(
                name: "λ_max/threshold\(at)",
                value: { measurement($0).map { $0.lambdaMax / ($0.stabilityThreshold ?? $0.twoOverLearningRate) } },
                format: "%.3f"),
            SeedFigure(name: "wall s", value: { $0.summary?.wallSeconds }, format: "%.1f"),
        ]
    }

    /// The per-client figures (`--client-test-size`), at the last evaluation: each client's
    /// deployed model on its own test split — the unweighted mean, the mean weighted by training
    /// examples, the worst client, the worst 10 % — then the same mean and worst on the validation
    /// splits (`--client-validation-fraction`), and the bytes a client sent per round.
    public static var clients: [SeedFigure] {
        func last(_ run: RunFolder) -> RoundRecord? { run.rounds.last { $0.clientAccuracyMean != nil } }
        return [
            SeedFigure(name: "client acc", value: { last($0)?.clientAccuracyMean }, format: "%.4f"),
            SeedFigure(name: "client acc (weighted)", value: { last($0)?.clientAccuracyWeightedMean }, format: "%.4f"),
            SeedFigure(name: "worst client", value: { last($0)?.clientAccuracyWorst }, format: "%.4f"),
            SeedFigure(name: "worst 10 %", value: { last($0)?.clientAccuracyWorstTenth }, format: "%.4f"),
            SeedFigure(name: "validation acc", value: { last($0)?.clientValidationAccuracyMean }, format: "%.4f"),
            SeedFigure(name: "worst validation", value: { last($0)?.clientValidationAccuracyWorst }, format: "%.4f"),
            SeedFigure(name: "bytes/client/round", value: \.bytesPerClientPerRound, format: "%.0f"),
        ]
    }
}

extension RunFolder {
    /// The last round with x̄'s test figures.
    var lastEvaluation: RoundRecord? { rounds.last { $0.testAccuracy != nil } }

    /// The bytes a client sent for the algorithm in a round, averaged over clients and recorded
    /// rounds (`bytes_sent_by_worker`); nil when none were recorded.
    var bytesPerClientPerRound: Double? {
        let perClient = rounds.compactMap(\.bytesSentByWorker).flatMap { $0 }
        return perClient.isEmpty ? nil : Double(perClient.reduce(0, +)) / Double(perClient.count)
    }
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

extension ReportPage {
    /// Every group's figures against one baseline group's: per figure, the difference of the
    /// means over seeds with its 95 % interval and two-sided p-value (`MeanDifference`): Welch's
    /// unpaired interval, or with `paired` the paired t over the seeds both groups ran (equal
    /// seeds, equal initialization, shards and batches), marked "✱" when the interval leaves out
    /// zero. A figure either group lacks, or that has fewer than two seeds (pairs), is "–".
    public static func seedDifferences(
        _ groups: [SeedGroup], baseline: SeedGroup, figures: [SeedFigure] = SeedFigure.standard, paired: Bool = false
    ) -> (table: String, markdown: String) {
        let header = ["configuration − \(baseline.label)", paired ? "seed pairs" : "seeds"] + figures.map(\.name)
        var rows: [[String]] = []
        let baselineBySeed = Dictionary(
            baseline.runs.map { ($0.manifest.configuration.seed, $0) }, uniquingKeysWith: { first, _ in first })
        for group in groups where group.key != baseline.key {
            let pairs = group.runs.compactMap { run in
                baselineBySeed[run.manifest.configuration.seed].map { (run, $0) }
            }
            rows.append(
                [group.label, paired ? "\(pairs.count)" : "\(group.runs.count) vs \(baseline.runs.count)"]
                    + figures.map { figure in
                        let difference: MeanDifference?
                        if paired {
                            difference = MeanDifference(
                                pairs: pairs.compactMap { run, base in
                                    guard let a = figure.value(run), let b = figure.value(base), a.isFinite, b.isFinite
                                    else { return nil }
                                    return (a, b)
                                })
                        } else {
                            let values = { (runs: [RunFolder]) in runs.compactMap(figure.value).filter(\.isFinite) }
                            difference = MeanDifference(values(group.runs), values(baseline.runs))
                        }
                        guard let difference else { return "–" }
                        let f = { (value: Double) in String(format: figure.format, value) }
                        let signed = { (value: Double) in (value >= 0 && !f(value).hasPrefix("+") ? "+" : "") + f(value)
                        }
                        let p =
                            difference.pValue.map { $0 < 0.001 ? "p < 0.001" : String(format: "p = %.3f", $0) }
                            ?? "exact"
                        return
                            "\(signed(difference.difference)) [\(signed(difference.low)), \(signed(difference.high))] \(p)"
                            + (difference.excludesZero ? " ✱" : "")
                    })
        }
        let (text, markdown) = formatTable(header: header, rows: rows)
        return (text, markdown)
    }
}

extension ReportPage {
    /// λ_max of x̄ along training against the stability threshold, over each group's seeds: one
    /// table per group, a row per sharpness round every seed measured (round, learning rate, 2/η,
    /// λ_max as mean ± sd, λ_max·η/2 as mean ± sd, and the largest Lanczos residual bound on λ_max
    /// over the seeds: the distance within which an eigenvalue of the Hessian is certain to lie).
    public static func sharpnessTrajectory(_ groups: [SeedGroup]) -> (table: String, markdown: String) {
        var texts: [String] = []
        var markdowns: [String] = []
        for group in groups {
            let perRun = group.runs.map { run in
                Dictionary(
                    run.sharpness.filter { $0.model == "average" }.map { ($0.round, $0) }, uniquingKeysWith: { $1 })
            }
            let rounds = perRun.dropFirst().reduce(Set(perRun.first?.keys ?? [:].keys)) { $0.intersection($1.keys) }
            let header = ["round", "η", "2/η", "λ_max", "λ_max·η/2", "λ_max residual ≤"]
            var rows: [[String]] = []
            func meanSd(_ values: [Double], _ format: String) -> String {
                guard let summary = SampleSummary(values) else { return "–" }
                return String(format: format, summary.mean)
                    + (summary.standardDeviation.map { " ± " + String(format: "%.2g", $0) } ?? "")
            }
            for round in rounds.sorted() {
                let records = perRun.map { $0[round]! }
                let rates = Set(records.map(\.learningRate))
                rows.append([
                    "\(round)", rates.count == 1 ? String(format: "%.4g", records[0].learningRate) : "varies",
                    rates.count == 1 ? String(format: "%.4g", records[0].twoOverLearningRate) : "varies",
                    meanSd(records.map(\.lambdaMax), "%.4g"),
                    meanSd(records.map { $0.lambdaMax / $0.twoOverLearningRate }, "%.3f"),
                    records.compactMap { $0.topEigenvalueResidualBounds?.first }.max().map {
                        String(format: "%.1e", $0)
                    } ?? "–",
                ])
            }
            let (text, markdown) = formatTable(header: header, rows: rows)
            let title = "\(group.label) (\(group.runs.count) seed\(group.runs.count == 1 ? "" : "s"))"
            texts.append(title + "\n" + text)
            markdowns.append("**\(title)**\n\n" + markdown)
        }
        return (texts.joined(separator: "\n\n"), markdowns.joined(separator: "\n\n"))
    }
}
