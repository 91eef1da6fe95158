import Datasets
import LearningCore
import XCTest

final class PartitionTests: XCTestCase {
    private let labels: [UInt8] = {
        var generator = SplitMix64(seed: 5)
        return (0..<2_000).map { _ in UInt8(generator.next() % 10) }
    }()

    func testEverySchemeUsesEverySampleExactlyOnce() throws {
        for scheme in [
            PartitionScheme.iid, .dirichlet(alpha: 0.1), .dirichlet(alpha: 1), .dirichlet(alpha: 100),
            .pathological(classesPerWorker: 2),
            .logNormal(sigma: 1),
        ] {
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

    func testPathological_GivesEachWorkerAboutKClasses() throws {
        let shards = try PartitionScheme.pathological(classesPerWorker: 2).assign(
            labels: labels, classCount: 10, workers: 8, seed: 4)
        for shard in shards {
            let classes = Set(shard.map { labels[$0] })
            XCTAssertLessThanOrEqual(classes.count, 4, "two shards of sorted labels span at most a few classes")
        }
        XCTAssertLessThan(shards.map { Set($0.map { labels[$0] }).count }.reduce(0, +), 8 * 4)
    }

    func testLogNormal_SizesAreUnbalanced() throws {
        let sizes = try PartitionScheme.logNormal(sigma: 1).assign(labels: labels, classCount: 10, workers: 10, seed: 2)
            .map(\.count)
        XCTAssertTrue(sizes.allSatisfy { $0 >= 1 })
        XCTAssertGreaterThan(Double(sizes.max()!) / Double(sizes.min()!), 2)
        let even = try PartitionScheme.logNormal(sigma: 0).assign(labels: labels, classCount: 10, workers: 10, seed: 2)
            .map(\.count)
        XCTAssertLessThanOrEqual(even.max()! - even.min()!, 1, "σ = 0 is an even split")
    }

    func testClientTestSplit_FollowsTheClientsLabelDistribution() throws {
        let shards = try PartitionScheme.pathological(classesPerWorker: 1).assign(
            labels: labels, classCount: 10, workers: 10, seed: 1)
        let testLabels: [UInt8] = (0..<1_000).map { UInt8($0 % 10) }
        for (worker, shard) in shards.enumerated() {
            let split = PartitionScheme.clientTestSplit(
                testLabels: testLabels, trainLabels: shard.map { labels[$0] }, size: 50, classCount: 10, seed: 3,
                worker: worker)
            XCTAssertEqual(
                Set(split.map { testLabels[$0] }), Set(shard.map { labels[$0] }), "only the client's own classes")
            XCTAssertEqual(Set(split).count, split.count, "without replacement")
            XCTAssertGreaterThanOrEqual(split.count, 45)
        }
    }

    func testParsing() throws {
        XCTAssertEqual(try PartitionScheme(parsing: "pathological:2"), .pathological(classesPerWorker: 2))
        XCTAssertEqual(try PartitionScheme(parsing: "lognormal:0.5"), .logNormal(sigma: 0.5))
        XCTAssertThrowsError(try PartitionScheme(parsing: "pathological:0"))
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
