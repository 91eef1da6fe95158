import Datasets
import Diagnostics
import Foundation
import Topologies
import Transport

/// Writes a run folder: config.json, rounds.jsonl, rounds.csv (appended and flushed every
/// round, so a failed run keeps every completed round) and summary.json.
public final class RunReport {
    public let directory: URL
    private let jsonl: FileHandle
    private let csv: FileHandle
    /// The first record in which each field held NaN or ±Infinity (written as null, see
    /// `NonFiniteJSON`), in words, for the summary's events.
    public private(set) var nonFiniteEvents: [String] = []
    private var nonFiniteFields: Set<String> = []

    /// Creates the folder; refuses to replace an earlier run's report unless `overwrite` is set.
    public init(directory: URL, overwrite: Bool = false) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = ["config.json", "rounds.jsonl", "rounds.csv", "summary.json", "sharpness.jsonl", "report.html"]
        let existing = names.filter {
            FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path)
        }
        if !existing.isEmpty && !overwrite {
            throw RunReportError(
                reason:
                    "\(directory.path) already holds a run report (\(existing.joined(separator: ", ")));"
                    + " choose another --run-dir or pass --overwrite"
            )
        }
        for name in names { try? FileManager.default.removeItem(at: directory.appendingPathComponent(name)) }
        // An earlier run's checkpoints are not this run's to resume from.
        try? FileManager.default.removeItem(at: CheckpointStore(runDirectory: directory).directory)
        let jsonlURL = directory.appendingPathComponent("rounds.jsonl")
        let csvURL = directory.appendingPathComponent("rounds.csv")
        _ = FileManager.default.createFile(atPath: jsonlURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: csvURL.path, contents: Data((RoundRecord.csvHeader + "\n").utf8))
        jsonl = try FileHandle(forWritingTo: jsonlURL)
        csv = try FileHandle(forWritingTo: csvURL)
        try csv.seekToEnd()
    }

    /// Notes the first appearance of each non-finite field.
    /// The records and sharpness measurements a resumed run keeps (those up to its checkpoint).
    public private(set) var resumedRecords: [RoundRecord] = []
    public private(set) var resumedSharpness: [SharpnessRecord] = []

    /// Reopens a run folder to continue it after round `round` (its checkpoint's): rounds.jsonl,
    /// rounds.csv and sharpness.jsonl keep their rows up to that round and lose the rest, so no
    /// row appears twice; summary.json and report.html, of the interrupted run, are removed.
    public init(resuming directory: URL, afterRound round: Int) throws {
        self.directory = directory
        let jsonlURL = directory.appendingPathComponent("rounds.jsonl")
        let csvURL = directory.appendingPathComponent("rounds.csv")
        let sharpnessURL = directory.appendingPathComponent("sharpness.jsonl")
        let text = (try? String(contentsOf: jsonlURL, encoding: .utf8)) ?? ""
        var kept: [RoundRecord] = []
        var lines: [Substring] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.isEmpty {
            // A line cut by a killed coordinator is past the checkpoint (the checkpoint is written
            // after its rows): it goes with the other rows after the checkpoint.
            guard let record = try? NonFiniteJSON.decode(RoundRecord.self, from: Data(line.utf8)) else { continue }
            guard record.round <= round else { continue }
            guard record.round == kept.count + 1 else {
                throw RunReportError(
                    reason:
                        "\(jsonlURL.path):\(index + 1): round \(record.round) where round \(kept.count + 1) was expected; the rows before the checkpoint are not whole"
                )
            }
            kept.append(record)
            lines.append(line)
        }
        guard kept.count == round else {
            throw RunReportError(
                reason:
                    "\(jsonlURL.path): \(kept.count) rows up to the checkpoint's round \(round); the run folder does not hold the rows the checkpoint follows"
            )
        }
        resumedRecords = kept
        try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: jsonlURL, options: .atomic)
        try Data((([RoundRecord.csvHeader] + kept.map(\.csvRow)).joined(separator: "\n") + "\n").utf8).write(
            to: csvURL, options: .atomic)
        if let sharpnessText = try? String(contentsOf: sharpnessURL, encoding: .utf8) {
            var keptLines: [Substring] = []
            for line in sharpnessText.split(separator: "\n") {
                guard let record = try? NonFiniteJSON.decode(SharpnessRecord.self, from: Data(line.utf8)),
                    record.round <= round
                else { continue }
                resumedSharpness.append(record)
                keptLines.append(line)
            }
            try Data(keptLines.map { $0 + "\n" }.joined().utf8).write(to: sharpnessURL, options: .atomic)
        }
        for name in ["summary.json", "report.html"] {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
        jsonl = try FileHandle(forWritingTo: jsonlURL)
        csv = try FileHandle(forWritingTo: csvURL)
        try jsonl.seekToEnd()
        try csv.seekToEnd()
    }

    private func noteNonFinite(_ nonFinite: [String: String], in file: String, round: Int, model: String? = nil) {
        for (path, kind) in nonFinite.sorted(by: { $0.key < $1.key }) {
            let field = String(path.prefix { $0 != "/" })
            let key = file + "/" + (model ?? "") + "/" + field
            guard !nonFiniteFields.contains(key) else { continue }
            nonFiniteFields.insert(key)
            nonFiniteEvents.append(
                "round \(round): \(field)\(model.map { " of \($0)" } ?? "") is \(kind) in \(file) (written as null; the record's \(NonFiniteJSON.fieldName) field says which values were not finite)"
            )
        }
    }

    deinit {
        try? jsonl.close()
        try? csv.close()
    }

    /// Adds how payloads travel (decided once the workers registered) to config.json.
    public func notePayloads(_ decision: PayloadDecision) throws {
        let url = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return }
        var manifest = try JSONDecoder().decode(RunManifest.self, from: data)
        manifest.payloads = decision
        try writeManifest(manifest)
    }

    public func writeManifest(_ manifest: RunManifest) throws {
        let pretty = JSONEncoder()
        pretty.outputFormatting = [.prettyPrinted, .sortedKeys]
        try pretty.encode(manifest).write(to: directory.appendingPathComponent("config.json"))
    }

    public func append(_ record: RoundRecord) throws {
        // The direct writer gives JSONEncoder's bytes; a record it declines (a non-finite number,
        // a name that needs escaping) goes through the encoder.
        var (line, nonFinite) =
            try record.jsonLine.map { (Data($0), [String: String]()) } ?? NonFiniteJSON.encode(record)
        line.append(0x0A)
        // Whole lines or nothing: a write that fails (a full disk) is rolled back in both files,
        // so they keep only complete records and agree on how many.
        let jsonlEnd = try jsonl.offset()
        let csvEnd = try csv.offset()
        do {
            try Self.appendWhole(line, to: jsonl, rollingBackTo: jsonlEnd, name: "rounds.jsonl")
            try Self.appendWhole(Data((record.csvRow + "\n").utf8), to: csv, rollingBackTo: csvEnd, name: "rounds.csv")
        } catch {
            try? jsonl.truncate(atOffset: jsonlEnd)
            throw error
        }
        noteNonFinite(nonFinite, in: "rounds.jsonl", round: record.round)
    }

    /// Appends `data` at `end`; on failure truncates back to `end` and says which file and why.
    static func appendWhole(_ data: Data, to handle: FileHandle, rollingBackTo end: UInt64, name: String) throws {
        do {
            try handle.write(contentsOf: data)
        } catch {
            try? handle.truncate(atOffset: end)
            throw RunReportError(
                reason: "\(name): could not append round data (\(error)); the file keeps its complete lines")
        }
    }

    public func appendSharpness(_ record: SharpnessRecord) throws {
        var (line, nonFinite) = try NonFiniteJSON.encode(record)
        noteNonFinite(nonFinite, in: "sharpness.jsonl", round: record.round, model: record.model)
        line.append(0x0A)
        let url = directory.appendingPathComponent("sharpness.jsonl")
        if !FileManager.default.fileExists(atPath: url.path) {
            _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        let end = try handle.seekToEnd()
        try Self.appendWhole(line, to: handle, rollingBackTo: end, name: "sharpness.jsonl")
    }

    public func writeSummary(_ summary: RunSummary) throws {
        try NonFiniteJSON.encode(summary, pretty: true).data.write(
            to: directory.appendingPathComponent("summary.json"), options: .atomic)
    }
}

