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
        let dsgdFlags = ["--sharpness-every", "0", "--eval-every", "5"]
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
    }

    /// A launcher flag repeated after `--` would let dsgd take one value while the launcher acts on
    /// another (another number of workers; cleanup and the report in another folder): both
    /// launchers refuse it, naming the flag and where it goes, before anything starts.
    func testLauncherFlagsAfterTheSeparator_AreRefused() throws {
        let scratch = try temporaryDirectory("launcher-flags")
        defer { try? FileManager.default.removeItem(at: scratch) }
        for (script, extra, fragment) in [
            (
                "local.sh", ["--run-dir", scratch.appendingPathComponent("elsewhere").path],
                "--run-dir is a launcher flag"
            ),
            ("local.sh", ["--workers=3"], "--workers is a launcher flag"),
            ("local.sh", ["--bind", "tcp://127.0.0.1:9"], "--bind is set by the launcher"),
            ("mpirun.sh", ["--seed", "4"], "--seed is a launcher flag"),
        ] {
            let run = scratch.appendingPathComponent("run-\(script)")
            let launch = try Child(
                URL(fileURLWithPath: "/bin/bash"),
                [packageRoot.appendingPathComponent("launch/\(script)").path, "--run-dir", run.path, "--"] + extra,
                environment: ["DSGD_BIN": try dsgdBinary().path],
                output: scratch.appendingPathComponent("\(script).log"))
            let status = launch.wait(seconds: 60)
            if script == "mpirun.sh" && launch.text.contains("mpirun not found") { continue }
            XCTAssertEqual(status, 2, "\(script) \(extra): \(launch.text)")
            XCTAssertTrue(launch.text.contains(fragment), "\(script) \(extra): \(launch.text)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: run.path), "nothing started")
        }
    }
}
