import XCTest
import _TestSupport

@testable import LearningCore

/// Batch norm, ghost batch norm, convolution and pooling against finite differences, hand-computed
/// cases and direct (loop) oracles.
final class BatchNormTests: XCTestCase {
    // MARK: finite differences (tolerances as in GradientTests)

    func testBatchNormMLP_TrainMode_MatchesFiniteDifferences() {
        let spec = ModelSpec(widths: [6, 9, 8, 3], batchNorm: true)
        checkGradient(spec: spec, batchSize: 8, seed: 11)
    }

    func testGhostBatchNormMLP_TrainMode_MatchesFiniteDifferences() {
        let spec = ModelSpec(widths: [6, 9, 8, 3], batchNorm: true)
        checkGradient(spec: spec, batchSize: 12, seed: 12, normalization: .batchStatistics(ghostBatchSize: 4))
    }

    func testBatchNormMLP_EvalMode_MatchesFiniteDifferences() {
        let spec = ModelSpec(widths: [6, 9, 8, 3], activation: .tanh, batchNorm: true)
        checkGradient(spec: spec, batchSize: 5, seed: 13, normalization: .runningStatistics)
    }

    /// A two-stage CNN (conv, batch norm, ReLU, pool, twice; dense head) in both modes and with ghosts.
    func testCNN_MatchesFiniteDifferences() throws {
        let spec = try ModelSpec(parsing: "cnn:8x8x2-3-4-5")
        for mode in [
            NormalizationMode.batchStatistics(ghostBatchSize: nil), .batchStatistics(ghostBatchSize: 3),
            .runningStatistics,
        ] {
            checkGradient(spec: spec, batchSize: 6, seed: 14, normalization: mode, h: 3e-3)
        }
        checkGradient(spec: try ModelSpec(parsing: "cnn:8x8x1-3-5:nobn"), batchSize: 4, seed: 15, h: 3e-3)
    }

    /// The CNN's exact H·v (R-operators of convolution, batch norm, ReLU and pooling) against
    /// central differences of the gradient, in both batch-norm modes and with ghost batches.
    /// A difference quotient of the gradient is only meaningful when no ReLU input changes sign
    /// and no pooling window changes its maximum between x − hv and x + hv (a switch makes the
    /// gradient jump), so the test asserts that first. h = 1e-3 keeps Float32 rounding of the
    /// gradient, O(ε/h) ≈ 1e-4 relative, well below the accepted 2e-3 relative to ‖Hv‖; a wrong or
    /// missing R-term is off by O(1).
    func testCNNHessianVectorProduct_MatchesFiniteDifferences() throws {
        let network = Network(spec: try ModelSpec(parsing: "cnn:8x8x2-3-4-5"))
        let batch = 6
        var generator = SplitMix64(seed: 21)
        var parameters = network.initialParameters(seed: 21)
        randomizeRunningStatistics(&parameters, layout: network.layout, generator: &generator)
        let inputs = (0..<(batch * network.inputWidth)).map { _ in Float(generator.nextStandardNormal()) }
        let labels = (0..<batch).map { Int32($0 % 5) }
        let state = Set(network.stateRanges.flatMap { $0 })
        var direction = (0..<parameters.count).map { state.contains($0) ? 0 : Float(generator.nextStandardNormal()) }
        let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
        direction = direction.map { $0 / norm }  // unit length, so h is the step's length
        let workspace = NetworkWorkspace(network: network, capacity: batch)
        let curvature = CurvatureWorkspace(network: network, capacity: batch)
        inputs.withUnsafeBufferPointer { curvature.input.update(from: $0.baseAddress!, count: inputs.count) }
        labels.withUnsafeBufferPointer { curvature.labels.update(from: $0.baseAddress!, count: batch) }
        for mode in [
            NormalizationMode.runningStatistics, .batchStatistics(ghostBatchSize: nil),
            .batchStatistics(ghostBatchSize: 2),
        ] {
            var product = [Float](repeating: 0, count: parameters.count)
            curvature.hessianVectorProduct(
                parameters: parameters, direction: direction, product: &product, batchSize: batch, normalization: mode)
            XCTAssertTrue(state.allSatisfy { product[$0] == 0 }, "H·v must be zero on running statistics")
            let h: Float = 1e-3
            var patterns: [[UInt8]] = []
            var gradients: [[Float]] = []
            for sign: Float in [-1, 0, 1] {
                var shifted = parameters
                shifted.addScaled(direction, by: sign * h)
                gradients.append(
                    workspace.lossAndGradient(parameters: shifted, inputs: inputs, labels: labels, normalization: mode)
                        .gradient)
                patterns.append(kinkPattern(workspace, batchSize: batch))
            }
            XCTAssertEqual(patterns[0], patterns[1], "\(mode): the difference straddles a kink; pick another seed")
            XCTAssertEqual(patterns[2], patterns[1], "\(mode): the difference straddles a kink; pick another seed")
            let numeric = zip(gradients[2], gradients[0]).map { ($0 - $1) / (2 * h) }
            XCTAssertLessThan(relativeDistance(product, numeric), 2e-3, "\(mode)")
        }
    }

