import Foundation
import XCTest

/// A diverging personal model is a figure to record, not a crash.
final class DivergenceTests: XCTestCase {
    /// Ditto with λ = 1000 and η = 0.05: the personal model's pull λ(v − w) overshoots by a factor
    /// |1 − ηλ| = 49 per step, so v overflows to ±Inf and then NaN within a few rounds while the
    /// shared model trains normally. The run completes; the event names the client and the round.
    /// (The version before this test crashed the worker encoding the NaN loss.)
    func testDivergingDittoPersonalModel_DoesNotCrashTheRun() throws {
        let scratch = try temporaryDirectory("ditto-diverges")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "3", "--rounds", "40", "--model", "784-8-10", "--data", "synthetic",
                "--sharpness-every", "0", "--personalization", "ditto", "--ditto-lambda", "1000",
                "--client-test-size", "30", "--eval-every", "10", "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
        let events = summary["events"] as? [String] ?? []
        XCTAssertTrue(
            events.contains { $0.contains("deployed model has loss") && $0.contains("diverged") }, "\(events)")
        let rows = try jsonLines(run.appendingPathComponent("rounds.jsonl"))
        XCTAssertEqual(rows.count, 40)
        XCTAssertEqual((rows.last?["client_accuracy"] as? [Double])?.count, 3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("report.html").path))
    }
}

/// Log lines never take a run down: with its standard error a pipe nobody reads any more (the
/// launcher's log reader gone), a run completes and writes its folder (the old code died of
/// SIGPIPE, or trapped in FileHandle.write on EPIPE).
final class ClosedLogTests: XCTestCase {
    func testRun_WithStandardErrorClosed_Completes() throws {
        let scratch = try temporaryDirectory("closed-stderr")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let process = Process()
        process.executableURL = try dsgdBinary()
        process.arguments = [
            "simulate", "--workers", "2", "--rounds", "20", "--model", "784-8-10", "--data", "synthetic",
            "--sharpness-every", "0", "--run-dir", run.path,
        ]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try pipe.fileHandleForReading.close()
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
    }
}
