import Foundation
import XCTest

/// launch/mpirun.sh on this machine (mpirun --oversubscribe over loopback).
final class LauncherTests: XCTestCase {
    func testMpirunLaunch_MatchesTheSimulation() throws {
        let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard mpirun != nil else {
            print(
                "LauncherTests: skipped: mpirun is not installed (apt-get install -y openmpi-bin; .ci/run installs it)")
            throw XCTSkip("mpirun is not installed")
        }
        let scratch = try temporaryDirectory("mpirun")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let flags = ["--workers", "3", "--rounds", "25", "--data", "synthetic", "--model", "784-16-10", "--seed", "4"]
        let dsgdFlags = ["--sharpness-every", "0", "--eval-every", "5", "--checkpoint-every", "10"]
        let launch = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [packageRoot.appendingPathComponent("launch/mpirun.sh").path] + flags + ["--run-dir", run.path, "--"]
                + dsgdFlags,
            environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("mpirun.log"))
        XCTAssertEqual(launch.wait(seconds: 120), 0, launch.text)
        // No port was guessed in advance: the coordinator bound one the system chose and the
        // workers read it from the run folder (no window in which another process can take it).
        let published = try String(contentsOf: run.appendingPathComponent("coordinator.endpoint"), encoding: .utf8)
        XCTAssertTrue(published.hasPrefix("tcp://127.0.0.1:"), published)
        let simulated = scratch.appendingPathComponent("sim")
        let simulate = try Child(
            try dsgdBinary(), ["simulate"] + flags + dsgdFlags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("sim.log"))
        XCTAssertEqual(simulate.wait(seconds: 60), 0, simulate.text)
        try assertSameRecords(
            run, simulated, count: 25, keys: ["train_loss", "consensus_distance_sq", "test_accuracy"])
        XCTAssertEqual(try json(run.appendingPathComponent("summary.json"))["status"] as? String, "completed")

        // mpirun.sh --resume: continued from the newest checkpoint (round 20), the same records.
        let resumed = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [packageRoot.appendingPathComponent("launch/mpirun.sh").path, "--resume", run.path],
            environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("resumed.log"))
        XCTAssertEqual(resumed.wait(seconds: 120), 0, resumed.text)
        try assertSameRecords(
            run, simulated, count: 25, keys: ["train_loss", "consensus_distance_sq", "test_accuracy"])
        let events = try json(run.appendingPathComponent("summary.json"))["events"] as? [String] ?? []
        XCTAssertTrue(events.contains { $0.hasPrefix("resumed after round 20") }, "\(events)")
    }

    /// The launcher's own flags after `--` are taken by the launcher, so dsgd and the launcher
    /// agree on them: `--run-dir` there is the folder the coordinator writes and the launcher
    /// reports, `--workers=3` there the number of workers started; the per-process flags the
    /// launcher sets itself are refused there, naming the flag, before anything starts.
    func testLauncherFlagsAfterTheSeparator_AreTheLaunchers() throws {
        let scratch = try temporaryDirectory("launcher-flags")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let script = packageRoot.appendingPathComponent("launch/local.sh").path
        let environment = ["DSGD_BIN": try dsgdBinary().path]
        let run = scratch.appendingPathComponent("after-separator")
        let launch = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [script, "--workers", "2", "--rounds", "3", "--data", "synthetic", "--model", "784-8-10", "--"]
                + ["--run-dir", run.path, "--workers=3", "--sharpness-every", "0"],
            environment: environment, output: scratch.appendingPathComponent("local.log"))
        XCTAssertEqual(launch.wait(seconds: 120), 0, launch.text)
        XCTAssertTrue(launch.text.contains("report in \(run.path)"), launch.text)
        let summary =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: run.appendingPathComponent("summary.json"))) as? [String: Any]
        XCTAssertEqual(summary?["status"] as? String, "completed")
        XCTAssertEqual(summary?["workers"] as? Int, 3, "the launcher started the workers dsgd expected")

        let refused = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [script, "--run-dir", scratch.appendingPathComponent("refused").path, "--", "--bind", "tcp://127.0.0.1:9"],
            environment: environment, output: scratch.appendingPathComponent("refused.log"))
        XCTAssertEqual(refused.wait(seconds: 60), 2, refused.text)
        XCTAssertTrue(refused.text.contains("--bind is set by the launcher"), refused.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("refused").path))
    }
}
