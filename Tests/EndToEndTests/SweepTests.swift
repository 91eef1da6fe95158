import Foundation
import XCTest

/// `dsgd sweep` end to end (simulate runner, synthetic data): the grid, a failing cell retried
/// once, resuming, a changed spec refused, and the comparison over seeds against figures computed
/// here from the cells' own rounds.jsonl.
final class SweepTests: XCTestCase {
    func spec(rounds: Int) -> String {
        """
        runner: simulate
        retries: 1
        flags:
          workers: 4
          rounds: \(rounds)
          data: synthetic
          model: "784-32-10"
          eval-every: 10
          sharpness-every: 10
          sharpness-examples: 64
          lanczos-iterations: 10
          hutchinson-probes: 2
          perturbation-samples: 1
          no-per-layer-curvature: true
        axes:
          lr: [0.1, -1]
          seed: [0, 1, 2]

        """
    }

    func testSweep_RunsRetriesResumesAndComparesOverSeeds() throws {
        let scratch = try temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let specURL = scratch.appendingPathComponent("grid.yaml")
        try spec(rounds: 20).write(to: specURL, atomically: true, encoding: .utf8)
        let sweep = scratch.appendingPathComponent("out")
        let arguments = ["sweep", specURL.path, "--sweep-dir", sweep.path, "--parallel", "2"]

        let first = try Child(try dsgdBinary(), arguments, output: scratch.appendingPathComponent("first.log"))
        XCTAssertEqual(first.wait(seconds: 240), 1, "a failed cell makes the sweep fail:\n\(first.text)")
        let index = try json(sweep.appendingPathComponent("index.json"))
        let cells = try XCTUnwrap(index["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, 6)
        for cell in cells {
            let name = try XCTUnwrap((cell["cell"] as? [String: Any])?["name"] as? String)
            let failures = cell["failures"] as? [String] ?? []
            if name.hasPrefix("lr=0.1_") {
                XCTAssertEqual(cell["status"] as? String, "completed", name)
                XCTAssertEqual(cell["attempts"] as? Int, 1, name)
            } else {
                XCTAssertEqual(cell["status"] as? String, "failed", name)
                XCTAssertEqual(cell["attempts"] as? Int, 2, "retried once: \(name)")
                XCTAssertEqual(failures.count, 2, name)
                XCTAssertTrue(failures.allSatisfy { $0.contains("the rate must be positive") }, "\(failures)")
                XCTAssertTrue(
                    FileManager.default.fileExists(
                        atPath: sweep.appendingPathComponent("logs/\(name).attempt-2.log").path))
            }
        }
        XCTAssertTrue(first.text.contains("FAILED lr=-1_seed=0"), first.text)

        // The aggregated table against figures computed here from each run's records.
        let accuracies = try (0..<3).map { seed -> Double in
            let rounds = try jsonLines(sweep.appendingPathComponent("lr=0.1_seed=\(seed)/rounds.jsonl"))
            return try XCTUnwrap(rounds.last { $0["test_accuracy"] != nil }?["test_accuracy"] as? Double)
        }
        XCTAssertGreaterThan(Set(accuracies).count, 1, "the seeds give different runs")
        let mean = accuracies.reduce(0, +) / 3
        let sd = (accuracies.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot()
        let half = 4.302653 * sd / 3.0.squareRoot()  // t_{0.975, 2}
        let expected =
            "\(String(format: "%.4f", mean)) ± \(String(format: "%.2g", sd)) [\(String(format: "%.4f", mean - half)), \(String(format: "%.4f", mean + half))] (3 seeds)"
        let markdown = try String(contentsOf: sweep.appendingPathComponent("comparison.md"), encoding: .utf8)
        XCTAssertTrue(markdown.contains(expected), "expected \(expected) in\n\(markdown)")
        XCTAssertTrue(markdown.contains("| lr=0.1 | 0,1,2 |"), "labelled by the sweep's axes:\n\(markdown)")
        let page = try String(contentsOf: sweep.appendingPathComponent("comparison.html"), encoding: .utf8)
        XCTAssertTrue(page.contains("band of ± 1 standard deviation"))

        // Resume: completed cells are not run again; the failed ones are.
        let summaryDates = try (0..<3).map { seed in
            try FileManager.default.attributesOfItem(
                atPath: sweep.appendingPathComponent("lr=0.1_seed=\(seed)/summary.json").path)[.modificationDate]
                as? Date
        }
        let second = try Child(try dsgdBinary(), arguments, output: scratch.appendingPathComponent("second.log"))
        XCTAssertEqual(second.wait(seconds: 240), 1, second.text)
        XCTAssertTrue(second.text.contains("3 of 6 cells already completed"), second.text)
        XCTAssertFalse(second.text.contains("cell 1/6 lr=0.1_seed=0"), second.text)
        let resumedDates = try (0..<3).map { seed in
            try FileManager.default.attributesOfItem(
                atPath: sweep.appendingPathComponent("lr=0.1_seed=\(seed)/summary.json").path)[.modificationDate]
                as? Date
        }
        XCTAssertEqual(summaryDates, resumedDates)
        let resumed = try XCTUnwrap(try json(sweep.appendingPathComponent("index.json"))["cells"] as? [[String: Any]])
        XCTAssertEqual(
            resumed.filter { $0["status"] as? String == "failed" }.map { $0["attempts"] as? Int }, [4, 4, 4])

        // The same folder with other flags is refused, naming the cell's folder.
        try spec(rounds: 25).write(to: specURL, atomically: true, encoding: .utf8)
        let changed = try Child(try dsgdBinary(), arguments, output: scratch.appendingPathComponent("changed.log"))
        XCTAssertNotEqual(changed.wait(seconds: 60), 0)
        XCTAssertTrue(changed.text.contains("lr=0.1_seed=0 was run with other flags"), changed.text)

        // report compare: grouped over seeds by default, one row per run with --per-run.
        let folders = (0..<3).map { sweep.appendingPathComponent("lr=0.1_seed=\($0)").path }
        let grouped = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + ["--output", scratch.appendingPathComponent("c.html").path],
            output: scratch.appendingPathComponent("grouped.log"))
        XCTAssertEqual(grouped.wait(seconds: 60), 0, grouped.text)
        XCTAssertTrue(grouped.text.contains(expected), grouped.text)
        let perRun = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + ["--per-run", "--output", scratch.appendingPathComponent("p.html").path],
            output: scratch.appendingPathComponent("per-run.log"))
        XCTAssertEqual(perRun.wait(seconds: 60), 0, perRun.text)
        XCTAssertFalse(perRun.text.contains("seeds)"), perRun.text)
        XCTAssertEqual(perRun.text.components(separatedBy: "\n").filter { $0.contains("ring") }.count, 3, perRun.text)

        // report trajectory: λ_max of x̄ at each measured round, over the seeds.
        let lambdas = try (0..<3).map { seed in
            try jsonLines(sweep.appendingPathComponent("lr=0.1_seed=\(seed)/sharpness.jsonl"))
                .filter { $0["model"] as? String == "average" && $0["round"] as? Int == 10 }
                .compactMap { $0["lambda_max"] as? Double }
        }.flatMap { $0 }
        XCTAssertEqual(lambdas.count, 3)
        let lambdaMean = lambdas.reduce(0, +) / 3
        let trajectory = try Child(
            try dsgdBinary(), ["report", "trajectory"] + folders,
            output: scratch.appendingPathComponent("trajectory.log"))
        XCTAssertEqual(trajectory.wait(seconds: 60), 0, trajectory.text)
        // report compare --sharpness-round: the figures of that measurement, not the last one's.
        let atRound = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--sharpness-round", "10", "--figures", "test acc,λ_max @10", "--output",
                scratch.appendingPathComponent("r.html").path,
            ], output: scratch.appendingPathComponent("at-round.log"))
        XCTAssertEqual(atRound.wait(seconds: 60), 0, atRound.text)
        XCTAssertTrue(atRound.text.contains("λ_max @10"), atRound.text)
        XCTAssertTrue(
            atRound.text.contains(String(format: "%.4g ± ", lambdaMean)),
            "λ_max at round 10: \(lambdaMean)\n\(atRound.text)")
        let row = trajectory.text.components(separatedBy: "\n").first { $0.hasPrefix("10 ") } ?? ""
        XCTAssertTrue(
            row.contains(String(format: "%.4g", lambdaMean)), "mean λ_max \(lambdaMean) in\n\(trajectory.text)")
        XCTAssertTrue(row.contains(String(format: "%.3f", lambdas.map { $0 / 20 }.reduce(0, +) / 3)), row)  // 2/η = 20

