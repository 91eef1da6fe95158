import RunRecords
import XCTest

@testable import Runtime

/// The live progress line is formatted only when shown: the first record, then at most once per
/// interval, and always the last round; the figures are those of the record shown.
final class ProgressLineTests: XCTestCase {
    func record(_ round: Int, accuracy: Double? = nil, xi: Double? = nil) -> RoundRecord {
        var record = RoundRecord(
            round: round, trainLoss: 1.0 / Double(round), trainLossMin: 0, trainLossMax: 2, learningRate: 0.05,
            bytesSent: 0, epoch: 0)
        record.testAccuracy = accuracy
        record.consensusDistanceSquared = xi
        return record
    }

    func testLines_AreShownOncePerInterval_AndForTheLastRound() {
        var lines: [String] = []
        let progress = ProgressLine(interactive: false, minimumInterval: 1) { lines.append($0) }
        progress.update(record: record(1, xi: 2.5e-3), elapsed: 0.1, totalRounds: 10)
        progress.update(record: record(2, accuracy: 0.5), elapsed: 0.5, totalRounds: 10)
        progress.update(record: record(3), elapsed: 0.9, totalRounds: 10)
        progress.update(record: record(4), elapsed: 1.2, totalRounds: 10)
        progress.update(record: record(10), elapsed: 1.3, totalRounds: 10)
        progress.finish()
        XCTAssertEqual(
            lines,
            [
                "round 1/10 | 0.1s elapsed, ETA 1s | 10.0 rounds/s | train loss 1.0000 | Ξ² 2.500e-03\n",
                // Round 2's accuracy, though its line was not shown, is the latest test accuracy.
                "round 4/10 | 1.2s elapsed, ETA 2s | 3.3 rounds/s | train loss 0.2500 | test acc 50.00%\n",
                "round 10/10 | 1.3s elapsed, ETA 0s | 7.7 rounds/s | train loss 0.1000 | test acc 50.00%\n",
            ])
    }

    func testAnInteractiveLine_IsRewrittenInPlace_AndEndedOnce() {
        var written: [String] = []
        let progress = ProgressLine(interactive: true, minimumInterval: 1) { written.append($0) }
        progress.finish()
        XCTAssertEqual(written, [], "nothing shown, nothing to end")
        progress.update(record: record(1), elapsed: 0.2, totalRounds: 2)
        progress.update(record: record(2), elapsed: 0.4, totalRounds: 2)
        progress.finish()
        XCTAssertEqual(written.count, 3)
        XCTAssertTrue(written[0].hasPrefix("\r\u{1B}[Kround 1/2 |"))
        XCTAssertTrue(written[1].hasPrefix("\r\u{1B}[Kround 2/2 |"))
        XCTAssertEqual(written[2], "\n")
    }
}
