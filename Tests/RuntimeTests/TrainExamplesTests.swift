import Datasets
import Runtime
import XCTest

/// `--train-examples N`: the workers train on a fixed seeded subset of the training split, the
/// same rows x̄'s sharpness subset of N examples holds.
final class TrainExamplesTests: XCTestCase {
    func testShards_PartitionExactlyTheSharpnessSubset() throws {
        var configuration = smallConfiguration(workers: 4)
        configuration.trainExamples = 120
        XCTAssertEqual(validationMessage(configuration), "no error")
        let shards = try (0..<4).map { rank in
            try DataLoader.loadShard(
                configuration.data, partition: .iid, workers: 4, seed: configuration.seed, rank: rank,
                trainExamples: 120)
        }
        XCTAssertEqual(shards.map(\.count).reduce(0, +), 120)
        let subset = try DataLoader.loadTrainSubset(configuration.data, count: 120, seed: configuration.seed)
        // Every example of the shards, as (features, label), is one of the subset's, each once.
        func rows(_ set: Dataset) -> [[UInt8]] {
            (0..<set.count).map { (i: Int) -> [UInt8] in
                let start = i * set.featureCount
                var row = Array(set.features[start..<(start + set.featureCount)])
                row.append(set.labels[i])
                return row
            }
        }
        let fromShards = shards.flatMap(rows).sorted { $0.lexicographicallyPrecedes($1) }
        let fromSubset = rows(subset).sorted { $0.lexicographicallyPrecedes($1) }
        XCTAssertEqual(fromShards, fromSubset)
        // Without the flag the whole split (400 examples) is partitioned.
        let whole = try DataLoader.loadShard(configuration.data, partition: .iid, workers: 4, seed: 3, rank: 0)
        XCTAssertEqual(whole.count, 100)

        configuration.trainExamples = 3
        XCTAssertTrue(validationMessage(configuration).contains("--train-examples"), validationMessage(configuration))
        XCTAssertThrowsError(
            try DataLoader.loadShard(
                configuration.data, partition: .iid, workers: 4, seed: 3, rank: 0, trainExamples: 401)
        ) { error in XCTAssertTrue("\(error)".contains("--train-examples 401 asks for more"), "\(error)") }
    }
}
