import Foundation
import XCTest

/// Checkpoint and resume with real processes (#17 item 3): a worker, and in another test the
/// coordinator, killed with SIGKILL at a round that is not a checkpoint's; the run resumed from its
/// newest checkpoint ends with the rows, the sharpness rows and every worker's final parameters of
/// the run that was never interrupted, bit for bit (OpenBLAS on one thread, as the launchers set).
final class ResumeTests: XCTestCase {
    private let workers = 4
    private let rounds = 40

    private func arguments(data: URL, run: URL, extra: [String]) -> [String] {
        [
            "--workers", "\(workers)", "--rounds", "\(rounds)", "--model", "64-16-10", "--batch", "8", "--lr", "0.1",
            "--momentum", "0.9", "--data", data.path, "--seed", "5", "--eval-every", "10", "--sharpness-every", "15",
            "--lanczos-iterations", "8", "--sharpness-examples", "128", "--checkpoint-every", "10",
            "--run-dir", run.path, "--peer-timeout", "30", "--failure-timeout", "2", "--heartbeat-interval", "0.2",
        ] + extra
    }

    /// Rows without their timings.
    private func rows(_ file: URL) throws -> [String] {
        guard FileManager.default.fileExists(atPath: file.path) else { return [] }
        return try jsonLines(file).map { row in
            var row = row
            row.removeValue(forKey: "elapsed_seconds")
            row.removeValue(forKey: "seconds")
            return String(
                decoding: try JSONSerialization.data(withJSONObject: row, options: .sortedKeys), as: UTF8.self)
        }
    }

