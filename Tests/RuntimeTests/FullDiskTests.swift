import Foundation
import Runtime
import XCTest

/// A disk that fills up while rounds.jsonl is written: the record is written whole or not at
/// all (the files keep only complete lines and agree), and the error says which file and why.
final class FullDiskTests: XCTestCase {
    func testAppend_OnAFullDisk_KeepsWholeLines() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsgd-full-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let report = try RunReport(directory: directory)
        var record = RoundRecord(
            round: 1, trainLoss: 1, trainLossMin: 1, trainLossMax: 1, learningRate: 0.1, bytesSent: 0, epoch: 0)
        try report.append(record)
        let jsonl = directory.appendingPathComponent("rounds.jsonl")
        let csv = directory.appendingPathComponent("rounds.csv")
        let before = (try Data(contentsOf: jsonl), try Data(contentsOf: csv))
        // Let the file grow by only 40 more bytes: the next write stops part-way (EFBIG, as a
        // full disk stops it with ENOSPC).
        let previousHandler = signal(SIGXFSZ, SIG_IGN)
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
        let saved = limit
        limit.rlim_cur = rlim_t(before.0.count + 40)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit), 0)
        record.round = 2
        record.consensusDistanceSquaredByLayer = Dictionary(
            uniqueKeysWithValues: (0..<20).map { ("layers.\($0).weight", Double($0)) })
        XCTAssertThrowsError(try report.append(record)) {
            XCTAssertTrue("\($0)".contains("rounds.jsonl: could not append round data"), "\($0)")
            XCTAssertTrue("\($0)".contains("keeps its complete lines"), "\($0)")
        }
        var restore = saved
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &restore)
        signal(SIGXFSZ, previousHandler)
        XCTAssertEqual(try Data(contentsOf: jsonl), before.0, "no half line left behind")
        XCTAssertEqual(try Data(contentsOf: csv), before.1)
        // With space again, the next record appends cleanly.
        try report.append(record)
        XCTAssertEqual(try String(contentsOf: jsonl, encoding: .utf8).split(separator: "\n").count, 2)
    }
}
