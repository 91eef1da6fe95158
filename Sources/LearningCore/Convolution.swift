/// 2-D convolution, stride 1, square kernel, zero padding, on images stored channel-major per row
/// (C × H × W). Each sample is lowered by im2col to a (C_in·k²) × (H_out·W_out) matrix so the
/// convolution is one GEMM with the (C_out × C_in·k²) weight matrix (Chellapilla et al., 2006).
///
/// Block layout: `weight` [C_out, C_in, k, k] (as PyTorch), `bias` [C_out]. Scratch: three
/// lowered matrices (the input's, its R{·}, and a gradient's), reused sample by sample.
public struct Convolution2D: Layer {
    public let inputChannels: Int
    public let outputChannels: Int
    public let height: Int
    public let width: Int
    public let kernelSize: Int
    public let padding: Int

    public init(inputChannels: Int, outputChannels: Int, height: Int, width: Int, kernelSize: Int, padding: Int) {
        precondition(kernelSize > 0 && padding >= 0 && height + 2 * padding >= kernelSize)
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.height = height
        self.width = width
        self.kernelSize = kernelSize
        self.padding = padding
    }

    public var outputHeight: Int { height + 2 * padding - kernelSize + 1 }
    public var outputWidthPixels: Int { width + 2 * padding - kernelSize + 1 }
    private var outputArea: Int { outputHeight * outputWidthPixels }
    /// Rows of the lowered matrix: C_in·k².
    private var patchSize: Int { inputChannels * kernelSize * kernelSize }

    public var inputWidth: Int { inputChannels * height * width }
    public var outputWidth: Int { outputChannels * outputArea }
    public var parameterShapes: [(name: String, shape: [Int])] {
        [("weight", [outputChannels, inputChannels, kernelSize, kernelSize]), ("bias", [outputChannels])]
    }
    public var scratchCount: Int { 3 * patchSize * outputArea }

    /// col[(c·k + ky)·k + kx, oy·W_out + ox] = image[c, oy + ky − p, ox + kx − p] (0 outside).
    private func lower(_ image: UnsafePointer<Float>, into col: UnsafeMutablePointer<Float>) {
        let (outH, outW, area) = (outputHeight, outputWidthPixels, outputArea)
        for c in 0..<inputChannels {
            for ky in 0..<kernelSize {
                for kx in 0..<kernelSize {
                    let row = col + ((c * kernelSize + ky) * kernelSize + kx) * area
                    // Output columns whose input column ox + kx − p lies inside the image.
                    let low = max(0, padding - kx)
                    let high = min(outW, width + padding - kx)
                    for oy in 0..<outH {
                        let iy = oy + ky - padding
                        let out = row + oy * outW
                        guard iy >= 0 && iy < height, low < high else {
                            out.update(repeating: 0, count: outW)
                            continue
                        }
                        if low > 0 { out.update(repeating: 0, count: low) }
                        (out + low).update(
                            from: image + (c * height + iy) * width + low + kx - padding, count: high - low)
                        if high < outW { (out + high).update(repeating: 0, count: outW - high) }
                    }
                }
            }
        }
    }

    /// The adjoint of `lower`: image ← Σ of col entries over the pixels they were read from.
    private func raise(_ col: UnsafePointer<Float>, into image: UnsafeMutablePointer<Float>) {
        let (outH, outW, area) = (outputHeight, outputWidthPixels, outputArea)
        image.update(repeating: 0, count: inputWidth)
        for c in 0..<inputChannels {
            for ky in 0..<kernelSize {
                for kx in 0..<kernelSize {
                    let row = col + ((c * kernelSize + ky) * kernelSize + kx) * area
                    let low = max(0, padding - kx)
                    let high = min(outW, width + padding - kx)
                    guard low < high else { continue }
                    for oy in 0..<outH {
                        let iy = oy + ky - padding
                        guard iy >= 0 && iy < height else { continue }
                        BLAS.axpy(
                            count: high - low, alpha: 1, x: row + oy * outW + low,
                            y: image + (c * height + iy) * width + low + kx - padding)
                    }
                }
            }
        }
    }

    private func scratch(_ context: LayerContext) -> (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>
    ) {
        guard let base = context.scratch else { preconditionFailure("Convolution2D needs scratch memory") }
        let size = patchSize * outputArea
        return (base, base + size, base + 2 * size)
    }

