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

    /// The block for n models: 4,096 values up to 64 models; for more, short enough that the
    /// block of every model (n × 4 bytes a value) stays near 1 MiB, so the second pass (the
    /// distances) reads it from cache, not memory. Up to 64 models the sums are as they always were.
    static func blockLength(models n: Int) -> Int { min(blockLength, max(256, 262_144 / max(n, 1))) }

    /// x̄ (the mean, or Σᵢ pᵢxᵢ with `weights`) and Ξ² about it, in one pass over the models.
    public init(models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, weights: [Double]? = nil) {
        var none: [Float] = []
        self.init(models: models, layout: layout, weights: weights, center: nil, storage: &none)
    }

    /// The same, with x̄ written into `storage` when it has the models' length (every value of it
    /// is overwritten; `storage` is left empty): a caller that measures every round passes last
    /// round's x̄, so a large model's x̄ does not cost fresh pages each round. The numbers do not
    /// depend on it.
    public init(models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, reusing storage: inout [Float]) {
        self.init(models: models, layout: layout, weights: nil, center: nil, storage: &storage)
    }

    /// Ξ² about a given x̄ (a federated server's global model, aggregated by its rule); the
    /// same bits as the other initializer when `center` is the average it would compute.
    public init(models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, about center: [Float]) {
        var none: [Float] = []
        self.init(models: models, layout: layout, weights: nil, center: center, storage: &none)
    }

    private init(
        models: [UnsafeBufferPointer<Float>], layout: ParameterLayout?, weights: [Double]?, center: [Float]?,
        storage: inout [Float]
    ) {
        let n = models.count
        precondition(n > 0)
        precondition(weights == nil || weights!.count == n, "one weight per model")
        let weighted = weights != nil
        let weights = weights ?? [Double](repeating: 1, count: n)
        let d = models[0].count
        for model in models { precondition(model.count == d, "model sizes differ: \(model.count) vs \(d)") }
        let slices = layout?.slices.map { ($0.name, $0.offset, $0.count) } ?? [("all", 0, d)]
        let trainable = layout?.slices.map { $0.role == .trainable } ?? [true]
        precondition(center == nil || center!.count == d, "x̄ has \(center?.count ?? 0) values, models \(d)")
        precondition(layout == nil || layout!.count == d, "the layout has \(layout!.count) values, the models \(d)")
        // Without a center every value of x̄ is written below (the slices tile the models), so
        // reused storage keeps none of its old values.
        var average: [Float] = []
        if let center {
            average = center
        } else if storage.count == d {
            swap(&average, &storage)  // the caller's buffer, moved in: written in place, not copied
        } else {
            average = [Float](repeating: 0, count: d)
        }
        var sliceTotals = [Double](repeating: 0, count: slices.count)
        let blockLength = Self.blockLength(models: n)
        var sum = [Double](repeating: 0, count: blockLength)
        average.withUnsafeMutableBufferPointer { averageBuffer in
            sum.withUnsafeMutableBufferPointer { sumBuffer in
                let total = sumBuffer.baseAddress!
                for (index, slice) in slices.enumerated() {
                    var start = slice.1
                    let end = slice.1 + slice.2
                    while start < end {
                        let length = min(blockLength, end - start)
                        let mean = averageBuffer.baseAddress! + start
                        // x̄ block: the (weighted) sum in Float64, in rank order, rounded once to
                        // Float32, so identical models give x̄ = xᵢ exactly and Ξ² = 0 exactly
                        // (with weights summing to 1 within rounding).
                        if center == nil {
                            ModelAverage.averageBlock(
                                of: models, weights: weights, start: start, length: length,
                                dividedBy: weighted ? 1 : Double(n), total: total, into: mean)
                        }
                        // ‖xᵢ − x̄‖² of the block: the difference rounded to Float32 (as the
                        // models are), squared and summed in Float64, in one pass per model.
                        for model in models {
                            sliceTotals[index] += VectorKernels.squaredDistance(
                                model.baseAddress! + start, mean, length)
                        }
                        start += length
                    }
                }
            }
        }
        self.average = average
        distanceSquared = zip(sliceTotals, trainable).reduce(0) { $0 + ($1.1 ? $1.0 : 0) } / Double(n)
        perSlice = layout == nil ? [] : zip(slices, sliceTotals).map { ($0.0, $1 / Double(n)) }
    }
}
