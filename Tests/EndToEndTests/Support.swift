import Foundation
import SharedMemory
import XCTest
import _TestSupport

/// The package root (two levels above this file's folder).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Removes, when the test bundle finishes, the shared-memory segments of processes the tests
/// killed without a launcher (which would remove them), so a test run leaves /dev/shm as it was.
final class StaleSegmentSweeper: NSObject, XCTestObservation {
    static let registered: Void = XCTestObservationCenter.shared.addTestObserver(StaleSegmentSweeper())
    func testBundleDidFinish(_ testBundle: Bundle) { SharedSegment.removeStale() }
}

/// The `dsgd` executable built alongside the tests (or `DSGD_BIN`).
func dsgdBinary() throws -> URL {
    StaleSegmentSweeper.registered
    if let path = ProcessInfo.processInfo.environment["DSGD_BIN"] { return URL(fileURLWithPath: path) }
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = testBinary.deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = directory.appendingPathComponent("dsgd")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    let fallback = packageRoot.appendingPathComponent(".build/debug/dsgd")
    guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
        throw XCTSkip("dsgd binary not found next to \(testBinary.path); build it or set DSGD_BIN")
    }
    return fallback
}

/// The hostile-input test's attacker, a test tool built beside `dsgd` (not part of it).
func fuzzPeerBinary() throws -> URL {
    let testFolder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent()
    let candidates = [try dsgdBinary().deletingLastPathComponent(), testFolder, testFolder.deletingLastPathComponent()]
        .map { $0.appendingPathComponent("dsgd-fuzz-peer") }
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        struct Missing: Error, CustomStringConvertible { var description: String }
        throw Missing(description: "dsgd-fuzz-peer is not in \(candidates.map(\.path)); build it (swift build)")
    }
    return found
}

func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "dsgd-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A started child process whose output goes to files (no pipe can fill up and block it).
final class Child {
    let process = Process()
    let output: URL

    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], output: URL) throws {
        self.output = output
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Waits up to `seconds`; kills the process and fails if it does not exit.
    @discardableResult
    func wait(seconds: Double, file: StaticString = #filePath, line: UInt = #line) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            usleep(500_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            XCTFail(
                "\(process.executableURL!.lastPathComponent) \(process.arguments ?? []) did not exit within \(seconds) s:\n\(text)",
                file: file, line: line)
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var text: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// A test that stopped early (a failed unwrap) leaves no run behind to slow the rest: the
    /// child gets SIGTERM (a launcher stops what it started), then SIGKILL.
    deinit {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Writes the tiny IDX data set (gzipped training images, the rest raw) into `directory`.
func writeTinyIDX(to directory: URL, trainCount: Int = 800, testCount: Int = 200) throws {
    try Data(TinyIDX.labels(count: trainCount, seed: 1)).write(
        to: directory.appendingPathComponent("train-labels-idx1-ubyte"))
    try Data(TinyIDX.images(count: testCount, seed: 2)).write(
        to: directory.appendingPathComponent("t10k-images-idx3-ubyte"))
    try Data(TinyIDX.labels(count: testCount, seed: 2)).write(
        to: directory.appendingPathComponent("t10k-labels-idx1-ubyte"))
    let images = directory.appendingPathComponent("train-images-idx3-ubyte")
    try Data(TinyIDX.images(count: trainCount, seed: 1)).write(to: images)
    let gzip = Process()
    gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    gzip.arguments = ["gzip", "-f", images.path]
    try gzip.run()
    gzip.waitUntilExit()
    XCTAssertEqual(gzip.terminationStatus, 0)
}

func readFloats(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

func jsonLines(_ url: URL) throws -> [[String: Any]] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}

func json(_ url: URL) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
}

/// Processes whose command line contains `marker`.
func processes(containing marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry in
        guard let pid = Int32(entry), pid != getpid(),
            let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { return nil }
        let command = String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        return command.contains(marker) ? pid : nil
    }
}

/// The complete lines of a JSONL file that another process may be appending to (a partial last
/// line is left out).
func completeJSONLines(_ url: URL) -> [[String: Any]] {
    guard let data = FileManager.default.contents(atPath: url.path) else { return [] }
    var text = String(decoding: data, as: UTF8.self)
    if let lastNewline = text.lastIndex(of: "\n") { text = String(text[...lastNewline]) } else { return [] }
    return text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

/// Waits (up to 10 s) for a launcher-style endpoint file and returns its endpoint.
func waitForEndpoint(_ file: URL) -> String {
    var endpoint = ""
    for _ in 0..<500 where endpoint.isEmpty {
        endpoint = ((try? String(contentsOf: file, encoding: .utf8)) ?? "").trimmingCharacters(
            in: .whitespacesAndNewlines)
        if endpoint.isEmpty { usleep(20_000) }
    }
    return endpoint
}

/// Asserts that two run folders recorded `count` rounds with equal values for `keys`.
func assertSameRecords(
    _ first: URL, _ second: URL, count: Int, keys: [String], file: StaticString = #filePath, line: UInt = #line
) throws {
    let a = try jsonLines(first.appendingPathComponent("rounds.jsonl"))
    let b = try jsonLines(second.appendingPathComponent("rounds.jsonl"))
    XCTAssertEqual(a.count, count, file: file, line: line)
    for key in keys {
        XCTAssertEqual(a.map { $0[key] as? Double }, b.map { $0[key] as? Double }, key, file: file, line: line)
    }
}

/// Waits (up to `seconds`) until `run`'s rounds.jsonl holds at least `count` lines; returns how many.
@discardableResult
func waitForRows(_ run: URL, count: Int, seconds: Double = 30) -> Int {
    var rows = 0
    let deadline = Date().addingTimeInterval(seconds)
    while rows < count && Date() < deadline {
        rows =
            ((try? String(contentsOf: run.appendingPathComponent("rounds.jsonl"), encoding: .utf8)) ?? "").split(
                separator: "\n"
            ).count
        if rows < count { usleep(20_000) }
    }
    return rows
}

/// A coordinator started with `arguments` (plus its endpoint file) and `workers` worker processes
/// that dump their final parameters into `dumps` (`worker-R.f32`); waits for every worker (120 s)
/// and then the coordinator (60 s), asserting that each exits 0, labelled with `label`. Logs go to
/// `scratch` as `coordinator-TAG.log` and `worker-TAG-R.log`.
func runCluster(
    _ binary: URL, arguments: [String], workers: Int, dumps: URL, scratch: URL, tag: String, label: String,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let endpointFile = scratch.appendingPathComponent("endpoint-\(tag)")
    let coordinator = try Child(
        binary, ["coordinator"] + arguments + ["--endpoint-file", endpointFile.path],
        output: scratch.appendingPathComponent("coordinator-\(tag).log"))
    let endpoint = waitForEndpoint(endpointFile)
    XCTAssertFalse(endpoint.isEmpty, "\(label): \(coordinator.text)", file: file, line: line)
    let children = try (0..<workers).map { rank in
        try Child(
            binary, ["worker", "--coordinator", endpoint, "--dump-parameters", dumps.path],
            output: scratch.appendingPathComponent("worker-\(tag)-\(rank).log"))
    }
    for child in children {
        XCTAssertEqual(child.wait(seconds: 120), 0, "\(label): \(child.text)", file: file, line: line)
    }
    XCTAssertEqual(coordinator.wait(seconds: 60), 0, "\(label): \(coordinator.text)", file: file, line: line)
}
