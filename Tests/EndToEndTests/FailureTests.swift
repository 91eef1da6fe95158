import Foundation
import XCTest

/// Real processes killed with SIGKILL; real reports inspected.
final class FailureTests: XCTestCase {
    private struct Cluster {
        var coordinator: Child
        var workers: [Child]
        var run: URL
    }

    /// A long run (100,000 rounds, failure timeout 2 s) under way: at least 20 rounds recorded.
    private func start(_ scratch: URL, workers: Int = 4, extra: [String]) throws -> Cluster {
        let cluster = try launch(
            scratch, workers: workers, flags: ["--rounds", "100000", "--eval-every", "100000"] + extra)
        XCTAssertGreaterThanOrEqual(waitForRows(cluster.run, count: 20), 20, cluster.coordinator.text)
        return cluster
    }

    func testKilledWorker_Abort_FlushesTheReportAndStopsEveryone() throws {
        let scratch = try temporaryDirectory("abort")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let cluster = try start(scratch, extra: [])
        let killedAt = Date()
        kill(cluster.workers[2].process.processIdentifier, SIGKILL)
        XCTAssertNotEqual(cluster.coordinator.wait(seconds: 20), 0, cluster.coordinator.text)
        let detection = Date().timeIntervalSince(killedAt)
        XCTAssertLessThan(detection, 2 + 3, "detected within the 2 s failure timeout plus slack")
        for (rank, worker) in cluster.workers.enumerated() where rank != 2 {
            XCTAssertNotEqual(worker.wait(seconds: 10), 0, "worker \(rank) exits on its own: \(worker.text)")
        }
        let summary = try json(cluster.run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "failed")
        XCTAssertTrue((summary["reason"] as? String ?? "").contains("worker 2"), "\(summary)")
        let recorded = summary["rounds"] as? Int ?? 0
        XCTAssertEqual(
            try jsonLines(cluster.run.appendingPathComponent("rounds.jsonl")).count, recorded,
            "every completed round is in the report")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cluster.run.appendingPathComponent("report.html").path))
    }

    func testKilledWorker_Continue_FinishesWithTheSurvivors() throws {
        let scratch = try temporaryDirectory("continue")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var cluster = try start(scratch, extra: ["--on-failure", "continue"])
        kill(cluster.workers[1].process.processIdentifier, SIGKILL)
        // Let the survivors go on for a while, then stop the run cleanly with SIGINT.
        var alive = 0
        for _ in 0..<500 where alive == 0 {
            let last = completeJSONLines(cluster.run.appendingPathComponent("rounds.jsonl")).last ?? [:]
            alive = (last["workers_alive"] as? Int) ?? 0
            usleep(20_000)
        }
        XCTAssertEqual(alive, 3, cluster.coordinator.text)
        let before = completeJSONLines(cluster.run.appendingPathComponent("rounds.jsonl")).count
        usleep(500_000)
        let after = completeJSONLines(cluster.run.appendingPathComponent("rounds.jsonl")).count
        XCTAssertGreaterThan(after, before, "the survivors keep training")
        kill(cluster.coordinator.process.processIdentifier, SIGINT)
        XCTAssertNotEqual(cluster.coordinator.wait(seconds: 20), 0)
        for worker in cluster.workers { _ = worker.wait(seconds: 10) }
        let summary = try json(cluster.run.appendingPathComponent("summary.json"))
        let events = summary["events"] as? [String] ?? []
        XCTAssertTrue(events.contains { $0.contains("worker 1") && $0.contains("removed") }, "\(summary)")
        cluster.workers = []
    }

    func testKilledCoordinator_WorkersExitOnTheirOwn() throws {
        let scratch = try temporaryDirectory("orphans")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let cluster = try start(scratch, workers: 3, extra: [])
        kill(cluster.coordinator.process.processIdentifier, SIGKILL)
        let killedAt = Date()
        for worker in cluster.workers {
            XCTAssertNotEqual(worker.wait(seconds: 15), 0, worker.text)
            XCTAssertTrue(worker.text.contains("coordinator sent nothing"), worker.text)
        }
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 2 + 4, "no orphans past the failure timeout")
    }

    /// `--kill-worker` through launch/local.sh with `--on-failure continue`: the run completes
    /// with the survivors and the report records both the fault and the removal.
    /// A worker busy for three failure timeouts (a straggler fault standing in for a long local
    /// computation) is not declared dead: its heartbeats come from a thread of their own. The run
    /// completes, under the default policy of aborting on a dead worker.
    func testLongComputation_IsNotMistakenForADeadWorker() throws {
        let scratch = try temporaryDirectory("busy")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "3", "--rounds", "6",
                "--model", "784-16-10", "--data", "synthetic", "--run-dir", run.path, "--", "--sharpness-every", "0",
                "--straggler", "1:4.5:3-3", "--failure-timeout", "1.5", "--heartbeat-interval", "0.25",
            ], environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(script.wait(seconds: 120), 0, script.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed", script.text)
        XCTAssertGreaterThan(summary["wall_seconds"] as? Double ?? 0, 4.5)
    }

    func testKillWorkerFault_ContinueThroughTheLauncher() throws {
        let scratch = try temporaryDirectory("killfault")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"),
            [
                packageRoot.appendingPathComponent("launch/local.sh").path, "--workers", "4", "--rounds", "400",
                "--model", "784-16-10",
                "--data", "synthetic", "--run-dir", run.path, "--", "--sharpness-every", "0", "--eval-every", "200",
                "--kill-worker",
                "3:100", "--on-failure", "continue", "--failure-timeout", "1.5", "--heartbeat-interval", "0.25",
            ], environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(script.wait(seconds: 120), 0, script.text)
        let summary = try json(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "completed")
        let events = summary["events"] as? [String] ?? []
        XCTAssertTrue(events.contains("fault injected: worker 3 killed before round 100"), "\(events)")
        XCTAssertTrue(
            events.contains { $0.contains("worker 3") && $0.contains("removed, 3 workers continue") }, "\(events)")
        let rows = try jsonLines(run.appendingPathComponent("rounds.jsonl"))
        XCTAssertEqual(rows.count, 400)
        XCTAssertEqual(rows.last?["workers_alive"] as? Int, 3)
        XCTAssertNil(rows[50]["workers_alive"])
        let html = try String(contentsOf: run.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<h2>Events</h2>"))
    }

    /// Starts a coordinator and `workers` workers without waiting for training.
    private func launch(_ scratch: URL, workers: Int, flags: [String]) throws -> Cluster {
        let binary = try dsgdBinary()
        let run = scratch.appendingPathComponent("run")
        let endpointFile = scratch.appendingPathComponent("endpoint")
        let coordinator = try Child(
            binary,
            [
                "coordinator", "--workers", "\(workers)", "--model", "784-16-10", "--data", "synthetic",
                "--sharpness-every", "0", "--failure-timeout", "2", "--heartbeat-interval", "0.25", "--run-dir",
                run.path, "--endpoint-file", endpointFile.path,
            ] + (flags.contains("--eval-every") ? [] : ["--eval-every", "1000"]) + flags,
            output: scratch.appendingPathComponent("coordinator.log"))
        let endpoint = waitForEndpoint(endpointFile)
        let children = try (0..<workers).map { rank in
            try Child(
                binary, ["worker", "--coordinator", endpoint, "--rank", "\(rank)", "--peer-timeout", "4"],
                output: scratch.appendingPathComponent("worker-\(rank).log"))
        }
        return Cluster(coordinator: coordinator, workers: children, run: run)
    }

    /// A wedged worker whose heartbeat thread keeps beating (its main loop sleeps 1,000 s before
    /// round 3) used to hang the run for as long as it slept: heartbeats reset the peer timeout.
    /// The timeout is now about progress: the run fails within it, naming the round and who was
    /// awaited, and every process exits.
    func testWedgedWorker_WithLiveHeartbeats_FailsTheRunAtThePeerTimeout() throws {
        let scratch = try temporaryDirectory("wedged")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let started = Date()
        let cluster = try launch(
            scratch, workers: 3, flags: ["--rounds", "50", "--peer-timeout", "4", "--straggler", "1:1000:3-3"])
        XCTAssertNotEqual(cluster.coordinator.wait(seconds: 60), 0, cluster.coordinator.text)
        XCTAssertLessThan(Date().timeIntervalSince(started), 40, "failed at the peer timeout, not after the sleep")
        let summary = try json(cluster.run.appendingPathComponent("summary.json"))
        XCTAssertEqual(summary["status"] as? String, "failed")
        // A neighbour of the wedged worker gives up first (after the peer timeout; the
        // coordinator's own check waits 1.5× as long) and says whom it waited for.
        let reason = summary["reason"] as? String ?? ""
        XCTAssertTrue(reason.contains("no progress"), reason)
        // Three workers on a ring average exactly: the round is an all-reduce (over shared memory,
        // worker 0 gathers where every model is), and the message names whom it waits for.
        XCTAssertTrue(
            reason.contains("round 3's all-reduce: the models of workers [1]")
                || reason.contains("round 3's all-reduce: the directory of chunk 2 from worker 0"), reason)
        for rank in [0, 2] {
            XCTAssertNotEqual(
                cluster.workers[rank].wait(seconds: 30), 0, "worker \(rank) exits: \(cluster.workers[rank].text)")
        }
        // The wedged worker cannot act on anything while it sleeps; a launcher stops it.
        kill(cluster.workers[1].process.processIdentifier, SIGKILL)
        cluster.workers[1].process.waitUntilExit()
    }

    /// A worker that dies while loading its data (before the start barrier) used to leave the
    /// others waiting forever unless a launcher noticed: workers heartbeat while they load, so the
    /// coordinator finds the silence within the failure timeout and stops the run with the cause.
    func testWorkerDyingWhileLoading_IsDetectedBeforeTheBarrier() throws {
        let scratch = try temporaryDirectory("dies-loading")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let started = Date()
        let cluster = try launch(
            scratch, workers: 3, flags: ["--rounds", "50", "--peer-timeout", "60", "--kill-worker", "2:0"])
        XCTAssertNotEqual(cluster.coordinator.wait(seconds: 40), 0, cluster.coordinator.text)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "found by the failure timeout, not the peer timeout")
        let summary = try json(cluster.run.appendingPathComponent("summary.json"))
        let reason = summary["reason"] as? String ?? ""
        XCTAssertTrue(reason.contains("worker 2") && reason.contains("while loading its data"), reason)
        for rank in [0, 1] {
            XCTAssertNotEqual(cluster.workers[rank].wait(seconds: 30), 0, cluster.workers[rank].text)
        }
    }
}
