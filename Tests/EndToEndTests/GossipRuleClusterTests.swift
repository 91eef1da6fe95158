import Foundation
import XCTest

/// CHOCO-SGD and gradient tracking between real processes: the numbers of `dsgd simulate`, bit
/// for bit, through shared memory (gradient tracking's two-vector messages) and ZeroMQ frames
/// (CHOCO-SGD's compressed bytes), on a fixed and on a changing graph.
final class GossipRuleClusterTests: XCTestCase {
    func testRuleAlgorithms_BetweenProcesses_EqualSimulation() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("rule-cluster")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyIDX(to: data)
        let workers = 6
        let rounds = 15
        for (index, (rule, topology, payloads)) in [
            (["--algorithm", "gradient-tracking"], "one-peer-exponential", "auto"),
            (["--algorithm", "gradient-tracking"], "ring", "zeromq"),
            (["--algorithm", "choco", "--compressor", "top-k:0.2", "--consensus-step", "0.4"], "ring", "auto"),
            (
                ["--algorithm", "choco", "--compressor", "qsgd:8", "--consensus-step", "0.3"], "one-peer-exponential",
                "auto"
            ),
        ].enumerated() {
            func arguments(_ run: URL) -> [String] {
                [
                    "--workers", "\(workers)", "--rounds", "\(rounds)", "--model", "64-16-10", "--batch", "8", "--lr",
                    "0.1", "--data", data.path, "--seed", "5", "--eval-every", "5", "--topology", topology,
                    "--run-dir", run.path, "--peer-timeout", "30",
                ] + rule
            }
            let label = "\(rule[1]) on \(topology), payloads \(payloads)"
            let run = scratch.appendingPathComponent("run-\(index)")
            let dumps = scratch.appendingPathComponent("dump-\(index)")
            try runCluster(
                binary, arguments: arguments(run) + ["--payloads", payloads], workers: workers, dumps: dumps,
                scratch: scratch, tag: "\(index)", label: label)
            let summary = try String(contentsOf: run.appendingPathComponent("summary.json"), encoding: .utf8)
            XCTAssertTrue(
                summary.contains(payloads == "zeromq" ? "\"used\" : \"zeromq\"" : "\"used\" : \"shared-memory\""),
                "\(label): \(summary.prefix(2_000))")

            let simulated = scratch.appendingPathComponent("sim-\(index)")
            let simulation = try Child(
                binary,
                ["simulate"] + arguments(simulated) + [
                    "--dump-parameters", simulated.appendingPathComponent("dump").path,
                ],
                output: scratch.appendingPathComponent("simulate-\(index).log"))
            XCTAssertEqual(simulation.wait(seconds: 120), 0, simulation.text)
            for rank in 0..<workers {
                XCTAssertEqual(
                    try readFloats(simulated.appendingPathComponent("dump/worker-\(rank).f32")),
                    try readFloats(dumps.appendingPathComponent("worker-\(rank).f32")), "\(label): worker \(rank)")
            }
            let lines = try jsonLines(run.appendingPathComponent("rounds.jsonl"))
            let simulatedLines = try jsonLines(simulated.appendingPathComponent("rounds.jsonl"))
            XCTAssertEqual(lines.count, rounds, label)
            for key in ["train_loss", "consensus_distance_sq", "test_accuracy", "test_loss", "bytes_sent"] {
                XCTAssertEqual(
                    simulatedLines.map { "\($0[key] ?? "none")" }, lines.map { "\($0[key] ?? "none")" },
                    "\(label): \(key)")
            }
            // It trains: the loss falls.
            XCTAssertLessThan(
                try XCTUnwrap(lines.last?["train_loss"] as? Double),
                try XCTUnwrap(lines.first?["train_loss"] as? Double),
                label)
        }
    }
}
