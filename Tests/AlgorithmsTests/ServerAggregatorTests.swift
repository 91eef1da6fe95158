import Algorithms
import LearningCore
import XCTest

/// The federated server's rules as values: FedAvg's size-weighted average against the average
/// computed here in Float64 (tolerance: one Float32 rounding of the result, 6e-8 relative), its
/// sampling, and FedProx's proximal term.
final class ServerAggregatorTests: XCTestCase {
    private func uploads(_ count: Int, length: Int) -> [[Float]] {
        var generator = SplitMix64(seed: 11, stream: 1, substream: 0)
        return (0..<count).map { _ in (0..<length).map { _ in Float(generator.nextStandardNormal()) } }
    }

    func testFedAvg_IsTheDataSizeWeightedAverage() {
        // 10,001 values: more than one block of the blockwise sum, and not a multiple of 8.
        let models = uploads(3, length: 10_001)
        let examples = [100, 250, 650]
        let global = withBuffers(models) { FederatedAveraging(clientFraction: 1).aggregate($0, examples: examples) }
        for i in stride(from: 0, to: 10_001, by: 97) {
            let expected = (0..<3).reduce(0.0) { $0 + Double(examples[$1]) / 1000 * Double(models[$1][i]) }
            XCTAssertEqual(Double(global[i]), expected, accuracy: 6e-8 * max(abs(expected), 1e-3), "value \(i)")
        }
        // Identical uploads aggregate to themselves exactly, whatever the sizes.
        let same = withBuffers([models[0], models[0]]) {
            FederatedAveraging(clientFraction: 1).aggregate($0, examples: [3, 7])
        }
        XCTAssertEqual(same, models[0])
    }

    func testFedProx_AggregatesAsFedAvg_AndAddsItsProximalTerm() {
        let models = uploads(2, length: 50)
        let proximal = FederatedProximal(clientFraction: 0.5, proximalMu: 0.25)
        let averaging = FederatedAveraging(clientFraction: 0.5)
        XCTAssertEqual(
            withBuffers(models) { proximal.aggregate($0, examples: [2, 3]) },
            withBuffers(models) { averaging.aggregate($0, examples: [2, 3]) })
        let term = proximal.proximalTerm(anchor: models[0])
        XCTAssertEqual(term?.mu, 0.25)
        XCTAssertEqual(term?.anchor, models[0])
        XCTAssertNil(averaging.proximalTerm(anchor: models[0]))
        for round in 0..<20 {
            XCTAssertEqual(
                proximal.sampledClients(round: round, workers: 9, seed: 4),
                averaging.sampledClients(round: round, workers: 9, seed: 4))
        }
    }

    /// ⌈C·n⌉ clients, at least one, distinct and ascending; a different subset across rounds; every
    /// client sampled about C of the time.
    func testSampling_TakesTheFractionOfClients() {
        let rule = FederatedAveraging(clientFraction: 0.3)
        var counts = [Int](repeating: 0, count: 10)
        var subsets = Set<[Int]>()
        for round in 0..<2_000 {
            let sampled = rule.sampledClients(round: round, workers: 10, seed: 7)
            XCTAssertEqual(sampled.count, 3)
            XCTAssertEqual(sampled, Array(Set(sampled)).sorted())
            for client in sampled { counts[client] += 1 }
            subsets.insert(sampled)
        }
        XCTAssertGreaterThan(subsets.count, 100)
        // Binomial(2,000, 0.3): sd ≈ 20.5; 5 sds either side.
        for count in counts { XCTAssertEqual(Double(count), 600, accuracy: 103) }
        XCTAssertEqual(FederatedAveraging(clientFraction: 0.01).sampledClients(round: 0, workers: 10, seed: 7).count, 1)
    }

    private func withBuffers<R>(_ models: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) -> R) -> R {
        var buffers: [UnsafeBufferPointer<Float>] = []
        func recurse(_ index: Int) -> R {
            if index == models.count { return body(buffers) }
            return models[index].withUnsafeBufferPointer {
                buffers.append($0)
                return recurse(index + 1)
            }
        }
        return recurse(0)
    }
}
