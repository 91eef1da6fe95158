/// Batch normalisation per feature (dense inputs, `spatialSize` 1) or per channel (convolution
/// outputs stored channel-major, `spatialSize` = height·width): y = γ·(x − μ)/√(σ² + ε) + β
/// (Ioffe and Szegedy, ICML 2015). With `.batchStatistics(ghostBatchSize:)` each ghost batch is
/// normalised with its own biased mean and variance and gradients flow through them (ghost batch
/// norm, Hoffer et al., NeurIPS 2017); with `.runningStatistics` the layer is the affine map given
/// by the running mean and variance in its state.
///
/// Block layout: `weight` γ [C], `bias` β [C], then state `running_mean` [C], `running_var` [C].
/// Running statistics follow PyTorch's convention: running ← (1 − m)·running + m·batch, with the
/// unbiased (n/(n − 1)) variance; `RunningStatisticsRule` says how ghost batches enter.
public struct BatchNorm: Layer {
    public let channels: Int
    public let spatialSize: Int
    public let epsilon: Float

    public init(channels: Int, spatialSize: Int, epsilon: Float = 1e-5) {
        precondition(channels > 0 && spatialSize > 0)
        self.channels = channels
        self.spatialSize = spatialSize
        self.epsilon = epsilon
    }

    public var inputWidth: Int { channels * spatialSize }
    public var outputWidth: Int { inputWidth }
    public var parameterShapes: [(name: String, shape: [Int])] { [("weight", [channels]), ("bias", [channels])] }
    public var stateShapes: [(name: String, shape: [Int])] {
        [("running_mean", [channels]), ("running_var", [channels])]
    }

    /// The normalisation groups of one pass: for each, its first row and row count.
    private func groups(batchSize: Int, mode: NormalizationMode) -> StrideTo<Int> {
        stride(from: 0, to: batchSize, by: mode.groupSize(batchSize: batchSize))
    }

    /// Calls `body(index)` for every element of channel `channel` in rows `rows`, in a fixed order.
    @inline(__always)
    private func forEach(channel: Int, rows: Range<Int>, _ body: (Int) -> Void) {
        let width = inputWidth
        for row in rows {
            let base = row * width + channel * spatialSize
            for s in 0..<spatialSize { body(base + s) }
        }
    }

    /// Calls `body(start, count, stride)` for the runs of channel `channel` in rows `rows`: one
    /// contiguous run per row for convolution outputs, one strided run for dense features.
    @inline(__always)
    private func forEachRun(channel: Int, rows: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        let width = inputWidth
        if spatialSize == 1 {
            body(rows.lowerBound * width + channel, rows.count, width)
        } else {
            for row in rows { body(row * width + channel * spatialSize, spatialSize, 1) }
        }
    }