    /// out (C_out × area) ← bias broadcast + W·col  (accumulating into `out` when `accumulate`).
    private func multiply(
        weight: UnsafePointer<Float>, col: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
        accumulate: Bool
    ) {
        BLAS.gemm(
            transposeA: false, transposeB: false, m: outputChannels, n: outputArea, k: patchSize, alpha: 1, a: weight,
            lda: patchSize, b: col, ldb: outputArea, beta: accumulate ? 1 : 0, c: out, ldc: outputArea)
    }

    private func fillBias(_ bias: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        for c in 0..<outputChannels { (out + c * outputArea).update(repeating: bias[c], count: outputArea) }
    }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let (col, _, _) = scratch(context)
        let bias = parameters + outputChannels * patchSize
        for sample in 0..<batchSize {
            let out = output + sample * outputWidth
            lower(input + sample * inputWidth, into: col)
            fillBias(bias, into: out)
            multiply(weight: parameters, col: col, into: out, accumulate: true)
        }
    }

    /// ∂W += g·colᵀ;  ∂b += row sums of g.
    private func accumulateParameterGradient(
        _ g: UnsafePointer<Float>, col: UnsafePointer<Float>, into gradient: UnsafeMutablePointer<Float>
    ) {
        BLAS.gemm(
            transposeA: false, transposeB: true, m: outputChannels, n: patchSize, k: outputArea, alpha: 1, a: g,
            lda: outputArea, b: col, ldb: outputArea, beta: 1, c: gradient, ldc: patchSize)
        let bias = gradient + outputChannels * patchSize
        for c in 0..<outputChannels {
            let row = g + c * outputArea
            var sum: Float = 0
            for i in 0..<outputArea { sum += row[i] }
            bias[c] += sum
        }
    }

    /// dcol ← Wᵀ·g (+ dcol when `accumulate`).
    private func transposeMultiply(
        weight: UnsafePointer<Float>, _ g: UnsafePointer<Float>, into dcol: UnsafeMutablePointer<Float>,
        accumulate: Bool
    ) {
        BLAS.gemm(
            transposeA: true, transposeB: false, m: patchSize, n: outputArea, k: outputChannels, alpha: 1, a: weight,
            lda: patchSize, b: g, ldb: outputArea, beta: accumulate ? 1 : 0, c: dcol, ldc: outputArea)
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        let (col, _, dcol) = scratch(context)
        parameterGradient.update(repeating: 0, count: parameterCount)
        for sample in 0..<batchSize {
            let g = outputGradient + sample * outputWidth
            lower(input + sample * inputWidth, into: col)
            accumulateParameterGradient(g, col: col, into: parameterGradient)
            if let inputGradient {
                transposeMultiply(weight: parameters, g, into: dcol, accumulate: false)
                raise(dcol, into: inputGradient + sample * inputWidth)
            }
        }
    }

    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        // R{y} = V_b + W·R{col} + V_W·col
        let (col, colR, _) = scratch(context)
        let directionBias = direction + outputChannels * patchSize
        for sample in 0..<batchSize {
            let out = outputR + sample * outputWidth
            lower(input + sample * inputWidth, into: col)
            fillBias(directionBias, into: out)
            if !context.inputDirectionIsZero {
                lower(inputR + sample * inputWidth, into: colR)
                multiply(weight: parameters, col: colR, into: out, accumulate: true)
            }
            multiply(weight: direction, col: col, into: out, accumulate: true)
        }
    }

    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        // Bilinear in (input, W) like a linear layer: R²{y} = W·R²{col} + 2·V_W·R{col}.
        guard !context.inputDirectionIsZero else {
            outputR2.update(repeating: 0, count: batchSize * outputWidth)
            return true
        }
        let (col, colR, _) = scratch(context)
        for sample in 0..<batchSize {
            let out = outputR2 + sample * outputWidth
            lower(inputR2 + sample * inputWidth, into: col)
            lower(inputR + sample * inputWidth, into: colR)
            multiply(weight: parameters, col: col, into: out, accumulate: false)
            BLAS.gemm(
                transposeA: false, transposeB: false, m: outputChannels, n: outputArea, k: patchSize, alpha: 2,
                a: direction, lda: patchSize, b: colR, ldb: outputArea, beta: 1, c: out, ldc: outputArea)
        }
        return true
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        // R{∂W} = Σ R{g}·colᵀ + g·R{col}ᵀ;  R{∂b} = Σ R{g};  R{∂x} = raise(Wᵀ·R{g} + V_Wᵀ·g)
        let (col, colR, dcol) = scratch(context)
        parameterGradientR.update(repeating: 0, count: parameterCount)
        for sample in 0..<batchSize {
            let g = outputGradient + sample * outputWidth
            let gR = outputGradientR + sample * outputWidth
            lower(input + sample * inputWidth, into: col)
            accumulateParameterGradient(gR, col: col, into: parameterGradientR)
            if !context.inputDirectionIsZero {
                lower(inputR + sample * inputWidth, into: colR)
                BLAS.gemm(
                    transposeA: false, transposeB: true, m: outputChannels, n: patchSize, k: outputArea, alpha: 1,
                    a: g, lda: outputArea, b: colR, ldb: outputArea, beta: 1, c: parameterGradientR, ldc: patchSize)
            }
            if let inputGradientR {
                transposeMultiply(weight: parameters, gR, into: dcol, accumulate: false)
                transposeMultiply(weight: direction, g, into: dcol, accumulate: true)
                raise(dcol, into: inputGradientR + sample * inputWidth)
            }
        }
    }
}

