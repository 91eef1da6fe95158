/// A layer of a feed-forward network acting on a batch stored row-major (batch × width).
///
/// Layers read their parameters from, and write their parameter gradients into, slices of the
/// model's flat buffer; they own no storage, so one layer value serves every worker.
public protocol Layer: Sendable {
    var inputWidth: Int { get }
    var outputWidth: Int { get }
    /// The layer's named parameter slices, relative to its own offset.
    var parameterShapes: [(name: String, shape: [Int])] { get }

    /// output ← f(input; parameters). `parameters` points at this layer's first parameter.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>)

    /// Given ∂L/∂output, writes ∂L/∂parameters (overwriting) and, when `inputGradient` is non-nil,
    /// ∂L/∂input (overwriting). `input` and `output` are the values from the forward pass.
    func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>)

    /// Pearlmutter's R-operator, forward: the directional derivative R{output} = d output/dε at
    /// θ + εV, given R{input} (Pearlmutter, "Fast exact multiplication by the Hessian", 1994).
    func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>)

    /// R-operator, backward: given ∂L/∂output and its R{·}, writes R{∂L/∂parameters} (the layer's
    /// part of H·V, overwriting) and, when non-nil, R{∂L/∂input} (overwriting).
    func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>)
}

extension Layer {
    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// Fully connected layer y = x·Wᵀ + b with W stored as (outputs × inputs), as in PyTorch.
public struct Linear: Layer {
    public let inputWidth: Int
    public let outputWidth: Int

    public init(inputs: Int, outputs: Int) {
        inputWidth = inputs
        outputWidth = outputs
    }

    public var parameterShapes: [(name: String, shape: [Int])] {
        [("weight", [outputWidth, inputWidth]), ("bias", [outputWidth])]
    }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>
    ) {
        let weight = parameters
        let bias = parameters + inputWidth * outputWidth
        // Y ← 1·bᵀ (rows of the bias), then Y ← X·Wᵀ + Y.
        for row in 0..<batchSize { (output + row * outputWidth).update(from: bias, count: outputWidth) }
        BLAS.gemm(
            transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth,
            alpha: 1, a: input, lda: inputWidth, b: weight, ldb: inputWidth, beta: 1, c: output, ldc: outputWidth)
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>
    ) {
        let weightGradient = parameterGradient
        let biasGradient = parameterGradient + inputWidth * outputWidth
        // ∂W = dYᵀ·X  (outputs × inputs)
        BLAS.gemm(
            transposeA: true, transposeB: false, m: outputWidth, n: inputWidth, k: batchSize,
            alpha: 1, a: outputGradient, lda: outputWidth, b: input, ldb: inputWidth,
            beta: 0, c: weightGradient, ldc: inputWidth)
        // ∂b = Σ_rows dY (one axpy per row; cheaper than a gemv against a ones vector we would have to own)
        biasGradient.update(repeating: 0, count: outputWidth)
        for row in 0..<batchSize {
            BLAS.axpy(count: outputWidth, alpha: 1, x: outputGradient + row * outputWidth, y: biasGradient)
        }
        // ∂X = dY·W
        if let inputGradient {
            BLAS.gemm(
                transposeA: false, transposeB: false, m: batchSize, n: inputWidth, k: outputWidth,
                alpha: 1, a: outputGradient, lda: outputWidth, b: parameters, ldb: inputWidth,
                beta: 0, c: inputGradient, ldc: inputWidth)
        }
    }
}

/// Rectified linear unit, elementwise max(0, x).
public struct ReLU: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public init(width: Int) { inputWidth = width }
    public var parameterShapes: [(name: String, shape: [Int])] { [] }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>
    ) {
        for i in 0..<(batchSize * inputWidth) { output[i] = max(input[i], 0) }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>
    ) {
        guard let inputGradient else { return }
        for i in 0..<(batchSize * inputWidth) { inputGradient[i] = input[i] > 0 ? outputGradient[i] : 0 }
    }
}

/// Hyperbolic tangent, elementwise.
public struct Tanh: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public init(width: Int) { inputWidth = width }
    public var parameterShapes: [(name: String, shape: [Int])] { [] }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>
    ) {
        for i in 0..<(batchSize * inputWidth) { output[i] = _tanhf(input[i]) }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>
    ) {
        guard let inputGradient else { return }
        for i in 0..<(batchSize * inputWidth) {
            let y = output[i]
            inputGradient[i] = outputGradient[i] * (1 - y * y)
        }
    }
}