    // MARK: ghost batch norm

    private func randomBatch(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(generator.nextStandardNormal() * 2 + 0.5) }
    }

    /// virtualBatchSize = batch size is plain batch norm, bit for bit: loss, gradient, running statistics.
    func testGhostOfWholeBatch_EqualsPlainBatchNormExactly() throws {
        let network = Network(spec: try ModelSpec(parsing: "cnn:8x8x1-3-4-5"))
        let parameters = network.initialParameters(seed: 3)
        let batch = 8
        let inputs = randomBatch(batch * network.inputWidth, seed: 4)
        let labels = (0..<batch).map { Int32($0 % 5) }
        let workspace = NetworkWorkspace(network: network, capacity: batch)
        let plain = workspace.lossAndGradient(parameters: parameters, inputs: inputs, labels: labels)
        let ghost = workspace.lossAndGradient(
            parameters: parameters, inputs: inputs, labels: labels,
            normalization: .batchStatistics(ghostBatchSize: batch))
        XCTAssertEqual(plain.loss, ghost.loss)
        XCTAssertEqual(plain.gradient, ghost.gradient)
        var statesAfter: [[Float]] = []
        for (ghostSize, rule) in [(nil, RunningStatisticsRule.sequential), (batch, .sequential), (batch, .averaged)] {
            var updated = parameters
            updated.withUnsafeMutableBufferPointer { p in
                _ = workspace.lossAndGradient(
                    parameters: UnsafePointer(p.baseAddress!), gradient: .allocate(capacity: p.count), batchSize: batch)
                workspace.updateRunningStatistics(
                    parameters: p.baseAddress!, batchSize: batch, ghostBatchSize: ghostSize, rule: rule, momentum: 0.1)
            }
            statesAfter.append(updated)
        }
        XCTAssertEqual(statesAfter[0], statesAfter[1])
        XCTAssertEqual(statesAfter[0], statesAfter[2])
        XCTAssertNotEqual(statesAfter[0], parameters)
    }

    /// Each ghost batch is normalised exactly as if it were a batch of its own.
    func testGhostBatches_AreNormalisedIndependently() {
        let layer = BatchNorm(channels: 3, spatialSize: 2)
        var parameters: [Float] = [1.5, 0.5, 2, 0.1, -0.2, 0.3, 0, 0, 0, 1, 1, 1]
        let batch = 6
        let ghost = 2
        let input = randomBatch(batch * layer.inputWidth, seed: 5)
        func run(_ rows: Range<Int>, mode: NormalizationMode) -> [Float] {
            let slice = Array(input[(rows.lowerBound * 6)..<(rows.upperBound * 6)])
            var output = [Float](repeating: 0, count: slice.count)
            layer.forward(
                input: slice, output: &output, batchSize: rows.count, parameters: &parameters,
                context: LayerContext(normalization: mode))
            return output
        }
        let whole = run(0..<batch, mode: .batchStatistics(ghostBatchSize: ghost))
        let pieces = stride(from: 0, to: batch, by: ghost).flatMap {
            run($0..<($0 + ghost), mode: .batchStatistics(ghostBatchSize: nil))
        }
        XCTAssertEqual(whole, pieces)
        XCTAssertNotEqual(whole, run(0..<batch, mode: .batchStatistics(ghostBatchSize: nil)))
    }

    /// One channel, batch [1, 2, 3, 6] in ghosts of 2, momentum 0.1, from mean 0 and variance 1.
    /// Ghost means 1.5 and 4.5, unbiased variances 0.5 and 4.5; whole-batch mean 3, variance 14/3.
    func testRunningStatistics_FollowEachRuleByHand() {
        let layer = BatchNorm(channels: 1, spatialSize: 1)
        let input: [Float] = [1, 2, 3, 6]
        func update(ghost: Int, rule: RunningStatisticsRule) -> (mean: Float, variance: Float) {
            var parameters: [Float] = [1, 0, 0, 1]
            layer.updateRunningStatistics(
                input: input, batchSize: 4, ghostBatchSize: ghost, rule: rule, momentum: 0.1, parameters: &parameters)
            return (parameters[2], parameters[3])
        }
        // sequential: m = 0.9·0 + 0.1·1.5 = 0.15, then 0.9·0.15 + 0.1·4.5 = 0.585;
        //             v = 0.9·1 + 0.1·0.5 = 0.95, then 0.9·0.95 + 0.1·4.5 = 1.305.
        let sequential = update(ghost: 2, rule: .sequential)
        XCTAssertEqual(sequential.mean, 0.585, accuracy: 1e-6)
        XCTAssertEqual(sequential.variance, 1.305, accuracy: 1e-6)
        // averaged: one update with mean 3 and variance 2.5: m = 0.3, v = 0.9 + 0.25 = 1.15.
        let averaged = update(ghost: 2, rule: .averaged)
        XCTAssertEqual(averaged.mean, 0.3, accuracy: 1e-6)
        XCTAssertEqual(averaged.variance, 1.15, accuracy: 1e-6)
        // plain: m = 0.3, v = 0.9 + 0.1·14/3.
        let plain = update(ghost: 4, rule: .sequential)
        XCTAssertEqual(plain.mean, 0.3, accuracy: 1e-6)
        XCTAssertEqual(plain.variance, 0.9 + 1.4 / 3, accuracy: 1e-6)
    }

    /// Eval mode is the affine map of the running statistics; train mode ignores them.
    func testEvalModeUsesRunningStatistics_TrainModeBatchStatistics() {
        let layer = BatchNorm(channels: 2, spatialSize: 1, epsilon: 0)
        var parameters: [Float] = [2, 1, 0.5, -1, 1, 3, 4, 0.25]  // γ, β, running mean, running var
        let input: [Float] = [1, 0, 3, 6]  // rows (1, 0) and (3, 6)
        var output = [Float](repeating: 0, count: 4)
        layer.forward(
            input: input, output: &output, batchSize: 2, parameters: &parameters,
            context: LayerContext(normalization: .runningStatistics))
        // channel 0: 2·(x − 1)/2 + 0.5;  channel 1: 1·(x − 3)/0.5 − 1
        XCTAssertEqual(output, [0.5, -7, 2.5, 5])
        layer.forward(
            input: input, output: &output, batchSize: 2, parameters: &parameters,
            context: LayerContext(normalization: .batchStatistics(ghostBatchSize: nil)))
        // batch statistics: channel 0 mean 2, sd 1 → ±1; channel 1 mean 3, sd 3 → ±1.
        XCTAssertEqual(output, [-1.5, -2, 2.5, 0])
    }

    // MARK: convolution and pooling against loops

    func testConvolution_MatchesDirectLoops() {
        let layer = Convolution2D(inputChannels: 2, outputChannels: 3, height: 5, width: 4, kernelSize: 3, padding: 1)
        let parameters = randomBatch(layer.parameterCount, seed: 8)
        let batch = 2
        let input = randomBatch(batch * layer.inputWidth, seed: 9)
        var output = [Float](repeating: 0, count: batch * layer.outputWidth)
        var scratch = [Float](repeating: 0, count: layer.scratchCount)
        scratch.withUnsafeMutableBufferPointer { s in
            layer.forward(
                input: input, output: &output, batchSize: batch, parameters: parameters,
                context: LayerContext(normalization: .runningStatistics, scratch: s.baseAddress))
        }
        for n in 0..<batch {
            for o in 0..<3 {
                for y in 0..<5 {
                    for x in 0..<4 {
                        var sum = Double(parameters[3 * 2 * 9 + o])
                        for c in 0..<2 {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let (iy, ix) = (y + ky - 1, x + kx - 1)
                                    guard (0..<5).contains(iy), (0..<4).contains(ix) else { continue }
                                    sum +=
                                        Double(parameters[((o * 2 + c) * 3 + ky) * 3 + kx])
                                        * Double(input[n * 40 + (c * 5 + iy) * 4 + ix])
                                }
                            }
                        }
                        XCTAssertEqual(Double(output[n * 60 + (o * 5 + y) * 4 + x]), sum, accuracy: 1e-5)
                    }
                }
            }
        }
    }

    func testMaxPool_PicksTheWindowMaximum() {
        let layer = MaxPool2D(channels: 1, height: 2, width: 4)
        let input: [Float] = [1, 5, 2, 2, 3, 4, 2, 0]
        var output = [Float](repeating: 0, count: 2)
        layer.forward(
            input: input, output: &output, batchSize: 1, parameters: [],
            context: LayerContext(normalization: .runningStatistics))
        XCTAssertEqual(output, [5, 2])
        var inputGradient = [Float](repeating: 9, count: 8)
        var none: [Float] = []
        layer.backward(
            input: input, output: output, outputGradient: [10, 20], inputGradient: &inputGradient, batchSize: 1,
            parameters: [], parameterGradient: &none, context: LayerContext(normalization: .runningStatistics))
        XCTAssertEqual(inputGradient, [0, 10, 20, 0, 0, 0, 0, 0], "ties go to the first maximum")
    }

    func testModelSpec_ParsesCNNAndBatchNorm() throws {
        let cnn = try ModelSpec(parsing: "cnn")
        XCTAssertEqual(cnn.description, "cnn:28x28x1-16-32-10")
        XCTAssertEqual(cnn.inputWidth, 784)
        XCTAssertEqual(try ModelSpec(parsing: cnn.description), cnn)
        XCTAssertEqual(try ModelSpec(parsing: "784-100-10:bn").batchNorm, true)
        XCTAssertEqual(try ModelSpec(parsing: "784-100-10:tanh:bn").description, "784-100-10:tanh:bn")
        XCTAssertThrowsError(try ModelSpec(parsing: "cnn:28x28x1-16-32-64-10")) {
            XCTAssertTrue("\($0)".contains("divisible by 2"), "\($0)")
        }
        XCTAssertThrowsError(try ModelSpec(parsing: "cnn:28x28-16-10"))
        XCTAssertThrowsError(try ModelSpec(parsing: "784-10:bx"))
        let network = Network(spec: cnn)
        let names = network.layout.slices.map(\.name)
        XCTAssertTrue(names.contains("layers.1.running_var"))
        XCTAssertEqual(network.layout["layers.1.running_mean"]?.role, .state)
        XCTAssertEqual(network.stateRanges.count, 4)
        // Old run folders (no kind/batchNorm fields) still decode as MLPs.
        let old = try JSONDecoder().decode(ModelSpec.self, from: Data(#"{"widths":[784,10],"activation":"relu"}"#.utf8))
        XCTAssertEqual(old, ModelSpec(widths: [784, 10]))
    }

    /// Inputs whose mean (10⁴) is large against their spread (1): the batch statistics, the
    /// normalised output and the γ gradient Σg·x̂ against a Float64 two-pass reference on the same
    /// Float32 inputs. Tolerance 1e-4 relative on the variance: Float32 inputs near 10⁴ are exact,
    /// the deviations x − μ are formed with one rounding each (≈ 1e-3 absolute at 10⁴, but the same
    /// in both), and the lane sums of d² lose ≈ 1e-6. The one-pass form E[x²] − μ² loses every digit
    /// here (x² ≈ 10⁸ summed in Float32 lanes: errors of order 10 against a variance of 1).
    func testLargeMeanSmallSpread_KeepsTheVariance() {
        // Per feature (strided runs) and per channel over 32 spatial positions (unit-stride runs).
        for (channels, spatial) in [(3, 1), (2, 32)] {
            checkLargeMean(channels: channels, spatial: spatial)
        }
    }

    private func checkLargeMean(channels: Int, spatial: Int) {
        let batch = 64
        let layer = BatchNorm(channels: channels, spatialSize: spatial)
        var generator = SplitMix64(seed: 5)
        let input = (0..<(batch * channels * spatial)).map { _ in Float(10_000 + generator.nextStandardNormal()) }
        var parameters = [Float](repeating: 0, count: 4 * channels)
        for c in 0..<channels {
            parameters[c] = 1  // γ
            parameters[3 * channels + c] = 1  // running variance
        }
        var output = [Float](repeating: 0, count: input.count)
        let context = LayerContext(normalization: .batchStatistics(ghostBatchSize: nil))
        input.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { y in
                    layer.forward(
                        input: x.baseAddress!, output: y.baseAddress!, batchSize: batch, parameters: p.baseAddress!,
                        context: context)
                }
            }
        }
        var outputGradient = (0..<input.count).map { _ in Float(generator.nextStandardNormal()) }
        var parameterGradient = [Float](repeating: 0, count: 4 * channels)
        input.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                output.withUnsafeBufferPointer { y in
                    outputGradient.withUnsafeMutableBufferPointer { g in
                        parameterGradient.withUnsafeMutableBufferPointer { pg in
                            layer.backward(
                                input: x.baseAddress!, output: y.baseAddress!, outputGradient: g.baseAddress!,
                                inputGradient: nil, batchSize: batch, parameters: p.baseAddress!,
                                parameterGradient: pg.baseAddress!, context: context)
                        }
                    }
                }
            }
        }
        var updated = parameters
        input.withUnsafeBufferPointer { x in
            updated.withUnsafeMutableBufferPointer { p in
                layer.updateRunningStatistics(
                    input: x.baseAddress!, batchSize: batch, ghostBatchSize: batch, rule: .sequential, momentum: 1,
                    parameters: p.baseAddress!)
            }
        }
        for c in 0..<channels {
            let indices = (0..<batch).flatMap { row in (0..<spatial).map { (row * channels + c) * spatial + $0 } }
            let values = indices.map { Double(input[$0]) }
            let n = Double(values.count)
            let mean = values.reduce(0, +) / n
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
            XCTAssertGreaterThan(variance, 0.3, "spread ≈ 1")
            XCTAssertEqual(Double(updated[2 * channels + c]), mean, accuracy: 1e-3, "running mean")
            XCTAssertEqual(
                Double(updated[3 * channels + c]), variance * n / (n - 1),
                accuracy: 1e-4 * variance, "running (unbiased) variance, channel \(c) of \(channels)×\(spatial)")
            let inverse = 1 / (variance + 1e-5).squareRoot()
            var gammaGradient = 0.0
            for (k, index) in indices.enumerated() {
                let xHat = (values[k] - mean) * inverse
                XCTAssertEqual(Double(output[index]), xHat, accuracy: 2e-3, "x̂, channel \(c)")
                gammaGradient += Double(outputGradient[index]) * xHat
            }
            XCTAssertEqual(Double(parameterGradient[c]), gammaGradient, accuracy: 2e-3 * n.squareRoot())
        }
    }
}