/// 2×2 max pooling with stride 2 on C × H × W images (H and W even). Ties go to the first
/// maximum in row-major order; gradients and R{·} flow through that position only.
public struct MaxPool2D: Layer {
    public let channels: Int
    public let height: Int
    public let width: Int

    public init(channels: Int, height: Int, width: Int) {
        precondition(height % 2 == 0 && width % 2 == 0, "2×2 pooling needs even sides")
        self.channels = channels
        self.height = height
        self.width = width
    }

    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { inputWidth / 4 }
    public var parameterShapes: [(name: String, shape: [Int])] { [] }

    /// Calls body(output index, input index of the window's maximum) for every output of a batch.
    @inline(__always)
    private func forEachWindow(_ input: UnsafePointer<Float>, batchSize: Int, _ body: (Int, Int) -> Void) {
        let (outH, outW) = (height / 2, width / 2)
        for plane in 0..<(batchSize * channels) {
            let source = plane * height * width
            let target = plane * outH * outW
            for oy in 0..<outH {
                for ox in 0..<outW {
                    let corner = source + 2 * oy * width + 2 * ox
                    // Carry the best value so each comparison compiles to a conditional move.
                    var best = corner
                    var value = input[corner]
                    @inline(__always) func consider(_ candidate: Int) {
                        let next = input[candidate]
                        let better = next > value
                        best = better ? candidate : best
                        value = better ? next : value
                    }
                    consider(corner + 1)
                    consider(corner + width)
                    consider(corner + width + 1)
                    body(target + oy * outW + ox, best)
                }
            }
        }
    }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        // The maximum's value does not depend on how ties are broken, so no index is needed.
        let (outH, outW) = (height / 2, width / 2)
        for plane in 0..<(batchSize * channels) {
            for oy in 0..<outH {
                let top = input + plane * height * width + 2 * oy * width
                let bottom = top + width
                let out = output + (plane * outH + oy) * outW
                for ox in 0..<outW {
                    out[ox] = max(max(top[2 * ox], top[2 * ox + 1]), max(bottom[2 * ox], bottom[2 * ox + 1]))
                }
            }
        }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        guard let inputGradient else { return }
        inputGradient.update(repeating: 0, count: batchSize * inputWidth)
        forEachWindow(input, batchSize: batchSize) { inputGradient[$1] = outputGradient[$0] }
    }

    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        forEachWindow(input, batchSize: batchSize) { outputR[$0] = inputR[$1] }
    }

    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        forEachWindow(input, batchSize: batchSize) { outputR2[$0] = inputR2[$1] }
        return true
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        guard let inputGradientR else { return }
        inputGradientR.update(repeating: 0, count: batchSize * inputWidth)
        forEachWindow(input, batchSize: batchSize) { inputGradientR[$1] = outputGradientR[$0] }
    }
}

extension Convolution2D {
    public var honoursZeroInputDirection: Bool { true }
}