    /// Σa and Σa·(b − center) over a strided run (8 lanes in Float32 for unit stride, totals in
    /// Float64): the batch-norm backward pass's Σg and Σg·(x − μ), centred before the product so a
    /// large mean does not cancel.
    private static func sums(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, center: Float, count: Int, stride: Int
    ) -> (Double, Double) {
        var index = 0
        var total = 0.0
        var products = 0.0
        if stride == 1 {
            let shift = SIMD8<Float>(repeating: center)
            var laneSums = SIMD8<Float>()
            var laneProducts = SIMD8<Float>()
            while index + 8 <= count {
                let x = UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self)
                let y = UnsafeRawPointer(b + index).loadUnaligned(as: SIMD8<Float>.self) - shift
                laneSums += x
                laneProducts += x * y
                index += 8
            }
            total = Double(laneSums.sum())
            products = Double(laneProducts.sum())
        }
        while index < count {
            let x = a[index * stride]
            total += Double(x)
            products += Double(x) * Double(b[index * stride] - center)
            index += 1
        }
        return (total, products)
    }

    /// Mean and 1/√(biased variance + ε) of a channel over `rows`, in two passes: the mean from Σx,
    /// then the variance from the deviations d = x − mean, with the compensated two-pass formula
    /// var = (Σd² − (Σd)²/n)/n (Chan, Golub and LeVeque, "Algorithms for computing the sample
    /// variance", 1983). Subtracting first keeps the precision when the mean is large against the
    /// spread (E[x²] − mean² cancels catastrophically: at mean 10⁴ and spread 1 it loses every
    /// digit in Float32); the (Σd)² term corrects the mean's own rounding.
    private func statistics(_ x: UnsafePointer<Float>, channel: Int, rows: Range<Int>) -> (
        mean: Float, inverseDeviation: Float, variance: Double, count: Int
    ) {
        let count = rows.count * spatialSize
        var sum = 0.0
        forEachRun(channel: channel, rows: rows) { start, length, stride in
            sum += Self.sum(x + start, count: length, stride: stride)
        }
        let mean = Float(sum / Double(count))
        var deviations = 0.0
        var squares = 0.0
        forEachRun(channel: channel, rows: rows) { start, length, stride in
            let (d, q) = Self.centeredSums(x + start, mean: mean, count: length, stride: stride)
            deviations += d
            squares += q
        }
        let n = Double(count)
        let variance = max((squares - deviations * deviations / n) / n, 0)
        let exactMean = Double(mean) + deviations / n
        return (Float(exactMean), Float(1 / (variance + Double(epsilon)).squareRoot()), variance, count)
    }

    /// Σx over a strided run (8 lanes in Float32 for unit stride, totals in Float64).
    private static func sum(_ a: UnsafePointer<Float>, count: Int, stride: Int) -> Double {
        var index = 0
        var total = 0.0
        if stride == 1 {
            var lanes = SIMD8<Float>()
            while index + 8 <= count {
                lanes += UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self)
                index += 8
            }
            total = Double(lanes.sum())
        }
        while index < count {
            total += Double(a[index * stride])
            index += 1
        }
        return total
    }

    /// Σd and Σd² for d = x − mean over a strided run.
    private static func centeredSums(_ a: UnsafePointer<Float>, mean: Float, count: Int, stride: Int) -> (
        Double, Double
    ) {
        var index = 0
        var deviations = 0.0
        var squares = 0.0
        if stride == 1 {
            let center = SIMD8<Float>(repeating: mean)
            var laneDeviations = SIMD8<Float>()
            var laneSquares = SIMD8<Float>()
            while index + 8 <= count {
                let d = UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self) - center
                laneDeviations += d
                laneSquares += d * d
                index += 8
            }
            deviations = Double(laneDeviations.sum())
            squares = Double(laneSquares.sum())
        }
        while index < count {
            let d = Double(a[index * stride] - mean)
            deviations += d
            squares += d * d
            index += 1
        }
        return (deviations, squares)
    }

    /// (mean, inverse deviation) for a group: batch statistics, or the running ones.
    private func normalizer(
        _ x: UnsafePointer<Float>, channel: Int, rows: Range<Int>, parameters: UnsafePointer<Float>,
        mode: NormalizationMode
    ) -> (mean: Float, inverseDeviation: Float) {
        if mode == .runningStatistics {
            let variance = parameters[3 * channels + channel]
            return (parameters[2 * channels + channel], 1 / (variance + epsilon).squareRoot())
        }
        let s = statistics(x, channel: channel, rows: rows)
        return (s.mean, s.inverseDeviation)
    }

    /// Calls `body(rows, channel, mean, inverseDeviation)` for every normalisation group (ghost
    /// batch, whole batch) and channel, with the group's statistics or the running ones.
    @inline(__always)
    private func forEachGroup(
        _ input: UnsafePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>, mode: NormalizationMode,
        _ body: (Range<Int>, Int, Float, Float) -> Void
    ) {
        let size = mode.groupSize(batchSize: batchSize)
        for start in groups(batchSize: batchSize, mode: mode) {
            let rows = start..<min(start + size, batchSize)
            for c in 0..<channels {
                let (mean, inverse) = normalizer(input, channel: c, rows: rows, parameters: parameters, mode: mode)
                body(rows, c, mean, inverse)
            }
        }
    }

    public func forward(
        input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batchSize: Int,
        parameters: UnsafePointer<Float>, context: LayerContext
    ) {
        let mode = context.normalization
        forEachGroup(input, batchSize: batchSize, parameters: parameters, mode: mode) { rows, c, mean, inverse in
            let (gamma, beta) = (parameters[c], parameters[channels + c])
            forEach(channel: c, rows: rows) { output[$0] = gamma * (input[$0] - mean) * inverse + beta }
        }
    }

    public func backward(
        input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        inputGradient: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        parameterGradient: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        let mode = context.normalization
        parameterGradient.update(repeating: 0, count: 4 * channels)
        let g = outputGradient
        forEachGroup(input, batchSize: batchSize, parameters: parameters, mode: mode) { rows, c, mean, inverse in
            let n = Float(rows.count * spatialSize)
            // Σg and Σg·x̂ = s·Σg·(x − μ), from one pass of lane sums.
            var sumGDouble = 0.0
            var sumGXDouble = 0.0
            forEachRun(channel: c, rows: rows) { start, length, stride in
                let (sg, sgx) = Self.sums(g + start, input + start, center: mean, count: length, stride: stride)
                sumGDouble += sg
                sumGXDouble += sgx
            }
            let sumG = Float(sumGDouble)
            let sumGXHat = Float(sumGXDouble * Double(inverse))
            parameterGradient[c] += sumGXHat
            parameterGradient[channels + c] += sumG
            guard let dx = inputGradient else { return }
            let scale = parameters[c] * inverse
            if mode == .runningStatistics {
                forEach(channel: c, rows: rows) { dx[$0] = scale * g[$0] }
            } else {
                // ∂x = γ·s·(g − mean g − x̂·mean(g·x̂))
                let (meanG, meanGXHat) = (sumG / n, sumGXHat / n)
                forEach(channel: c, rows: rows) {
                    let xHat = (input[$0] - mean) * inverse
                    dx[$0] = scale * (g[$0] - meanG - xHat * meanGXHat)
                }
            }
        }
    }

    public func rForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafeMutablePointer<Float>, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, context: LayerContext
    ) {
        let mode = context.normalization
        forEachGroup(input, batchSize: batchSize, parameters: parameters, mode: mode) { rows, c, mean, inverse in
            let (gamma, gammaR, betaR) = (parameters[c], direction[c], direction[channels + c])
            if mode == .runningStatistics {
                forEach(channel: c, rows: rows) {
                    outputR[$0] = gammaR * (input[$0] - mean) * inverse + gamma * inverse * inputR[$0] + betaR
                }
                return
            }
            let moments = rMoments(input, inputR, channel: c, rows: rows, mean: mean, inverse: inverse)
            forEach(channel: c, rows: rows) {
                let xHat = (input[$0] - mean) * inverse
                let xHatR = inverse * (inputR[$0] - moments.meanXR - xHat * moments.meanXHatDR)
                outputR[$0] = gammaR * xHat + gamma * xHatR + betaR
            }
        }
    }

    public func secondDirectionalForward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, inputR2: UnsafePointer<Float>,
        output: UnsafePointer<Float>, outputR: UnsafePointer<Float>, outputR2: UnsafeMutablePointer<Float>,
        batchSize: Int, parameters: UnsafePointer<Float>, direction: UnsafePointer<Float>, context: LayerContext
    ) -> Bool {
        // With running statistics y = γ·(x − μ)·s + β is bilinear in (x, γ):
        // R²{y} = 2·V_γ·s·R{x} + γ·s·R²{x}. Batch statistics: not provided (the caller falls back).
        guard context.normalization == .runningStatistics else { return false }
        forEachGroup(input, batchSize: batchSize, parameters: parameters, mode: .runningStatistics) {
            rows, c, _, inverse in
            let (gamma, gammaR) = (parameters[c], direction[c])
            forEach(channel: c, rows: rows) {
                outputR2[$0] = 2 * gammaR * inverse * inputR[$0] + gamma * inverse * inputR2[$0]
            }
        }
        return true
    }

    /// mean(ẋ) and mean(x̂·(ẋ − mean ẋ)) of a group: what R{x̂} = s·(ḋ − x̂·mean(x̂ḋ)) needs,
    /// with ḋ = ẋ − mean ẋ.
    private func rMoments(
        _ x: UnsafePointer<Float>, _ xR: UnsafePointer<Float>, channel: Int, rows: Range<Int>, mean: Float,
        inverse: Float
    ) -> (meanXR: Float, meanXHatDR: Float) {
        let n = Float(rows.count * spatialSize)
        var sumXR: Float = 0
        forEach(channel: channel, rows: rows) { sumXR += xR[$0] }
        let meanXR = sumXR / n
        var sum: Float = 0
        forEach(channel: channel, rows: rows) { sum += (x[$0] - mean) * inverse * (xR[$0] - meanXR) }
        return (meanXR, sum / n)
    }

    public func rBackward(
        input: UnsafePointer<Float>, inputR: UnsafePointer<Float>, output: UnsafePointer<Float>,
        outputR: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, outputGradientR: UnsafePointer<Float>,
        inputGradientR: UnsafeMutablePointer<Float>?, batchSize: Int, parameters: UnsafePointer<Float>,
        direction: UnsafePointer<Float>, parameterGradientR: UnsafeMutablePointer<Float>, context: LayerContext
    ) {
        let mode = context.normalization
        parameterGradientR.update(repeating: 0, count: 4 * channels)
        let (g, gR) = (outputGradient, outputGradientR)
        forEachGroup(input, batchSize: batchSize, parameters: parameters, mode: mode) { rows, c, mean, s in
            let n = Float(rows.count * spatialSize)
            let (gamma, gammaR) = (parameters[c], direction[c])
            if mode == .runningStatistics {
                // ∂γ = Σ g·x̂, ∂β = Σ g, ∂x = γ·s·g with x̂ = (x − μ_run)·s; only x and γ move.
                var sumGRXHat: Float = 0
                var sumGR: Float = 0
                var sumGXR: Float = 0
                forEach(channel: c, rows: rows) {
                    sumGRXHat += gR[$0] * (input[$0] - mean) * s
                    sumGR += gR[$0]
                    sumGXR += g[$0] * inputR[$0] * s
                }
                parameterGradientR[c] += sumGRXHat + sumGXR
                parameterGradientR[channels + c] += sumGR
                if let dxR = inputGradientR {
                    forEach(channel: c, rows: rows) { dxR[$0] = gammaR * s * g[$0] + gamma * s * gR[$0] }
                }
                return
            }
            let moments = rMoments(input, inputR, channel: c, rows: rows, mean: mean, inverse: s)
            @inline(__always) func xHat(_ i: Int) -> Float { (input[i] - mean) * s }
            @inline(__always) func xHatR(_ i: Int) -> Float {
                s * (inputR[i] - moments.meanXR - xHat(i) * moments.meanXHatDR)
            }
            var sumG: Float = 0
            var sumGXHat: Float = 0
            var sumGR: Float = 0
            var sumGRXHat: Float = 0
            var sumGXHatR: Float = 0
            forEach(channel: c, rows: rows) {
                let (h, hR) = (xHat($0), xHatR($0))
                sumG += g[$0]
                sumGXHat += g[$0] * h
                sumGR += gR[$0]
                sumGRXHat += gR[$0] * h
                sumGXHatR += g[$0] * hR
            }
            // R{∂γ} = Σ(ġ·x̂ + g·R{x̂}),  R{∂β} = Σ ġ
            parameterGradientR[c] += sumGRXHat + sumGXHatR
            parameterGradientR[channels + c] += sumGR
            guard let dxR = inputGradientR else { return }
            // ∂x = a·u with a = γ·s, u = g − mean g − x̂·mean(g·x̂):
            // R{a} = γ̇·s − γ·s²·mean(x̂ḋ),  R{u} = ġ − mean ġ − R{x̂}·mean(g·x̂) − x̂·mean(ġ·x̂ + g·R{x̂}).
            let a = gamma * s
            let aR = gammaR * s - gamma * s * s * moments.meanXHatDR
            let (meanG, meanGXHat, meanGR) = (sumG / n, sumGXHat / n, sumGR / n)
            let meanMixed = (sumGRXHat + sumGXHatR) / n
            forEach(channel: c, rows: rows) {
                let (h, hR) = (xHat($0), xHatR($0))
                let u = g[$0] - meanG - h * meanGXHat
                let uR = gR[$0] - meanGR - hR * meanGXHat - h * meanMixed
                dxR[$0] = aR * u + a * uR
            }
        }
    }

    public func updateRunningStatistics(
        input: UnsafePointer<Float>, batchSize: Int, ghostBatchSize: Int, rule: RunningStatisticsRule,
        momentum: Float, parameters: UnsafeMutablePointer<Float>
    ) {
        let mode = NormalizationMode.batchStatistics(ghostBatchSize: ghostBatchSize)
        let size = mode.groupSize(batchSize: batchSize)
        let runningMean = parameters + 2 * channels
        let runningVariance = parameters + 3 * channels
        let m = Double(momentum)
        for c in 0..<channels {
            var meanSum = 0.0
            var varianceSum = 0.0
            var groupCount = 0
            var mean = Double(runningMean[c])
            var variance = Double(runningVariance[c])
            for start in groups(batchSize: batchSize, mode: mode) {
                let stats = statistics(input, channel: c, rows: start..<min(start + size, batchSize))
                let unbiased = stats.count > 1 ? stats.variance * Double(stats.count) / Double(stats.count - 1) : 0
                switch rule {
                case .sequential:
                    mean = (1 - m) * mean + m * Double(stats.mean)
                    variance = (1 - m) * variance + m * unbiased
                case .averaged:
                    meanSum += Double(stats.mean)
                    varianceSum += unbiased
                    groupCount += 1
                }
            }
            if rule == .averaged {
                mean = (1 - m) * mean + m * meanSum / Double(groupCount)
                variance = (1 - m) * variance + m * varianceSum / Double(groupCount)
            }
            runningMean[c] = Float(mean)
            runningVariance[c] = Float(variance)
        }
    }
}
