import LearningCore

/// The consensus distance Ξ² = (1/n)·Σᵢ‖xᵢ − x̄‖² of n worker models (Kong et al., "Consensus
/// Control for Decentralized Deep Learning", ICML 2021), with the average model x̄ it is measured
/// against. Squared norms are accumulated in Float64.
public struct ConsensusDistance: Sendable {
    public var average: [Float]
    public var distanceSquared: Double
    /// Ξ² restricted to each named slice of the layout, in layout order.
    public var perSlice: [(name: String, distanceSquared: Double)]

    /// Computes x̄ and Ξ² for `models` (all the same length), in the given (rank) order.
    public init(models: [UnsafeBufferPointer<Float>], layout: ParameterLayout? = nil) {
        let n = models.count
        precondition(n > 0)
        let d = models[0].count
        var average = [Float](repeating: 0, count: d)
        average.withUnsafeMutableBufferPointer { y in
            for model in models {
                precondition(model.count == d, "model sizes differ: \(model.count) vs \(d)")
                BLAS.axpy(count: d, alpha: 1 / Float(n), x: model.baseAddress!, y: y.baseAddress!)
            }
        }
        var difference = [Float](repeating: 0, count: d)
        var total = 0.0
        var sliceTotals = [Double](repeating: 0, count: layout?.slices.count ?? 0)
        for model in models {
            difference.withUnsafeMutableBufferPointer { diff in
                BLAS.copy(count: d, x: model.baseAddress!, y: diff.baseAddress!)
                average.withUnsafeBufferPointer { BLAS.axpy(count: d, alpha: -1, x: $0.baseAddress!, y: diff.baseAddress!) }
                total += BLAS.doubleDot(count: d, x: diff.baseAddress!, y: diff.baseAddress!)
                for (index, slice) in (layout?.slices ?? []).enumerated() {
                    let start = diff.baseAddress! + slice.offset
                    sliceTotals[index] += BLAS.doubleDot(count: slice.count, x: start, y: start)
                }
            }
        }
        self.average = average
        distanceSquared = total / Double(n)
        perSlice = zip(layout?.slices ?? [], sliceTotals).map { ($0.name, $1 / Double(n)) }
    }
}
