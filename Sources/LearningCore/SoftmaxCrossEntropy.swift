/// Softmax cross-entropy on logits, computed stably: log Σ exp(z) = m + log Σ exp(z − m) with
/// m = max z, so no exponent overflows.
public enum SoftmaxCrossEntropy {
    /// Returns the summed loss over the batch and writes ∂(mean loss)/∂logits into `gradient`
    /// (softmax − one-hot, divided by the batch size) when `gradient` is non-nil. Also returns the
    /// number of rows whose arg-max equals the label.
    public static func evaluate(
        logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batchSize: Int, classCount: Int,
        gradient: UnsafeMutablePointer<Float>?
    ) -> (lossSum: Double, correct: Int) {
        var lossSum = 0.0
        var correct = 0
        let inverseBatch = 1 / Float(batchSize)
        for row in 0..<batchSize {
            let z = logits + row * classCount
            let label = Int(labels[row])
            var maximum = z[0]
            var argmax = 0
            for c in 1..<classCount where z[c] > maximum {
                maximum = z[c]
                argmax = c
            }
            if argmax == label { correct += 1 }
            var sum: Float = 0
            for c in 0..<classCount { sum += _expf(z[c] - maximum) }
            let logSum = _logf(sum)
            lossSum += Double(maximum + logSum - z[label])
            if let gradient {
                let g = gradient + row * classCount
                let inverseSum = 1 / sum
                for c in 0..<classCount { g[c] = _expf(z[c] - maximum) * inverseSum * inverseBatch }
                g[label] -= inverseBatch
            }
        }
        return (lossSum, correct)
    }
}
