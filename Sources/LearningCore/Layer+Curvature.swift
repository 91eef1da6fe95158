extension Linear {
    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        // R{z} = R{a}·Wᵀ + a·V_Wᵀ + 1·V_bᵀ
        let directionBias = direction + inputWidth * outputWidth
        for row in 0..<batchSize { (outputR + row * outputWidth).update(from: directionBias, count: outputWidth) }
        if !context.inputDirectionIsZero {
            BLAS.gemm(
                transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth, alpha: 1, a: inputR,
                lda: inputWidth, b: parameters, ldb: inputWidth, beta: 1, c: outputR, ldc: outputWidth)
        }
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
        if !context.inputDirectionIsZero {
            BLAS.gemm(
                transposeA: true, transposeB: false, m: outputWidth, n: inputWidth, k: batchSize, alpha: 1,
                a: outputGradient,
                lda: outputWidth, b: inputR, ldb: inputWidth, beta: 1, c: parameterGradientR, ldc: inputWidth)
        }
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

extension Linear {
    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        // z = a·Wᵀ + b is bilinear in (a, W): R²{z} = R²{a}·Wᵀ + 2·R{a}·V_Wᵀ (zero for data input).
        guard !context.inputDirectionIsZero else {
            outputR2.update(repeating: 0, count: batchSize * outputWidth)
            return true
        }
        BLAS.gemm(
            transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth, alpha: 1, a: inputR2,
            lda: inputWidth, b: parameters, ldb: inputWidth, beta: 0, c: outputR2, ldc: outputWidth)
        BLAS.gemm(
            transposeA: false, transposeB: true, m: batchSize, n: outputWidth, k: inputWidth, alpha: 2, a: inputR,
            lda: inputWidth, b: direction, ldb: inputWidth, beta: 1, c: outputR2, ldc: outputWidth)
        return true
    }
}

extension ReLU {
    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        // Piecewise linear: the second derivative is zero almost everywhere.
        for i in 0..<(batchSize * inputWidth) { outputR2[i] = inputR2[i] * Float(input[i] > 0 ? 1 : 0) }
        return true
    }

    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        // Multiplies by the 0/1 indicator, branch-free (as `backward` does).
        for i in 0..<(batchSize * inputWidth) { outputR[i] = inputR[i] * Float(input[i] > 0 ? 1 : 0) }
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        // The indicator's derivative is zero almost everywhere.
        guard let inputGradientR else { return }
        for i in 0..<(batchSize * inputWidth) { inputGradientR[i] = outputGradientR[i] * Float(input[i] > 0 ? 1 : 0) }
    }
}

extension Tanh {
    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        // y = tanh x: y' = 1 − y², y'' = −2y(1 − y²), so R²{y} = y'·R²{x} + y''·R{x}².
        for i in 0..<(batchSize * inputWidth) {
            let y = output[i]
            let slope = 1 - y * y
            outputR2[i] = slope * inputR2[i] - 2 * y * slope * inputR[i] * inputR[i]
        }
        return true
    }

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
/// R-operator (Pearlmutter 1994). A product at fixed parameters needs the forward pass and the
/// gradient's backward pass once (`prepare`), then one R-forward and one R-backward pass per
/// direction (`preparedProduct`): about the cost of one gradient per product.
///
/// A workspace keeps the activations and gradients of its rows between calls; the R-buffers and
/// scratch, which no call keeps, can be shared between workspaces (one per chunk of a data set).
public final class CurvatureWorkspace {
    public let network: Network
    public let capacity: Int
    private let activations: [UnsafeMutablePointer<Float>]
    private let gradients: [UnsafeMutablePointer<Float>]
    private let temporaries: Temporaries
    public let labels: UnsafeMutablePointer<Int32>
    /// The batch size and mode of the last `prepare`.
    private var prepared: (batchSize: Int, normalization: NormalizationMode)? {
        didSet { lacksSecondOrder = false }
    }
    /// A layer reported no second-order forward for the prepared mode.
    private var lacksSecondOrder = false

