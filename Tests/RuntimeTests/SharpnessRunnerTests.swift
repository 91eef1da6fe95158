import Datasets
import Diagnostics
import LearningCore
import Machines
import XCTest

@testable import Runtime

/// The runner measures each model's two halves at once on two threads, each with a surface of its
/// own; its records must be the sequential probe's, to the bit, for x̄ (with average-direction
/// sharpness from the workers' models) and for a worker's own model, with per-layer curvature.
final class SharpnessRunnerTests: XCTestCase {
    func testConcurrentHalves_GiveTheSequentialRecords() {
        let network = Network(spec: ModelSpec(widths: [20, 16, 12, 10]))
        let data = SyntheticClassification(seed: 5, featureCount: 20, trainCount: 96, testCount: 1).examples(
            Array(0..<96))
        var settings = SharpnessSettings()
        settings.lanczosIterations = 12
        settings.perLayerIterations = 6
        settings.workers = [1]
        let workers = (0..<3).map { rank -> [Float] in
            var x = network.initialParameters(seed: 1)
            var generator = SplitMix64(seed: UInt64(10 + rank))
            for i in x.indices { x[i] += Float(generator.nextStandardNormal() * 0.02) }
            return x
        }
        let average = (0..<workers[0].count).map { i in workers.reduce(0) { $0 + $1[i] } / 3 }
        let runner = SharpnessRunner(network: network, evaluationSet: data, settings: settings, seed: 4)
        runner.submit(
            SharpnessJob(round: 7, learningRate: 0.1, average: average, workers: workers, workerRanks: [0, 1, 2]))
        runner.waitUntilIdle()
        let records = runner.drain()
        runner.close()
        let surface = NetworkLoss(network: network, dataset: data)
        let expected = [
            SharpnessProbe.measure(
                surface, at: average, model: "average", round: 7, learningRate: 0.1, settings: settings,
                workers: workers, seed: 4 &+ 7),
            SharpnessProbe.measure(
                surface, at: workers[1], model: "worker 1", round: 7, learningRate: 0.1, settings: settings,
                seed: 4 &+ 7),
        ]
        XCTAssertEqual(records.count, 2)
        for (record, reference) in zip(records, expected) {
            var record = record
            XCTAssertNotNil(record.seconds)
            record.seconds = nil
            XCTAssertEqual(record, reference, reference.model)
            XCTAssertEqual(record.layers.count, 3, "one per weight matrix")
            XCTAssertGreaterThan(record.hessianVectorProducts, settings.lanczosIterations / 2)
        }
        XCTAssertNotNil(records[0].averageDirectionSharpness)
        XCTAssertNil(records[1].averageDirectionSharpness)
    }
}
