import LearningCore
import Optimizers
import XCTest

/// The optimizer's last two operations, u ← −η·u and x ← x + u, run as one pass
/// (`VectorKernels.addRoundedProducts`) with the bits of the two BLAS calls they replace.
final class FusedStepTests: XCTestCase {
    private func randomValues(_ count: Int, _ generator: inout SplitMix64) -> [Float] {
        (0..<count).map { _ in
            let magnitude = Float(generator.next() % 1_000_000) / 1_000_000
            let exponent = Int(generator.next() % 60) - 40  // subnormal-adjacent to large
            let sign: Float = generator.next() % 2 == 0 ? 1 : -1
            return sign * magnitude * Float(sign: .plus, exponent: exponent, significand: 1)
        }
    }

    func testKernel_MatchesScalingThenAdding_AtEveryLengthAndOffset() {
        var generator = SplitMix64(seed: 21)
        for count in [0, 1, 7, 15, 16, 17, 31, 33, 100, 1_023, 4_099] {
            for offset in [0, 1, 3] {
                let x = randomValues(count + offset, &generator)
                let y = randomValues(count + offset, &generator)
                for a: Float in [-0.05, 1, -3.7e-3, 1e-30, -2.5e7] {
                    var expectedScaled = Array(x[offset...])
                    var expected = Array(y[offset...])
                    if count > 0 {
                        expectedScaled.withUnsafeMutableBufferPointer {
                            BLAS.scal(count: count, alpha: a, x: $0.baseAddress!)
                        }
                        expected.addScaled(expectedScaled, by: 1)
                    }
                    var actual = Array(y[offset...])
                    x.withUnsafeBufferPointer { xs in
                        actual.withUnsafeMutableBufferPointer {
                            VectorKernels.addRoundedProducts(a, xs.baseAddress! + offset, to: $0.baseAddress!, count)
                        }
                    }
                    XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "count \(count), a \(a)")
                }
            }
        }
    }

    /// Every optimizer setting, fused against the same chain ending in an explicit
    /// `ScaleByLearningRate` (`fusingTheScaling: false`, what `Optimizer(settings:)` built before):
    /// bit for bit over 40 steps, schedules that pass through η = 0 included.
    func testFusedOptimizer_MatchesTheExplicitChain() {
        let schedules: [LearningRateSchedule] = [
            .constant(0.05), .warmup(steps: 5, then: .cosine(base: 0.1, totalSteps: 30, minimum: 0)),
            .step(base: 0.2, every: 7, factor: 0.3),
        ]
        var generator = SplitMix64(seed: 8)
        for schedule in schedules {
            for momentumKind in MomentumKind.allCases {
                for (weightDecay, mode) in [(0.0, WeightDecayMode.coupled), (1e-3, .coupled), (1e-3, .decoupled)] {
                    for clip: Double? in [nil, 0.5] {
                        let settings = OptimizerSettings(
                            schedule: schedule, momentumKind: momentumKind, momentum: 0.9, weightDecay: weightDecay,
                            weightDecayMode: mode, gradientClipNorm: clip)
                        let label =
                            "\(schedule), \(momentumKind), decay \(weightDecay) \(mode), clip \(String(describing: clip))"
                        let count = 1_031
                        var fused = Optimizer(settings: settings, parameterCount: count)
                        var explicit = Optimizer(settings: settings, parameterCount: count, fusingTheScaling: false)
                        var x = randomValues(count, &generator)
                        var y = x
                        for _ in 0..<40 {
                            let gradient = randomValues(count, &generator)
                            var g1 = gradient
                            var g2 = gradient
                            fused.apply(gradient: &g1, to: &x)
                            explicit.apply(gradient: &g2, to: &y)
                        }
                        XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), label)
                    }
                }
            }
        }
    }
}
