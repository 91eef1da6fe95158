import Foundation
import LearningCore
import Optimizers
import XCTest

/// Optimizer updates against hand-computed sequences (exact in Float32 for these small values,
/// compared at 1e-6 to allow one rounding per operation).
final class OptimizerTests: XCTestCase {
    private func run(_ settings: OptimizerSettings, gradients: [[Float]], start: [Float]) -> [[Float]] {
        var optimizer = Optimizer(settings: settings, parameterCount: start.count)
        var x = start
        var trajectory: [[Float]] = []
        for g in gradients {
            var scratch = g
            optimizer.apply(gradient: &scratch, to: &x)
            trajectory.append(x)
        }
        return trajectory
    }

    func testPlainSGD() {
        let t = run(.init(schedule: .constant(0.1)), gradients: [[1, -2], [0.5, 0]], start: [1, 1])
        XCTAssertEqual(t[0][0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(t[0][1], 1.2, accuracy: 1e-6)
        XCTAssertEqual(t[1][0], 0.85, accuracy: 1e-6)
    }

    func testHeavyBallMomentum() {
        // m1 = 1, x1 = 1 − 0.1·1 = 0.9; m2 = 0.9·1 + 1 = 1.9, x2 = 0.9 − 0.19 = 0.71
        let t = run(
            .init(schedule: .constant(0.1), momentumKind: .heavyBall, momentum: 0.9), gradients: [[1], [1]], start: [1])
        XCTAssertEqual(t[0][0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(t[1][0], 0.71, accuracy: 1e-6)
    }

    /// `resetState` zeroes the trace and keeps the schedule's position: after two heavy-ball steps
    /// and a reset, the third step is a first step (m = g) at step 2 of a step-decay schedule.
    func testResetState_ZeroesTheTrace_KeepsTheStep() {
        // η = 0.1 for steps 0–1, 0.01 from step 2. m1 = 1, x1 = 0.9; m2 = 1.9, x2 = 0.71; reset;
        // m3 = 1 (not 0.9·1.9 + 1 = 2.71), x3 = 0.71 − 0.01·1 = 0.70.
        var optimizer = Optimizer(
            settings: .init(schedule: .step(base: 0.1, every: 2, factor: 0.1), momentumKind: .heavyBall, momentum: 0.9),
            parameterCount: 1)
        var x: [Float] = [1]
        for _ in 0..<2 {
            var g: [Float] = [1]
            optimizer.apply(gradient: &g, to: &x)
        }
        optimizer.resetState()
        XCTAssertEqual(optimizer.step, 2)
        var g: [Float] = [1]
        optimizer.apply(gradient: &g, to: &x)
        XCTAssertEqual(x[0], 0.70, accuracy: 1e-6)
    }

    func testNesterovMomentum() {
        // m1 = 1, u1 = 1 + 0.9·1 = 1.9, x1 = 1 − 0.19 = 0.81; m2 = 1.9, u2 = 1 + 1.71 = 2.71, x2 = 0.81 − 0.271
        let t = run(
            .init(schedule: .constant(0.1), momentumKind: .nesterov, momentum: 0.9), gradients: [[1], [1]], start: [1])
        XCTAssertEqual(t[0][0], 0.81, accuracy: 1e-6)
        XCTAssertEqual(t[1][0], 0.539, accuracy: 1e-6)
    }

    func testCoupledWeightDecayPassesThroughMomentum() {
        // g' = g + 0.5·x = 0 + 1 = 1 → same as heavy ball with g = 1 at first step
        let t = run(
            .init(schedule: .constant(0.1), momentumKind: .heavyBall, momentum: 0.9, weightDecay: 0.5),
            gradients: [[0], [0]],
            start: [2])
        XCTAssertEqual(t[0][0], 1.9, accuracy: 1e-6)
        // m2 = 0.9·1 + 0.5·1.9 = 1.85; x2 = 1.9 − 0.185
        XCTAssertEqual(t[1][0], 1.715, accuracy: 1e-6)
    }

    func testDecoupledWeightDecayBypassesMomentum() {
        // x1 = 2 − 0.1·0 − 0.1·0.5·2 = 1.9; m stays 0, so x2 = 1.9 − 0.1·0.5·1.9 = 1.805
        let t = run(
            .init(
                schedule: .constant(0.1), momentumKind: .heavyBall, momentum: 0.9, weightDecay: 0.5,
                weightDecayMode: .decoupled),
            gradients: [[0], [0]], start: [2])
        XCTAssertEqual(t[0][0], 1.9, accuracy: 1e-6)
        XCTAssertEqual(t[1][0], 1.805, accuracy: 1e-6)
    }

    func testSchedules() {
        XCTAssertEqual(
            LearningRateSchedule.step(base: 1, every: 10, factor: 0.1).learningRate(atStep: 25), 0.01, accuracy: 1e-12)
        let cosine = LearningRateSchedule.cosine(base: 1, totalSteps: 100, minimum: 0)
        XCTAssertEqual(cosine.learningRate(atStep: 0), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(atStep: 50), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(atStep: 100), 0, accuracy: 1e-12)
        let warm = LearningRateSchedule.warmup(steps: 4, then: .constant(0.8))
        for (step, expected) in zip([0, 1, 2, 3, 4, 100], [0.2, 0.4, 0.6, 0.8, 0.8, 0.8]) {
            XCTAssertEqual(warm.learningRate(atStep: step), expected, accuracy: 1e-12)
        }
    }

    /// Milestones as PyTorch's MultiStepLR: × factor at each milestone reached (inclusive).
    func testMultistep() {
        let schedule = LearningRateSchedule.multistep(base: 1, milestones: [3, 5], factor: 0.1)
        for (step, expected) in zip([0, 2, 3, 4, 5, 99], [1, 1, 0.1, 0.1, 0.01, 0.01]) {
            XCTAssertEqual(schedule.learningRate(atStep: step), expected, accuracy: 1e-15, "step \(step)")
        }
        XCTAssertEqual(schedule.scaled(rate: 2, steps: 3), .multistep(base: 2, milestones: [9, 15], factor: 0.1))
    }

    /// A cosine "to the end of the run" takes the run's length less the warm-up's.
    func testCosineToTheEndOfTheRun_Resolved() {
        let schedule = LearningRateSchedule.warmup(steps: 4, then: .cosine(base: 1, totalSteps: nil, minimum: 0))
        XCTAssertEqual(
            schedule.resolved(runLength: 24), .warmup(steps: 4, then: .cosine(base: 1, totalSteps: 20, minimum: 0)))
        XCTAssertEqual(schedule.resolved(runLength: 24).learningRate(atStep: 14), 0.5, accuracy: 1e-12)
    }

    /// The round clock: steps count r·S + s (auxiliary phases of J steps spread over the round),
    /// rounds count r.
    func testScheduleClock() {
        let steps = ScheduleClock(unit: .steps, stepsPerRound: 2, rounds: 10)
        XCTAssertEqual(steps.runLength, 20)
        XCTAssertEqual((0..<2).map { steps.position(round: 3, step: $0, of: 2) }, [6, 7])
        XCTAssertEqual((0..<4).map { steps.position(round: 3, step: $0, of: 4) }, [6, 6, 7, 7])
        XCTAssertEqual((0..<3).map { steps.position(round: 3, step: $0, of: 3) }, [6, 6, 7])
        let rounds = ScheduleClock(unit: .rounds, stepsPerRound: 2, rounds: 10)
        XCTAssertEqual(rounds.runLength, 10)
        XCTAssertEqual((0..<2).map { rounds.position(round: 3, step: $0, of: 2) }, [3, 3])
    }

    /// An explicit schedule position overrides the step counter.
    func testExplicitSchedulePosition() {
        var optimizer = Optimizer(
            settings: .init(schedule: .multistep(base: 1, milestones: [5], factor: 0.5)), parameterCount: 1)
        var x: [Float] = [0]
        var g: [Float] = [1]
        optimizer.apply(gradient: &g, to: &x, scheduleStep: 7)
        XCTAssertEqual(x[0], -0.5)
        g = [1]
        optimizer.apply(gradient: &g, to: &x)
        XCTAssertEqual(x[0], -1.5, "the counter's position is 1: rate 1")
    }

    /// Older configurations have no schedule unit: they counted steps.
    func testSettingsWithoutUnit_DecodeAsSteps() throws {
        let json =
            #"{"schedule":{"constant":{"_0":0.1}},"momentumKind":"none","momentum":0,"weightDecay":0,"weightDecayMode":"coupled"}"#
        let settings = try JSONDecoder().decode(OptimizerSettings.self, from: Data(json.utf8))
        XCTAssertEqual(settings.scheduleUnit, .steps)
        XCTAssertEqual(settings.schedule, .constant(0.1))
    }

    /// The stability threshold against the optimizer itself: on f(x) = λx²/2, the iterates of
    /// this very Optimizer decay for λ 1 % below the threshold and grow for λ 1 % above, for SGD,
    /// heavy ball and Nesterov, without weight decay and with coupled and decoupled decay.
    func testStabilityThreshold_SeparatesDecayFromGrowth() {
        for kind in MomentumKind.allCases {
            for (mode, decay) in [(WeightDecayMode.coupled, 0.0), (.coupled, 0.3), (.decoupled, 0.3)] {
                let settings = OptimizerSettings(
                    schedule: .constant(0.1), momentumKind: kind, momentum: kind == .none ? 0 : 0.9,
                    weightDecay: decay, weightDecayMode: mode)
                let threshold = settings.stabilityThreshold(learningRate: 0.1).value
                func growth(_ lambda: Double) -> Double {
                    var optimizer = Optimizer(settings: settings, parameterCount: 1)
                    var x: [Float] = [1]
                    for _ in 0..<3_000 {
                        var g: [Float] = [Float(lambda) * x[0]]
                        optimizer.apply(gradient: &g, to: &x)
                        if !(abs(x[0]) < 1e6) { return .infinity }  // grown (before Float overflows)
                    }
                    return Double(abs(x[0]))
                }
                let label = "\(kind) \(mode) \(decay): threshold \(threshold)"
                XCTAssertLessThan(growth(threshold * 0.99), 1e-3, label)
                XCTAssertGreaterThan(growth(threshold * 1.01), 1e3, label)
            }
        }
        XCTAssertEqual(OptimizerSettings(schedule: .constant(0.1)).stabilityThreshold(learningRate: 0).value, .infinity)
    }
}