public struct RunReportError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

extension RunSummary {
    /// Writes `summary.json` for a run whose coordinator died before writing one (a launcher
    /// calls this through `dsgd report finalize`): status failed with `reason`, the figures of the
    /// rounds that `rounds.jsonl` holds (an incomplete last line, cut by the kill, is removed and
    /// said so). Does nothing, and returns false, when the folder already has a summary.
    @discardableResult
    public static func writeFallback(in directory: URL, reason: String) throws -> Bool {
        let summaryURL = directory.appendingPathComponent("summary.json")
        guard !FileManager.default.fileExists(atPath: summaryURL.path) else { return false }
        let manifestURL = directory.appendingPathComponent("config.json")
        guard let manifestData = FileManager.default.contents(atPath: manifestURL.path) else {
            throw RunReportError(reason: "\(manifestURL.path): missing; not a run folder")
        }
        let manifest = try JSONDecoder().decode(RunManifest.self, from: manifestData)
        let roundsURL = directory.appendingPathComponent("rounds.jsonl")
        var text = (try? String(contentsOf: roundsURL, encoding: .utf8)) ?? ""
        var events = ["summary.json written by the launcher: the coordinator exited without writing one"]
        if !text.isEmpty && !text.hasSuffix("\n") {
            let complete = text.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
            text = String(text[..<complete])
            try Data(text.utf8).write(to: roundsURL, options: .atomic)
            events.append("an incomplete last line of rounds.jsonl (cut by the coordinator's death) was removed")
        }
        let records = text.split(separator: "\n").compactMap {
            try? NonFiniteJSON.decode(RoundRecord.self, from: Data($0.utf8))
        }
        let configuration = manifest.configuration
        let evaluated = records.last { $0.testAccuracy != nil }
        let elapsed = records.last?.elapsedSeconds ?? 0
        let summary = RunSummary(
            status: "failed", reason: reason, runName: configuration.runName, runID: "unknown", rounds: records.count,
            roundsPlanned: configuration.rounds, workers: configuration.workers, topology: configuration.topology.name,
            algorithm: configuration.algorithm.rawValue, data: manifest.data,
            finalTestAccuracy: evaluated?.testAccuracy,
            finalTestLoss: evaluated?.testLoss, finalTrainLoss: records.last?.trainLoss,
            finalConsensusDistanceSquared: records.last { $0.consensusDistanceSquared != nil }?
                .consensusDistanceSquared,
            wallSeconds: elapsed, roundsPerSecond: elapsed > 0 ? Double(records.count) / elapsed : 0,
            bytesSent: records.last?.bytesSent, workerPeakResidentBytes: nil, spectralGap: nil, events: events,
            clientAccuracyMeanLast: nil, clientAccuracyWorstLast: nil, clientAccuracyMeanBest: nil,
            clientAccuracyBestRound: nil)
        try NonFiniteJSON.encode(summary, pretty: true).data.write(to: summaryURL, options: .atomic)
        return true
    }
}
