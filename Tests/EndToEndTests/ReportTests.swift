import Diagnostics
import Foundation
import Reports
import Runtime
import XCTest

final class ReportTests: XCTestCase {
    /// Values of the series `name` inside the SVG element with id `chart`, as the page shows them.
    private func seriesValues(_ html: String, chart: String, series name: String) -> [Double] {
        guard let start = html.range(of: "<svg id=\"\(chart)\"") else { return [] }
        let rest = html[start.upperBound...]
        let end = rest.range(of: "</svg>")!.lowerBound
        let svg = rest[..<end]
        guard let marker = svg.range(of: "data-series=\"\(name)\" data-values=\"") else { return [] }
        let values = svg[marker.upperBound...].prefix { $0 != "\"" }
        return values.split(separator: " ").map { Double($0.split(separator: ":")[1])! }
    }

    /// With per-client evaluation the page has a per-client section whose chart and table show the
    /// recorded figures.
    func testPerClientSection_ShowsTheRecordedFigures() throws {
        let scratch = try temporaryDirectory("report-clients")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "4", "--rounds", "6", "--model", "784-16-10", "--data", "synthetic",
                "--eval-every", "3", "--sharpness-every", "0", "--partition", "pathological:2",
                "--client-test-size", "30", "--personalization", "fedper", "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        let rows = try String(contentsOf: run.appendingPathComponent("rounds.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(RoundRecord.self, from: Data($0.utf8)) }
        let evaluated = rows.filter { $0.clientAccuracyMean != nil }
        XCTAssertEqual(evaluated.map(\.round), [3, 6])
        XCTAssertTrue(html.contains("<h2>Per-client evaluation</h2>"))
        XCTAssertEqual(
            seriesValues(html, chart: "clients", series: "mean over clients"), evaluated.map { $0.clientAccuracyMean! })
        XCTAssertEqual(
            seriesValues(html, chart: "clients", series: "worst client"), evaluated.map { $0.clientAccuracyWorst! })
        for accuracy in evaluated.last!.clientAccuracy! {
            XCTAssertTrue(html.contains("<td>\(String(format: "%.4f", accuracy))</td>"))
        }
        XCTAssertTrue(html.contains("FedPer; never sent: layers.2.weight, layers.2.bias"))
    }

    /// `report compare --clients` over seeds: one row per configuration with the client figures
    /// (mean, worst client, worst 10 %, validation) as mean ± sd over its seeds, from the records.
    func testClientFiguresOverSeeds_AreTheRecordsMeanAndSpread() throws {
        let scratch = try temporaryDirectory("report-client-seeds")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var runs: [URL] = []
        for seed in [1, 2, 3] {
            let run = scratch.appendingPathComponent("seed-\(seed)")
            let child = try Child(
                try dsgdBinary(),
                [
                    "simulate", "--workers", "4", "--rounds", "4", "--model", "784-16-10", "--data", "synthetic",
                    "--eval-every", "2", "--sharpness-every", "0", "--partition", "pathological:2",
                    "--federated", "fedavg", "--topology", "solo", "--client-test-size", "40",
                    "--client-validation-fraction", "0.2", "--seed", "\(seed)", "--run-dir", run.path,
                ], output: scratch.appendingPathComponent("log-\(seed)"))
            XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
            runs.append(run)
        }
        let markdown = scratch.appendingPathComponent("clients.md")
        let compare = try Child(
            try dsgdBinary(),
            ["report", "compare"] + runs.map(\.path) + [
                "--clients", "--output", scratch.appendingPathComponent("c.html").path, "--markdown", markdown.path,
            ], output: scratch.appendingPathComponent("compare"))
        XCTAssertEqual(compare.wait(seconds: 60), 0, compare.text)
        let lines = try String(contentsOf: markdown, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "one configuration over three seeds: \(lines)")
        let header = lines[0].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        let cells = lines[2].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        func lastEvaluated(_ run: URL) throws -> RoundRecord {
            try String(contentsOf: run.appendingPathComponent("rounds.jsonl"), encoding: .utf8)
                .split(separator: "\n").map { try JSONDecoder().decode(RoundRecord.self, from: Data($0.utf8)) }
                .last { $0.clientAccuracyMean != nil }!
        }
        let last = try runs.map(lastEvaluated)
        for (figure, values) in [
            ("client acc", last.map { $0.clientAccuracyMean! }),
            ("worst client", last.map { $0.clientAccuracyWorst! }),
            ("worst 10 %", last.map { $0.clientAccuracyWorstTenth! }),
            ("validation acc", last.map { $0.clientValidationAccuracyMean! }),
        ] {
            let column = try XCTUnwrap(header.firstIndex(of: figure), "\(header)")
            let summary = try XCTUnwrap(SampleSummary(values))
            XCTAssertTrue(
                cells[column].hasPrefix(
                    "\(String(format: "%.4f", summary.mean)) ± \(String(format: "%.2g", summary.standardDeviation!))"),
                "\(figure): \(cells[column]) for \(values)")
            XCTAssertTrue(cells[column].hasSuffix("(3 seeds)"), cells[column])
        }
    }

    /// `report compare --difference-from`: each configuration's figures minus the baseline's, with
    /// Welch's interval and p-value (and with `--paired` the paired t), against `MeanDifference`
    /// of the cells' own records.
    func testDifferencesFromABaseline_AreWelchOfTheRecords() throws {
        let scratch = try temporaryDirectory("report-differences")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let spec = scratch.appendingPathComponent("grid.yaml")
        try """
        runner: simulate
        flags:
          workers: 4
          rounds: 4
          data: synthetic
          model: "784-16-10"
          eval-every: 2
          sharpness-every: 0
        axes:
          lr: [0.05, 0.2]
          seed: [0, 1, 2]

        """.write(to: spec, atomically: true, encoding: .utf8)
        let sweep = scratch.appendingPathComponent("out")
        let run = try Child(
            try dsgdBinary(), ["sweep", spec.path, "--sweep-dir", sweep.path, "--parallel", "2"],
            output: scratch.appendingPathComponent("sweep.log"))
        XCTAssertEqual(run.wait(seconds: 240), 0, run.text)
        func accuracies(_ lr: String) throws -> [Double] {
            try (0..<3).map { seed in
                let rounds = try String(
                    contentsOf: sweep.appendingPathComponent("lr=\(lr)_seed=\(seed)/rounds.jsonl"), encoding: .utf8)
                return try XCTUnwrap(
                    rounds.split(separator: "\n").map {
                        try JSONDecoder().decode(RoundRecord.self, from: Data($0.utf8))
                    }
                    .last { $0.testAccuracy != nil }?.testAccuracy)
            }
        }
        let welch = try XCTUnwrap(MeanDifference(try accuracies("0.2"), try accuracies("0.05")))
        let folders = try FileManager.default.contentsOfDirectory(atPath: sweep.path).filter { $0.hasPrefix("lr=") }
            .sorted().map { sweep.appendingPathComponent($0).path }
        XCTAssertEqual(folders.count, 6)
        let markdown = scratch.appendingPathComponent("d.md")
        let compare = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--figures", "test acc", "--difference-from", "lr=0.05", "--markdown", markdown.path, "--output",
                scratch.appendingPathComponent("d.html").path,
            ], output: scratch.appendingPathComponent("compare.log"))
        XCTAssertEqual(compare.wait(seconds: 60), 0, compare.text)
        let text = try String(contentsOf: markdown, encoding: .utf8)
        let row = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("| lr=0.2 | 3 vs 3 |") }, text)
        let signed = { (value: Double) in (value >= 0 ? "+" : "") + String(format: "%.4f", value) }
        let p = try XCTUnwrap(welch.pValue)
        XCTAssertTrue(
            row.contains(
                "\(signed(welch.difference)) [\(signed(welch.low)), \(signed(welch.high))] "
                    + (p < 0.001 ? "p < 0.001" : String(format: "p = %.3f", p))), "\(welch)\n\(row)")
        XCTAssertEqual(row.contains("✱"), welch.excludesZero, String(row))

        // --paired: the per-seed differences (the cells of one seed share initialization and shards).
        let pairedDifference = try XCTUnwrap(
            MeanDifference(pairs: zip(try accuracies("0.2"), try accuracies("0.05")).map { (a: $0.0, b: $0.1) }))
        let pairedMarkdown = scratch.appendingPathComponent("p.md")
        let pairedCompare = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--figures", "test acc", "--difference-from", "lr=0.05", "--paired", "--markdown", pairedMarkdown.path,
                "--output", scratch.appendingPathComponent("p.html").path,
            ], output: scratch.appendingPathComponent("paired.log"))
        XCTAssertEqual(pairedCompare.wait(seconds: 60), 0, pairedCompare.text)
        let pairedText = try String(contentsOf: pairedMarkdown, encoding: .utf8)
        XCTAssertTrue(pairedText.contains("paired by seed"), pairedText)
        let pairedRow = try XCTUnwrap(
            pairedText.split(separator: "\n").first { $0.hasPrefix("| lr=0.2 | 3 |") }, pairedText)
        let pairedP = try XCTUnwrap(pairedDifference.pValue)
        XCTAssertTrue(
            pairedRow.contains(
                "\(signed(pairedDifference.difference)) [\(signed(pairedDifference.low)), \(signed(pairedDifference.high))] "
                    + (pairedP < 0.001 ? "p < 0.001" : String(format: "p = %.3f", pairedP))),
            "\(pairedDifference)\n\(pairedRow)")

        let unknown = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--difference-from", "lr=9", "--output", scratch.appendingPathComponent("u.html").path,
            ], output: scratch.appendingPathComponent("unknown.log"))
        XCTAssertNotEqual(unknown.wait(seconds: 60), 0)
        XCTAssertTrue(unknown.text.contains("no configuration 'lr=9'"), unknown.text)
        XCTAssertTrue(unknown.text.contains("'lr=0.05'"), unknown.text)
    }

    func testEveryChartHasData_AndShowsTheRecordedNumbers() throws {
        let scratch = try temporaryDirectory("report")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "4", "--rounds", "12", "--model", "784-16-10", "--data", "synthetic",
                "--eval-every", "4",
                "--sharpness-every", "4", "--sharpness-examples", "128", "--lanczos-iterations", "6",
                "--hutchinson-probes", "3",
                "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertFalse(html.contains("no data"), "every chart has data")
        // Self-contained: no script of any kind, nothing loaded from elsewhere (the SVG namespace
        // URI is a name, not a load).
        XCTAssertFalse(html.lowercased().contains("<script"), "no scripts")
        XCTAssertNil(
            html.range(of: #"(src|href)\s*=\s*"?(https?:)?//"#, options: [.regularExpression, .caseInsensitive]),
            "no external resources")
        XCTAssertNil(
            html.range(of: #"url\(\s*['"]?[a-z]*:?//"#, options: [.regularExpression, .caseInsensitive]),
            "no external style resources")
        XCTAssertFalse(html.contains("@import"), "no imported styles")
        for id in ["accuracy", "loss", "consensus", "distance", "lambda", "trace", "density"] {
            XCTAssertTrue(html.contains("<svg id=\"\(id)\""), id)
        }
        // JSONDecoder reads the files exactly (JSONSerialization on Linux rounds the last digit).
        let decoder = JSONDecoder()
        func lines<T: Decodable>(_ name: String, as type: T.Type) throws -> [T] {
            try String(contentsOf: run.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map {
                try decoder.decode(T.self, from: Data($0.utf8))
            }
        }
        let rounds = try lines("rounds.jsonl", as: RoundRecord.self)
        let sharpness = try lines("sharpness.jsonl", as: SharpnessRecord.self)
        XCTAssertEqual(rounds.count, 12)
        XCTAssertEqual(sharpness.count, 3)
        XCTAssertEqual(seriesValues(html, chart: "accuracy", series: "x̄ test"), rounds.compactMap(\.testAccuracy))
        XCTAssertEqual(
            seriesValues(html, chart: "consensus", series: "Ξ²"), rounds.compactMap(\.consensusDistanceSquared))
        XCTAssertEqual(seriesValues(html, chart: "loss", series: "workers' train (mean)"), rounds.map(\.trainLoss))
        XCTAssertEqual(seriesValues(html, chart: "lambda", series: "λ_max"), sharpness.map(\.lambdaMax))
        XCTAssertEqual(
            seriesValues(html, chart: "lambda", series: "threshold 2/η"), sharpness.map(\.twoOverLearningRate))
        XCTAssertEqual(
            seriesValues(html, chart: "trace", series: "tr(H) (Hutchinson, 95 % interval)"), sharpness.map(\.trace))
        XCTAssertEqual(
            seriesValues(html, chart: "distance", series: "‖x̄ₜ − x₀‖"), rounds.compactMap(\.distanceFromInit))

        // Rebuilding (with the page removed first, so a rebuild that writes nothing fails) gives
        // the same page; comparing two runs prints a table.
        try FileManager.default.removeItem(at: run.appendingPathComponent("report.html"))
        let rebuilt = try Child(
            try dsgdBinary(), ["report", run.path], output: scratch.appendingPathComponent("rebuild"))
        XCTAssertEqual(rebuilt.wait(seconds: 60), 0, rebuilt.text)
        XCTAssertEqual(try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8), html)
        let output = scratch.appendingPathComponent("compare.html")
        let compare = try Child(
            try dsgdBinary(), ["report", "compare", run.path, run.path, "--output", output.path],
            output: scratch.appendingPathComponent("compare"))
        XCTAssertEqual(compare.wait(seconds: 60), 0, compare.text)
        XCTAssertTrue(compare.text.contains("test acc"), compare.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: output.path))

        // Corrupt and truncated folders: clear errors naming file and line, never a crash.
        let broken = scratch.appendingPathComponent("broken")
        try FileManager.default.copyItem(at: run, to: broken)
        let roundsFile = broken.appendingPathComponent("rounds.jsonl")
        let original = try Data(contentsOf: roundsFile)
        try original.dropLast(40).write(to: roundsFile)
        try expectReportError(broken, "rounds.jsonl:12: truncated record", scratch)
        var lines = String(decoding: original, as: UTF8.self).split(separator: "\n").map(String.init)
        lines.swapAt(2, 3)
        try (lines.joined(separator: "\n") + "\n").write(to: roundsFile, atomically: true, encoding: .utf8)
        try expectReportError(broken, "rounds.jsonl:3: round 4 where round 3 was expected", scratch)
        try original.write(to: roundsFile)
        try "{\"configuration\": 3}".write(
            to: broken.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try expectReportError(broken, "config.json: not a valid RunManifest", scratch)
        try expectReportError(scratch.appendingPathComponent("nope"), "not a run folder", scratch)
    }

    /// A learning rate that underflows to 0 makes 2/η infinite: sharpness.jsonl stays standard
    /// JSON (null, with the reason in `non_finite`), the page is written and rebuilt, the 2/η line
    /// is drawn up to the infinite point, and the summary's events say what happened. A folder of
    /// an earlier version, with the strings "nan"/"inf" in place of numbers, is still read.
    func testInfiniteAndNaNValues_KeepTheFolderReadable() throws {
        let scratch = try temporaryDirectory("report-nonfinite")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "2", "--rounds", "3", "--model", "784-8-10", "--data", "synthetic",
                "--lr-schedule", "step:1:1e-200", "--lr-schedule-unit", "rounds", "--sharpness-every", "1",
                "--sharpness-examples", "32", "--lanczos-iterations", "3", "--hutchinson-probes", "2",
                "--no-per-layer-curvature", "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let lines = try String(contentsOf: run.appendingPathComponent("sharpness.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let last = try XCTUnwrap(lines.last { ($0["model"] as? String) == "average" })
        XCTAssertEqual(last["learning_rate"] as? Double, 0)
        XCTAssertTrue(last["two_over_learning_rate"] is NSNull)
        XCTAssertEqual((last["non_finite"] as? [String: String])?["two_over_learning_rate"], "inf")
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertTrue(
            (summary["events"] as? [String] ?? []).contains {
                $0.contains("two_over_learning_rate") && $0.contains("inf")
            },
            "\(summary)")
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        let drawn = seriesValues(html, chart: "lambda", series: "threshold 2/η")
        XCTAssertEqual(drawn.count, 3)
        XCTAssertEqual(drawn.last, .infinity)
        XCTAssertTrue(drawn.dropLast().allSatisfy(\.isFinite))
        try FileManager.default.removeItem(at: run.appendingPathComponent("report.html"))
        let rebuilt = try Child(try dsgdBinary(), ["report", run.path], output: scratch.appendingPathComponent("rb"))
        XCTAssertEqual(rebuilt.wait(seconds: 60), 0, rebuilt.text)
        XCTAssertEqual(try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8), html)

        // An earlier version's folder: "nan" in place of a number in rounds.jsonl.
        let roundsFile = run.appendingPathComponent("rounds.jsonl")
        var rows = try String(contentsOf: roundsFile, encoding: .utf8).split(separator: "\n").map(String.init)
        let loss = try XCTUnwrap(rows[2].range(of: #""train_loss":[-0-9.e]+"#, options: .regularExpression))
        rows[2].replaceSubrange(loss, with: #""train_loss":"nan""#)
        try (rows.joined(separator: "\n") + "\n").write(to: roundsFile, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(at: run.appendingPathComponent("report.html"))
        let legacy = try Child(try dsgdBinary(), ["report", run.path], output: scratch.appendingPathComponent("lg"))
        XCTAssertEqual(legacy.wait(seconds: 60), 0, legacy.text)
        let page = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(seriesValues(page, chart: "loss", series: "workers' train (mean)").last!.isNaN)
    }

    /// With heavy-ball momentum the edge of stability is 2(1 + β)/η, not 2/η (Cohen et al. 2021):
    /// each record states the threshold and its formula, and the chart draws λ_max against it.
    func testMomentumRun_DrawsTheHeavyBallThreshold() throws {
        let scratch = try temporaryDirectory("report-momentum")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "2", "--rounds", "4", "--model", "784-8-10", "--data", "synthetic",
                "--momentum", "0.9", "--sharpness-every", "2", "--sharpness-examples", "32", "--lanczos-iterations",
                "3", "--hutchinson-probes", "2", "--no-per-layer-curvature", "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let records = try jsonLines(run.appendingPathComponent("sharpness.jsonl")).filter {
            ($0["model"] as? String) == "average"
        }
        XCTAssertEqual(records.count, 2)
        for record in records {
            XCTAssertEqual(record["stability_threshold"] as? Double ?? 0, 2 * 1.9 / 0.05, accuracy: 1e-9)
            XCTAssertEqual(record["two_over_learning_rate"] as? Double ?? 0, 2 / 0.05, accuracy: 1e-9)
            XCTAssertTrue((record["stability_threshold_formula"] as? String ?? "").hasPrefix("2(1+β)/η, β = 0.9"))
        }
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        let drawn = seriesValues(html, chart: "lambda", series: "threshold 2(1+β)/η, β = 0.9")
        XCTAssertEqual(drawn.count, 2)
        for value in drawn { XCTAssertEqual(value, 76, accuracy: 1e-9) }
    }

    /// Eigenvalues carry their Lanczos residual bounds and a converged flag: at the default budget
    /// they converge; with 2 products they do not, and the page greys them out and says so.
    func testEigenvalues_CarryConvergence_AndThePageMarksTheUnconverged() throws {
        let scratch = try temporaryDirectory("report-converged")
        defer { try? FileManager.default.removeItem(at: scratch) }
        for (budget, converged) in [(50, true), (2, false)] {
            let run = scratch.appendingPathComponent("run-\(budget)")
            let child = try Child(
                try dsgdBinary(),
                [
                    "simulate", "--workers", "2", "--rounds", "2", "--model", "784-8-10", "--data", "synthetic",
                    "--sharpness-every", "2", "--sharpness-examples", "32", "--lanczos-iterations", "\(budget)",
                    "--hutchinson-probes", "2", "--no-per-layer-curvature", "--run-dir", run.path,
                ], output: scratch.appendingPathComponent("log-\(budget)"))
            XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
            let record = try XCTUnwrap(try jsonLines(run.appendingPathComponent("sharpness.jsonl")).first)
            XCTAssertEqual(record["eigenvalues_converged"] as? Bool, converged, "budget \(budget)")
            XCTAssertEqual(
                (record["top_eigenvalue_residual_bounds"] as? [Double])?.count,
                (record["top_eigenvalues"] as? [Double])?.count)
            XCTAssertLessThanOrEqual(record["lanczos_iterations_used"] as? Int ?? 99, budget)
            // The trace's 95 % interval: ±t·s.e. with t on 1 degree of freedom for 2 probes.
            let interval = try XCTUnwrap(record["trace_interval_95"] as? [Double])
            let (trace, error) = (record["trace"] as! Double, record["trace_standard_error"] as! Double)
            XCTAssertEqual(interval[0], trace - 12.706 * error, accuracy: 1e-9 * max(abs(trace), 1))
            XCTAssertEqual(interval[1], trace + 12.706 * error, accuracy: 1e-9 * max(abs(trace), 1))
            let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
            XCTAssertEqual(html.contains("(not converged)"), !converged, "budget \(budget)")
        }
    }

    private func expectReportError(_ folder: URL, _ message: String, _ scratch: URL, line: UInt = #line) throws {
        let child = try Child(
            try dsgdBinary(), ["report", folder.path], output: scratch.appendingPathComponent("err-\(line)"))
        XCTAssertNotEqual(child.wait(seconds: 30), 0, child.text, line: line)
        XCTAssertTrue(child.text.contains(message), child.text, line: line)
    }

    /// The growth laws of ‖x̄_t − x₀‖ recover exact laws with R² = 1 (to rounding), and each tells
    /// the other's law apart (R² below 1); the fits use the longest constant-rate stretch only.
    func testGrowthFits_RecoverExactLaws_AndTellThemApart() throws {
        let logarithmic = (1...200).map { (t: Double($0 * 10), d: 0.7 + 1.3 * log(Double($0 * 10))) }
        let logFit = try XCTUnwrap(GrowthFit.logarithmic(logarithmic))
        XCTAssertEqual(logFit.intercept, 0.7, accuracy: 1e-10)
        XCTAssertEqual(logFit.slope, 1.3, accuracy: 1e-10)
        XCTAssertEqual(logFit.rSquared, 1, accuracy: 1e-12)
        XCTAssertLessThan(try XCTUnwrap(GrowthFit.powerLaw(logarithmic)).rSquared, 0.999)

        let power = (1...200).map { (t: Double($0 * 10), d: 0.5 * pow(Double($0 * 10), 0.3)) }
        let fit = try XCTUnwrap(GrowthFit.powerLaw(power))
        XCTAssertEqual(fit.slope, 0.3, accuracy: 1e-10)
        XCTAssertEqual(exp(fit.intercept), 0.5, accuracy: 1e-10)
        XCTAssertEqual(fit.rSquared, 1, accuracy: 1e-12)
        XCTAssertEqual(fit.predicted(1_000), 0.5 * pow(1_000, 0.3), accuracy: 1e-10)
        XCTAssertLessThan(try XCTUnwrap(GrowthFit.logarithmic(power)).rSquared, 0.999)

        XCTAssertNil(GrowthFit.logarithmic([(1, 1), (2, 2)]), "two points always fit exactly")
        XCTAssertNil(GrowthFit.powerLaw([(3, 1), (3, 2), (3, 3)]), "a single t")

        // Warm-up over rounds 1–5, a constant rate over 6–20, a decay over 21–25: the points are
        // rounds 6–20, at t = round × local steps.
        let rounds = (1...25).map { round -> RoundRecord in
            let rate = round <= 5 ? 0.015 * Double(round) : round <= 20 ? 0.1 : 0.1 * pow(0.5, Double(round - 20))
            var record = RoundRecord(
                round: round, trainLoss: 1, trainLossMin: 1, trainLossMax: 1, learningRate: rate, bytesSent: 0,
                epoch: 0)
            record.distanceFromInit = Double(round)
            return record
        }
        let phase = GrowthFit.constantRatePhase(rounds, localSteps: 4)
        XCTAssertEqual(phase.map(\.t), (6...20).map { Double($0 * 4) })
        XCTAssertEqual(phase.map(\.d), (6...20).map(Double.init))
    }

    func testLogFit_RecoversAnExactLogLaw() throws {
        let points = (1...50).map { (Double($0), 0.7 + 1.3 * log(Double($0))) }
        let fit = try XCTUnwrap(ReportPage.logFit(points))
        XCTAssertEqual(fit.a, 0.7, accuracy: 1e-12)
        XCTAssertEqual(fit.b, 1.3, accuracy: 1e-12)
        XCTAssertNil(ReportPage.logFit([(1, 1)]))
    }
}
