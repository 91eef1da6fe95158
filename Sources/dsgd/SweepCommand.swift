import ArgumentParser
import Foundation
import Reports
import Runtime
import Sweeps
import Synchronization

/// `dsgd sweep SPEC`: runs every cell of a grid (see `SweepSpec` for the file), one run folder per
/// cell under one sweep folder, resumable, K cells at once, then compares the cells over seeds.
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run a grid of runs from a YAML spec (resumable; --parallel K), then compare them over seeds.",
        discussion: """
            The spec names the runner (simulate: all workers in one process; cluster: launch/local.sh, one
            process per worker), the flags every cell gets and the axes of the grid. Each cell runs in
            SWEEP_DIR/<axis=value_...>/; SWEEP_DIR/index.json records every cell's status, attempts and
            failures; logs go to SWEEP_DIR/logs/. Running the same command again skips completed cells and
            retries the rest. At the end, SWEEP_DIR/comparison.html and comparison.md hold the cells grouped
            by configuration over seeds (mean ± sd [95 % t interval]).
            """)

    @Argument(help: "The sweep spec (YAML).")
    var spec: String

    @Option(help: "The sweep folder (default: runs/sweeps/<spec file name>); give the same one to resume.")
    var sweepDir: String?

    @Option(help: "Cells run at once; the cores are split between them (each runs pinned to its share).")
    var parallel: Int = 1

    @Option(help: "The cluster runner's launcher script.")
    var launcher: String = "launch/local.sh"

    @Flag(help: "Print the cells and their flags, run nothing.")
    var dryRun = false

    /// Flags launch/local.sh takes itself (before its '--'); the others go to the coordinator.
    static let launcherFlags: Set<String> = [
        "workers", "topology", "rounds", "model", "batch", "lr", "data", "partition", "seed",
    ]

    func validate() throws {
        guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1, got \(parallel)") }
    }

    func run() throws {
        guard let text = FileManager.default.contents(atPath: spec).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw ValidationError("\(spec): missing or unreadable")
        }
        let parsed: SweepSpec
        let plan: SweepPlan
        do {
            parsed = try SweepSpec(yaml: text, file: spec)
            plan = try SweepPlan(parsed)
        } catch let error as SweepSpecError {
            throw ValidationError(error.description)
        }
        if dryRun {
            for (index, cell) in plan.cells.enumerated() {
                print("\(index + 1)/\(plan.cells.count) \(cell.name): \(cell.arguments.joined(separator: " "))")
            }
            return
        }
        let name = URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent
        let directory = URL(fileURLWithPath: sweepDir ?? "runs/sweeps/\(name)")
        let logs = directory.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: directory.appendingPathComponent("spec.yaml"), options: .atomic)
        let launcherPath = parsed.runner == .cluster ? try checkedLauncher() : nil

        // Resume: a cell is done when its folder holds a completed summary and the flags it ran with.
        var completed = Set<String>()
        for cell in plan.cells {
            let folder = directory.appendingPathComponent(cell.name)
            guard
                let recorded = try? JSONDecoder().decode(
                    SweepCellRecord.self, from: Data(contentsOf: folder.appendingPathComponent("cell.json")))
            else { continue }
            guard recorded.arguments == cell.arguments, recorded.runner == parsed.runner.rawValue else {
                throw ValidationError(
                    "\(folder.path) was run with other flags (\(recorded.runner): \(recorded.arguments.joined(separator: " "))) than the spec now gives (\(parsed.runner.rawValue): \(cell.arguments.joined(separator: " "))); use another --sweep-dir"
                )
            }
            if recorded.status == "completed", Self.summaryStatus(folder) == "completed" { completed.insert(cell.name) }
            if recorded.coordinates == nil {  // written by an earlier version: add the axis values
                var upgraded = recorded
                upgraded.coordinates = cell.coordinates
                if let data = try? JSONEncoder().encode(upgraded) {
                    try? data.write(to: folder.appendingPathComponent("cell.json"), options: .atomic)
                }
            }
        }
        let indexURL = directory.appendingPathComponent("index.json")
        let earlier = (try? JSONDecoder().decode(SweepIndex.self, from: Data(contentsOf: indexURL)))?.cells ?? []
        var queue = SweepQueue(plan: plan, retries: parsed.retries, completed: completed, earlier: earlier)
        if !completed.isEmpty {
            logLine("sweep: \(completed.count) of \(plan.cells.count) cells already completed in \(directory.path)")
        }

        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let slots = min(parallel, max(1, plan.cells.count))
        let pinning = slots > 1 && slots <= cores && FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        if slots > cores { logLine("sweep: --parallel \(slots) is more than the \(cores) cores; cells are not pinned") }
        let started = Date()
        var cellSeconds: [Double] = []
        let events = DispatchSemaphore(value: 0)
        let finished = FinishedAttempts()
        var running: [Int: (index: Int, process: Process)] = [:]

        func writeIndex() {
            let index = SweepIndex(spec: spec, runner: parsed.runner.rawValue, cells: queue.entries)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            if let data = try? encoder.encode(index) { try? data.write(to: indexURL, options: .atomic) }
        }
        func progress() {
            let mean = cellSeconds.isEmpty ? nil : cellSeconds.reduce(0, +) / Double(cellSeconds.count)
            logLine(
                sweepProgressLine(
                    done: queue.count(.completed), failed: queue.count(.failed), total: plan.cells.count,
                    running: running.count, elapsedSeconds: Date().timeIntervalSince(started), meanCellSeconds: mean,
                    parallel: slots))
        }
        // A cell interrupted after a checkpoint (a failed attempt, a killed sweep) continues from it;
        // a resumption that fails makes the cell's next attempt start from zero.
        var resuming: Set<Int> = []
        var startAfresh: Set<Int> = []
        func start(slot: Int) throws -> Bool {
            guard let index = queue.next() else { return false }
            let entry = queue.entries[index]
            let folder = directory.appendingPathComponent(entry.cell.name)
            let checkpoint = CheckpointStore(runDirectory: folder).rounds().last
            let resumes =
                !startAfresh.contains(index) && checkpoint != nil
                && FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path)
            if resumes { resuming.insert(index) } else { resuming.remove(index) }
            if !resumes { try? FileManager.default.removeItem(at: folder) }
            let log = logs.appendingPathComponent("\(entry.cell.name).attempt-\(entry.attempts).log")
            // An unwritable log folder fails in FileHandle's initializer below, with the path.
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            let process = Process()
            var arguments: [String]
            if let launcherPath {
                process.executableURL = URL(fileURLWithPath: "/bin/bash")
                let (before, after) = Self.splitForLauncher(entry.cell.arguments)
                arguments =
                    resumes
                    ? [launcherPath, "--no-build", "--resume", folder.path]
                    : [launcherPath, "--no-build", "--run-dir", folder.path] + before + ["--"] + after
            } else {
                process.executableURL = URL(fileURLWithPath: Self.ownExecutable())
                arguments =
                    ["simulate"] + entry.cell.arguments + ["--run-dir", folder.path] + (resumes ? ["--resume"] : [])
            }
            if pinning {
                let share = (slot * cores / slots)..<((slot + 1) * cores / slots)
                arguments =
                    ["-c", share.map(String.init).joined(separator: ","), process.executableURL!.path] + arguments
                process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            }
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["OPENBLAS_NUM_THREADS"] = "1"
            environment["DSGD_BIN"] = Self.ownExecutable()
            process.environment = environment
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            let begun = Date()
            process.terminationHandler = { process in
                finished.append(
                    FinishedAttempt(
                        slot: slot, index: index, status: process.terminationStatus,
                        seconds: Date().timeIntervalSince(begun)))
                try? handle.close()
                events.signal()
            }
            try process.run()
            running[slot] = (index, process)
            logLine(
                "sweep: cell \(index + 1)/\(plan.cells.count) \(entry.cell.name) (attempt \(entry.attempts)\(resumes ? ", continuing after round \(checkpoint!) from its checkpoint" : ""))"
            )
            writeIndex()
            return true
        }

        for slot in 0..<slots where try !start(slot: slot) { break }
        while !running.isEmpty {
            events.wait()
            let batch = finished.take()
            for end in batch {
                running[end.slot] = nil
                let entry = queue.entries[end.index]
                let folder = directory.appendingPathComponent(entry.cell.name)
                let summary = Self.summaryStatus(folder)
                let failure: String?
                if end.status == 0 && summary == "completed" {
                    failure = nil
                    cellSeconds.append(end.seconds)
                } else {
                    let log = logs.appendingPathComponent("\(entry.cell.name).attempt-\(entry.attempts).log")
                    failure =
                        "exit status \(end.status)"
                        + (summary.map { ", summary status \($0)" } ?? ", no summary.json")
                        + (Self.lastLine(of: log).map { ": \($0)" } ?? "")
                }
                queue.finish(end.index, failure: failure, wallSeconds: end.seconds)
                let record = SweepCellRecord(
                    runner: parsed.runner.rawValue, arguments: entry.cell.arguments,
                    status: failure == nil ? "completed" : "failed", coordinates: entry.cell.coordinates)
                if FileManager.default.fileExists(atPath: folder.path),
                    let data = try? JSONEncoder().encode(record)
                {
                    try? data.write(to: folder.appendingPathComponent("cell.json"), options: .atomic)
                }
                if failure != nil && resuming.contains(end.index) { startAfresh.insert(end.index) }
                if let failure {
                    let again = queue.entries[end.index].status == .pending
                    logLine("sweep: \(entry.cell.name) failed (\(failure))\(again ? "; retrying" : "")")
                }
                writeIndex()
                progress()
                _ = try start(slot: end.slot)
            }
        }
        writeIndex()

        // The comparison over seeds of every completed cell.
        let folders = queue.entries.filter { $0.status == .completed }.map {
            directory.appendingPathComponent($0.cell.name)
        }
        if !folders.isEmpty {
            do {
                let groups = try seedGroups(try folders.map { try RunFolder.load($0) }, distinctSeeds: true)
                let (html, table, markdown) = ReportPage.seedComparison(groups)
                try Data(html.utf8).write(to: directory.appendingPathComponent("comparison.html"))
                try Data((markdown + "\n").utf8).write(to: directory.appendingPathComponent("comparison.md"))
                print(table)
            } catch {
                logLine("sweep: could not compare the cells: \(error)")
            }
        }
        let failed = queue.entries.filter { $0.status == .failed }
        logLine(
            "sweep: \(queue.count(.completed)) of \(plan.cells.count) cells completed, \(failed.count) failed; index \(indexURL.path)"
        )
        for entry in failed { logLine("sweep: FAILED \(entry.cell.name): \(entry.failures.last ?? "")") }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// The launcher script, checked before anything runs.
    func checkedLauncher() throws -> String {
        let path = URL(fileURLWithPath: launcher).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError(
                "the cluster runner needs launch/local.sh: \(path) does not exist (run from the repository or give --launcher)"
            )
        }
        return path
    }

    /// The cell's arguments split into launch/local.sh's own flags and the coordinator's.
    static func splitForLauncher(_ arguments: [String]) -> (before: [String], after: [String]) {
        var before: [String] = []
        var after: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let hasValue = index + 1 < arguments.count && !arguments[index + 1].hasPrefix("--")
            let take = hasValue ? 2 : 1
            let chunk = Array(arguments[index..<(index + take)])
            if launcherFlags.contains(String(argument.dropFirst(2))) { before += chunk } else { after += chunk }
            index += take
        }
        return (before, after)
    }

    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func summaryStatus(_ folder: URL) -> String? {
        guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent("summary.json").path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["status"] as? String
    }

    /// The line of a log that says why: the last "Error:" or "FAILED" line, else the last line.
    static func lastLine(of url: URL) -> String? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let lines = String(decoding: data.suffix(16_384), as: UTF8.self).split(separator: "\n").filter {
            !$0.trimmingCharacters(in: .whitespaces).isEmpty
        }
        let line = lines.last { $0.hasPrefix("Error:") || $0.contains("FAILED") } ?? lines.last
        return line.map { String($0.prefix(300)) }
    }
}

