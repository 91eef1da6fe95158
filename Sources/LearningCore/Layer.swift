/// Which statistics a normalising layer (batch norm) uses in a pass.
public enum NormalizationMode: Sendable, Equatable, Codable {
    /// Training: each ghost batch of `ghostBatchSize` consecutive rows is normalised with its own
    /// mean and variance (the whole batch when nil), and gradients flow through those statistics
    /// (Hoffer, Hubara and Soudry, "Train longer, generalize better", NeurIPS 2017, Algorithm 1).
    case batchStatistics(ghostBatchSize: Int?)
    /// Inference: the running mean and variance stored in the layer's state.
    case runningStatistics

    /// The rows of each normalisation group for a batch: the ghost size, or the whole batch.
    /// A ghost size that does not divide the batch is a programming error; configurations are
    /// validated before a run starts.
    public func groupSize(batchSize: Int) -> Int {
        guard case .batchStatistics(let ghost?) = self, ghost < batchSize else { return batchSize }
        precondition(batchSize % ghost == 0, "ghost batch size \(ghost) does not divide batch \(batchSize)")
        return ghost
    }
}

/// Per-pass information for a layer: the normalisation mode and the layer's scratch memory.
public struct LayerContext {
    public var normalization: NormalizationMode
    /// `scratchCount` floats owned by the workspace for this layer (nil when the layer needs none).
    public var scratch: UnsafeMutablePointer<Float>?
    /// R-passes only: R{input} is known to be zero (the first layer, whose input is data, or the
    /// lowest layer a block-restricted pass starts at), so a layer may skip the products that
    /// involve it; a layer whose `honoursZeroInputDirection` is true then reads nothing from it.
    public var inputDirectionIsZero: Bool

    public init(
        normalization: NormalizationMode, scratch: UnsafeMutablePointer<Float>? = nil,
        inputDirectionIsZero: Bool = false
    ) {
        self.normalization = normalization
        self.scratch = scratch
        self.inputDirectionIsZero = inputDirectionIsZero
    }
}

/// How running statistics absorb the statistics of the ghost batches of one training step.
public enum RunningStatisticsRule: String, Sendable, Codable, CaseIterable {
    /// One momentum update per ghost batch, in order, as the paper's code (bigBatch) does.
    case sequential
    /// One update per step from the mean of the ghost means and of the ghost variances, as Keras'
    /// `virtual_batch_size` does.
    case averaged
}

/// A layer of a feed-forward network acting on a batch stored row-major (batch × width).
///
/// Layers read their parameters from, and write their parameter gradients into, slices of the
/// model's flat buffer; they own no storage, so one layer value serves every worker. A layer's
/// block in the buffer holds its trainable parameters, then its state (e.g. running statistics);
/// gradients and R{gradients} are written over the whole block, zero on the state.
public protocol Layer: Sendable {
    var inputWidth: Int { get }
    var outputWidth: Int { get }
    /// The layer's named trainable parameter slices, relative to its own offset.
    var parameterShapes: [(name: String, shape: [Int])] { get }
    /// Named state slices, stored after the trainable parameters: carried and (by policy) averaged
    /// with the model, never trained.
    var stateShapes: [(name: String, shape: [Int])] { get }
    /// Floats of scratch memory a pass needs, independent of the batch size.
    var scratchCount: Int { get }

    /// output ← f(input; parameters). `parameters` points at this layer's first parameter.
    func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>, context: LayerContext)

    /// Given ∂L/∂output, writes ∂L/∂parameters (overwriting) and, when `inputGradient` is non-nil,
    /// ∂L/∂input (overwriting). `input` and `output` are the values from the forward pass.
    func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext)

    /// Pearlmutter's R-operator, forward: the directional derivative R{output} = d output/dε at
    /// θ + εV, given R{input} (Pearlmutter, "Fast exact multiplication by the Hessian", 1994).
    func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext)

    /// R-operator, backward: given ∂L/∂output and its R{·}, writes R{∂L/∂parameters} (the layer's
    /// part of H·V, overwriting) and, when non-nil, R{∂L/∂input} (overwriting).
    func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext)

    /// Forward mode to second order along θ + εV: given R{input} and R²{input} = d²input/dε²
    /// (and R{output} from `rForward`), writes R²{output}. Carried to the loss, it gives
    /// vᵀHv = d²L/dε² with no backward pass: Hutchinson's trace at about 60 % of the cost of
    /// vᵀ(H·v). Returns false, having written nothing, when the layer has no second-order forward
    /// for this mode; the caller then uses vᵀ(H·v).
    func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool

    /// Folds the statistics of the training batch `input` into the running statistics in the
    /// layer's state (`parameters` points at the layer's block). A no-op for layers without state.
    func updateRunningStatistics(
        input: UnsafePointer<Float>, batchSize: Int, ghostBatchSize: Int, rule: RunningStatisticsRule,
        momentum: Float, parameters: UnsafeMutablePointer<Float>)

    /// Whether the R-passes (`rForward`, `rBackward`, `secondDirectionalForward`) read nothing from
    /// R{input} and R²{input} when `inputDirectionIsZero` is set: then a pass along a direction
    /// that is zero below this layer can start here, the layers below left out.
    var honoursZeroInputDirection: Bool { get }
}

extension Layer {
    public var honoursZeroInputDirection: Bool { false }
    public var stateShapes: [(name: String, shape: [Int])] { [] }
    public var scratchCount: Int { 0 }
    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool { false }
    public func updateRunningStatistics(
        input: UnsafePointer<Float>, batchSize: Int, ghostBatchSize: Int, rule: RunningStatisticsRule,
        momentum: Float, parameters: UnsafeMutablePointer<Float>
    ) {}
}

extension Layer {
    /// Trainable parameters only.
    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
    /// Trainable parameters and state: the size of the layer's block in the flat buffer.
    public var blockCount: Int { parameterCount + stateShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// Fully connected layer y = x·Wᵀ + b with W stored as (outputs × inputs), as in PyTorch.
public struct Linear: Layer {
    public let inputWidth: Int
    public let outputWidth: Int

    public init(inputs: Int, outputs: Int) {
        inputWidth = inputs
        outputWidth = outputs
    }

    public var honoursZeroInputDirection: Bool { true }

    public var parameterShapes: [(name: String, shape: [Int])] {
        [("weight", [outputWidth, inputWidth]), ("bias", [outputWidth])]
    }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
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
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
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
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        for i in 0..<(batchSize * inputWidth) { output[i] = max(input[i], 0) }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        // A multiply by the 0/1 indicator rather than a branch: signs are unpredictable, and the
        // branchy form ran several times slower than the forward pass.
        for i in 0..<(batchSize * inputWidth) {
            inputGradient[i] = outputGradient[i] * Float(input[i] > 0 ? 1 : 0)
        }
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
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        for i in 0..<(batchSize * inputWidth) { output[i] = _tanhf(input[i]) }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        for i in 0..<(batchSize * inputWidth) {
            let y = output[i]
            inputGradient[i] = outputGradient[i] * (1 - y * y)
        }
    }
}
