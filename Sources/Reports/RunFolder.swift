import Diagnostics
import Foundation
import RunRecords

/// A run folder read back from disk, every file checked, every problem named with file and line.
public struct RunFolder {
    public let directory: URL
    public let manifest: RunManifest
    public let rounds: [RoundRecord]
    public let sharpness: [SharpnessRecord]
    /// nil while the run is still going (no summary.json yet).
    public let summary: RunSummary?

    public static func load(_ directory: URL) throws -> RunFolder {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue
        else {
            throw ReportError("\(directory.path): not a run folder (no such directory)")
        }
        let manifest: RunManifest = try decodeFile(directory.appendingPathComponent("config.json"))
        let rounds: [RoundRecord] = try decodeLines(directory.appendingPathComponent("rounds.jsonl"), required: true)
        let sharpness: [SharpnessRecord] = try decodeLines(
            directory.appendingPathComponent("sharpness.jsonl"), required: false)
        let summaryURL = directory.appendingPathComponent("summary.json")
        let summary: RunSummary? =
            FileManager.default.fileExists(atPath: summaryURL.path) ? try decodeFile(summaryURL) : nil
        for (index, record) in rounds.enumerated() where record.round != index + 1 {
            throw ReportError(
                "\(directory.appendingPathComponent("rounds.jsonl").path):\(index + 1): round \(record.round) where round \(index + 1) was expected"
            )
        }
        return RunFolder(
            directory: directory, manifest: manifest, rounds: rounds, sharpness: sharpness, summary: summary)
    }

    /// Rounds/s timed as a training loop is usually timed (the PyTorch baseline of `dsgd bench`
    /// is): after one warm-up round, to the end of training. From the coordinator's records of
    /// rounds 1 and R − 1 (R the last): the last round's record waits for the final evaluation.
    /// nil without three rounds with their elapsed times.
    public static func roundsPerSecondAfterWarmUp(_ rounds: [RoundRecord]) -> Double? {
        guard let last = rounds.last?.round, last >= 3,
            let first = rounds.first(where: { $0.round == 1 })?.elapsedSeconds,
            let end = rounds.last(where: { $0.round == last - 1 })?.elapsedSeconds, end > first
        else { return nil }
        return Double(last - 2) / (end - first)
    }

    static func decodeFile<T: Decodable>(_ url: URL) throws -> T {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ReportError("\(url.path): missing or unreadable")
        }
        do {
            return try NonFiniteJSON.decode(T.self, from: data)
        } catch {
            throw ReportError("\(url.path): not a valid \(T.self): \(describe(error))")
        }
    }

    static func decodeLines<T: Decodable>(_ url: URL, required: Bool) throws -> [T] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            if required { throw ReportError("\(url.path): missing or unreadable") }
            return []
        }
        let text = String(decoding: data, as: UTF8.self)
        var records: [T] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where !line.isEmpty {
            do {
                records.append(try NonFiniteJSON.decode(T.self, from: Data(line.utf8)))
            } catch {
                let truncated = index == lines.count - 1 && !text.hasSuffix("\n")
                throw ReportError(
                    "\(url.path):\(index + 1): \(truncated ? "truncated record (the file ends mid-line)" : "not a valid record"): \(describe(error))"
                )
            }
        }
        return records
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        default: return "\(error)"
        }
    }
}

public struct ReportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
