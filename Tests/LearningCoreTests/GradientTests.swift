import XCTest
import _TestSupport

@testable import LearningCore

/// Finite-difference checks of every layer's gradient.
///
/// Method: central differences (L(x+h·e) − L(x−h·e)) / 2h evaluated in Float64 on a Float64 copy of
/// the forward pass is not available (the network is Float32), so we use h = 1e-2 on Float32 with
/// the loss accumulated in Double. The truncation error is O(h²·L''') ≈ 1e-4 for these smooth,
/// small-scale cases and the rounding error is O(ε_f32·|L|/h) ≈ 1e-5; we therefore accept a
/// relative error of 2e-2 per coordinate with an absolute floor of 2e-4. A wrong gradient (a
/// transposed weight, a missing term, a sign) is off by O(1) relative, far outside this band.
/// ReLU kinks are avoided by checking that no pre-activation lies within h of zero.
final class GradientTests: XCTestCase {
    func testLinearSoftmax_MatchesFiniteDifferences() {
        checkGradient(spec: ModelSpec(widths: [7, 4]), batchSize: 5, seed: 1)
    }

    func testReLUNetwork_MatchesFiniteDifferences() {
        checkGradient(spec: ModelSpec(widths: [6, 9, 8, 3], activation: .relu), batchSize: 4, seed: 2)
    }

    func testTanhNetwork_MatchesFiniteDifferences() {
        checkGradient(spec: ModelSpec(widths: [5, 7, 4], activation: .tanh), batchSize: 3, seed: 3)
    }

    func testSoftmaxCrossEntropy_IsStableForHugeLogits() {
        let logits: [Float] = [1e30, -1e30, 0, 88, 89, 90]
        let labels: [Int32] = [0, 2]
        var gradient = [Float](repeating: 0, count: 6)
        let result = logits.withUnsafeBufferPointer { z in
            labels.withUnsafeBufferPointer { y in
                gradient.withUnsafeMutableBufferPointer { g in
                    SoftmaxCrossEntropy.evaluate(
                        logits: z.baseAddress!, labels: y.baseAddress!, batchSize: 2, classCount: 3,
                        gradient: g.baseAddress!)
                }
            }
        }
        XCTAssertTrue(result.lossSum.isFinite)
        // Row 2: loss = log(e^-2 + e^-1 + 1) ≈ 0.40761
        XCTAssertEqual(result.lossSum, 0.4076059644, accuracy: 1e-5)
        XCTAssertTrue(gradient.allSatisfy(\.isFinite))
        XCTAssertEqual(result.correct, 2)
    }

    func testModelSpec_ParsesAndRejects() throws {
        XCTAssertEqual(try ModelSpec(parsing: "784-256-256-10").widths, [784, 256, 256, 10])
        XCTAssertEqual(try ModelSpec(parsing: "784-10:tanh").activation, .tanh)
        XCTAssertThrowsError(try ModelSpec(parsing: "784")) { XCTAssertTrue("\($0)".contains("at least")) }
        XCTAssertThrowsError(try ModelSpec(parsing: "784-x-10")) { XCTAssertTrue("\($0)".contains("'x'")) }
        XCTAssertThrowsError(try ModelSpec(parsing: "784-10:gelu")) { XCTAssertTrue("\($0)".contains("gelu")) }
    }

    func testLayout_NamesEverySliceContiguously() {
        let network = Network(spec: ModelSpec(widths: [784, 256, 256, 10]))
        XCTAssertEqual(network.parameterCount, 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10)
        XCTAssertEqual(
            network.layout.slices.map(\.name),
            [
                "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "layers.4.weight",
                "layers.4.bias",
            ])
        XCTAssertEqual(network.layout["layers.2.weight"]?.offset, 784 * 256 + 256)
    }

    func testInitialisation_IsSeededAndScaled() {
        let network = Network(spec: ModelSpec(widths: [400, 300, 10]))
        let a = network.initialParameters(seed: 9)
        XCTAssertEqual(a, network.initialParameters(seed: 9))
        XCTAssertNotEqual(a, network.initialParameters(seed: 10))
        let first = network.layout["layers.0.weight"]!
        let variance = a[first.range].reduce(0.0) { $0 + Double($1 * $1) } / Double(first.count)
        XCTAssertEqual(variance, 2.0 / 400, accuracy: 0.1 * 2.0 / 400, "He normal variance 2/fan_in")
        let last = network.layout["layers.2.weight"]!
        let limit = Float((6.0 / 310).squareRoot())
        XCTAssertTrue(a[last.range].allSatisfy { abs($0) <= limit }, "Glorot uniform bound")
        XCTAssertTrue(a[network.layout["layers.0.bias"]!.range].allSatisfy { $0 == 0 })
    }
}

