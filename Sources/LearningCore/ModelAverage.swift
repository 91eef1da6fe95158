/// Averages of models in Float64: each value's weighted sum is accumulated in Float64, in the
/// models' order, and rounded once to Float32, so identical models average to themselves exactly
/// and the same models in the same order give the same bits wherever the average is taken (a
/// federated server's global model, x̄ of the consensus distance).
public enum ModelAverage {
    /// Σᵢ pᵢxᵢ for weights pᵢ (summing to 1), blockwise so the Float64 sums stay in cache.
    public static func weighted(_ models: [UnsafeBufferPointer<Float>], weights: [Double]) -> [Float] {
        precondition(!models.isEmpty && weights.count == models.count, "one weight per model")
        let d = models[0].count
        for model in models { precondition(model.count == d, "model sizes differ: \(model.count) vs \(d)") }
        var average = [Float](repeating: 0, count: d)
        var total = [Double](repeating: 0, count: min(d, blockLength))
        average.withUnsafeMutableBufferPointer { mean in
            total.withUnsafeMutableBufferPointer { total in
                var start = 0
                while start < d {
                    let length = min(blockLength, d - start)
                    averageBlock(
                        of: models, weights: weights, start: start, length: length, dividedBy: 1,
                        total: total.baseAddress!, into: mean.baseAddress! + start)
                    start += length
                }
            }
        }
        return average
    }

    static let blockLength = 4_096

    /// One block of the average, values [start, start + length): total ← Σᵢ wᵢ·Float64(xᵢ) in
    /// the models' order, then mean ← Float32(total / divisor) (1 for weights summing to 1, n for
    /// the plain mean with unit weights). While one model's block is summed the next one's is
    /// fetched: models just written by other processes were x̄'s stalls (`perf`). `total` holds
    /// `length` values; x̄ of the consensus distance and a server's weighted average share it.
    @inline(__always)
    public static func averageBlock(
        of models: [UnsafeBufferPointer<Float>], weights: [Double], start: Int, length: Int, dividedBy divisor: Double,
        total: UnsafeMutablePointer<Double>, into mean: UnsafeMutablePointer<Float>
    ) {
        total.update(repeating: 0, count: length)
        for (m, (model, weight)) in zip(models, weights).enumerated() {
            VectorKernels.accumulate(
                model.baseAddress! + start, weight: weight, into: total, length,
                prefetching: nextBlock(of: models, after: m, start: start, length: length))
        }
        VectorKernels.storeQuotient(total, dividedBy: divisor, into: mean, length)
    }

    /// What to fetch while model m's block [start, start + length) is summed: the next model's
    /// same block, or after the last model the first model's next block (or its last block, at
    /// the end: an in-range address to hint).
    @inline(__always)
    static func nextBlock(
        of models: [UnsafeBufferPointer<Float>], after m: Int, start: Int, length: Int
    ) -> UnsafePointer<Float> {
        if m + 1 < models.count { return models[m + 1].baseAddress! + start }
        return models[0].baseAddress! + min(start + length, models[0].count - length)
    }
}
