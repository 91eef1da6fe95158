import Foundation
import XCTest

/// 10,000 random and mutated frames each to a live worker and to the coordinator: nothing
/// crashes, nothing is mixed in, and the run's numbers equal the undisturbed simulation's.
final class HostileInputTests: XCTestCase {
    func testFuzzedFrames_NeverCrashOrCorruptARun() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("fuzz")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let flags = [
            "--workers", "3", "--rounds", "1500", "--model", "784-16-10", "--data", "synthetic", "--seed", "8",
            "--sharpness-every", "0",
            "--eval-every", "500",
        ]
        let endpointFile = scratch.appendingPathComponent("endpoint")
        let coordinator = try Child(
            binary,
            ["coordinator"] + flags + [
                "--run-dir", run.path, "--endpoint-file", endpointFile.path, "--peer-timeout", "60",
            ],
            output: scratch.appendingPathComponent("coordinator.log"))
        let endpoint = waitForEndpoint(endpointFile)
        let workerInbox = "ipc://\(scratch.path)/worker-0"
        let workers = try (0..<3).map { rank in
            try Child(
                binary,
                ["worker", "--coordinator", endpoint, "--rank", "\(rank)"]
                    + (rank == 0 ? ["--bind", workerInbox] : []),
                output: scratch.appendingPathComponent("worker-\(rank).log"))
        }
        let attackers = try [(endpoint, 1), (workerInbox, 2)].map { target, seed in
            try Child(
                binary, ["fuzz-peer", "--endpoint", target, "--count", "10000", "--seed", "\(seed)"],
                output: scratch.appendingPathComponent("fuzz-\(seed).log"))
        }
        for attacker in attackers { XCTAssertEqual(attacker.wait(seconds: 120), 0, attacker.text) }
        for worker in workers { XCTAssertEqual(worker.wait(seconds: 120), 0, String(worker.text.suffix(2_000))) }
        XCTAssertEqual(coordinator.wait(seconds: 120), 0, String(coordinator.text.suffix(2_000)))
        XCTAssertTrue(coordinator.text.contains("rejected"), "the coordinator saw and rejected hostile frames")
        XCTAssertTrue(workers[0].text.contains("rejected"), "the worker saw and rejected hostile frames")

        let simulated = scratch.appendingPathComponent("sim")
        let simulate = try Child(
            binary, ["simulate"] + flags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("sim.log"))
        XCTAssertEqual(simulate.wait(seconds: 120), 0, simulate.text)
        try assertSameRecords(
            run, simulated, count: 1500, keys: ["train_loss", "consensus_distance_sq", "test_accuracy"])
    }
}
