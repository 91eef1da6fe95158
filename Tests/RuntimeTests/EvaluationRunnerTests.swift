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
            let runner = EvaluationRunner(evaluation)
            runner.submit(job)
            runner.close()
            XCTAssertEqual(runner.drain(), [inline], "train subset \(train != nil), \(workers.count) workers")
        }
    }
}
