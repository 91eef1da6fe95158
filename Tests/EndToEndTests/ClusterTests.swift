import Algorithms
import Datasets
import Foundation
import LearningCore
import Optimizers
import Runtime
import Topologies
import XCTest
import _TestSupport

/// Real processes over ZeroMQ on loopback, and the launcher script.
final class ClusterTests: XCTestCase {
    private let workers = 8
    private let rounds = 20

    private func runArguments(data: URL, runDirectory: URL, algorithm: String, topology: String) -> [String] {
        [
            "--workers", "\(workers)", "--rounds", "\(rounds)", "--model", "64-16-10", "--batch", "8", "--lr", "0.1",
            "--momentum", "0.9", "--data", data.path, "--seed", "5", "--eval-every", "10", "--algorithm", algorithm,
            "--run-dir", runDirectory.path, "--peer-timeout", "30", "--topology", topology,
        ]
    }

    /// 8 worker processes for 20 rounds — on a ring (ATC and CTA), on the one-peer exponential
    /// schedule, on an irregular directed graph with push-sum, and a ghost-batch-norm CNN whose
    /// running statistics stay on their workers — equal the dense reference that
    /// applies the same per-round matrices (relative 1e-5, see SimulationTests for the tolerance)
    /// and, bit for bit, `dsgd simulate`; the coordinator's Ξ² equals a direct computation from the
    /// dumped models.
    func testZeroMQ_MatchesDenseReference_AndSimulation() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("cluster")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyIDX(to: data)
        let directed = scratch.appendingPathComponent("directed.edges")
        try "directed\n8\n0 1\n1 2\n2 3\n3 4\n4 5\n5 6\n6 7\n7 0\n0 4\n0 2\n3 7\n5 1\n".write(
            to: directed, atomically: true, encoding: .utf8)