/// With batch norm, `normalization` picks the training loss (batch or ghost statistics) or the
/// inference loss (running statistics, set to random positive values here); state coordinates
/// must get a zero gradient and are not perturbed.
func checkGradient(
    spec: ModelSpec, batchSize: Int, seed: UInt64,
    normalization: NormalizationMode = .batchStatistics(ghostBatchSize: nil), h: Float = 1e-2,
    file: StaticString = #filePath, line: UInt = #line
) {
    let network = Network(spec: spec)
    var parameters = network.initialParameters(seed: seed)
    var generator = SplitMix64(seed: seed &+ 1)
    for i in parameters.indices { parameters[i] += Float(generator.nextStandardNormal() * 0.05) }
    let state = Set(network.stateRanges.flatMap { $0 })
    // Batch-normalised values are centred on zero, exactly where a following ReLU has its kink;
    // γ ≈ 0.5 and β ≈ 2 keep them positive (|x̂| ≤ √(n − 1)), so the difference quotient is smooth.
    for (index, layer) in network.layers.enumerated() {
        guard let norm = layer as? BatchNorm else { continue }
        for c in 0..<norm.channels {
            parameters[network.layerOffsets[index] + c] = 0.5 + Float(generator.nextStandardNormal() * 0.05)
            parameters[network.layerOffsets[index] + norm.channels + c] =
                2 + Float(generator.nextStandardNormal() * 0.05)
        }
    }
    randomizeRunningStatistics(&parameters, layout: network.layout, generator: &generator)
    let inputs = (0..<(batchSize * network.inputWidth)).map { _ in Float(generator.nextStandardNormal()) }
    let labels = (0..<batchSize).map { _ in Int32(generator.next() % UInt64(network.classCount)) }
    let workspace = NetworkWorkspace(network: network, capacity: batchSize)
    let (_, gradient) = workspace.lossAndGradient(
        parameters: parameters, inputs: inputs, labels: labels, normalization: normalization)
    for i in state { XCTAssertEqual(gradient[i], 0, "state coordinate \(i) got a gradient", file: file, line: line) }
    var checked = 0
    var straddling = 0
    let basePattern = kinkPattern(workspace, batchSize: batchSize)
    for index in stride(from: 0, to: parameters.count, by: max(1, parameters.count / 150))
    where !state.contains(index) {
        var plus = parameters
        plus[index] += h
        var minus = parameters
        minus[index] -= h
        let lossPlus = workspace.lossAndGradient(
            parameters: plus, inputs: inputs, labels: labels, normalization: normalization
        ).loss
        let lossMinus = workspace.lossAndGradient(
            parameters: minus, inputs: inputs, labels: labels, normalization: normalization
        ).loss
        let minusPattern = kinkPattern(workspace, batchSize: batchSize)
        _ = workspace.lossAndGradient(parameters: plus, inputs: inputs, labels: labels, normalization: normalization)
        guard kinkPattern(workspace, batchSize: batchSize) == basePattern, minusPattern == basePattern else {
            straddling += 1
            continue
        }
        let numeric = (lossPlus - lossMinus) / Double(2 * h)
        XCTAssertTrue(
            isClose(Double(gradient[index]), numeric, relative: 2e-2, absolute: 2e-4),
            "\(spec) \(normalization) parameter \(index): analytic \(gradient[index]) vs numeric \(numeric)",
            file: file, line: line)
        checked += 1
    }
    XCTAssertGreaterThan(checked, 10, file: file, line: line)
    XCTAssertLessThan(straddling, checked, "most differences should not straddle a kink", file: file, line: line)
}

/// Where the last forward pass sits on each piecewise-linear layer: the sign of every ReLU input
/// and the position of every max-pooling window's maximum. A central difference is only an
/// estimate of the derivative when the pattern is the same at x − h, x and x + h.
func kinkPattern(_ workspace: NetworkWorkspace, batchSize: Int) -> [UInt8] {
    var pattern: [UInt8] = []
    for (index, layer) in workspace.network.layers.enumerated() {
        let input = workspace.activations[index]
        if layer is ReLU {
            for i in 0..<(batchSize * layer.inputWidth) { pattern.append(input[i] > 0 ? 1 : 0) }
        } else if let pool = layer as? MaxPool2D {
            for plane in 0..<(batchSize * pool.channels) {
                for oy in 0..<(pool.height / 2) {
                    for ox in 0..<(pool.width / 2) {
                        let corner = plane * pool.height * pool.width + 2 * oy * pool.width + 2 * ox
                        let window = [corner, corner + 1, corner + pool.width, corner + pool.width + 1]
                        var best = 0
                        for k in 1..<4 where input[window[k]] > input[window[best]] { best = k }
                        pattern.append(UInt8(best))
                    }
                }
            }
        }
    }
    return pattern
}
