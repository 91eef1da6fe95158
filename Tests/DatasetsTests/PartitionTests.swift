import Datasets
import LearningCore
import XCTest

final class PartitionTests: XCTestCase {
    private let labels: [UInt8] = {
        var generator = SplitMix64(seed: 5)
        return (0..<2_000).map { _ in UInt8(generator.next() % 10) }
    }()

    func testEverySchemeUsesEverySampleExactlyOnce() throws {
        for scheme in [PartitionScheme.iid, .dirichlet(alpha: 0.1), .dirichlet(alpha: 1), .dirichlet(alpha: 100)] {
            for workers in [1, 3, 8] {
                let shards = try scheme.assign(labels: labels, classCount: 10, workers: workers, seed: 7)
                XCTAssertEqual(shards.count, workers)
                XCTAssertEqual(shards.flatMap { $0 }.sorted(), Array(labels.indices), "\(scheme) on \(workers)")
                XCTAssertTrue(shards.allSatisfy { !$0.isEmpty })
            }
        }
    }

    func testIID_SizesDifferByAtMostOne() throws {
        let sizes = try PartitionScheme.iid.assign(labels: labels, classCount: 10, workers: 7, seed: 1).map(\.count)
        XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
    }

    func testSameSeedSamePartition_DifferentSeedDifferent() throws {
        for scheme in [PartitionScheme.iid, .dirichlet(alpha: 0.5)] {
            let a = try scheme.assign(labels: labels, classCount: 10, workers: 4, seed: 11)
            XCTAssertEqual(a, try scheme.assign(labels: labels, classCount: 10, workers: 4, seed: 11))
            XCTAssertNotEqual(a, try scheme.assign(labels: labels, classCount: 10, workers: 4, seed: 12))
        }
    }

    func testDirichlet_SmallAlphaSkewsLabels() throws {
        func meanDistinctMajorityShare(_ alpha: Double) throws -> Double {
            let shards = try PartitionScheme.dirichlet(alpha: alpha).assign(
                labels: labels, classCount: 10, workers: 5, seed: 3)
            return shards.map { shard in
                var counts = [Int](repeating: 0, count: 10)
                for index in shard { counts[Int(labels[index])] += 1 }
                return Double(counts.max()!) / Double(shard.count)
            }.reduce(0, +) / 5
        }
        XCTAssertGreaterThan(try meanDistinctMajorityShare(0.05), try meanDistinctMajorityShare(100) + 0.2)
    }

    func testParsing() throws {
        XCTAssertEqual(try PartitionScheme(parsing: "iid"), .iid)
        XCTAssertEqual(try PartitionScheme(parsing: "dirichlet:0.3"), .dirichlet(alpha: 0.3))
        XCTAssertThrowsError(try PartitionScheme(parsing: "dirichlet:-1"))
        XCTAssertThrowsError(try PartitionScheme(parsing: "shards")) { XCTAssertTrue("\($0)".contains("shards")) }
    }

    func testSampler_EachEpochVisitsEveryExampleOnce_AndReshuffles() {
        let shard = Dataset(
            features: [UInt8](repeating: 0, count: 10), labels: Array(0..<10), featureCount: 1, classCount: 10)
        var sampler = ShardSampler(shard: shard, seed: 1, rank: 0)
        var drawn: [Int] = []
        for _ in 0..<10 { drawn += sampler.nextIndices(batchSize: 3) }
        XCTAssertEqual(Array(drawn[0..<10]).sorted(), Array(0..<10))
        XCTAssertEqual(Array(drawn[10..<20]).sorted(), Array(0..<10))
        XCTAssertNotEqual(Array(drawn[0..<10]), Array(drawn[10..<20]), "reshuffled every epoch")
        XCTAssertEqual(sampler.epoch, 2)
    }

    func testSynthetic_IsSeededAndPerExample() {
        let data = SyntheticClassification(seed: 3, featureCount: 12, trainCount: 100, testCount: 20)
        let all = data.examples(Array(0..<100))
        let some = data.examples([5, 50, 99])
        XCTAssertEqual(some.features, all.subset([5, 50, 99]).features)
        XCTAssertEqual(some.labels, [all.labels[5], all.labels[50], all.labels[99]])
        XCTAssertNotEqual(
            SyntheticClassification(seed: 4, featureCount: 12).examples([0, 1]).features,
            data.examples([0, 1]).features)
        XCTAssertEqual(Set(data.trainLabels).count, 10)
    }
}
