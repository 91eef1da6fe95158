import Foundation
import XCTest

/// Payloads through shared memory between the processes of one host (#11): the same numbers as
/// ZeroMQ frames and as `dsgd simulate`, the decision recorded, an impossible request refused
/// before the first round, and nothing left in /dev/shm after a worker is killed.
final class SharedMemoryPayloadTests: XCTestCase {
    /// Every key of a round record except wall-clock times and byte counts, which differ between
    /// transports by design.
    private func numbers(_ run: URL) throws -> [String] {
        try jsonLines(run.appendingPathComponent("rounds.jsonl")).map { record in
            let kept = record.filter { !$0.key.contains("elapsed") && !$0.key.contains("bytes") }
            return String(
                decoding: try JSONSerialization.data(withJSONObject: kept, options: .sortedKeys), as: UTF8.self)
        }
    }

    private func segments(ofRun runIDFile: URL) -> [String] {
        guard
            let id = try? String(contentsOf: runIDFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        else { return [] }
        let padded = String(repeating: "0", count: max(0, 16 - id.count)) + id
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter {
            $0.hasPrefix("dsgd-\(padded)-")
        }
    }

    private func localScript(_ scratch: URL, run: URL, workers: Int, rounds: Int, flags: [String]) throws -> Child {
        try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "\(workers)", "--rounds",
                "\(rounds)", "--model", "64-16-10", "--batch", "8", "--lr", "0.1", "--data",
                scratch.appendingPathComponent("data").path, "--seed", "7", "--run-dir", run.path, "--",
            ] + flags,
            environment: ["DSGD_BIN": try dsgdBinary().path], output: run.appendingPathExtension("log"))
    }

    /// On a ring, on the complete graph (C-SGD), on a directed graph with push-sum, and with
    /// personal layers (masked, mostly-zero payloads that ZeroMQ sends sparse): processes passing
    /// models through shared memory, processes passing ZeroMQ frames, and `dsgd simulate` record
    /// the same numbers, bit for bit (as printed), every round, with Ξ² formed every round.
    func testSharedMemory_ZeroMQ_AndSimulation_RecordTheSameNumbers() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("shm-modes")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyIDX(to: data)
        let directed = scratch.appendingPathComponent("directed.edges")
        try "directed\n4\n0 1\n1 2\n2 3\n3 0\n0 2\n".write(to: directed, atomically: true, encoding: .utf8)
        let rounds = 12
        let common = ["--metrics-every", "1", "--eval-every", "6", "--sharpness-every", "0"]
        let cases: [(String, [String])] = [
            ("ring", ["--topology", "ring"]),
            ("complete", ["--topology", "complete"]),
            ("push-sum", ["--topology", directed.path, "--algorithm", "cta"]),
            ("personal", ["--topology", "ring", "--personal-layers", "layers.0"]),
        ]
        for (name, flags) in cases {
            var folders: [URL] = []
            for mode in ["shared-memory", "zeromq"] {
                let run = scratch.appendingPathComponent("\(name)-\(mode)")
                let script = try localScript(
                    scratch, run: run, workers: 4, rounds: rounds, flags: common + flags + ["--payloads", mode])
                XCTAssertEqual(script.wait(seconds: 120), 0, "\(name) \(mode): \(script.text)")
                let summary = try json(run.appendingPathComponent("summary.json"))
                let payloads = summary["payloads"] as? [String: Any]
                XCTAssertEqual(payloads?["used"] as? String, mode, "\(name)")
                if mode == "shared-memory" {
                    // Each worker's share of the segment pages it maps: some, and no more than
                    // those pages counted whole (others map them too).
                    let whole = summary["worker_shared_resident_bytes"] as? [Int] ?? []
                    let share = summary["worker_shared_proportional_bytes"] as? [Int] ?? []
                    XCTAssertEqual(share.count, 4, "\(name)")
                    for (part, all) in zip(share, whole) {
                        XCTAssertTrue(part > 0 && part < all, "\(name): share \(part) of \(all) bytes")
                    }
                }
                let manifest = try json(run.appendingPathComponent("config.json"))
                XCTAssertEqual((manifest["payloads"] as? [String: Any])?["used"] as? String, mode, "\(name)")
                folders.append(run)
            }
            let simulated = scratch.appendingPathComponent("\(name)-simulated")
            let simulation = try Child(
                binary,
                [
                    "simulate", "--workers", "4", "--rounds", "\(rounds)", "--model", "64-16-10", "--batch", "8",
                    "--lr", "0.1", "--data", data.path, "--seed", "7", "--run-dir", simulated.path,
                ] + common + flags, output: scratch.appendingPathComponent("\(name)-simulate.log"))
            XCTAssertEqual(simulation.wait(seconds: 120), 0, simulation.text)
            let reference = try numbers(simulated)
            XCTAssertEqual(reference.count, rounds)
            XCTAssertTrue(reference.allSatisfy { $0.contains("\"consensus_distance_sq\"") }, "Ξ² every round")
            for run in folders { XCTAssertEqual(try numbers(run), reference, "\(run.lastPathComponent)") }
        }
    }

    /// `--payloads shared-memory` with a worker that will not use it: the run fails before its
    /// first round, naming the worker and why; under `auto` the same run falls back to ZeroMQ
    /// frames and config.json says why.
    func testImpossibleSharedMemory_FailsBeforeTheFirstRound_AutoFallsBackSayingWhy() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("shm-refused")
        defer { try? FileManager.default.removeItem(at: scratch) }
        for mode in ["shared-memory", "auto"] {
            let run = scratch.appendingPathComponent(mode)
            let endpointFile = scratch.appendingPathComponent("\(mode).endpoint")
            let coordinator = try Child(
                binary,
                [
                    "coordinator", "--workers", "2", "--rounds", "5", "--model", "784-16-10", "--data", "synthetic",
                    "--run-dir", run.path, "--endpoint-file", endpointFile.path, "--payloads", mode,
                    "--sharpness-every", "0",
                ], output: scratch.appendingPathComponent("\(mode)-coordinator.log"))
            let endpoint = waitForEndpoint(endpointFile)
            let workers = try [["--payloads", "zeromq"], []].enumerated().map { index, flags in
                try Child(
                    binary, ["worker", "--coordinator", endpoint, "--rank", "\(index)"] + flags,
                    output: scratch.appendingPathComponent("\(mode)-worker-\(index).log"))
            }
            let status = coordinator.wait(seconds: 60)
            for worker in workers { worker.wait(seconds: 60) }
            let summary = try json(run.appendingPathComponent("summary.json"))
            if mode == "shared-memory" {
                XCTAssertNotEqual(status, 0)
                XCTAssertEqual(summary["rounds"] as? Int, 0)
                let reason = summary["reason"] as? String ?? ""
                XCTAssertTrue(
                    reason.contains("--payloads shared-memory") && reason.contains("worker 0")
                        && reason.contains("started with --payloads zeromq"), reason)
            } else {
                XCTAssertEqual(status, 0, coordinator.text)
                let payloads = try XCTUnwrap(
                    try json(run.appendingPathComponent("config.json"))["payloads"] as? [String: Any])
                XCTAssertEqual(payloads["used"] as? String, "zeromq")
                XCTAssertTrue((payloads["reason"] as? String ?? "").contains("worker 0"), "\(payloads)")
                XCTAssertTrue(coordinator.text.contains("payloads as ZeroMQ frames: worker 0"), coordinator.text)
            }
        }
    }

    /// A worker killed with SIGKILL mid-run (it cannot unlink its segment): the run fails, and
    /// once launch/local.sh has stopped, nothing of the run is left in /dev/shm; during the run the
    /// segments were there (five: four workers and the coordinator).
    func testKilledWorker_LeavesNothingInDevShm() throws {
        let scratch = try temporaryDirectory("shm-kill")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(
            at: scratch.appendingPathComponent("data"), withIntermediateDirectories: true)
        try writeTinyIDX(to: scratch.appendingPathComponent("data"))
        let run = scratch.appendingPathComponent("run")
        let runIDFile = run.appendingPathComponent("run-id")  // written by the coordinator for the launcher
        let script = try localScript(
            scratch, run: run, workers: 4, rounds: 400,
            flags: [
                "--kill-worker", "2:150", "--sharpness-every", "0", "--eval-every", "400", "--failure-timeout", "2",
                "--heartbeat-interval", "0.25",
            ])
        var seen = 0
        for _ in 0..<600 where script.process.isRunning {
            seen = max(seen, segments(ofRun: runIDFile).count)
            usleep(20_000)
        }
        XCTAssertNotEqual(script.wait(seconds: 120), 0, script.text)
        XCTAssertEqual(seen, 5, "the run's segments while it ran")
        XCTAssertTrue(script.text.contains("killed") || script.text.contains("SIGKILL") || script.text.contains("died"))
        XCTAssertEqual(segments(ofRun: runIDFile), [], "left in /dev/shm")
    }

    /// C-SGD (the complete graph, averaged by all-reduce through shared memory): a worker killed
    /// mid-run with `--on-failure continue` leaves the survivors to finish that round and the
    /// rest by gossip on the complete graph without it, and the run completes. Worker 0, the hub
    /// that gathers the averaged chunks and sends the whole average, and worker 2, an owner.
    func testAllReduce_SurvivesAWorkerRemoval_TheHubOrAnOwner() throws {
        let scratch = try temporaryDirectory("shm-allreduce-removal")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(
            at: scratch.appendingPathComponent("data"), withIntermediateDirectories: true)
        try writeTinyIDX(to: scratch.appendingPathComponent("data"))
        for killed in [0, 2] {
            let run = scratch.appendingPathComponent("run-\(killed)")
            let script = try localScript(
                scratch, run: run, workers: 4, rounds: 60,
                flags: [
                    "--topology", "complete", "--kill-worker", "\(killed):30", "--on-failure", "continue",
                    "--failure-timeout", "1.5", "--heartbeat-interval", "0.25", "--sharpness-every", "0",
                    "--eval-every", "20",
                ])
            XCTAssertEqual(script.wait(seconds: 120), 0, "worker \(killed) killed: \(script.text)")
            let summary = try json(run.appendingPathComponent("summary.json"))
            XCTAssertEqual(summary["status"] as? String, "completed", "worker \(killed) killed")
            XCTAssertEqual(summary["rounds"] as? Int, 60, "worker \(killed) killed")
            XCTAssertEqual((summary["payloads"] as? [String: Any])?["used"] as? String, "shared-memory")
            let records = try jsonLines(run.appendingPathComponent("rounds.jsonl"))
            // Before the removal every worker holds the identical average: Ξ² is exactly 0.
            XCTAssertEqual(records[10]["consensus_distance_sq"] as? Double, 0, "worker \(killed) killed")
            XCTAssertEqual(records.last?["workers_alive"] as? Int, 3, "worker \(killed) killed")
        }
    }
}
