import Algorithms
import Datasets
import LearningCore
import Optimizers
import XCTest

/// Ditto's and APFL's private updates against the papers' rules computed here by hand, on the
/// same mini-batches (the personal stream is seeded seed ^ 0x5E50A1). Tolerance 1e-6 relative:
/// the same Float32 operations, summed in another order.
final class PersonalUpdateTests: XCTestCase {
    private let network = Network(spec: ModelSpec(widths: [20, 6, 10]))
    private lazy var shard = SyntheticClassification(featureCount: 20, trainCount: 64, testCount: 1).examples(
        Array(0..<64))
    private let rate = 0.2

    private func gradient(_ sampler: inout ShardSampler, at x: [Float]) -> [Float] {
        let workspace = NetworkWorkspace(network: network, capacity: 8)
        sampler.fillNextBatch(workspace, batchSize: 8)
        var g = [Float](repeating: 0, count: x.count)
        _ = x.withUnsafeBufferPointer { p in
            g.withUnsafeMutableBufferPointer { gp in
                workspace.lossAndGradient(parameters: p.baseAddress!, gradient: gp.baseAddress!, batchSize: 8)
            }
        }
        return g
    }

    private func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        let norm = b.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertLessThan((difference / norm).squareRoot(), 1e-6, file: file, line: line)
    }

    private func trainers(_ settings: PersonalizationSettings, steps: Int) -> (LocalTrainer, PersonalTrainer) {
        let optimizer = OptimizerSettings(schedule: .constant(rate))
        let start = network.initialParameters(seed: 1)
        return (
            LocalTrainer(
                network: network, shard: shard, batchSize: 8, localSteps: steps, optimizer: optimizer, seed: 1,
                rank: 0, rounds: 4),
            PersonalTrainer(
                settings: settings, network: network, shard: shard, batchSize: 8, optimizer: optimizer, seed: 1,
                rank: 0, batchNorm: BatchNormSettings(), localSteps: steps, head: [], initial: start, rounds: 4)
        )
    }

    /// Ditto (Li et al., ICML 2021, Algorithm 1): v ← v − η(∇F(v) + λ(v − wᵗ)), wᵗ the shared model
    /// the round started from, for each local step; here after a first round has moved w away from v.
    func testDitto_PersonalStepsPullTowardsTheRoundsSharedModel() {
        var settings = PersonalizationSettings(algorithm: .ditto)
        settings.dittoLambda = 0.7
        var (shared, personal) = trainers(settings, steps: 2)
        var w = network.initialParameters(seed: 1)
        var v = w
        var sampler = ShardSampler(shard: shard, seed: 1 ^ 0x5E50_A1, rank: 0)
        for round in 1...2 {
            let anchor = w
            _ = personal.trainRound(&w, shared: &shared, round: round, proximal: nil)
            for _ in 0..<2 {
                let g = gradient(&sampler, at: v)
                for i in v.indices {
                    v[i] -= Float(rate) * (g[i] + Float(settings.dittoLambda) * (v[i] - anchor[i]))
                }
            }
        }
        assertClose(personal.personal!, v)
        XCTAssertNotEqual(v, w)
    }

    /// APFL (Deng et al. 2020, Algorithm 1): with u = αv + (1 − α)w and g = ∇L(u),
    /// v ← v − η·α·g and α ← clamp(α − η_α·⟨g, v − w⟩, 0, 1) (the gradient of L(u) in α is
    /// ⟨∇L(u), v − w⟩), after the shared model's own steps of the round. α is checked to 1e-6
    /// absolute (u is rounded to Float32 in another order, so g differs at 1e-7 relative), against
    /// a total movement of about 0.1 that a sign error would reverse.
    func testAPFL_PersonalModelAndMixtureWeight() {
        var settings = PersonalizationSettings(algorithm: .apfl)
        settings.apflAlpha = 0.4
        settings.apflAlphaLearningRate = 0.5
        var (shared, personal) = trainers(settings, steps: 2)
        var w = network.initialParameters(seed: 1)
        var v = w
        var alpha = settings.apflAlpha
        var sampler = ShardSampler(shard: shard, seed: 1 ^ 0x5E50_A1, rank: 0)
        var moved = 0.0
        for round in 1...2 {
            _ = personal.trainRound(&w, shared: &shared, round: round, proximal: nil)
            for _ in 0..<2 {
                var u = v
                for i in u.indices { u[i] = Float(alpha) * v[i] + Float(1 - alpha) * w[i] }
                let g = gradient(&sampler, at: u)
                var inner = 0.0
                for i in g.indices { inner += Double(g[i]) * (Double(v[i]) - Double(w[i])) }
                for i in v.indices { v[i] -= Float(rate * alpha) * g[i] }
                let next = min(max(alpha - settings.apflAlphaLearningRate * inner, 0), 1)
                moved += abs(next - alpha)
                alpha = next
            }
        }
        XCTAssertGreaterThan(moved, 1e-2, "α must move for the check to mean anything")
        XCTAssertEqual(try XCTUnwrap(personal.report.alpha), alpha, accuracy: 1e-6)
        assertClose(personal.personal!, v)
        // The deployed model is the mixture.
        var mixture = v
        for i in mixture.indices { mixture[i] = Float(alpha) * v[i] + Float(1 - alpha) * w[i] }
        assertClose(personal.deployed(w), mixture)
    }
}

