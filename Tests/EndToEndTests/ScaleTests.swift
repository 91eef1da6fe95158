import Foundation
import XCTest

/// Many worker processes on this 2-core machine (#17 item 4): 64 of them complete 100 rounds, and
/// every message is accounted for — over all processes, each kind's sent messages were all
/// delivered (none lost, none duplicated), and none was refused.
final class ScaleTests: XCTestCase {
    private func tallies(_ folder: URL) throws -> [String: [String: Int]] {
        var sums: [String: [String: Int]] = ["sent": [:], "received": [:], "rejected": [:], "undecodable": [:]]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where !name.hasPrefix(".") {
            let object = try json(folder.appendingPathComponent(name))
            for key in ["sent", "received", "rejected"] {
                for (kind, count) in object[key] as? [String: Int] ?? [:] { sums[key]![kind, default: 0] += count }
            }
            sums["undecodable"]!["all", default: 0] += object["undecodable"] as? Int ?? 0
        }
        return sums
    }

    private func check(workers: Int, perProcess: Int, processes: Int) throws {
        let scratch = try temporaryDirectory("scale")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let tallyFolder = scratch.appendingPathComponent("tally")
        let launch = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "\(workers)", "--rounds",
                "100",
                "--model", "784-16-10", "--data", "synthetic", "--run-dir", run.path, "--workers-per-process",
                "\(perProcess)", "--", "--sharpness-every", "0", "--eval-every", "50", "--metrics-every", "10",
                "--batch", "8", "--peer-timeout", "120",
                "--failure-timeout", "30",
            ],
            environment: ["DSGD_BIN": try dsgdBinary().path, "DSGD_MESSAGE_TALLY": tallyFolder.path],
            output: scratch.appendingPathComponent("local.log"))
        XCTAssertEqual(launch.wait(seconds: 600), 0, String(launch.text.suffix(3000)))
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
        XCTAssertEqual(summary["rounds"] as? Int, 100)
        XCTAssertEqual(try jsonLines(run.appendingPathComponent("rounds.jsonl")).count, 100)
        // A tally is written to a hidden temporary file and renamed: one left over is a process
        // stopped mid-write (the launcher once stopped workers as the coordinator exited).
        let written = try FileManager.default.contentsOfDirectory(atPath: tallyFolder.path)
        XCTAssertEqual(written.filter { !$0.hasPrefix(".") }.count, processes + 1, "every process wrote its tally")
        XCTAssertEqual(written.filter { $0.hasPrefix(".") }, [], "no process was stopped while writing its tally")
        let sums = try tallies(tallyFolder)
        // Heartbeats go from threads of their own, best effort (one to a process that has just
        // exited is lost by design): they are not counted as sent, and left out here.
        let sent = sums["sent"]!
        XCTAssertEqual(
            sent, sums["received"]!.filter { $0.key != "heartbeat" }, "every message sent was delivered, kind by kind")
        XCTAssertEqual(sums["rejected"]!.values.reduce(0, +), 0, "\(sums["rejected"]!)")
        XCTAssertEqual(sums["undecodable"]!["all"], 0)
        // The protocol's own counts: a ring's two models per worker and round. Reports go at
        // most 4 rounds to a message (half the flow-control window), ended early by the rounds
        // with a model (every 10th): at least 3 messages per 10 rounds, more when a worker about
        // to wait for the coordinator sends what it holds, and fewer than one a round.
        XCTAssertEqual(sent["parameters"], workers * 2 * 100)
        XCTAssertGreaterThanOrEqual(sent["metrics"] ?? 0, workers * 30)
        XCTAssertLessThan(sent["metrics"] ?? 0, workers * 100)
        XCTAssertEqual(sent["register"], workers)
        XCTAssertEqual(sent["assignment"], workers)
        XCTAssertEqual(sent["finished"], workers)
        print(
            "ScaleTests: \(workers) workers in \(processes) processes, 100 rounds at \(summary["rounds_per_second"] ?? "?") rounds/s (debug build); messages \(sent.sorted { $0.key < $1.key })"
        )
    }

    /// 64 worker processes, one worker each.
    func testSixtyFourWorkerProcesses_AccountForEveryMessage() throws {
        try check(workers: 64, perProcess: 1, processes: 64)
    }

    /// 32 workers, 8 to a process: the same accounting when several share a process.
    func testWorkersEightToAProcess_AccountForEveryMessage() throws {
        try check(workers: 32, perProcess: 8, processes: 4)
    }

    /// Workers grouped in processes give the numbers of `dsgd simulate` (so of one process per
    /// worker), row for row, bit for bit: 8 workers on a ring with momentum, 4 to a process.
    func testGroupedWorkers_MatchTheSimulation() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("grouped")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let flags = [
            "--workers", "8", "--rounds", "30", "--data", "synthetic", "--model", "784-16-10", "--seed", "3",
            "--topology", "ring", "--batch", "16", "--lr", "0.05", "--partition", "iid",
        ]
        let dsgdFlags = ["--momentum", "0.9", "--eval-every", "10", "--sharpness-every", "0"]
        let run = scratch.appendingPathComponent("grouped")
        let launch = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [packageRoot.appendingPathComponent("launch/local.sh").path] + flags
                + ["--run-dir", run.path, "--workers-per-process", "4", "--"] + dsgdFlags,
            environment: ["DSGD_BIN": binary.path], output: scratch.appendingPathComponent("grouped.log"))
        XCTAssertEqual(launch.wait(seconds: 240), 0, launch.text)
        let simulated = scratch.appendingPathComponent("simulated")
        let simulate = try Child(
            binary, ["simulate"] + flags + dsgdFlags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("simulate.log"))
        XCTAssertEqual(simulate.wait(seconds: 240), 0, simulate.text)
        func rows(_ folder: URL) throws -> [[String: Any]] {
            try jsonLines(folder.appendingPathComponent("rounds.jsonl")).map {
                var row = $0
                row.removeValue(forKey: "elapsed_seconds")
                return row
            }
        }
        let grouped = try rows(run)
        let expected = try rows(simulated)
        XCTAssertEqual(grouped.count, 30)
        for (index, (a, b)) in zip(grouped, expected).enumerated() where !NSDictionary(dictionary: a).isEqual(to: b) {
            XCTFail("row \(index + 1) differs:\n\(a)\n\(b)")
            break
        }
    }
}
