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
}
