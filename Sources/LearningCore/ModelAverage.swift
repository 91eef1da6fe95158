/// Averages of models in Float64: each value's weighted sum is accumulated in Float64, in the
/// models' order, and rounded once to Float32, so identical models average to themselves exactly
/// and the same models in the same order give the same bits wherever the average is taken (a
/// federated server's global model, x̄ of the consensus distance).
public enum ModelAverage {
    /// total ← total + weight·Float64(x), value by value (eight at a time; each value's
    /// operations are those of the scalar loop, so the bits are too).
    @inline(__always)
    public static func accumulate(
        _ x: UnsafePointer<Float>, weight: Double, into total: UnsafeMutablePointer<Double>, _ count: Int
    ) {
        var j = 0
        let w = SIMD8<Double>(repeating: weight)
        while j + 8 <= count {
            let values = SIMD8<Double>(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self))
            let sum = UnsafeRawPointer(total + j).loadUnaligned(as: SIMD8<Double>.self) + w * values
            UnsafeMutableRawPointer(total + j).storeBytes(of: sum, as: SIMD8<Double>.self)
            j += 8
        }
        while j < count {
            total[j] += weight * Double(x[j])
            j += 1
        }
    }

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
                    total.baseAddress!.update(repeating: 0, count: length)
                    for (model, weight) in zip(models, weights) {
                        accumulate(model.baseAddress! + start, weight: weight, into: total.baseAddress!, length)
                    }
                    for j in 0..<length { mean[start + j] = Float(total[j]) }
                    start += length
                }
            }
        }
        return average
    }

    static let blockLength = 4_096
}
