import XCTest

@testable import Sweeps

final class SweepSpecTests: XCTestCase {
    let spec = """
        runner: cluster
        retries: 2
        flags:
          workers: 16
          rounds: 1500
          no-eval-workers: true
          momentum-nesterov: false
        axes:
          topology: [complete, ring]
          batch:
            - {label: b1024, batch: 64, lr: 0.1}
            - {batch: 512, lr: 0.8}
          seed: [0, 1, 2]
        """

    func testParse_FlagsSwitchesAndAxisValues() throws {
        let parsed = try SweepSpec(yaml: spec, file: "grid.yaml")
        XCTAssertEqual(parsed.runner, .cluster)
        XCTAssertEqual(parsed.retries, 2)
        // `false` leaves the flag out; `true` is a switch.
        XCTAssertEqual(
            parsed.flags,
            [.init("workers", "16"), .init("rounds", "1500"), .init("no-eval-workers", nil)])
        XCTAssertEqual(parsed.axes.map(\.name), ["topology", "batch", "seed"])
        XCTAssertEqual(parsed.axes[1].values.map(\.label), ["b1024", "batch=512,lr=0.8"])
        XCTAssertEqual(parsed.axes[1].values[1].flags, [.init("batch", "512"), .init("lr", "0.8")])
        XCTAssertEqual(parsed.axes[2].values.map(\.label), ["0", "1", "2"])
    }

    func testGrid_EveryCombinationFirstAxisOutermost() throws {
        let plan = try SweepPlan(try SweepSpec(yaml: spec, file: "grid.yaml"))
        XCTAssertEqual(plan.cells.count, 2 * 2 * 3)
        XCTAssertEqual(plan.cells[0].name, "topology=complete_batch=b1024_seed=0")
        XCTAssertEqual(plan.cells[1].name, "topology=complete_batch=b1024_seed=1")
        XCTAssertEqual(plan.cells[3].name, "topology=complete_batch=batch=512-lr=0.8_seed=0")
        XCTAssertEqual(plan.cells[11].name, "topology=ring_batch=batch=512-lr=0.8_seed=2")
        XCTAssertEqual(
            plan.cells[3].arguments,
            [
                "--workers", "16", "--rounds", "1500", "--no-eval-workers", "--topology", "complete", "--batch", "512",
                "--lr", "0.8", "--seed", "0",
            ])
        XCTAssertEqual(
            plan.cells[3].coordinates.map { "\($0.axis)=\($0.label)" },
            ["topology=complete", "batch=batch=512,lr=0.8", "seed=0"])
        XCTAssertEqual(Set(plan.cells.map(\.name)).count, plan.cells.count)
    }

    func testNegativeValues_AreJoinedToTheirFlag() throws {
        let parsed = try SweepSpec(yaml: "axes:\n  lr: [-1, 0.5]\n", file: "s.yaml")
        let plan = try SweepPlan(parsed)
        XCTAssertEqual(plan.cells.map(\.arguments), [["--lr=-1"], ["--lr", "0.5"]])
    }

