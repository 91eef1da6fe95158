/// Scratch memory for forward and backward passes of one network at up to `capacity` rows.
/// Allocated once per worker, so a training step allocates nothing.
public final class NetworkWorkspace {
    public let network: Network
    public let capacity: Int
    /// activations[0] is the input batch; activations[k + 1] is layer k's output.
    let activations: [UnsafeMutablePointer<Float>]
    /// gradients[k] is ∂L/∂activations[k] (index 0 unused).
    let gradients: [UnsafeMutablePointer<Float>]
    public let labels: UnsafeMutablePointer<Int32>
    /// Scratch shared by the layers (they run one at a time): the largest `scratchCount`.
    let scratch: UnsafeMutablePointer<Float>?

    /// Whether the backward buffers exist (an evaluation-only workspace skips them: half the memory).
    public let computesGradients: Bool

    public init(network: Network, capacity: Int, computesGradients: Bool = true) {
        precondition(capacity > 0)
        self.computesGradients = computesGradients
        self.network = network
        self.capacity = capacity
        var widths = [network.inputWidth]
        widths += network.layers.map(\.outputWidth)
        activations = widths.map { .allocate(capacity: $0 * capacity) }
        gradients = widths.map { .allocate(capacity: computesGradients ? $0 * capacity : 1) }
        labels = .allocate(capacity: capacity)
        let scratchCount = network.layers.map(\.scratchCount).max() ?? 0
        scratch = scratchCount > 0 ? .allocate(capacity: scratchCount) : nil
    }

    deinit {
        activations.forEach { $0.deallocate() }
        gradients.forEach { $0.deallocate() }
        labels.deallocate()
        scratch?.deallocate()
    }

    /// The input rows (capacity × inputWidth) to fill before `lossAndGradient` or `evaluate`.
    public var input: UnsafeMutablePointer<Float> { activations[0] }

    /// The logits of the last forward pass.
    public var logits: UnsafePointer<Float> { UnsafePointer(activations[activations.count - 1]) }

    /// Runs the forward pass on the first `batchSize` rows of `input`.
    public func forward(parameters: UnsafePointer<Float>, batchSize: Int, normalization: NormalizationMode) {
        precondition(batchSize <= capacity, "batch \(batchSize) exceeds workspace capacity \(capacity)")
        let context = LayerContext(normalization: normalization, scratch: scratch)
        for (index, layer) in network.layers.enumerated() {
            layer.forward(
                input: activations[index], output: activations[index + 1], batchSize: batchSize,
                parameters: parameters + network.layerOffsets[index], context: context)
        }
    }

    /// Mean softmax cross-entropy over the batch and its gradient with respect to every parameter
    /// (written into `gradient`, overwriting it; zero on state). Inputs and labels must already be
    /// in place. Batch norm uses batch statistics (training) unless told otherwise.
    @discardableResult
    public func lossAndGradient(
        parameters: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>, batchSize: Int,
        normalization: NormalizationMode = .batchStatistics(ghostBatchSize: nil)
    ) -> (loss: Double, correct: Int) {
        precondition(computesGradients, "an evaluation-only workspace has no gradient buffers")
        forward(parameters: parameters, batchSize: batchSize, normalization: normalization)
        let context = LayerContext(normalization: normalization, scratch: scratch)
        let last = network.layers.count
        let (lossSum, correct) = SoftmaxCrossEntropy.evaluate(
            logits: activations[last], labels: labels, batchSize: batchSize, classCount: network.classCount,
            gradient: gradients[last])
        for index in stride(from: last - 1, through: 0, by: -1) {
            network.layers[index].backward(
                input: activations[index], output: activations[index + 1], outputGradient: gradients[index + 1],
                inputGradient: index > 0 ? gradients[index] : nil, batchSize: batchSize,
                parameters: parameters + network.layerOffsets[index],
                parameterGradient: gradient + network.layerOffsets[index], context: context)
        }
        return (lossSum / Double(batchSize), correct)
    }

    /// Folds the statistics of the last training forward pass (same rows, same parameters) into
    /// the running statistics of every batch-norm layer, in place in `parameters`.
    public func updateRunningStatistics(
        parameters: UnsafeMutablePointer<Float>, batchSize: Int, ghostBatchSize: Int?, rule: RunningStatisticsRule,
        momentum: Float
    ) {
        for (index, layer) in network.layers.enumerated() where !layer.stateShapes.isEmpty {
            layer.updateRunningStatistics(
                input: activations[index], batchSize: batchSize, ghostBatchSize: ghostBatchSize ?? batchSize,
                rule: rule, momentum: momentum, parameters: parameters + network.layerOffsets[index])
        }
    }

    /// Summed loss and number correct on the batch in place, without gradients. Batch norm uses
    /// its running statistics (inference) unless told otherwise.
    public func evaluate(
        parameters: UnsafePointer<Float>, batchSize: Int, normalization: NormalizationMode = .runningStatistics
    ) -> (lossSum: Double, correct: Int) {
        forward(parameters: parameters, batchSize: batchSize, normalization: normalization)
        return SoftmaxCrossEntropy.evaluate(
            logits: logits, labels: labels, batchSize: batchSize, classCount: network.classCount, gradient: nil)
    }
}

extension NetworkWorkspace {
    /// Array convenience for tests and cold paths.
    public func lossAndGradient(
        parameters: [Float], inputs: [Float], labels: [Int32],
        normalization: NormalizationMode = .batchStatistics(ghostBatchSize: nil)
    ) -> (loss: Double, gradient: [Float]) {
        let batchSize = labels.count
        precondition(inputs.count == batchSize * network.inputWidth)
        inputs.withUnsafeBufferPointer { input.update(from: $0.baseAddress!, count: inputs.count) }
        labels.withUnsafeBufferPointer { self.labels.update(from: $0.baseAddress!, count: batchSize) }
        var gradient = [Float](repeating: 0, count: network.parameterCount)
        let loss = parameters.withUnsafeBufferPointer { p in
            gradient.withUnsafeMutableBufferPointer { g in
                lossAndGradient(
                    parameters: p.baseAddress!, gradient: g.baseAddress!, batchSize: batchSize,
                    normalization: normalization
                ).loss
            }
        }
        return (loss, gradient)
    }
}
