import Algorithms
import Datasets
import Diagnostics
import Foundation
import LearningCore
import Optimizers
import Runtime
import Topologies
import XCTest
import _TestSupport

/// Checkpoint and resume (#17): a run stopped at an arbitrary round and resumed from its newest
/// checkpoint ends with the same rows, the same sharpness measurements and the same final state
/// of every worker, bit for bit, as the run that was never stopped.
final class CheckpointTests: XCTestCase {
    /// One finished or stopped simulated run: its folder, and every worker's final state.
    struct Outcome {
        var folder: URL
        var rows: [String]
        var sharpness: [String]
        var parameters: [[Float]]
        var personal: [[Float]?]
        var summary: RunSummary?
    }

    /// The rows of a JSONL file with their timings removed (the one thing a resume changes).
    static func rows(_ url: URL) throws -> [String] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { line in
            var object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            object.removeValue(forKey: "elapsed_seconds")
            object.removeValue(forKey: "seconds")
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// Runs `configuration` in a fresh folder (or, with `resumeFrom`, continues that folder from its
    /// newest checkpoint); `haltAfter` stops it there as a killed process would stop.
    func run(
        _ configuration: RunConfiguration, in folder: URL, resume: Bool = false, haltAfter: Int? = nil,
        sharpness: Bool = false
    ) throws -> Outcome {
        let test = try DataLoader.loadTestSet(configuration.data)
        let store = CheckpointStore(runDirectory: folder)
        var report: RunReport
        var point: ResumePoint?
        if resume {
            let loaded = try store.loadNewest(log: { _ in })
            XCTAssertEqual(
                try CheckpointStore.differences(checkpoint: loaded.configuration, resumed: configuration), [])
            report = try RunReport(resuming: folder, afterRound: loaded.snapshot.round)
            point = ResumePoint(
                snapshot: loaded.snapshot, records: report.resumedRecords, sharpness: report.resumedSharpness,
                event: "resumed")
        } else {
            report = try RunReport(directory: folder)
        }
        let runner =
            sharpness
            ? SharpnessRunner(
                network: Network(spec: configuration.model),
                evaluationSet: try DataLoader.loadTrainSubset(configuration.data, count: 64, seed: configuration.seed),
                settings: configuration.sharpness, seed: configuration.seed) : nil
        let (coordinator, workers) = Simulation.run(
            configuration: configuration, runID: 42, testSet: test, report: report, data: nil, progress: nil,
            log: { _ in }, sharpness: runner, checkpoints: store, resume: point, haltAfterRound: haltAfter)
        if haltAfter == nil {
            XCTAssertEqual(coordinator.outcome, .completed, "\(configuration.runName)")
        } else {
            runner?.close(cancel: true)
        }
        let ordered = workers.sorted { $0.machine.rank! < $1.machine.rank! }
        return Outcome(
            folder: folder, rows: try Self.rows(folder.appendingPathComponent("rounds.jsonl")),
            sharpness: try Self.rows(folder.appendingPathComponent("sharpness.jsonl")),
            parameters: ordered.map(\.machine.parameters), personal: ordered.map(\.machine.personalPart),
            summary: haltAfter == nil ? coordinator.summary : nil)
    }

    func scratchFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dsgd-checkpoints-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func assertSame(_ resumed: Outcome, _ reference: Outcome, _ label: String, line: UInt = #line) {
        XCTAssertEqual(resumed.rows.count, reference.rows.count, label, line: line)
        for (index, (a, b)) in zip(resumed.rows, reference.rows).enumerated() where a != b {
            XCTFail("\(label): row \(index + 1) differs:\n\(a)\n\(b)", line: line)
            break
        }
        XCTAssertEqual(resumed.sharpness, reference.sharpness, "\(label): sharpness.jsonl", line: line)
        // Compared as bit patterns (a NaN equals itself), reported by the first worker that differs.
        func bits(_ models: [[Float]?]) -> [[UInt32]] { models.map { ($0 ?? []).map(\.bitPattern) } }
        for (name, a, b) in [
            ("final parameters", bits(resumed.parameters), bits(reference.parameters)),
            ("personal parts", bits(resumed.personal), bits(reference.personal)),
        ] where a != b {
            let worker = Array(zip(a, b)).firstIndex { $0.0 != $0.1 } ?? -1
            XCTFail("\(label): \(name) differ (worker \(worker) first)", line: line)
        }
    }

    /// Every configuration family the fingerprint test pins (ATC/CTA, all-reduce, push-sum,
    /// schedules with random matchings, momentum, batch norm, CHOCO-SGD, gradient tracking,
    /// federated with sampling and FedProx, every personalization algorithm with the server and
    /// over gossip, the CNN), checkpointed every 3 rounds, stopped after round 5 (the newest
    /// checkpoint is round 3's) and resumed: bit for bit the uninterrupted run.
    func testEveryConfiguration_ResumesBitForBit() throws {
        let scratch = try scratchFolder()
        for (name, base) in try RecordsFingerprintTests.configurations() {
            var configuration = base
            configuration.runName = name
            configuration.checkpoints = CheckpointSettings(everyRounds: 3, everySeconds: nil)
            let stop = min(5, configuration.rounds - 1)
            let reference = try run(configuration, in: scratch.appendingPathComponent("\(name)-whole"))
            let folder = scratch.appendingPathComponent("\(name)-stopped")
            let stopped = try run(configuration, in: folder, haltAfter: stop)
            XCTAssertGreaterThanOrEqual(stopped.rows.count, stop, name)
            // The coordinator may record a round or two past the stop before it is looked at.
            let newest = CheckpointStore(runDirectory: folder).rounds().last ?? 0
            XCTAssertTrue(newest >= 3 && newest <= stopped.rows.count, "\(name): checkpoint \(newest)")
            let resumed = try run(configuration, in: folder, resume: true)
            assertSame(resumed, reference, name)
            XCTAssertTrue(resumed.summary?.events?.contains("resumed") ?? false, name)
        }
    }

    /// The same with the sharpness measurements on: sharpness.jsonl keeps the measurements up to
    /// the checkpoint and the resumed run adds the rest, as the uninterrupted run wrote them.
    func testSharpnessRowsResumeBitForBit() throws {
        let scratch = try scratchFolder()
        var configuration = smallConfiguration(workers: 4, rounds: 12, momentum: 0.9, evalEvery: 4)
        configuration.sharpness.every = 3
        configuration.sharpness.lanczosIterations = 6
        configuration.checkpoints = CheckpointSettings(everyRounds: 4, everySeconds: nil)
        let reference = try run(configuration, in: scratch.appendingPathComponent("whole"), sharpness: true)
        XCTAssertGreaterThan(reference.sharpness.count, 3)
        let folder = scratch.appendingPathComponent("stopped")
        _ = try run(configuration, in: folder, haltAfter: 10, sharpness: true)
        XCTAssertEqual(CheckpointStore(runDirectory: folder).rounds(), [4, 8])
        assertSame(try run(configuration, in: folder, resume: true, sharpness: true), reference, "sharpness")
    }

    /// Checkpoints asked for by wall time (an interval so short that one is asked for as soon as
    /// the last is written) change no number, and a run resumes from one of them.
    func testWallTimeCheckpoints_ChangeNothingAndResume() throws {
        let scratch = try scratchFolder()
        var configuration = smallConfiguration(workers: 4, rounds: 30, momentum: 0.9, evalEvery: 5)
        configuration.topology = .randomMatching(nodeCount: 4, seed: 9)
        configuration.checkpoints = nil
        let reference = try run(configuration, in: scratch.appendingPathComponent("none"))
        configuration.checkpoints = CheckpointSettings(everyRounds: 0, everySeconds: 1e-9)
        let folder = scratch.appendingPathComponent("by-time")
        let stopped = try run(configuration, in: folder, haltAfter: 25)
        let written = CheckpointStore(runDirectory: folder).rounds()
        XCTAssertEqual(written.count, CheckpointStore.kept, "the newest two are kept: \(written)")
        XCTAssertGreaterThan(stopped.rows.count, written.last ?? 0)
        assertSame(try run(configuration, in: folder, resume: true), reference, "wall-time checkpoints")
    }

    /// A checkpoint of another configuration is refused with the fields that differ named; a
    /// damaged newest checkpoint is passed over for the one before; another format version is
    /// refused by its number.
    func testRefusals() throws {
        let scratch = try scratchFolder()
        var configuration = smallConfiguration(workers: 4, rounds: 10, momentum: 0.9)
        configuration.checkpoints = CheckpointSettings(everyRounds: 3, everySeconds: nil)
        let folder = scratch.appendingPathComponent("run")
        _ = try run(configuration, in: folder)
        let store = CheckpointStore(runDirectory: folder)
        XCTAssertEqual(store.rounds(), [6, 9])
        let loaded = try store.loadNewest(log: { _ in })
        var other = configuration
        other.optimizer.momentum = 0.5
        other.seed = 4
        other.checkpoints = nil  // not compared
        other.runName = "moved"  // not compared
        let differences = try CheckpointStore.differences(checkpoint: loaded.configuration, resumed: other)
        XCTAssertEqual(
            differences.sorted(),
            ["optimizer.momentum: 0.9 in the checkpoint, 0.5 now", "seed: 3 in the checkpoint, 4 now"])

        // Damage the newest: the older one is taken, and the damage is reported.
        let newest = store.url(round: 9)
        var bytes = try Data(contentsOf: newest)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: newest)
        var logged: [String] = []
        XCTAssertEqual(try store.loadNewest(log: { logged.append($0) }).snapshot.round, 6)
        XCTAssertTrue(logged.first?.contains("checksum does not match") ?? false, "\(logged)")

        // Another format version: refused, naming it.
        var writer = StateWriter()
        writer.section("checkpoint")
        writer.write(CheckpointStore.formatVersion + 1)
        var file = Array("DSGDCKPT".utf8) + writer.bytes
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in file {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        withUnsafeBytes(of: hash.littleEndian) { file.append(contentsOf: $0) }
        try Data(file).write(to: store.url(round: 12))
        XCTAssertThrowsError(try store.loadNewest(log: { _ in })) {
            XCTAssertTrue("\($0)".contains("format version \(CheckpointStore.formatVersion + 1)"), "\($0)")
        }
    }

    /// A worker's state given to a worker of another rank, or to a run of another model, is refused
    /// with what differs.
    func testWorkerStateOfAnotherRunIsRefused() throws {
        var writer = StateWriter()
        writer.section("worker")
        writer.write(2)
        var reader = StateReader(writer.bytes)
        XCTAssertThrowsError(try reader.expectSection("coordinator")) {
            XCTAssertEqual("\($0)", "expected the state of coordinator, found the state of worker")
        }
        var floats = StateWriter()
        floats.write([Float](repeating: 1, count: 5))
        var short = StateReader(floats.bytes)
        XCTAssertThrowsError(try short.readFloats(count: 6, "the parameters")) {
            XCTAssertEqual("\($0)", "the parameters has 5 values, this run's has 6")
        }
        var truncated = StateReader(Array(floats.bytes.dropLast(3)))
        XCTAssertThrowsError(try truncated.readFloats())
    }
}
