import Algorithms
import Datasets
import LearningCore
import Optimizers
import Runtime
import XCTest

/// The steps a trainer takes use the rates of the schedule positions the round clock gives them:
/// checked against plain SGD by hand (same batches, x ← x − η·g with η computed here).
/// Tolerance: both sides run the same Float32 operations in the same order; 1e-6 relative allows
/// for BLAS's summation order in the update.
final class ScheduleClockTests: XCTestCase {
    private let network = Network(spec: ModelSpec(widths: [20, 6, 10]))
    private lazy var shard = SyntheticClassification(featureCount: 20, trainCount: 64, testCount: 1).examples(
        Array(0..<64))

    /// Plain SGD by hand over `rates`, drawing batches as the trainer does.
    private func byHand(_ start: [Float], rates: [Double], seed: UInt64 = 1) -> [Float] {
        var sampler = ShardSampler(shard: shard, seed: seed, rank: 0)
        let workspace = NetworkWorkspace(network: network, capacity: 8)
        var x = start
        var gradient = [Float](repeating: 0, count: x.count)
        for rate in rates {
            sampler.fillNextBatch(workspace, batchSize: 8)
            _ = x.withUnsafeBufferPointer { p in
                gradient.withUnsafeMutableBufferPointer { g in
                    workspace.lossAndGradient(parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: 8)
                }
            }
            for i in x.indices { x[i] -= Float(rate) * gradient[i] }
        }
        return x
    }

    private func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        var difference = 0.0
        var norm = 0.0
        for i in a.indices {
            difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
            norm += Double(b[i]) * Double(b[i])
        }
        XCTAssertLessThan((difference / norm).squareRoot(), 1e-6, file: file, line: line)
    }

    /// A client that sat out rounds 0–2 (partial participation) trains round 3 at the round's
    /// rates, not at the rates of its own first steps.
    func testSkippedRounds_TrainAtTheRoundsRates() {
        let settings = OptimizerSettings(schedule: .multistep(base: 0.4, milestones: [4, 7], factor: 0.5))
        var trainer = LocalTrainer(
            network: network, shard: shard, batchSize: 8, localSteps: 2, optimizer: settings, seed: 1, rank: 0,
            rounds: 10)
        let start = network.initialParameters(seed: 1)
        var x = start
        let result = trainer.train(&x, round: 3)
        // Positions 6 and 7: one milestone (4) passed, then two.
        XCTAssertEqual(result.learningRate, 0.2)
        assertClose(x, byHand(start, rates: [0.2, 0.1]))
    }

    /// FedRep's head phase (J = 4 steps in a round of S = 2) runs the schedule at the rounds'
    /// speed: positions r·S + ⌊s·S/J⌋, not a step counter of its own that runs J/S times faster.
    func testHeadPhase_FollowsTheRoundClock() {
        let settings = OptimizerSettings(schedule: .step(base: 0.4, every: 3, factor: 0.5))
        var trainer = LocalTrainer(
            network: network, shard: shard, batchSize: 8, localSteps: 2, optimizer: settings, seed: 1, rank: 0,
            rounds: 10)
        let start = network.initialParameters(seed: 1)
        var x = start
        _ = trainer.train(&x, round: 1, steps: 4, phase: 1)
        // Positions 2, 2, 3, 3 → 0.4, 0.4, 0.2, 0.2.
        assertClose(x, byHand(start, rates: [0.4, 0.4, 0.2, 0.2]))
    }

    /// Counted in rounds, every step of a round uses the round's rate; a cosine without a length
    /// spans the run's rounds.
    func testRoundsUnit_CosineOverTheRun() {
        var settings = OptimizerSettings(schedule: .cosine(base: 0.4, totalSteps: nil, minimum: 0))
        settings.scheduleUnit = .rounds
        var trainer = LocalTrainer(
            network: network, shard: shard, batchSize: 8, localSteps: 3, optimizer: settings, seed: 1, rank: 0,
            rounds: 4)
        let start = network.initialParameters(seed: 1)
        var x = start
        let result = trainer.train(&x, round: 2)
        XCTAssertEqual(result.learningRate, 0.2, accuracy: 1e-12)
        assertClose(x, byHand(start, rates: [0.2, 0.2, 0.2]))
    }

    /// Fine-tuning runs at a constant rate (the base rate, or --fine-tune-lr), not from a
    /// warm-up's first step, however far the run's schedule has gone.
    func testFineTune_ConstantRate() {
        var personalization = PersonalizationSettings(algorithm: .fineTune, fineTuneSteps: 3)
        personalization.fineTuneLearningRate = 0.3
        let settings = OptimizerSettings(
            schedule: .warmup(steps: 100, then: .cosine(base: 0.4, totalSteps: nil, minimum: 0)))
        let start = network.initialParameters(seed: 1)
        var personal = PersonalTrainer(
            settings: personalization, network: network, shard: shard, batchSize: 8, optimizer: settings, seed: 1,
            rank: 0, batchNorm: BatchNormSettings(), localSteps: 1, head: [], initial: start, rounds: 200)
        let tuned = personal.deployed(start)
        assertClose(tuned, byHand(start, rates: [0.3, 0.3, 0.3], seed: 1 ^ 0x5E50_A1 ^ 0xF1E7))
    }
}