    /// Per-call buffers: R{activations}, R{gradients}, layer scratch and a gradient sink.
    final class Temporaries {
        let capacity: Int
        let activationsR: [UnsafeMutablePointer<Float>]
        let gradientsR: [UnsafeMutablePointer<Float>]
        let gradient: UnsafeMutablePointer<Float>
        let layerScratch: UnsafeMutablePointer<Float>?
        let widths: [Int]
        /// R²{activations}, allocated at the first quadratic form.
        private(set) lazy var activationsR2: [UnsafeMutablePointer<Float>] = {
            let buffers = widths.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * capacity) }
            buffers[0].update(repeating: 0, count: widths[0] * capacity)
            secondOrderAllocated = true
            return buffers
        }()
        private var secondOrderAllocated = false

        init(network: Network, capacity: Int) {
            self.capacity = capacity
            let widths = [network.inputWidth] + network.layers.map(\.outputWidth)
            self.widths = widths
            activationsR = widths.map { .allocate(capacity: $0 * capacity) }
            gradientsR = widths.map { .allocate(capacity: $0 * capacity) }
            // R{input} is zero: layers that do not skip it read zeros.
            activationsR[0].update(repeating: 0, count: widths[0] * capacity)
            gradient = .allocate(capacity: max(network.parameterCount, 1))
            let scratchCount = network.layers.map(\.scratchCount).max() ?? 0
            layerScratch = scratchCount > 0 ? .allocate(capacity: scratchCount) : nil
        }

        deinit {
            (activationsR + gradientsR).forEach { $0.deallocate() }
            if secondOrderAllocated { activationsR2.forEach { $0.deallocate() } }
            gradient.deallocate()
            layerScratch?.deallocate()
        }
    }

    /// - Parameter sharingTemporariesWith: a workspace of the same network, at least as large,
    ///   whose per-call buffers this one may use (calls on the two must not overlap).
    public init(network: Network, capacity: Int, sharingTemporariesWith other: CurvatureWorkspace? = nil) {
        self.network = network
        self.capacity = capacity
        let widths = [network.inputWidth] + network.layers.map(\.outputWidth)
        activations = widths.map { .allocate(capacity: $0 * capacity) }
        gradients = widths.map { .allocate(capacity: $0 * capacity) }
        if let other, other.capacity >= capacity {
            temporaries = other.temporaries
        } else {
            temporaries = Temporaries(network: network, capacity: capacity)
        }
        labels = .allocate(capacity: capacity)
    }

    deinit {
        (activations + gradients).forEach { $0.deallocate() }
        labels.deallocate()
    }

    /// Bytes of one workspace's own storage (activations, gradients, labels) per row: what a
    /// prepared chunk keeps.
    public static func retainedBytesPerRow(of network: Network) -> Int {
        let widths = [network.inputWidth] + network.layers.map(\.outputWidth)
        return 2 * widths.reduce(0, +) * MemoryLayout<Float>.size + MemoryLayout<Int32>.size
    }

    /// The input rows to fill before a call.
    public var input: UnsafeMutablePointer<Float> { activations[0] }

    /// The forward pass and the gradient's backward pass over the first `batchSize` rows, kept for
    /// the products that follow; the gradient goes to `gradient` when non-nil. Returns the mean
    /// loss. State (running statistics) is a constant: directions should be zero there, and
    /// products are zero there. With batch statistics the Hessian includes the dependence of the
    /// statistics on the parameters (the training loss); with running statistics it is the
    /// inference loss's.
    @discardableResult
    public func prepare(
        parameters: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>? = nil, batchSize: Int,
        normalization: NormalizationMode = .runningStatistics
    ) -> Double {
        precondition(batchSize <= capacity)
        let context = LayerContext(normalization: normalization, scratch: temporaries.layerScratch)
        let layers = network.layers
        let offsets = network.layerOffsets
        for (k, layer) in layers.enumerated() {
            layer.forward(
                input: activations[k], output: activations[k + 1], batchSize: batchSize,
                parameters: parameters + offsets[k], context: context)
        }
        let last = layers.count
        let (lossSum, _) = SoftmaxCrossEntropy.evaluate(
            logits: activations[last], labels: labels, batchSize: batchSize, classCount: network.classCount,
            gradient: gradients[last])
        let gradientOut = gradient ?? temporaries.gradient
        for k in stride(from: last - 1, through: 0, by: -1) {
            layers[k].backward(
                input: activations[k], output: activations[k + 1], outputGradient: gradients[k + 1],
                inputGradient: k > 0 ? gradients[k] : nil, batchSize: batchSize, parameters: parameters + offsets[k],
                parameterGradient: gradientOut + offsets[k], context: context)
        }
        prepared = (batchSize, normalization)
        return lossSum / Double(batchSize)
    }

    /// R{activations} along `direction` at the prepared point: the R-forward pass that products
    /// and quadratic forms both start with. From `firstLayer` up (the direction is zero below it).
    private func directionalForward(
        parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, batchSize: Int, context: LayerContext,
        firstLayer: Int
    ) {
        var context = context
        let activationsR = temporaries.activationsR
        for (k, layer) in network.layers.enumerated() where k >= firstLayer {
            context.inputDirectionIsZero = k == firstLayer
            layer.rForward(
                input: activations[k], inputR: activationsR[k], output: activations[k + 1],
                outputR: activationsR[k + 1], batchSize: batchSize, parameters: parameters + network.layerOffsets[k],
                direction: direction + network.layerOffsets[k], context: context)
        }
    }

    /// The lowest layer an R-pass along a direction that is zero outside `block` must start at:
    /// the layer holding `block` when it honours a zero input direction (nothing below it can
    /// reach its parameters or anything above), otherwise the first. Only that layer's
    /// parameters and those above are then computed.
    public func firstLayer(reaching block: Range<Int>) -> Int {
        let offsets = network.layerOffsets
        for (k, layer) in network.layers.enumerated() {
            let end = k + 1 < offsets.count ? offsets[k + 1] : network.parameterCount
            guard offsets[k] <= block.lowerBound, block.upperBound <= end else { continue }
            return layer.honoursZeroInputDirection ? k : 0
        }
        return 0
    }

    /// H·v at the parameters of the last `prepare` (the same pointer's values, unchanged since),
    /// written to `product` (overwriting). With `firstLayer` > 0 (`firstLayer(reaching:)`), `v`
    /// must be zero on every layer below it: the layers below are left out of both passes and
    /// their part of `product` is set to zero (not H·v there); the rest is H·v with the same bits.
    public func preparedProduct(
        parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, product: UnsafeMutablePointer<Float>,
        firstLayer: Int = 0
    ) {
        guard let (batchSize, normalization) = prepared else { preconditionFailure("prepare before a product") }
        var context = LayerContext(normalization: normalization, scratch: temporaries.layerScratch)
        let layers = network.layers
        let offsets = network.layerOffsets
        let activationsR = temporaries.activationsR
        let gradientsR = temporaries.gradientsR
        directionalForward(
            parameters: parameters, direction: direction, batchSize: batchSize, context: context,
            firstLayer: firstLayer)
        product.update(repeating: 0, count: offsets[firstLayer])
        let last = layers.count
        let classes = network.classCount
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
        for k in stride(from: last - 1, through: firstLayer, by: -1) {
            context.inputDirectionIsZero = k == firstLayer
            layers[k].rBackward(
                input: activations[k], inputR: activationsR[k], output: activations[k + 1],
                outputR: activationsR[k + 1],
                outputGradient: gradients[k + 1], outputGradientR: gradientsR[k + 1],
                inputGradientR: k > firstLayer ? gradientsR[k] : nil,
                batchSize: batchSize, parameters: parameters + offsets[k], direction: direction + offsets[k],
                parameterGradientR: product + offsets[k], context: context)
        }
    }

    /// vᵀHv at the parameters of the last `prepare`, by forward mode to second order (no backward
    /// pass): d²L/dε² = Σ ∂L/∂z · R²{z} + R{z}ᵀ(∂²L/∂z²)R{z} at the logits z, where for the mean
    /// softmax cross-entropy ∂²L/∂z² = (diag p − p·pᵀ)/B per row. Nil when a layer has no
    /// second-order forward in this mode (batch norm with batch statistics). `firstLayer` as for
    /// `preparedProduct`: the direction is zero below it.
    public func preparedQuadraticForm(
        parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, firstLayer: Int = 0
    ) -> Double? {
        guard let (batchSize, normalization) = prepared else { preconditionFailure("prepare before a product") }
        guard !lacksSecondOrder else { return nil }
        var context = LayerContext(normalization: normalization, scratch: temporaries.layerScratch)
        let layers = network.layers
        let offsets = network.layerOffsets
        let activationsR = temporaries.activationsR
        let activationsR2 = temporaries.activationsR2
        directionalForward(
            parameters: parameters, direction: direction, batchSize: batchSize, context: context,
            firstLayer: firstLayer)
        for (k, layer) in layers.enumerated() where k >= firstLayer {
            context.inputDirectionIsZero = k == firstLayer
            guard
                layer.secondDirectionalForward(
                    input: activations[k], inputR: activationsR[k], inputR2: activationsR2[k],
                    output: activations[k + 1], outputR: activationsR[k + 1], outputR2: activationsR2[k + 1],
                    batchSize: batchSize, parameters: parameters + offsets[k], direction: direction + offsets[k],
                    context: context)
            else {
                lacksSecondOrder = true
                return nil
            }
        }
        let last = layers.count
        let classes = network.classCount
        var gradientTerm = 0.0
        var curvatureTerm = 0.0
        for row in 0..<batchSize {
            let g = gradients[last] + row * classes
            let rz = activationsR[last] + row * classes
            let r2z = activationsR2[last] + row * classes
            let label = Int(labels[row])
            var first: Double = 0
            var weightedSquares: Double = 0
            var weighted: Double = 0
            for c in 0..<classes {
                // g = (p − y)/B, so p = B·g + y.
                let p = Double(g[c]) * Double(batchSize) + (c == label ? 1 : 0)
                first += Double(g[c]) * Double(r2z[c])
                weighted += p * Double(rz[c])
                weightedSquares += p * Double(rz[c]) * Double(rz[c])
            }
            gradientTerm += first
            curvatureTerm += weightedSquares - weighted * weighted
        }
        return gradientTerm + curvatureTerm / Double(batchSize)
    }

    /// H·v of the mean loss over the first `batchSize` rows, written to `product` (overwriting):
    /// `prepare` then `preparedProduct` (from `firstLayer`). Returns the mean loss.
    @discardableResult
    public func hessianVectorProduct(
        parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, product: UnsafeMutablePointer<Float>,
        gradient: UnsafeMutablePointer<Float>? = nil, batchSize: Int,
        normalization: NormalizationMode = .runningStatistics, firstLayer: Int = 0
    ) -> Double {
        let loss = prepare(
            parameters: parameters, gradient: gradient, batchSize: batchSize, normalization: normalization)
        preparedProduct(parameters: parameters, direction: direction, product: product, firstLayer: firstLayer)
        return loss
    }
}