/// SWEEP_DIR/index.json.
struct SweepIndex: Codable {
    var spec: String
    var runner: String
    var cells: [SweepQueue.Entry]
}

/// SWEEP_DIR/<cell>/cell.json: how the cell was run, checked when a sweep resumes.
struct SweepCellRecord: Codable {
    var runner: String
    var arguments: [String]
    var status: String
    /// The cell's axis values (absent in folders of earlier versions).
    var coordinates: [SweepPlan.Cell.Coordinate]? = nil
}

/// Groups labelled by their sweep axes when every run is a sweep cell (its cell.json names them):
/// "total-batch=1024, topology=ring" rather than the configuration fields that differ.
func labelledBySweepAxes(_ groups: [SeedGroup]) -> [SeedGroup] {
    func coordinates(_ run: RunFolder) -> [SweepPlan.Cell.Coordinate]? {
        guard let data = FileManager.default.contents(atPath: run.directory.appendingPathComponent("cell.json").path)
        else { return nil }
        return (try? JSONDecoder().decode(SweepCellRecord.self, from: data))?.coordinates
    }
    var labelled = groups
    for index in labelled.indices {
        let labels = Set(
            labelled[index].runs.map { run in
                coordinates(run).map { $0.filter { $0.axis != "seed" }.map { "\($0.axis)=\($0.label)" } }
            })
        guard labels.count == 1, let only = labels.first, let axes = only, !axes.isEmpty else { return groups }
        labelled[index].label = axes.joined(separator: ", ")
    }
    return Set(labelled.map(\.label)).count == labelled.count ? labelled : groups
}

struct FinishedAttempt: Sendable {
    var slot: Int
    var index: Int
    var status: Int32
    var seconds: Double
}

/// Attempts that ended, handed from Process's termination handlers to the sweep's loop.
final class FinishedAttempts: Sendable {
    private let attempts = Mutex<[FinishedAttempt]>([])
    func append(_ attempt: FinishedAttempt) { attempts.withLock { $0.append(attempt) } }
    func take() -> [FinishedAttempt] {
        attempts.withLock { list in
            defer { list.removeAll() }; return list
        }
    }
}