/// The personalization strategies as values: what each keeps private, what it refuses, and that
/// the shared-model-only ones train exactly as the plain trainer does.
final class PersonalizationStrategyTests: XCTestCase {
    func testPrivateLayers_HeadForFedPerAndFedRep_BatchNormForFedBN() throws {
        let mlp = Network(spec: ModelSpec(widths: [20, 6, 10], batchNorm: true))
        let last = "layers.\(mlp.layers.count - 1)"
        XCTAssertEqual(PersonalizationSettings.Algorithm.fedPer.strategyType.privateLayers(of: mlp), [last])
        XCTAssertEqual(PersonalizationSettings.Algorithm.fedRep.strategyType.privateLayers(of: mlp), [last])
        let batchNorm = PersonalizationSettings.Algorithm.fedBN.strategyType.privateLayers(of: mlp)
        XCTAssertFalse(batchNorm.isEmpty)
        for name in batchNorm {
            let index = try XCTUnwrap(Int(name.dropFirst("layers.".count)))
            XCTAssertTrue(mlp.layers[index] is BatchNorm, name)
        }
        XCTAssertEqual(batchNorm.count, mlp.layers.filter { $0 is BatchNorm }.count)
        for algorithm in [PersonalizationSettings.Algorithm.none, .localOnly, .fineTune, .ditto, .apfl, .additive] {
            XCTAssertEqual(algorithm.strategyType.privateLayers(of: mlp), [], "\(algorithm)")
        }
    }

    func testRefusals_NameTheReason() {
        let plain = PersonalizationRunFacts(modelHasBatchNorm: false, communicates: true, hasPrivateLayers: false)
        let withBatchNorm = PersonalizationRunFacts(modelHasBatchNorm: true, communicates: true, hasPrivateLayers: true)
        XCTAssertEqual(
            PersonalizationSettings.Algorithm.localOnly.strategyType.refusal(plain),
            "local-only means no communication: use --topology solo without --federated")
        XCTAssertNotNil(PersonalizationSettings.Algorithm.fedPer.strategyType.refusal(plain))
        XCTAssertNil(PersonalizationSettings.Algorithm.fedPer.strategyType.refusal(withBatchNorm))
        XCTAssertNotNil(PersonalizationSettings.Algorithm.fedBN.strategyType.refusal(plain))
        XCTAssertNotNil(PersonalizationSettings.Algorithm.apfl.strategyType.refusal(withBatchNorm))
        XCTAssertNotNil(PersonalizationSettings.Algorithm.additive.strategyType.refusal(withBatchNorm))
        for algorithm in PersonalizationSettings.Algorithm.allCases where algorithm != .localOnly {
            let facts = PersonalizationRunFacts(
                modelHasBatchNorm: algorithm == .fedBN, communicates: true, hasPrivateLayers: true)
            XCTAssertNil(algorithm.strategyType.refusal(facts), "\(algorithm)")
        }
    }

    /// FedPer and FedBN train the shared model as the plain trainer does, bit for bit, and deploy
    /// it unchanged.
    func testSharedModelStrategies_TrainAsThePlainTrainer() {
        let network = Network(spec: ModelSpec(widths: [20, 6, 10]))
        let shard = SyntheticClassification(featureCount: 20, trainCount: 64, testCount: 1).examples(Array(0..<64))
        let optimizer = OptimizerSettings(schedule: .constant(0.1), momentumKind: .heavyBall, momentum: 0.9)
        func trainer() -> LocalTrainer {
            LocalTrainer(
                network: network, shard: shard, batchSize: 8, localSteps: 3, optimizer: optimizer, seed: 5, rank: 1,
                rounds: 3)
        }
        var plain = trainer()
        var expected = network.initialParameters(seed: 5)
        for round in 0..<3 { _ = plain.train(&expected, round: round) }
        for algorithm in [PersonalizationSettings.Algorithm.none, .fedPer, .fedBN, .localOnly] {
            var shared = trainer()
            var strategy = PersonalizationSettings(algorithm: algorithm).makeStrategy(
                PersonalizationContext(
                    network: network, shard: shard, batchSize: 8, optimizer: optimizer, seed: 5, rank: 1,
                    batchNorm: BatchNormSettings(), localSteps: 3, head: [],
                    initial: network.initialParameters(seed: 5),
                    rounds: 3))
            var x = network.initialParameters(seed: 5)
            for round in 1...3 { _ = strategy.trainRound(&x, shared: &shared, round: round, proximal: nil) }
            XCTAssertEqual(x, expected, "\(algorithm)")
            XCTAssertEqual(strategy.deployed(x), x, "\(algorithm)")
            XCTAssertNil(strategy.personal)
        }
    }
}
