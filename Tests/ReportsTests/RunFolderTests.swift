import Reports
import RunRecords
import XCTest

/// The benchmark's rate timed as a training loop is: rounds 2 to R − 1 over the time between the
/// records of rounds 1 and R − 1, so neither the first round's set-up nor the final evaluation
/// (which holds the last record) counts.
final class RunFolderTests: XCTestCase {
    private func records(_ elapsed: [Double?]) -> [RoundRecord] {
        elapsed.enumerated().map { index, seconds in
            var record = RoundRecord(
                round: index + 1, trainLoss: 1, trainLossMin: 1, trainLossMax: 1, learningRate: 0.1, bytesSent: 0,
                epoch: 0)
            record.elapsedSeconds = seconds
            return record
        }
    }

    func testRoundsPerSecondAfterWarmUp_ExcludesTheFirstRoundAndTheFinalEvaluation() throws {
        // A slow first round (0.9 s) and a last record held 5 s by the evaluation: 3 rounds in 0.4 s.
        let rate = try XCTUnwrap(RunFolder.roundsPerSecondAfterWarmUp(records([0.9, 1.0, 1.1, 1.3, 6.3])))
        XCTAssertEqual(rate, 3 / 0.4, accuracy: 1e-9)
        XCTAssertNil(RunFolder.roundsPerSecondAfterWarmUp(records([0.1, 0.2])), "too few rounds")
        XCTAssertNil(RunFolder.roundsPerSecondAfterWarmUp(records([0.1, nil, nil, 0.5])), "no elapsed time")
    }
}
