extension Linear {
    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        // R{z} = R{a}·Wᵀ + a·V_Wᵀ + 1·V_bᵀ
        let directionBias = direction + inputWidth * outputWidth
        for row in 0..<batchSize { (outputR + row * outputWidth).update(from: directionBias, count: outputWidth) }
        BLAS.gemm(
            transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth, alpha: 1, a: inputR,
            lda: inputWidth, b: parameters, ldb: inputWidth, beta: 1, c: outputR, ldc: outputWidth)
        BLAS.gemm(
            transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth, alpha: 1, a: input,
            lda: inputWidth, b: direction, ldb: inputWidth, beta: 1, c: outputR, ldc: outputWidth)
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        // R{∂W} = R{g}ᵀ·a + gᵀ·R{a};  R{∂b} = Σ R{g};  R{∂a} = R{g}·W + g·V_W
        BLAS.gemm(
            transposeA: true, transposeB: false, m: outputWidth, n: inputWidth, k: batchSize, alpha: 1,
            a: outputGradientR,
            lda: outputWidth, b: input, ldb: inputWidth, beta: 0, c: parameterGradientR, ldc: inputWidth)
        BLAS.gemm(
            transposeA: true, transposeB: false, m: outputWidth, n: inputWidth, k: batchSize, alpha: 1,
            a: outputGradient,
            lda: outputWidth, b: inputR, ldb: inputWidth, beta: 1, c: parameterGradientR, ldc: inputWidth)
        let biasR = parameterGradientR + inputWidth * outputWidth
        biasR.update(repeating: 0, count: outputWidth)
        for row in 0..<batchSize {
            BLAS.axpy(count: outputWidth, alpha: 1, x: outputGradientR + row * outputWidth, y: biasR)
        }
        if let inputGradientR {
            BLAS.gemm(
                transposeA: false, transposeB: false, m: batchSize, n: inputWidth, k: outputWidth, alpha: 1,
                a: outputGradientR, lda: outputWidth, b: parameters, ldb: inputWidth, beta: 0, c: inputGradientR,
                ldc: inputWidth)
            BLAS.gemm(
                transposeA: false, transposeB: false, m: batchSize, n: inputWidth, k: outputWidth, alpha: 1,
                a: outputGradient,
                lda: outputWidth, b: direction, ldb: inputWidth, beta: 1, c: inputGradientR, ldc: inputWidth)
        }
    }
}

extension ReLU {
    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        for i in 0..<(batchSize * inputWidth) { outputR[i] = input[i] > 0 ? inputR[i] : 0 }
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        // The indicator's derivative is zero almost everywhere.
        guard let inputGradientR else { return }
        for i in 0..<(batchSize * inputWidth) { inputGradientR[i] = input[i] > 0 ? outputGradientR[i] : 0 }
    }
}

extension Tanh {
    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        for i in 0..<(batchSize * inputWidth) { outputR[i] = (1 - output[i] * output[i]) * inputR[i] }
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        // ∂z = g·(1 − y²)  ⇒  R{∂z} = R{g}·(1 − y²) − 2·g·y·R{y}
        guard let inputGradientR else { return }
        for i in 0..<(batchSize * inputWidth) {
            let y = output[i]
            inputGradientR[i] = outputGradientR[i] * (1 - y * y) - 2 * outputGradient[i] * y * outputR[i]
        }
    }
}

/// Exact Hessian-vector products of the mean softmax cross-entropy of a network, by the
/// R-operator: one forward and one backward pass, about twice the cost of a gradient.
public final class CurvatureWorkspace {
    public let network: Network
    public let capacity: Int
    private let activations: [UnsafeMutablePointer<Float>]
    private let activationsR: [UnsafeMutablePointer<Float>]
    private let gradients: [UnsafeMutablePointer<Float>]
    private let gradientsR: [UnsafeMutablePointer<Float>]
    private let scratchGradient: UnsafeMutablePointer<Float>
    private let layerScratch: UnsafeMutablePointer<Float>?
    public let labels: UnsafeMutablePointer<Int32>

