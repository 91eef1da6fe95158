import Algorithms
import Diagnostics
import Foundation
import RunRecords
import Topologies

/// The self-contained `report.html` of a run: inline SVG charts and CSS, no scripts, no network.
public enum ReportPage {
    static let style = """
        body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
        h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
        .grid2 { display: flex; flex-wrap: wrap; gap: 16px; }
        table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
        th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
        .chart .title { font-size: 13px; font-weight: 600; } .chart .tick { font-size: 10px; fill: #555; }
        .chart .axis { font-size: 11px; fill: #333; } .chart .legend { font-size: 11px; }
        .chart .point-label { font-size: 10px; } .unconverged { color: #999; }
        .chart .frame { fill: none; stroke: #999; } .chart .grid { stroke: #eee; } .chart .empty { fill: #a00; font-size: 14px; }
        .status-failed { color: #b00; } .status-completed { color: #070; }
        pre { background: #f7f7f7; padding: 12px; font-size: 11px; overflow-x: auto; max-height: 480px; }
        .note { color: #555; font-size: 12px; }
        """

    /// Eigenvalues with their residual bounds; greyed out and marked when they did not converge.
    static func eigenvalueCell(_ values: [Double], bounds: [Double]?, converged: Bool?) -> String {
        let text = values.enumerated().map { index, value in
            let bound = bounds.flatMap { index < $0.count ? $0[index] : nil }
            return String(format: "%.4g", value) + (bound.map { String(format: " ± %.1g", $0) } ?? "")
        }.joined(separator: ", ")
        guard converged == false else { return text }
        return
            "<span class=\"unconverged\" title=\"the Lanczos residual bound did not meet the tolerance\">\(text) (not converged)</span>"
    }

    /// Least-squares fit d ≈ a + b·ln t over the recorded distances from initialisation.
    /// (`GrowthFit` adds R² and the power law, for the comparisons over seeds.)
    public static func logFit(_ points: [(Double, Double)]) -> (a: Double, b: Double)? {
        GrowthFit.line(points.filter { $0.0 >= 1 && $0.1.isFinite }.map { (log($0.0), $0.1) }).map { ($0.0, $0.1) }
    }