    /// The interrupted run: the coordinator and the workers as processes, one of them killed with
    /// SIGKILL once the checkpoint of round 10 is written and a few rows more; everything else
    /// then stops on its own (the failure is detected); nothing is left running.
    private func interruptedRun(
        _ binary: URL, arguments: [String], run: URL, scratch: URL, killCoordinator: Bool
    ) throws {
        let endpointFile = scratch.appendingPathComponent("endpoint-interrupted")
        let coordinator = try Child(
            binary, ["coordinator"] + arguments + ["--endpoint-file", endpointFile.path],
            output: scratch.appendingPathComponent("coordinator-interrupted.log"))
        let endpoint = waitForEndpoint(endpointFile)
        XCTAssertFalse(endpoint.isEmpty, coordinator.text)
        let children = try (0..<workers).map { rank in
            try Child(
                binary, ["worker", "--coordinator", endpoint, "--rank", "\(rank)"],
                output: scratch.appendingPathComponent("worker-interrupted-\(rank).log"))
        }
        let checkpoint = run.appendingPathComponent("checkpoints/round-000000010.ckpt")
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint.path), coordinator.text)
        let rowsAtKill = waitForRows(run, count: 13, seconds: 60)
        let victim = killCoordinator ? coordinator : children[2]
        kill(victim.process.processIdentifier, SIGKILL)
        for child in [coordinator] + children where child !== victim {
            XCTAssertNotEqual(child.wait(seconds: 60), 0, "a process of the interrupted run completed: \(child.text)")
        }
        _ = victim.wait(seconds: 10)
        XCTAssertLessThan(rowsAtKill, rounds, "the run finished before it could be interrupted")
    }

    private func check(extra: [String], killCoordinator: Bool) throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("resume")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyIDX(to: data)

        let reference = scratch.appendingPathComponent("reference")
        let referenceDumps = scratch.appendingPathComponent("reference-dumps")
        try runCluster(
            binary, arguments: arguments(data: data, run: reference, extra: extra), workers: workers,
            dumps: referenceDumps, scratch: scratch, tag: "reference", label: "uninterrupted")

        let run = scratch.appendingPathComponent("run")
        try interruptedRun(
            binary, arguments: arguments(data: data, run: run, extra: extra), run: run, scratch: scratch,
            killCoordinator: killCoordinator)
        let resumedDumps = scratch.appendingPathComponent("resumed-dumps")
        try runCluster(
            binary, arguments: arguments(data: data, run: run, extra: extra) + ["--resume"], workers: workers,
            dumps: resumedDumps, scratch: scratch, tag: "resumed", label: "resumed")

        let expected = try rows(reference.appendingPathComponent("rounds.jsonl"))
        let resumed = try rows(run.appendingPathComponent("rounds.jsonl"))
        XCTAssertEqual(expected.count, rounds)
        XCTAssertEqual(resumed.count, rounds, "no row twice, none missing")
        for (index, (a, b)) in zip(resumed, expected).enumerated() where a != b {
            XCTFail("row \(index + 1) differs:\n\(a)\n\(b)")
            break
        }
        XCTAssertEqual(
            try rows(run.appendingPathComponent("sharpness.jsonl")),
            try rows(reference.appendingPathComponent("sharpness.jsonl")), "sharpness.jsonl")
        XCTAssertEqual(try rows(reference.appendingPathComponent("sharpness.jsonl")).count, 3)
        for rank in 0..<workers {
            let name = "worker-\(rank).f32"
            XCTAssertEqual(
                try readFloats(resumedDumps.appendingPathComponent(name)).map(\.bitPattern),
                try readFloats(referenceDumps.appendingPathComponent(name)).map(\.bitPattern), name)
        }
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
        let events = summary["events"] as? [String] ?? []
        XCTAssertTrue(events.contains { $0.hasPrefix("resumed after round ") }, "\(events)")
        // The newest two checkpoints are kept.
        let kept = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
        XCTAssertEqual(kept.sorted(), ["round-000000020.ckpt", "round-000000030.ckpt"])
    }

    /// A ring with momentum; a worker killed with SIGKILL.
    func testKilledWorker_ResumesBitForBit() throws {
        try check(extra: ["--topology", "ring"], killCoordinator: false)
    }

    /// A random topology schedule and Ditto over gossip (its personal model v and v's optimizer
    /// are in the checkpoint); the coordinator killed with SIGKILL.
    func testKilledCoordinator_ResumesBitForBit_RandomScheduleAndDitto() throws {
        try check(
            extra: ["--topology", "random-matching", "--personalization", "ditto", "--client-test-size", "50"],
            killCoordinator: true)
    }

    /// launch/local.sh --resume RUN_DIR: a run whose coordinator was killed (the launcher stops
    /// the rest and reports the failure) is continued with its own settings from its config.json;
    /// its rows equal `dsgd simulate`'s for the same flags. Run flags with --resume are refused.
    func testLocalLauncher_Resume() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("launcher-resume")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let script = packageRoot.appendingPathComponent("launch/local.sh").path
        let environment = ["DSGD_BIN": binary.path]
        let run = scratch.appendingPathComponent("run")
        // Every run flag the launcher passes, so `dsgd simulate` gets the same configuration.
        let flags = [
            "--workers", "4", "--rounds", "40", "--data", "synthetic", "--model", "784-16-10", "--seed", "4",
            "--topology", "ring", "--batch", "16", "--lr", "0.05", "--partition", "iid",
        ]
        let dsgdFlags = [
            "--sharpness-every", "0", "--eval-every", "10", "--momentum", "0.9", "--checkpoint-every", "10",
        ]
        let launch = try Child(
            URL(fileURLWithPath: "/bin/bash"), [script] + flags + ["--run-dir", run.path, "--"] + dsgdFlags,
            environment: environment, output: scratch.appendingPathComponent("first.log"))
        let checkpoint = run.appendingPathComponent("checkpoints/round-000000010.ckpt")
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && Date() < deadline { usleep(10_000) }
        XCTAssertLessThan(waitForRows(run, count: 12), 40, launch.text)
        let coordinator = processes(containing: "coordinator").filter { pid in
            let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
            return String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(run.path)
        }
        XCTAssertEqual(coordinator.count, 1)
        for pid in coordinator { kill(pid, SIGKILL) }
        XCTAssertNotEqual(launch.wait(seconds: 60), 0, launch.text)
        XCTAssertTrue(launch.text.contains("run FAILED"), launch.text)

        let refused = try Child(
            URL(fileURLWithPath: "/bin/bash"), [script, "--resume", run.path, "--rounds", "50"],
            environment: environment, output: scratch.appendingPathComponent("refused.log"))
        XCTAssertEqual(refused.wait(seconds: 60), 2, refused.text)
        XCTAssertTrue(refused.text.contains("give no run flags"), refused.text)

        let resumed = try Child(
            URL(fileURLWithPath: "/bin/bash"), [script, "--resume", run.path],
            environment: environment, output: scratch.appendingPathComponent("resumed.log"))
        XCTAssertEqual(resumed.wait(seconds: 120), 0, resumed.text)
        XCTAssertTrue(resumed.text.contains("resume: continuing"), resumed.text)

        let simulated = scratch.appendingPathComponent("sim")
        let simulate = try Child(
            binary, ["simulate"] + flags + dsgdFlags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("sim.log"))
        XCTAssertEqual(simulate.wait(seconds: 60), 0, simulate.text)
        let launched = try rows(run.appendingPathComponent("rounds.jsonl"))
        let expected = try rows(simulated.appendingPathComponent("rounds.jsonl"))
        XCTAssertEqual(launched.count, 40)
        for (index, (a, b)) in zip(launched, expected).enumerated() where a != b {
            XCTFail("row \(index + 1) differs:\n\(a)\n\(b)")
            break
        }
        XCTAssertEqual(try json(run.appendingPathComponent("summary.json"))["status"] as? String, "completed")
    }

    /// `dsgd sweep`: a cell whose process is killed after a checkpoint is retried from that
    /// checkpoint, not from zero, and ends with the rows of the same cell run without interruption.
    func testSweepCell_KilledAfterACheckpoint_ContinuesFromIt() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("sweep-resume")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let spec = scratch.appendingPathComponent("grid.yaml")
        try """
        runner: simulate
        retries: 1
        flags:
          workers: 4
          rounds: 200
          data: synthetic
          model: "784-16-10"
          momentum: 0.9
          eval-every: 50
          sharpness-every: 0
          checkpoint-every: 20
        axes:
          seed: [7]

        """.write(to: spec, atomically: true, encoding: .utf8)
        let sweep = scratch.appendingPathComponent("out")
        let run = try Child(
            binary, ["sweep", spec.path, "--sweep-dir", sweep.path, "--parallel", "1"],
            output: scratch.appendingPathComponent("sweep.log"))
        let cell = sweep.appendingPathComponent("seed=7")
        let checkpoint = cell.appendingPathComponent("checkpoints/round-000000040.ckpt")
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && Date() < deadline { usleep(10_000) }
        let victims = processes(containing: "simulate").filter { pid in
            let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
            return String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(cell.path)
        }
        XCTAssertEqual(victims.count, 1, run.text)
        for pid in victims { kill(pid, SIGKILL) }
        XCTAssertEqual(run.wait(seconds: 240), 0, run.text)
        XCTAssertTrue(run.text.contains("from its checkpoint"), run.text)
        let events = try json(cell.appendingPathComponent("summary.json"))["events"] as? [String] ?? []
        XCTAssertTrue(events.contains { $0.hasPrefix("resumed after round ") }, "\(events)")

        let whole = scratch.appendingPathComponent("whole")
        let reference = try Child(
            binary,
            [
                "simulate", "--workers", "4", "--rounds", "200", "--data", "synthetic", "--model", "784-16-10",
                "--momentum", "0.9", "--eval-every", "50", "--sharpness-every", "0", "--seed", "7", "--run-dir",
                whole.path,
            ], output: scratch.appendingPathComponent("whole.log"))
        XCTAssertEqual(reference.wait(seconds: 240), 0, reference.text)
        XCTAssertEqual(
            try rows(cell.appendingPathComponent("rounds.jsonl")),
            try rows(whole.appendingPathComponent("rounds.jsonl")))
    }
}