    public init(network: Network, capacity: Int) {
        self.network = network
        self.capacity = capacity
        let widths = [network.inputWidth] + network.layers.map(\.outputWidth)
        activations = widths.map { .allocate(capacity: $0 * capacity) }
        activationsR = widths.map { .allocate(capacity: $0 * capacity) }
        gradients = widths.map { .allocate(capacity: $0 * capacity) }
        gradientsR = widths.map { .allocate(capacity: $0 * capacity) }
        activationsR[0].update(repeating: 0, count: widths[0] * capacity)
        scratchGradient = .allocate(capacity: max(network.parameterCount, 1))
        labels = .allocate(capacity: capacity)
        let scratchCount = network.layers.map(\.scratchCount).max() ?? 0
        layerScratch = scratchCount > 0 ? .allocate(capacity: scratchCount) : nil
    }

    deinit {
        (activations + activationsR + gradients + gradientsR).forEach { $0.deallocate() }
        layerScratch?.deallocate()
        scratchGradient.deallocate()
        labels.deallocate()
    }

    /// The input rows to fill before a call.
    public var input: UnsafeMutablePointer<Float> { activations[0] }

    /// H·v of the mean loss over the first `batchSize` rows, written to `product` (overwriting);
    /// the gradient goes to `gradient` when non-nil. Returns the mean loss. State (running
    /// statistics) is a constant: `direction` should be zero there, and `product` is zero there.
    /// With batch statistics the Hessian includes the dependence of the statistics on the
    /// parameters (the training loss); with running statistics it is the inference loss's.
    @discardableResult
    public func hessianVectorProduct(
        parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, product: UnsafeMutablePointer<Float>,
        gradient: UnsafeMutablePointer<Float>? = nil, batchSize: Int,
        normalization: NormalizationMode = .runningStatistics
    ) -> Double {
        precondition(batchSize <= capacity)
        let context = LayerContext(normalization: normalization, scratch: layerScratch)
        let layers = network.layers
        let offsets = network.layerOffsets
        for (k, layer) in layers.enumerated() {
            layer.forward(
                input: activations[k], output: activations[k + 1], batchSize: batchSize,
                parameters: parameters + offsets[k], context: context)
            layer.rForward(
                input: activations[k], inputR: activationsR[k], output: activations[k + 1],
                outputR: activationsR[k + 1],
                batchSize: batchSize, parameters: parameters + offsets[k], direction: direction + offsets[k],
                context: context)
        }
        let last = layers.count
        let classes = network.classCount
        let (lossSum, _) = SoftmaxCrossEntropy.evaluate(
            logits: activations[last], labels: labels, batchSize: batchSize, classCount: classes,
            gradient: gradients[last])
        // R{(p − y)/B} = p ⊙ (R{z} − ⟨p, R{z}⟩)/B, with p recovered from the gradient: p = B·g + y.
        let inverseBatch = 1 / Float(batchSize)
        for row in 0..<batchSize {
            let g = gradients[last] + row * classes
            let rz = activationsR[last] + row * classes
            let out = gradientsR[last] + row * classes
            let label = Int(labels[row])
            var inner: Float = 0
            for c in 0..<classes {
                let p = g[c] * Float(batchSize) + (c == label ? 1 : 0)
                inner += p * rz[c]
            }
            for c in 0..<classes {
                let p = g[c] * Float(batchSize) + (c == label ? 1 : 0)
                out[c] = p * (rz[c] - inner) * inverseBatch
            }
        }
        let gradientOut = gradient ?? scratchGradient
        for k in stride(from: last - 1, through: 0, by: -1) {
            let layer = layers[k]
            layer.backward(
                input: activations[k], output: activations[k + 1], outputGradient: gradients[k + 1],
                inputGradient: k > 0 ? gradients[k] : nil, batchSize: batchSize, parameters: parameters + offsets[k],
                parameterGradient: gradientOut + offsets[k], context: context)
            layer.rBackward(
                input: activations[k], inputR: activationsR[k], output: activations[k + 1],
                outputR: activationsR[k + 1],
                outputGradient: gradients[k + 1], outputGradientR: gradientsR[k + 1],
                inputGradientR: k > 0 ? gradientsR[k] : nil,
                batchSize: batchSize, parameters: parameters + offsets[k], direction: direction + offsets[k],
                parameterGradientR: product + offsets[k], context: context)
        }
        return lossSum / Double(batchSize)
    }
}
