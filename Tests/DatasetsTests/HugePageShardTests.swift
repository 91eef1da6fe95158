import Datasets
import LearningCore
import XCTest

/// A shard moved onto memory advised for huge pages holds the same examples, and its batches are
/// the same rows and values.
final class HugePageShardTests: XCTestCase {
    func testFeaturesOnHugePages_AreTheSameExamples() {
        var generator = SplitMix64(seed: 11)
        let featureCount = 784
        let count = 3_000  // 2.35 MB of features: at least one whole 2 MiB block
        let features = (0..<(count * featureCount)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let labels = (0..<count).map { _ in UInt8(generator.next() % 10) }
        let shard = Dataset(features: features, labels: labels, featureCount: featureCount, classCount: 10)
        let moved = shard.featuresOnHugePages()
        XCTAssertEqual(moved.features, shard.features)
        XCTAssertEqual(moved.labels, shard.labels)
        XCTAssertEqual(moved.featureCount, featureCount)
        XCTAssertEqual(moved.classCount, 10)
        let rows = [2_999, 0, 1_500, 7, 2_048]
        var expected = [Float](repeating: 0, count: rows.count * featureCount)
        var actual = expected
        var expectedLabels = [Int32](repeating: 0, count: rows.count)
        var actualLabels = expectedLabels
        shard.copyRows(rows, into: &expected, labels: &expectedLabels)
        moved.copyRows(rows, into: &actual, labels: &actualLabels)
        XCTAssertEqual(actual, expected)
        XCTAssertEqual(actualLabels, expectedLabels)
    }
}