        // --sharpness-first: each run's first measurement (round 10 here), with the measurement's
        // own uncertainty and the optimizer's threshold (plain SGD: 2/η = 20) beside it.
        let firstRecords = try (0..<3).map { seed in
            try XCTUnwrap(
                try jsonLines(sweep.appendingPathComponent("lr=0.1_seed=\(seed)/sharpness.jsonl"))
                    .first { $0["model"] as? String == "average" })
        }
        XCTAssertEqual(firstRecords.map { $0["round"] as? Int }, [10, 10, 10])
        let halfWidths = try firstRecords.map { record -> Double in
            let interval = try XCTUnwrap(record["trace_interval_95"] as? [Double])
            return (interval[1] - interval[0]) / 2
        }
        let atFirst = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--sharpness-first", "--figures",
                "λ_max @first,threshold @first,λ_max/threshold @first,tr(H) ±95 % @first", "--markdown",
                scratch.appendingPathComponent("first.md").path, "--output",
                scratch.appendingPathComponent("f.html").path,
            ], output: scratch.appendingPathComponent("at-first.log"))
        XCTAssertEqual(atFirst.wait(seconds: 60), 0, atFirst.text)
        let firstTable = try String(contentsOf: scratch.appendingPathComponent("first.md"), encoding: .utf8)
        XCTAssertTrue(firstTable.contains("| λ_max @first | threshold @first |"), firstTable)
        XCTAssertTrue(firstTable.contains(String(format: "| %.4g ± ", lambdaMean)), firstTable)
        XCTAssertTrue(firstTable.contains("| 20 ± 0 [20, 20] (3 seeds) |"), firstTable)
        XCTAssertTrue(
            firstTable.contains(String(format: "| %.3f ± ", lambdas.map { $0 / 20 }.reduce(0, +) / 3)), firstTable)
        XCTAssertTrue(
            firstTable.contains(String(format: "| %.3g ± ", halfWidths.reduce(0, +) / 3)),
            "mean half-width \(halfWidths)\n\(firstTable)")
        let both = try Child(
            try dsgdBinary(),
            ["report", "compare"] + folders + [
                "--sharpness-first", "--sharpness-round", "10", "--output",
                scratch.appendingPathComponent("b.html").path,
            ], output: scratch.appendingPathComponent("both.log"))
        XCTAssertNotEqual(both.wait(seconds: 60), 0)
        XCTAssertTrue(both.text.contains("not both"), both.text)
    }
}