        // The last case is a CNN with ghost batch norm whose running statistics stay local.
        let batchNorm = ["--model", "cnn:8x8x1-4-8-10", "--virtual-batch-size", "4", "--bn-policy", "local"]
        for (index, (algorithm, topology, extra)) in [
            ("atc", "ring", []), ("cta", "ring", []), ("atc", "one-peer-exponential", []), ("cta", directed.path, []),
            ("atc", "ring", batchNorm),
        ].enumerated() {
            let run = scratch.appendingPathComponent("run-\(index)")
            let dumps = scratch.appendingPathComponent("dump-\(index)")
            try runCluster(
                binary,
                arguments: runArguments(data: data, runDirectory: run, algorithm: algorithm, topology: topology)
                    + extra,
                workers: workers, dumps: dumps, scratch: scratch, tag: "\(index)", label: "\(algorithm) \(topology)")

            let models = try (0..<workers).map { try readFloats(dumps.appendingPathComponent("worker-\($0).f32")) }
            let configuration = try JSONDecoder().decode(
                RunManifest.self, from: Data(contentsOf: run.appendingPathComponent("config.json"))
            ).configuration
            let shards = try (0..<workers).map {
                try DataLoader.loadShard(configuration.data, partition: .iid, workers: workers, seed: 5, rank: $0)
            }
            let reference = denseReferenceDSGD(
                network: Network(spec: configuration.model), shards: shards, topology: configuration.topology,
                algorithm: configuration.algorithm, batchSize: 8, localSteps: 1, optimizer: configuration.optimizer,
                seed: 5, rounds: rounds,
                personal: configuration.localRanges(in: Network(spec: configuration.model).layout),
                batchNorm: configuration.batchNorm)
            for rank in 0..<workers {
                XCTAssertLessThan(
                    relativeDistance(models[rank], reference[rank]), 1e-5, "\(algorithm) \(topology) worker \(rank)")
            }
            let lines = try jsonLines(run.appendingPathComponent("rounds.jsonl"))
            XCTAssertEqual(lines.count, rounds)
            let recorded = try XCTUnwrap(lines.last?["consensus_distance_sq"] as? Double)
            // Ξ² is over parameters: running statistics (state) are left out.
            let stateRanges = Network(spec: configuration.model).stateRanges
            let direct = directConsensusDistanceSquared(
                models.map { model in
                    var parameters = model
                    for range in stateRanges { for i in range { parameters[i] = 0 } }
                    return parameters
                })
            XCTAssertEqual(recorded, direct, accuracy: 1e-6 * direct)

            // The same run in one process: identical numbers.
            let simulated = scratch.appendingPathComponent("sim-\(index)")
            let simulation = try Child(
                binary,
                ["simulate"]
                    + runArguments(data: data, runDirectory: simulated, algorithm: algorithm, topology: topology)
                    + extra
                    + ["--dump-parameters", simulated.appendingPathComponent("dump").path],
                output: scratch.appendingPathComponent("simulate-\(index).log"))
            XCTAssertEqual(simulation.wait(seconds: 120), 0, simulation.text)
            for rank in 0..<workers {
                XCTAssertEqual(
                    try readFloats(simulated.appendingPathComponent("dump/worker-\(rank).f32")), models[rank],
                    "simulate differs at worker \(rank)")
            }
            let simulatedLines = try jsonLines(simulated.appendingPathComponent("rounds.jsonl"))
            for key in ["train_loss", "consensus_distance_sq", "test_accuracy", "test_loss"] {
                XCTAssertEqual(simulatedLines.map { $0[key] as? Double }, lines.map { $0[key] as? Double }, key)
            }
        }
    }

    /// Timing faults between real processes change timing, never numbers: a straggler sleeping
    /// 0.1 s before rounds 2–4 and a link delaying its models 0.2 s in rounds 3–6 (messages then
    /// arrive late and out of order) give, bit for bit, the models and records of `dsgd simulate`
    /// without faults. The wall time shows the faults took effect: the straggler's own timeline
    /// holds three sleeps of 0.1 s (the delays may overlap them). (The simulation has no clock, so
    /// only real processes can test this.)
    func testTimingFaults_BetweenProcesses_ChangeTimingNotNumbers() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("faults")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyIDX(to: data)
        let flags = [
            "--workers", "4", "--rounds", "10", "--model", "64-16-10", "--batch", "8", "--lr", "0.1", "--momentum",
            "0.9", "--data", data.path, "--seed", "5", "--eval-every", "5", "--sharpness-every", "0",
        ]
        let run = scratch.appendingPathComponent("faulted")
        let endpointFile = scratch.appendingPathComponent("endpoint")
        let coordinator = try Child(
            binary,
            ["coordinator"] + flags + [
                "--run-dir", run.path, "--endpoint-file", endpointFile.path, "--straggler", "2:0.1:2-4",
                "--delay-link", "0:1:0.2:3-6",
            ], output: scratch.appendingPathComponent("coordinator.log"))
        let endpoint = waitForEndpoint(endpointFile)
        XCTAssertFalse(endpoint.isEmpty, coordinator.text)
        let dumps = scratch.appendingPathComponent("dump")
        let children = try (0..<4).map { rank in
            try Child(
                binary, ["worker", "--coordinator", endpoint, "--dump-parameters", dumps.path],
                output: scratch.appendingPathComponent("worker-\(rank).log"))
        }
        for child in children { XCTAssertEqual(child.wait(seconds: 120), 0, child.text) }
        XCTAssertEqual(coordinator.wait(seconds: 60), 0, coordinator.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(summary["wall_seconds"] as? Double), 0.3, "the faults took effect")
        XCTAssertEqual((summary["events"] as? [String])?.filter { $0.hasPrefix("fault injected") }.count, 2)

        let plain = scratch.appendingPathComponent("plain")
        let simulation = try Child(
            binary,
            ["simulate"] + flags + [
                "--run-dir", plain.path, "--dump-parameters", plain.appendingPathComponent("dump").path,
            ],
            output: scratch.appendingPathComponent("simulate.log"))
        XCTAssertEqual(simulation.wait(seconds: 120), 0, simulation.text)
        for rank in 0..<4 {
            XCTAssertEqual(
                try readFloats(dumps.appendingPathComponent("worker-\(rank).f32")),
                try readFloats(plain.appendingPathComponent("dump/worker-\(rank).f32")), "worker \(rank)")
        }
        try assertSameRecords(
            run, plain, count: 10,
            keys: ["train_loss", "learning_rate", "consensus_distance_sq", "test_accuracy", "test_loss"])
    }

    func testLocalScript_FourWorkersThirtyRounds_WritesThirtyRows() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("local")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "4", "--rounds", "30",
                "--data", "synthetic", "--run-dir", run.path, "--", "--eval-every", "10",
            ],
            environment: ["DSGD_BIN": binary.path], output: scratch.appendingPathComponent("local.log"))
        XCTAssertEqual(script.wait(seconds: 180), 0, script.text)
        XCTAssertEqual(try jsonLines(run.appendingPathComponent("rounds.jsonl")).count, 30)
        let csv = try String(contentsOf: run.appendingPathComponent("rounds.csv"), encoding: .utf8).split(
            separator: "\n")
        XCTAssertEqual(csv.count, 31)
        XCTAssertTrue(csv[0].hasPrefix("round,train_loss,"))
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
        XCTAssertEqual(summary["rounds"] as? Int, 30)
        XCTAssertEqual(summary["workers"] as? Int, 4)
        XCTAssertEqual(summary["topology"] as? String, "ring")
        XCTAssertNotNil(summary["final_test_accuracy"] as? Double)
        XCTAssertNotNil(summary["wall_seconds"] as? Double)
        XCTAssertNotNil(summary["rounds_per_second"] as? Double)
        XCTAssertEqual((summary["data"] as? [String: Any])?["name"] as? String, "synthetic")
        let config = try json(run.appendingPathComponent("config.json"))
        XCTAssertNotNil(config["git_commit"] as? String)
        XCTAssertEqual((config["topology_hash"] as? String)?.count, 16)
        XCTAssertTrue(script.text.contains("report in \(run.path)"), script.text)
    }

    func testLocalScript_KilledWorker_FailsAndLeavesNoProcess() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("kill")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "3", "--rounds", "1000000",
                "--model", "784-16-10", "--data", "synthetic", "--run-dir", run.path, "--", "--eval-every", "1000000",
            ],
            environment: ["DSGD_BIN": binary.path], output: scratch.appendingPathComponent("local.log"))
        // Wait until training is under way.
        XCTAssertGreaterThanOrEqual(waitForRows(run, count: 5), 5, script.text)
        let listening = try XCTUnwrap(script.text.split(separator: "\n").first { $0.contains("listening on") })
        let endpoint = try XCTUnwrap(
            listening.split(separator: " ").first { $0.hasPrefix("ipc://") || $0.hasPrefix("tcp://") }
        )
        .trimmingCharacters(in: CharacterSet(charactersIn: ";"))
        let workerPIDs = processes(containing: "worker --coordinator \(endpoint) ")
        XCTAssertEqual(workerPIDs.count, 3, script.text)
        guard workerPIDs.count == 3 else { return }
        kill(workerPIDs[1], SIGKILL)
        XCTAssertNotEqual(script.wait(seconds: 60), 0, script.text)
        XCTAssertTrue(script.text.contains("killed by signal 9"), script.text)
        XCTAssertEqual(processes(containing: endpoint + " "), [], "worker processes left behind")
        XCTAssertEqual(processes(containing: run.path), [], "coordinator left behind")
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "failed")
        XCTAssertTrue((summary["reason"] as? String ?? "").contains("killed by signal 9"), "\(summary)")
        XCTAssertGreaterThanOrEqual(summary["rounds"] as? Int ?? 0, 5)
    }

    /// Starts local.sh on a long run and waits until rounds are recorded.
    private func startLongLocalRun(_ scratch: URL, run: URL) throws -> Child {
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "2", "--rounds", "1000000",
                "--model", "784-16-10", "--data", "synthetic", "--run-dir", run.path, "--", "--eval-every", "1000000",
                "--sharpness-every", "0",
            ],
            environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("local.log"))
        XCTAssertGreaterThanOrEqual(waitForRows(run, count: 5), 5, script.text)
        return script
    }

    /// When the coordinator dies (SIGKILL: it cannot write anything), the launcher writes
    /// summary.json marked failed with the cause, so every run folder has one, and the report.
    func testLocalScript_KilledCoordinator_LeavesASummaryWithTheCause() throws {
        let scratch = try temporaryDirectory("kill-coordinator")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try startLongLocalRun(scratch, run: run)
        let coordinators = processes(containing: "coordinator --workers 2").filter {
            processes(containing: run.path).contains($0)
        }
        XCTAssertEqual(coordinators.count, 1, script.text)
        guard let coordinator = coordinators.first else { return }
        kill(coordinator, SIGKILL)
        XCTAssertNotEqual(script.wait(seconds: 60), 0, script.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "failed")
        XCTAssertTrue(
            (summary["reason"] as? String ?? "").contains(
                "the coordinator exited with status 137 (killed by signal 9)"),
            "\(summary)")
        XCTAssertGreaterThanOrEqual(summary["rounds"] as? Int ?? 0, 5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("report.html").path))
        XCTAssertEqual(processes(containing: run.path), [], "processes left behind")
    }

    /// Ctrl-C: the coordinator gets the grace period to write its own summary (the launcher used
    /// to SIGKILL it after 2 s), which records the interruption.
    func testLocalScript_Interrupted_CoordinatorWritesItsSummary() throws {
        let scratch = try temporaryDirectory("interrupt")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try startLongLocalRun(scratch, run: run)
        kill(script.process.processIdentifier, SIGINT)
        XCTAssertEqual(script.wait(seconds: 60), 130, script.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "failed")
        XCTAssertNil((summary["events"] as? [String])?.first { $0.contains("written by the launcher") }, "\(summary)")
        XCTAssertEqual(processes(containing: run.path), [], "processes left behind")
    }
}
