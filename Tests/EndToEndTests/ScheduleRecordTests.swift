import Foundation
import XCTest

/// Small end-to-end runs (`dsgd simulate`, synthetic data, a few rounds) over the flag
/// combinations that touch learning-rate schedules and records. Each asserts the `learning_rate`
/// of every row of `rounds.jsonl` against the schedule computed here, independently of dsgd's
/// schedule code: the rate of the first local step of round r (1-based) at position
/// (r − 1)·S in steps, or r − 1 in rounds, for S local steps per round.
///
/// Tolerance 1e-12 relative: both sides evaluate the same closed forms in Float64.
final class ScheduleRecordTests: XCTestCase {
    /// 12,000 synthetic training examples split iid over 4 workers: 3,000 each.
    private let examplesPerWorker = 3_000

    private func run(
        _ name: String, _ flags: [String], rounds: Int, workers: Int = 4, file: StaticString = #filePath,
        line: UInt = #line
    ) throws -> [[String: Any]] {
        let scratch = try temporaryDirectory("schedule-\(name)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let runDirectory = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "\(workers)", "--rounds", "\(rounds)", "--data", "synthetic", "--batch", "30",
                "--eval-every", "1000", "--sharpness-every", "0", "--no-eval-workers",
                "--run-dir", runDirectory.path,
            ] + (flags.contains("--model") ? [] : ["--model", "784-8-10"]) + flags,
            output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text, file: file, line: line)
        let rows = try jsonLines(runDirectory.appendingPathComponent("rounds.jsonl"))
        XCTAssertEqual(rows.count, rounds, file: file, line: line)
        return rows
    }

    private func assertRates(
        _ rows: [[String: Any]], _ expected: (Int) -> Double, _ name: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        for row in rows {
            let round = row["round"] as! Int
            let recorded = row["learning_rate"] as! Double
            let want = expected(round)
            XCTAssertEqual(
                recorded, want, accuracy: 1e-12 * max(abs(want), 1e-300), "\(name): round \(round)", file: file,
                line: line)
        }
    }

    private func cosine(_ position: Int, base: Double, length: Int, minimum: Double = 0) -> Double {
        let progress = min(Double(position) / Double(length), 1)
        return minimum + (base - minimum) * (1 + cos(Double.pi * progress)) / 2
    }

    /// --local-steps 3 with a cosine after a 4-step warm-up: the cosine spans the run's 3·R steps.
    func testLocalSteps_CosineWithWarmup_SpansTheRun() throws {
        let rounds = 8
        let rows = try run("steps", ["--local-steps", "3", "--lr-schedule", "cosine", "--warmup", "4"], rounds: rounds)
        assertRates(
            rows,
            { round in
                let position = (round - 1) * 3
                if position < 4 { return 0.05 * Double(position + 1) / 4 }
                return self.cosine(position - 4, base: 0.05, length: 3 * rounds - 4)
            }, "local steps")
        // The last round still trains (the cosine reaches its minimum only after the last step).
        XCTAssertGreaterThan(rows.last!["learning_rate"] as! Double, 0)
    }

    /// --local-epochs E: ⌈E·n_k/B⌉ = ⌈0.05·3000/30⌉ = 5 steps per round, so the cosine spans 5·R
    /// steps (it used to span R·--local-steps = R and end inside the first round).
    func testLocalEpochs_CosineSpansTheStepsReallyTaken() throws {
        let rounds = 6
        let rows = try run("epochs", ["--local-epochs", "0.05", "--lr-schedule", "cosine"], rounds: rounds)
        let steps = Int((0.05 * Double(examplesPerWorker) / 30).rounded(.up))
        XCTAssertEqual(steps, 5)
        assertRates(rows, { self.cosine(($0 - 1) * steps, base: 0.05, length: steps * rounds) }, "local epochs")
        XCTAssertGreaterThan(rows[rounds - 1]["learning_rate"] as! Double, 0.001)
    }

    /// Federated with sampling and milestones in rounds: every round's rate is the schedule's at
    /// that round (clients follow the round clock, sampled or not), from the sampled clients.
    func testFederatedSampling_MultistepInRounds() throws {
        let rows = try run(
            "federated-sampled",
            [
                "--federated", "fedavg", "--client-fraction", "0.25", "--local-steps", "2", "--lr-schedule",
                "multistep:2,5:0.1", "--lr-schedule-unit", "rounds",
            ], rounds: 7)
        assertRates(rows, { round in 0.05 * pow(0.1, Double([2, 5].filter { $0 <= round - 1 }.count)) }, "sampled")
    }

    /// Federated, full participation, local epochs, step decay counted in steps.
    func testFederatedLocalEpochs_StepDecayInSteps() throws {
        let rows = try run(
            "federated-epochs",
            ["--federated", "fedavg", "--local-epochs", "0.05", "--lr-schedule", "step:7:0.5"], rounds: 5)
        assertRates(rows, { round in 0.05 * pow(0.5, Double(((round - 1) * 5) / 7)) }, "federated epochs")
    }

    /// Personalization algorithms with their own phases or private models: the record is the
    /// shared model's schedule at the round (FedRep's head phase no longer advances it).
    func testPersonalization_RecordsTheRoundsRate() throws {
        for algorithm in ["fedrep", "ditto", "apfl", "additive", "fine-tune"] {
            let rows = try run(
                "personal-\(algorithm)",
                [
                    "--personalization", algorithm, "--local-steps", "2", "--lr-schedule", "cosine:0.01",
                    "--lr-schedule-unit", "rounds", "--warmup", "2",
                ] + (algorithm == "fedrep" ? ["--personal-head"] : []), rounds: 6)
            assertRates(
                rows,
                { round in
                    let position = round - 1
                    if position < 2 { return 0.05 * Double(position + 1) / 2 }
                    return self.cosine(position - 2, base: 0.05, length: 4, minimum: 0.01)
                }, algorithm)
        }
    }

    /// Push-sum on a directed graph, with milestones in steps.
    func testPushSum_MultistepInSteps() throws {
        let scratch = try temporaryDirectory("pushsum-topology")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let topology = scratch.appendingPathComponent("directed.edges")
        try "directed\n4\n0 1\n1 2\n2 3\n3 0\n0 2\n".write(to: topology, atomically: true, encoding: .utf8)
        let rows = try run(
            "pushsum",
            ["--topology", topology.path, "--local-steps", "2", "--lr-schedule", "multistep:3,6:0.5"], rounds: 5)
        assertRates(rows, { round in 0.05 * pow(0.5, Double([3, 6].filter { $0 <= (round - 1) * 2 }.count)) }, "push")
    }

    /// Batch norm with a warm-up and step decay in rounds.
    func testBatchNorm_WarmupThenStepInRounds() throws {
        let rows = try run(
            "batchnorm",
            [
                "--model", "784-8-10:bn", "--lr-schedule", "step:2:0.5", "--lr-schedule-unit", "rounds", "--warmup",
                "3",
            ], rounds: 7)
        assertRates(
            rows,
            { round in
                let position = round - 1
                if position < 3 { return 0.05 * Double(position + 1) / 3 }
                return 0.05 * pow(0.5, Double((position - 3) / 2))
            }, "batch norm")
    }
}