    public static func html(_ run: RunFolder) -> String {
        let configuration = run.manifest.configuration
        let rounds = run.rounds
        let evaluated = rounds.filter { $0.testAccuracy != nil }
        let x = { (r: RoundRecord) in Double(r.round) }
        var sections: [String] = []

        let accuracy = Chart(
            title: "Accuracy", xLabel: "round", yLabel: "accuracy",
            series: [
                .init(
                    name: "x̄ test", color: "#1f77b4", points: evaluated.map { (x($0), $0.testAccuracy!) },
                    band: evaluated.compactMap { r in
                        guard let low = r.workerTestAccuracyMin, let high = r.workerTestAccuracyMax else { return nil }
                        return (x(r), low, high)
                    }),
                .init(
                    name: "workers' test (mean)", color: "#ff7f0e",
                    points: evaluated.compactMap { r in r.workerTestAccuracyMean.map { (x(r), $0) } }, dashed: true),
                .init(
                    name: "x̄ train (subset)", color: "#2ca02c",
                    points: evaluated.compactMap { r in r.trainAccuracyAverageModel.map { (x(r), $0) } }),
            ], nonNegative: true)
        let loss = Chart(
            title: "Loss", xLabel: "round", yLabel: "cross-entropy",
            series: [
                .init(
                    name: "workers' train (mean)", color: "#ff7f0e", points: rounds.map { (x($0), $0.trainLoss) },
                    band: rounds.map { (x($0), $0.trainLossMin, $0.trainLossMax) }),
                .init(
                    name: "x̄ test", color: "#1f77b4",
                    points: evaluated.compactMap { r in r.testLoss.map { (x(r), $0) } }),
                .init(
                    name: "x̄ train (subset)", color: "#2ca02c",
                    points: evaluated.compactMap { r in r.trainLossAverageModel.map { (x(r), $0) } }),
            ], nonNegative: true)
        let consensus = Chart(
            title: "Consensus distance Ξ² = (1/n)Σ‖xᵢ − x̄‖²", xLabel: "round", yLabel: "Ξ² (log scale)",
            series: [
                .init(
                    name: "Ξ²", color: "#9467bd",
                    points: rounds.compactMap { r in r.consensusDistanceSquared.map { (x(r), $0) } })
            ], logY: true)

        let averageSharpness = run.sharpness.filter { $0.model == "average" }
        // The optimizer's own edge-of-stability threshold (2/η for SGD, 2(1+β)/η with heavy ball,
        // …), as each record states it; 2/η for records written before it was recorded.
        let twoOverEta = averageSharpness.map { (Double($0.round), $0.stabilityThreshold ?? $0.twoOverLearningRate) }
        let thresholdName =
            "threshold " + (averageSharpness.last?.stabilityThresholdFormula ?? "2/η")
        let curvature = Chart(
            title: "Top Hessian eigenvalue of x̄ against the stability threshold (edge of stability)", xLabel: "round",
            yLabel: "λ_max",
            series: [
                .init(
                    name: "λ_max", color: "#d62728", points: averageSharpness.map { (Double($0.round), $0.lambdaMax) },
                    markers: true),
                .init(name: thresholdName, color: "#7f7f7f", points: twoOverEta, dashed: true),
            ])
        let trace = Chart(
            title: "Hessian trace of x̄ against the stability threshold", xLabel: "round", yLabel: "tr(H)",
            series: [
                .init(
                    name: "tr(H) (Hutchinson, 95 % interval)", color: "#8c564b",
                    points: averageSharpness.map { (Double($0.round), $0.trace) },
                    band: averageSharpness.map {
                        (
                            Double($0.round), $0.traceInterval95?.first ?? $0.trace - $0.traceStandardError,
                            $0.traceInterval95?.last ?? $0.trace + $0.traceStandardError
                        )
                    },
                    markers: true),
                .init(name: thresholdName, color: "#7f7f7f", points: twoOverEta, dashed: true),
            ])
        let last = averageSharpness.last
        let density = BarChart(
            title: "Hessian spectral density of x̄ (SLQ), round \(last.map { String($0.round) } ?? "–")",
            xLabel: "eigenvalue",
            edges: last?.densityEdges ?? [], masses: last?.densityMasses ?? [])

        let distances = rounds.compactMap { r in r.distanceFromInit.map { (x(r), $0) } }
        let fit = logFit(distances)
        var distanceSeries: [Chart.Series] = [.init(name: "‖x̄ₜ − x₀‖", color: "#17becf", points: distances)]
        if let fit {
            distanceSeries.append(
                .init(
                    name: String(format: "fit %.3g + %.3g·ln t", fit.a, fit.b), color: "#333333",
                    points: distances.map { ($0.0, fit.a + fit.b * log($0.0)) }, dashed: true, fitted: true))
        }
        let distance = Chart(
            title: "Distance of x̄ from its initialisation", xLabel: "round (log scale)", yLabel: "‖x̄ₜ − x₀‖",
            series: distanceSeries, logX: true, nonNegative: true)

        // Header and summary table.
        let summary = run.summary
        let status = summary?.status ?? "running"
        let spectrum = run.manifest.topologySpectrum
        var table: [(String, String)] = [
            ("status", status + (summary?.reason.map { ": \(escape($0))" } ?? "")),
            ("data", escape("\(run.manifest.data.name) (\(run.manifest.data.source))")),
            ("workers · topology", "\(configuration.workers) · \(escape(configuration.topology.name))"),
            (
                "model · batch · local steps",
                "\(configuration.model) · \(configuration.batchSize) · \(configuration.localSteps)"
            ),
            (
                "algorithm",
                configuration.algorithm.rawValue
                    + (configuration.algorithm == .choco
                        ? escape(
                            " (compressor \(configuration.gossipRule?.compressor ?? GossipRuleSettings().compressor), γ = \(configuration.gossipRule?.consensusStep ?? GossipRuleSettings().consensusStep))"
                        ) : "")
            ),
            (
                "learning rate",
                escape(configuration.optimizer.schedule.description(unit: configuration.optimizer.scheduleUnit))
            ),
            ("rounds", "\(rounds.count) of \(configuration.rounds)"),
        ]
        if let text = configuration.batchNormDescription { table.append(("batch norm", escape(text))) }
        if let text = configuration.personalizationDescription { table.append(("personalization", escape(text))) }
        if let text = configuration.largeBatchDescription { table.append(("large-batch regime", escape(text))) }
        if let clip = configuration.optimizer.gradientClipNorm {
            table.append(("gradient clipping", "global norm ≤ \(clip)"))
        }
        if let summary {
            table += [
                ("final test accuracy of x̄", summary.finalTestAccuracy.map { String(format: "%.4f", $0) } ?? "–"),
                ("final test loss of x̄", summary.finalTestLoss.map { String(format: "%.4f", $0) } ?? "–"),
                ("final Ξ²", summary.finalConsensusDistanceSquared.map { String(format: "%.4e", $0) } ?? "–"),
                ("wall time", String(format: "%.1f s (%.1f rounds/s)", summary.wallSeconds, summary.roundsPerSecond)),
            ]
        }
        if let spectrum {
            table.append(("spectral gap", String(format: "%.6g", spectrum.product.spectralGap)))
        }
        if let fit { table.append(("distance fit", String(format: "%.4g + %.4g·ln t", fit.a, fit.b))) }
        sections.append(
            "<table>" + table.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined() + "</table>")
        if let events = summary?.events, !events.isEmpty {
            sections.append("<h2>Events</h2><ul>" + events.map { "<li>\(escape($0))</li>" }.joined() + "</ul>")
        }
        sections.append(
            "<h2>Training</h2><div class=\"grid2\">\(accuracy.svg(id: "accuracy"))\(loss.svg(id: "loss"))</div>")
        let clientRounds = rounds.filter { $0.clientAccuracyMean != nil }
        if let lastClients = clientRounds.last, let perClient = lastClients.clientAccuracy {
            let clients = Chart(
                title: "Each client's own model on its own test split", xLabel: "round", yLabel: "accuracy",
                series: [
                    .init(
                        name: "mean over clients", color: "#1f77b4",
                        points: clientRounds.map { (x($0), $0.clientAccuracyMean!) },
                        band: clientRounds.map {
                            (
                                x($0), $0.clientAccuracyWorst ?? $0.clientAccuracyMean!,
                                $0.clientAccuracy?.max() ?? $0.clientAccuracyMean!
                            )
                        }),
                    .init(
                        name: "weighted by training examples", color: "#2ca02c",
                        points: clientRounds.compactMap { r in r.clientAccuracyWeightedMean.map { (x(r), $0) } },
                        dashed: true),
                    .init(
                        name: "worst client", color: "#d62728",
                        points: clientRounds.compactMap { r in r.clientAccuracyWorst.map { (x(r), $0) } }),
                ], nonNegative: true)
            let best = clientRounds.max { $0.clientAccuracyMean! < $1.clientAccuracyMean! }!
            let cells = perClient.enumerated().map {
                "<td>\($0.offset)</td><td>\(String(format: "%.4f", $0.element))</td>"
            }
            sections.append(
                "<h2>Per-client evaluation</h2><div class=\"grid2\">\(clients.svg(id: "clients"))<div>"
                    + "<p class=\"note\">Last evaluation (round \(lastClients.round)): mean "
                    + String(format: "%.4f", lastClients.clientAccuracyMean!)
                    + ", weighted " + String(format: "%.4f", lastClients.clientAccuracyWeightedMean ?? .nan)
                    + ", std " + String(format: "%.4f", lastClients.clientAccuracyStandardDeviation ?? .nan)
                    + ", worst " + String(format: "%.4f", lastClients.clientAccuracyWorst ?? .nan)
                    + ", worst 10 % " + String(format: "%.4f", lastClients.clientAccuracyWorstTenth ?? .nan)
                    + ". Best round by mean: round \(best.round), " + String(format: "%.4f", best.clientAccuracyMean!)
                    + " (chosen on test data).</p><table><tr><th>client</th><th>accuracy (last)</th></tr>"
                    + cells.map { "<tr>\($0)</tr>" }.joined() + "</table></div></div>")
        }
        sections.append(
            "<h2>Consensus and weights</h2><div class=\"grid2\">\(consensus.svg(id: "consensus"))\(distance.svg(id: "distance"))</div>"
        )
        sections.append(
            "<h2>Curvature and stability</h2><div class=\"grid2\">\(curvature.svg(id: "lambda"))\(trace.svg(id: "trace"))\(density.svg(id: "density"))</div>"
        )
        if let last {
            var rows = [
                ("SAM ρ-sharpness (1 step)", String(format: "%.4g", last.samSharpness)),
                (
                    "SAM ρ-sharpness (\(configuration.sharpness.samAscentSteps)-step ascent)",
                    String(format: "%.4g", last.samSharpnessAscent)
                ),
                ("adaptive (ASAM)", String(format: "%.4g", last.adaptiveSharpness)),
                (
                    "m-sharpness (m = \(configuration.sharpness.mSharpnessBatch))",
                    String(format: "%.4g", last.mSharpness)
                ),
                (
                    "Gaussian (σ = \(configuration.sharpness.gaussianSigma))",
                    String(format: "%.4g ± %.2g", last.gaussianSharpness, last.gaussianSharpnessStandardError)
                ),
                (
                    "trace (Hutchinson / Hutch++)",
                    String(format: "%.4g ± %.2g", last.trace, last.traceStandardError)
                        + (last.traceInterval95.map { String(format: ", 95 %% in [%.4g, %.4g]", $0[0], $0[1]) } ?? "")
                        + String(format: " / %.4g (Hutch++, no error estimate)", last.traceHutchPlusPlus)
                ),
                (
                    "top eigenvalues",
                    eigenvalueCell(
                        last.topEigenvalues, bounds: last.topEigenvalueResidualBounds,
                        converged: last.eigenvaluesConverged)
                ),
                (
                    "most negative eigenvalue",
                    eigenvalueCell(
                        [last.mostNegativeEigenvalue], bounds: last.mostNegativeEigenvalueResidualBound.map { [$0] },
                        converged: last.eigenvaluesConverged)
                ),
                (
                    "Lanczos",
                    last.lanczosIterationsUsed.map {
                        "\($0) products; " + (last.eigenvaluesConverged == true ? "converged" : "not converged")
                    } ?? "–"
                ),
            ]
            if let value = last.averageDirectionSharpness, let error = last.averageDirectionSharpnessStandardError {
                rows.insert(("average-direction (Zhu et al. 2023)", String(format: "%.4g ± %.2g", value, error)), at: 4)
            }
            var html =
                "<p class=\"note\">x̄ at round \(last.round), on \(configuration.sharpness.examples) training examples\(last.batchNormStatistics.map { ", batch norm with \($0) statistics" } ?? ""); \(last.hessianVectorProducts) Hessian-vector products.</p><table>"
            html += rows.map { "<tr><th>\(escape($0.0))</th><td>\($0.1)</td></tr>" }.joined() + "</table>"
            if !last.layers.isEmpty {
                html +=
                    "<p class=\"note\">Per layer (diagonal blocks of H):</p><table><tr><th>slice</th><th>λ_max</th><th>trace</th></tr>"
                html +=
                    last.layers.map {
                        "<tr><td>\(escape($0.name))</td><td>\(eigenvalueCell([$0.lambdaMax], bounds: $0.lambdaMaxResidualBound.map { [$0] }, converged: $0.lambdaMaxConverged))</td><td>\(String(format: "%.4g ± %.2g", $0.trace, $0.traceStandardError) + ($0.traceInterval95.map { String(format: " [%.4g, %.4g]", $0[0], $0[1]) } ?? ""))</td></tr>"
                    }.joined() + "</table>"
            }
            sections.append("<h2>Sharpness (latest)</h2>" + html)
        }
        let topology = configuration.topology.topology(atRound: 0)
        sections.append(
            "<h2>Topology</h2><p class=\"note\">\(escape(configuration.topology.name))\(configuration.topology.isStatic ? "" : " (round 1 shown)"); spectral gap \(spectrum.map { String(format: "%.6g", $0.product.spectralGap) } ?? "–")\(spectrum?.consensusContractionPerRound.map { String(format: "; predicted Ξ² contraction per round ≤ %.4g", $0) } ?? "").</p>"
                + TopologyPicture.svg(topology))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let config = (try? encoder.encode(run.manifest)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        sections.append("<h2>Configuration</h2><pre>\(escape(config))</pre>")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>dsgd run \(escape(configuration.runName))</title>
            <style>\(style)</style></head>
            <body><h1>dsgd run <code>\(escape(configuration.runName))</code> <span class="status-\(status)">\(status)</span></h1>
            \(sections.joined(separator: "\n"))
            </body></html>

            """
    }

    /// Several runs overlaid (test accuracy and Ξ²), and a table of final figures.
    /// The comparison page, a plain-text table and the same table in Markdown. "dist ~ ln t" is
    /// the slope b of the least-squares fit ‖x̄_t − x₀‖ ≈ a + b·ln t over optimizer steps t
    /// (Hoffer et al. 2017 observe logarithmic growth); "gen. gap" is x̄'s train accuracy (on the
    /// fixed training subset) minus its test accuracy at the last evaluation.
    /// The series colours of comparison charts, in order.
    static let palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]

    public static func comparison(_ runs: [RunFolder]) -> (html: String, table: String, markdown: String) {
        let colors = palette
        func label(_ run: RunFolder) -> String { run.manifest.configuration.runName }
        let accuracy = Chart(
            title: "Test accuracy of x̄", xLabel: "round", yLabel: "accuracy",
            series: runs.enumerated().map { i, run in
                .init(
                    name: label(run), color: colors[i % colors.count],
                    points: run.rounds.compactMap { r in r.testAccuracy.map { (Double(r.round), $0) } })
            }, nonNegative: true)
        let consensus = Chart(
            title: "Consensus distance Ξ²", xLabel: "round", yLabel: "Ξ² (log scale)",
            series: runs.enumerated().map { i, run in
                .init(
                    name: label(run), color: colors[i % colors.count],
                    points: run.rounds.compactMap { r in r.consensusDistanceSquared.map { (Double(r.round), $0) } })
            }, logY: true)
        let lambda = Chart(
            title: "λ_max of x̄", xLabel: "round", yLabel: "λ_max",
            series: runs.enumerated().map { i, run in
                .init(
                    name: label(run), color: colors[i % colors.count],
                    points: run.sharpness.filter { $0.model == "average" }.map { (Double($0.round), $0.lambdaMax) },
                    markers: true)
            })
        let header = [
            "run", "topology", "gap", "batch", "total batch", "ghost", "lr", "rounds", "test acc", "train acc",
            "gen. gap", "test loss", "final Ξ²", "λ_max", "2/η", "tr(H)", "dist ~ ln t", "wall s",
        ]
        var rows: [[String]] = []
        for run in runs {
            let c = run.manifest.configuration
            let lastEval = run.rounds.last { $0.testAccuracy != nil }
            let gap = lastEval.flatMap { r in r.trainAccuracyAverageModel.map { $0 - r.testAccuracy! } }
            let sharp = run.sharpness.last { $0.model == "average" }
            let slope = logFit(
                run.rounds.compactMap { r in r.distanceFromInit.map { (Double(r.round * c.localSteps), $0) } })
            rows.append([
                c.runName, c.topology.name,
                run.manifest.topologySpectrum.map { String(format: "%.4g", $0.product.spectralGap) } ?? "–",
                "\(c.batchSize)", "\(c.batchSize * c.workers)",
                c.model.batchNorm ? (c.batchNorm.virtualBatchSize.map(String.init) ?? "–") : "no BN",
                String(format: "%.4g", c.optimizer.schedule.baseRate),
                "\(run.rounds.count)",
                lastEval?.testAccuracy.map { String(format: "%.4f", $0) } ?? "–",
                lastEval?.trainAccuracyAverageModel.map { String(format: "%.4f", $0) } ?? "–",
                gap.map { String(format: "%+.4f", $0) } ?? "–",
                lastEval?.testLoss.map { String(format: "%.4f", $0) } ?? "–",
                run.rounds.last { $0.consensusDistanceSquared != nil }?.consensusDistanceSquared.map {
                    String(format: "%.3e", $0)
                } ?? "–",
                sharp.map { String(format: "%.4g", $0.lambdaMax) } ?? "–",
                sharp.map { String(format: "%.4g", $0.twoOverLearningRate) } ?? "–",
                sharp.map { String(format: "%.4g", $0.trace) } ?? "–",
                slope.map { String(format: "%.4g", $0.b) } ?? "–",
                run.summary.map { String(format: "%.1f", $0.wallSeconds) } ?? "–",
            ])
        }

        let (text, markdown) = formatTable(header: header, rows: rows)
        let htmlTable =
            "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table>"
        let html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>dsgd comparison</title><style>\(style)</style></head>
            <body><h1>dsgd: \(runs.count) runs compared</h1>\(htmlTable)
            <div class="grid2">\(accuracy.svg(id: "accuracy"))\(consensus.svg(id: "consensus"))\(lambda.svg(id: "lambda"))</div>
            </body></html>

            """
        return (html, text, markdown)
    }

    /// The per-client table of several runs (honest personalized evaluation): at the last
    /// evaluation, the unweighted and sample-weighted mean of the clients' accuracies, their
    /// standard deviation, the worst client and the mean of the worst 10 %; the best round's
    /// unweighted mean (labelled with its round); bytes each client sent per round on average.
    public static func clientComparison(_ runs: [RunFolder]) -> (table: String, markdown: String) {
        let header = [
            "run", "algorithm", "partition", "mode", "rounds", "mean (last)", "weighted (last)", "std (last)",
            "worst (last)", "worst 10% (last)", "mean (best round)", "bytes/client/round",
        ]
        var rows: [[String]] = []
        func percent(_ value: Double?) -> String { value.map { String(format: "%.2f", 100 * $0) } ?? "–" }
        for run in runs {
            let c = run.manifest.configuration
            let last = run.rounds.last { $0.clientAccuracyMean != nil }
            let best = run.rounds.filter { $0.clientAccuracyMean != nil }.max {
                $0.clientAccuracyMean! < $1.clientAccuracyMean!
            }
            let bytes = run.bytesPerClientPerRound
            rows.append([
                c.runName, c.personalization.algorithm.rawValue, "\(c.partition)",
                c.federated != nil ? "server" : c.topology.name, "\(run.rounds.count)",
                percent(last?.clientAccuracyMean), percent(last?.clientAccuracyWeightedMean),
                percent(last?.clientAccuracyStandardDeviation), percent(last?.clientAccuracyWorst),
                percent(last?.clientAccuracyWorstTenth),
                best.map { "\(percent($0.clientAccuracyMean)) (round \($0.round))" } ?? "–",
                bytes.map { String(format: "%.0f", $0) } ?? "–",
            ])
        }
        let (text, markdown) = formatTable(header: header, rows: rows)

        return (text, markdown)
    }

    /// A table as aligned plain text and as Markdown.
    static func formatTable(header: [String], rows: [[String]]) -> (text: String, markdown: String) {
        let widths = header.indices.map { column in ([header[column]] + rows.map { $0[column] }).map(\.count).max()! }
        let text = ([header] + rows).map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
        let markdown =
            "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---|" }.joined() + "\n"
            + rows.map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n")
        return (text, markdown)
    }
}
