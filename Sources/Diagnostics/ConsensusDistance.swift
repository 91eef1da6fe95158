import LearningCore

/// The consensus distance Ξ² = (1/n)·Σᵢ‖xᵢ − x̄‖² of n worker models (Kong et al., "Consensus
/// Control for Decentralized Deep Learning", ICML 2021), with the average model x̄ it is measured
/// against. x̄ is the plain mean, or with `weights` (summing to 1) the weighted mean Σᵢ pᵢxᵢ: a
/// federated server's model, FedAvg's size-weighted average. Ξ² is always (1/n)·Σᵢ‖xᵢ − x̄‖²
/// about the x̄ reported. Sums and squared norms are accumulated in Float64 (the squares through
/// OpenBLAS's dsdot, which rounds each product to Float32: about 1e-9 relative).
public struct ConsensusDistance: Sendable {
    public var average: [Float]
    /// Over the trainable parameters: state slices (batch-norm running statistics) are not
    /// parameters and are left out of the total, though `perSlice` reports them.
    public var distanceSquared: Double
    /// Ξ² restricted to each named slice of the layout, in layout order.
    public var perSlice: [(name: String, distanceSquared: Double)]

    /// Coordinates processed together: x̄ and the difference for one block stay in L1/L2 while
    /// every model's block is read once from memory (instead of three passes over whole vectors).
    static let blockLength = 4_096

    /// Computes x̄ and Ξ² for `models` (all the same length), in the given (rank) order.
    public init(models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, weights: [Double]? = nil) {
        let n = models.count
        precondition(n > 0)
        precondition(weights == nil || weights!.count == n, "one weight per model")
        let weighted = weights != nil
        let weights = weights ?? [Double](repeating: 1, count: n)
        let d = models[0].count
        for model in models { precondition(model.count == d, "model sizes differ: \(model.count) vs \(d)") }
        let slices = layout?.slices.map { ($0.name, $0.offset, $0.count) } ?? [("all", 0, d)]
        let trainable = layout?.slices.map { $0.role == .trainable } ?? [true]
        var average = [Float](repeating: 0, count: d)
        var sliceTotals = [Double](repeating: 0, count: slices.count)
        var difference = [Float](repeating: 0, count: Self.blockLength)
        var sum = [Double](repeating: 0, count: Self.blockLength)
        average.withUnsafeMutableBufferPointer { averageBuffer in
            difference.withUnsafeMutableBufferPointer { differenceBuffer in
                sum.withUnsafeMutableBufferPointer { sumBuffer in
                    let diff = differenceBuffer.baseAddress!
                    let total = sumBuffer.baseAddress!
                    for (index, slice) in slices.enumerated() {
                        var start = slice.1
                        let end = slice.1 + slice.2
                        while start < end {
                            let length = min(Self.blockLength, end - start)
                            let mean = averageBuffer.baseAddress! + start
                            // x̄ block: the (weighted) sum in Float64, in rank order, rounded once
                            // to Float32, so identical models give x̄ = xᵢ exactly and Ξ² = 0
                            // exactly (with weights summing to 1 within rounding).
                            total.update(repeating: 0, count: length)
                            for (model, weight) in zip(models, weights) {
                                let x = model.baseAddress! + start
                                for j in 0..<length { total[j] += weight * Double(x[j]) }
                            }
                            if weighted {
                                for j in 0..<length { mean[j] = Float(total[j]) }
                            } else {
                                for j in 0..<length { mean[j] = Float(total[j] / Double(n)) }
                            }
                            for model in models {
                                BLAS.copy(count: length, x: model.baseAddress! + start, y: diff)
                                BLAS.axpy(count: length, alpha: -1, x: mean, y: diff)
                                sliceTotals[index] += BLAS.doubleDot(count: length, x: diff, y: diff)
                            }
                            start += length
                        }
                    }
                }
            }
        }
        self.average = average
        distanceSquared = zip(sliceTotals, trainable).reduce(0) { $0 + ($1.1 ? $1.0 : 0) } / Double(n)
        perSlice = layout == nil ? [] : zip(slices, sliceTotals).map { ($0.0, $1 / Double(n)) }
    }
}
