import Algorithms
import Datasets
import LearningCore
import XCTest

@testable import Machines
@testable import Runtime

/// A job's evaluation split in two parts (computed at once by the runner, on two threads with
/// evaluators of their own) must give the in-line evaluation's result to the bit: x̄ on the test
/// set and the training subset, and every worker's accuracy, with uneven chunks, and with no
/// workers (the parts then cut x̄'s own chunks).
final class EvaluationRunnerTests: XCTestCase {
    private func evaluation(network: Network, test: Dataset, train: Dataset?) -> AverageModelEvaluation {
        AverageModelEvaluation(
            test: Evaluator(network: network, dataset: test, chunkSize: 70),
            train: train.map { Evaluator(network: network, dataset: $0, chunkSize: 70) },
            workers: Evaluator(network: network, dataset: test.subset(Array(0..<150)), chunkSize: 70))
    }

    func testParts_CombineToTheInlineResult_AndTheRunnerGivesIt() {
        let network = Network(spec: ModelSpec(widths: [20, 16, 10]))
        let data = SyntheticClassification(seed: 6, featureCount: 20, trainCount: 97, testCount: 333)
        let test = data.examples(Array(0..<333), test: true)
        let train = data.examples(Array(0..<97))
        let models = (0..<4).map { rank -> [Float] in
            var x = network.initialParameters(seed: 2)
            var generator = SplitMix64(seed: UInt64(20 + rank))
            for i in x.indices { x[i] += Float(generator.nextStandardNormal() * 0.3) }
            return x
        }
        for (train, workers) in [(train, Array(models.dropFirst())), (nil, []), (train, [])] as [(Dataset?, [[Float]])]
        {
            let evaluation = evaluation(network: network, test: test, train: train)
            let job = EvaluationJob(round: 3, average: models[0], workers: workers)
            let inline = evaluation.run(job)
            let parts = [evaluation.part(0, of: job), evaluation.replica().part(1, of: job)]
            XCTAssertFalse(parts[0].sums.isEmpty)
            XCTAssertFalse(parts[1].sums.isEmpty, "both parts get work")
            XCTAssertTrue(Set(parts[0].sums.keys).isDisjoint(with: parts[1].sums.keys))
            let combined = evaluation.combine(parts, of: job)
            XCTAssertEqual(combined, inline)
            XCTAssertEqual(combined.testLoss.bitPattern, inline.testLoss.bitPattern)
            XCTAssertEqual(inline.workerAccuracies.count, workers.count)
            let copies = ModelCopies()
            let runner = EvaluationRunner(evaluation, returningModelsTo: copies)
            runner.submit(job)
            runner.close()
            XCTAssertEqual(runner.drain(), [inline], "train subset \(train != nil), \(workers.count) workers")
            XCTAssertEqual(
                copies.keptBytes, (1 + workers.count) * network.parameterCount * 4, "the job's models came back")
        }
    }
}

/// `ModelCopies`: a copy holds the values, whether it reuses a returned array or not; a returned
/// array of the right length is reused in place; one still shared elsewhere is copied on write,
/// so its other holder keeps its values; at most `capacityBytes` wait for reuse.
final class ModelCopiesTests: XCTestCase {
    func testCopies_HoldTheValues_ReuseReturnedStorage_AndKeepTheCap() {
        let copies = ModelCopies(capacityBytes: 3 * 1_000 * 4)
        let source = (0..<1_000).map { Float($0) * 0.5 }
        let first = source.withUnsafeBufferPointer { copies.copy($0) }
        XCTAssertEqual(first, source)
        let storage = first.withUnsafeBufferPointer { $0.baseAddress }
        copies.recycle([first])
        // `first` is still held here, so the reuse copies on write: `first` keeps its values.
        let other = source.map { -$0 }
        let second = other.withUnsafeBufferPointer { copies.copy($0) }
        XCTAssertEqual(second, other)
        XCTAssertEqual(first, source, "a shared returned array was overwritten")
        XCTAssertEqual(copies.keptBytes, 0)
        // Returned and no longer held: its own storage is rewritten.
        var unique: [Float]? = source.withUnsafeBufferPointer { copies.copy($0) }
        let uniqueStorage = unique!.withUnsafeBufferPointer { $0.baseAddress }
        copies.recycle([unique!])
        unique = nil
        let third = other.withUnsafeBufferPointer { copies.copy($0) }
        XCTAssertEqual(third, other)
        XCTAssertEqual(third.withUnsafeBufferPointer { $0.baseAddress }, uniqueStorage, "not reused in place")
        _ = storage
        // Another length is never handed out for this one; the cap bounds what is kept.
        copies.recycle([[Float](repeating: 1, count: 10)])
        let shorter = [Float](repeating: 2, count: 5)
        XCTAssertEqual(shorter.withUnsafeBufferPointer { copies.copy($0) }, shorter)
        copies.recycle((0..<5).map { _ in [Float](repeating: 0, count: 1_000) })
        XCTAssertEqual(copies.keptBytes, 10 * 4 + 2 * 1_000 * 4, "the cap of 3 models")
        XCTAssertEqual([Float]().withUnsafeBufferPointer { copies.copy($0) }, [])
    }
}
