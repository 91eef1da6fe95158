import LearningCore

/// The consensus distance Ξ² = (1/n)·Σᵢ‖xᵢ − x̄‖² of n worker models (Kong et al., "Consensus
/// Control for Decentralized Deep Learning", ICML 2021), with the average model x̄ it is measured
/// against. x̄ is the plain mean, or with `weights` (summing to 1) the weighted mean Σᵢ pᵢxᵢ: a
/// federated server's model, FedAvg's size-weighted average. Ξ² is always (1/n)·Σᵢ‖xᵢ − x̄‖²
/// about the x̄ reported. Sums and squares are accumulated in Float64, each difference rounded to
/// Float32 first (as the models are). The same pass gives ‖x̄‖² and, with a `reference` (the
/// initial parameters), ‖x̄ − reference‖²: each model and x̄ are read from memory once a round.
public struct ConsensusDistance: Sendable {
    public var average: [Float]
    /// Over the trainable parameters: state slices (batch-norm running statistics) are not
    /// parameters and are left out of the total, though `perSlice` reports them.
    public var distanceSquared: Double
    /// Ξ² restricted to each named slice of the layout, in layout order.
    public var perSlice: [(name: String, distanceSquared: Double)]
    /// ‖x̄‖² over every value, state slices included.
    public var averageSquaredNorm: Double
    /// With a `reference`: ‖x̄ − reference‖² over the trainable parameters (nil without one).
    public var distanceFromReferenceSquared: Double?
    /// With a `reference`: ‖x̄ − reference‖² of each named slice, in layout order (0 for state
    /// slices, which are not parameters); empty without one.
    public var perSliceDistanceFromReference: [(name: String, distanceSquared: Double)]

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
        self.init(models: models, layout: layout, weights: weights, center: nil, reference: nil, storage: &none)
    }

    /// The same, with x̄ written into `storage` when it has the models' length (every value of it
    /// is overwritten; `storage` is left empty): a caller that measures every round passes last
    /// round's x̄, so a large model's x̄ does not cost fresh pages each round. The numbers do not
    /// depend on it. With `reference`, also x̄'s distance from it.
    public init(
        models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, reusing storage: inout [Float],
        reference: [Float]? = nil
    ) {
        self.init(models: models, layout: layout, weights: nil, center: nil, reference: reference, storage: &storage)
    }

    /// Ξ² about a given x̄ (a federated server's global model, aggregated by its rule); the
    /// same bits as the other initializer when `center` is the average it would compute.
    public init(
        models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil, about center: [Float],
        reference: [Float]? = nil
    ) {
        var none: [Float] = []
        self.init(models: models, layout: layout, weights: nil, center: center, reference: reference, storage: &none)
    }

    private init(
        models: [UnsafeBufferPointer<Float>], layout: ParameterLayout?, weights: [Double]?, center: [Float]?,
        reference: [Float]?, storage: inout [Float]
    ) {
        let n = models.count
        precondition(n > 0)
        precondition(weights == nil || weights!.count == n, "one weight per model")
        let d = models[0].count
        for model in models { precondition(model.count == d, "model sizes differ: \(model.count) vs \(d)") }
        let slices = layout?.slices.map { ($0.name, $0.offset, $0.count) } ?? [("all", 0, d)]
        let trainable = layout?.slices.map { $0.role == .trainable } ?? [true]
        precondition(center == nil || center!.count == d, "x̄ has \(center?.count ?? 0) values, models \(d)")
        precondition(layout == nil || layout!.count == d, "the layout has \(layout!.count) values, the models \(d)")
        precondition(
            reference == nil || reference!.count == d, "the reference has \(reference!.count) values, the models \(d)")
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
        var sums = BlockSums(slices: slices.count)
        average.withUnsafeMutableBufferPointer { averageBuffer in
            guard let reference else {
                return Self.sweep(
                    models, weights: weights, slices: slices, trainable: trainable,
                    computesAverage: center == nil, average: averageBuffer.baseAddress!, reference: nil, into: &sums)
            }
            reference.withUnsafeBufferPointer {
                Self.sweep(
                    models, weights: weights, slices: slices, trainable: trainable,
                    computesAverage: center == nil, average: averageBuffer.baseAddress!, reference: $0.baseAddress!,
                    into: &sums)
            }
        }
        self.average = average
        distanceSquared = zip(sums.distances, trainable).reduce(0) { $0 + ($1.1 ? $1.0 : 0) } / Double(n)
        perSlice = layout == nil ? [] : zip(slices, sums.distances).map { ($0.0, $1 / Double(n)) }
        averageSquaredNorm = sums.squaredNorm
        distanceFromReferenceSquared = reference == nil ? nil : sums.fromReference.reduce(0, +)
        perSliceDistanceFromReference =
            reference == nil || layout == nil ? [] : zip(slices, sums.fromReference).map { ($0.0, $1) }
    }

    /// What one pass accumulates, per slice: Σᵢ‖xᵢ − x̄‖², ‖x̄ − reference‖², and ‖x̄‖² overall.
    private struct BlockSums {
        var distances: [Double]
        var fromReference: [Double]
        var squaredNorm = 0.0
        init(slices: Int) {
            distances = [Double](repeating: 0, count: slices)
            fromReference = distances
        }
    }

    /// The pass over the models, block by block: x̄'s block (unless given) and everything measured
    /// against it while it is in cache, so each model and x̄ are read from memory once.
    private static func sweep(
        _ models: [UnsafeBufferPointer<Float>], weights: [Double]?, slices: [(String, Int, Int)], trainable: [Bool],
        computesAverage: Bool, average: UnsafeMutablePointer<Float>, reference: UnsafePointer<Float>?,
        into sums: inout BlockSums
    ) {
        let n = models.count
        let blockLength = Self.blockLength(models: n)
        let total = UnsafeMutablePointer<Double>.allocate(capacity: blockLength)
        // ‖x̄‖² is x̄'s squared distance from zeros (x − 0 = x exactly).
        let zeros = UnsafeMutablePointer<Float>.allocate(capacity: blockLength)
        zeros.initialize(repeating: 0, count: blockLength)
        defer {
            total.deallocate()
            zeros.deallocate()
        }
        let unitWeights = [Double](repeating: 1, count: n)
        for (index, slice) in slices.enumerated() {
            var start = slice.1
            let end = slice.1 + slice.2
            while start < end {
                let length = min(blockLength, end - start)
                let mean = average + start
                // x̄ block: the (weighted) sum in Float64, in rank order, rounded once to Float32,
                // so identical models give x̄ = xᵢ exactly and Ξ² = 0 exactly (with weights summing
                // to 1 within rounding).
                if computesAverage {
                    ModelAverage.averageBlock(
                        of: models, weights: weights ?? unitWeights, start: start, length: length,
                        dividedBy: weights == nil ? Double(n) : 1, total: total, into: mean)
                }
                // ‖xᵢ − x̄‖² of the block: the difference rounded to Float32 (as the models are),
                // squared and summed in Float64, in one pass per model.
                for model in models {
                    sums.distances[index] += VectorKernels.squaredDistance(model.baseAddress! + start, mean, length)
                }
                sums.squaredNorm += VectorKernels.squaredDistance(mean, zeros, length)
                if let reference, trainable[index] {
                    sums.fromReference[index] += VectorKernels.squaredDistance(mean, reference + start, length)
                }
                start += length
            }
        }
    }
}
