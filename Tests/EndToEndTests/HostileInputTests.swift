import Foundation
import XCTest

/// 6,000 random and mutated frames, and 6,000 well-formed frames of the live run with
/// distinguishable mutations, each to a live worker and to the coordinator: nothing crashes,
/// nothing is mixed in, and the run's numbers equal the undisturbed simulation's.
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
        let runIDFile = scratch.appendingPathComponent("run-id")
        let coordinator = try Child(
            binary,
            ["coordinator"] + flags + [
                "--run-dir", run.path, "--endpoint-file", endpointFile.path, "--peer-timeout", "60",
                "--run-id-file", runIDFile.path,
                // Keeps the run going while the frames arrive (timing faults never change numbers).
                "--straggler", "2:0.015",
            ],
            output: scratch.appendingPathComponent("coordinator.log"))
        let endpoint = waitForEndpoint(endpointFile)
        let runID = try String(contentsOf: runIDFile, encoding: .utf8)
        let workerInbox = "ipc://\(scratch.path)/worker-0"
        let workers = try (0..<3).map { rank in
            try Child(
                binary,
                ["worker", "--coordinator", endpoint, "--rank", "\(rank)"]
                    + (rank == 0 ? ["--bind", workerInbox] : []),
                output: scratch.appendingPathComponent("worker-\(rank).log"))
        }
        // Random frames (of other runs), then frames with the live run's version and run id whose
        // mutations are distinguishable from legitimate messages (kinds, senders, rounds, sizes,
        // encodings, NaN payloads, bodies): 6,000 of each to the worker and to the coordinator,
        // while the run is in progress.
        let live = [
            "--live-run-id", runID, "--model-size", "12730", "--workers", "3", "--rounds", "1500",
        ]
        let attackers = try [
            (endpoint, 1, [String]()), (workerInbox, 2, []),
            (endpoint, 3, live + ["--target", "coordinator"]),
            (workerInbox, 4, live + ["--target", "worker", "--rank", "0"]),
        ].map { target, seed, extra in
            try Child(
                try fuzzPeerBinary(), ["--endpoint", target, "--count", "6000", "--seed", "\(seed)"] + extra,
                output: scratch.appendingPathComponent("fuzz-\(seed).log"))
        }
        for attacker in attackers { XCTAssertEqual(attacker.wait(seconds: 120), 0, attacker.text) }
        for worker in workers { XCTAssertEqual(worker.wait(seconds: 120), 0, String(worker.text.suffix(2_000))) }
        XCTAssertEqual(coordinator.wait(seconds: 120), 0, String(coordinator.text.suffix(2_000)))
        XCTAssertTrue(coordinator.text.contains("rejected"), "the coordinator saw and rejected hostile frames")
        XCTAssertTrue(workers[0].text.contains("rejected"), "the worker saw and rejected hostile frames")
        // The live-run frames got past the run-id check and were rejected on their merits.
        XCTAssertTrue(workers[0].text.contains("not a live peer"), "live-run frames reached the worker's checks")
        XCTAssertTrue(workers[0].text.contains("NaN"), "NaN models of the live run were rejected")
        XCTAssertTrue(coordinator.text.contains("unknown sender"), "live-run frames reached the coordinator's checks")

        let simulated = scratch.appendingPathComponent("sim")
        let simulate = try Child(
            binary, ["simulate"] + flags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("sim.log"))
        XCTAssertEqual(simulate.wait(seconds: 120), 0, simulate.text)
        try assertSameRecords(
            run, simulated, count: 1500, keys: ["train_loss", "consensus_distance_sq", "test_accuracy"])
    }
}