    func testBadSpecs_NameTheLine() {
        func error(_ text: String) -> String {
            do {
                let parsed = try SweepSpec(yaml: text, file: "bad.yaml")
                _ = try SweepPlan(parsed)
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(error("axes:\n  seed: [0]\ncolour: red\n").hasPrefix("bad.yaml:3:1: unknown key 'colour'"))
        XCTAssertTrue(
            error("flags:\n  run-dir: x\naxes:\n  seed: [0]\n").contains("bad.yaml:2:3: --run-dir is set by the sweep"))
        XCTAssertTrue(
            error("axes:\n  seed: [0, 1, 0]\n").contains("bad.yaml:2:16: axis 'seed' has the value '0' twice"),
            error("axes:\n  seed: [0, 1, 0]\n"))
        XCTAssertTrue(error("flags:\n  seed: 1\naxes:\n  seed: [0]\n").contains("--seed is set both by axis 'seed'"))
        XCTAssertTrue(error("runner: slurm\naxes:\n  seed: [0]\n").contains("bad.yaml:1:9: runner 'slurm'"))
        XCTAssertTrue(error("flags:\n  rounds: 3\n").contains("no 'axes'"))
        XCTAssertTrue(error("axes:\n  seed: []\n").contains("bad.yaml:2:9: axis 'seed' needs a list"))
        XCTAssertTrue(
            error("axes:\n  Seed: [0]\n").contains("'Seed' is not a flag name"), error("axes:\n  Seed: [0]\n"))
        XCTAssertTrue(error("axes: [\n").contains("not valid YAML"))
        XCTAssertTrue(
            error("axes:\n  lr: [[1, 2]]\n").contains(
                "bad.yaml:2:8: a value of axis 'lr' must be a value or a mapping of flags"))
        // Two values whose labels differ but whose folder names collide.
        XCTAssertTrue(error("axes:\n  data: [a/b, a-b]\n").contains("two cells get the folder name 'data=a-b'"))
    }
}

final class SweepQueueTests: XCTestCase {
    func plan(_ count: Int) throws -> SweepPlan {
        try SweepPlan(
            SweepSpec(yaml: "axes:\n  seed: [\((0..<count).map(String.init).joined(separator: ", "))]\n", file: "s"))
    }

    func testFailedCell_IsRetriedOnceThenRecordedFailed() throws {
        var queue = SweepQueue(plan: try plan(2), retries: 1, completed: [])
        let first = queue.next()!
        let second = queue.next()!
        XCTAssertEqual([first, second], [0, 1])
        XCTAssertNil(queue.next(), "both running, none pending")
        queue.finish(first, failure: "exit status 1", wallSeconds: 1)
        XCTAssertEqual(queue.entries[0].status, .pending, "one retry left")
        queue.finish(second, failure: nil, wallSeconds: 2)
        XCTAssertEqual(queue.next(), 0)
        XCTAssertEqual(queue.entries[0].attempts, 2)
        queue.finish(0, failure: "exit status 2", wallSeconds: 1)
        XCTAssertEqual(queue.entries[0].status, .failed)
        XCTAssertEqual(queue.entries[0].failures, ["attempt 1: exit status 1", "attempt 2: exit status 2"])
        XCTAssertEqual(queue.entries[1].status, .completed)
        XCTAssertEqual(queue.entries[1].wallSeconds, 2)
        XCTAssertNil(queue.next())
        XCTAssertTrue(queue.isFinished)
        XCTAssertEqual(queue.count(.failed), 1)
    }

    func testResume_SkipsCompletedCells_AndKeepsEarlierAttempts() throws {
        let plan = try plan(3)
        var before = SweepQueue(plan: plan, retries: 0, completed: [])
        for _ in 0..<3 { _ = before.next() }
        before.finish(0, failure: nil, wallSeconds: 5)
        before.finish(1, failure: "killed", wallSeconds: 1)
        // Cell 2 was running when the sweep stopped.
        var queue = SweepQueue(plan: plan, retries: 0, completed: ["seed=0"], earlier: before.entries)
        XCTAssertEqual(queue.entries.map(\.status), [.completed, .pending, .pending])
        XCTAssertEqual(queue.entries[0].wallSeconds, 5)
        XCTAssertEqual(queue.next(), 1, "completed cells are skipped; a failed one runs again")
        XCTAssertEqual(queue.entries[1].attempts, 2, "attempts count across invocations")
        XCTAssertEqual(queue.entries[1].failures, ["attempt 1: killed"])
        // retries: 0 — a fresh invocation still gives every unfinished cell one attempt.
        queue.finish(1, failure: "again", wallSeconds: 1)
        XCTAssertEqual(queue.entries[1].status, .failed)
        XCTAssertEqual(queue.next(), 2)
    }

    func testProgressLine_EstimatesFromMeanCellTime() {
        XCTAssertEqual(
            sweepProgressLine(
                done: 4, failed: 1, total: 12, running: 2, elapsedSeconds: 125, meanCellSeconds: 30, parallel: 2),
            "sweep: 4/12 cells done, 1 failed, 2 running | 2m05s elapsed, ETA 2m00s")
        XCTAssertEqual(
            sweepProgressLine(
                done: 0, failed: 0, total: 3, running: 1, elapsedSeconds: 3, meanCellSeconds: nil, parallel: 1),
            "sweep: 0/3 cells done, 1 running | 3s elapsed, ETA after the first cell")
        XCTAssertEqual(formatDuration(3 * 3600 + 7 * 60), "3h07m")
    }
}
