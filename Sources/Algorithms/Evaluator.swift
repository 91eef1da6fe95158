import Datasets
import LearningCore

/// Loss and accuracy of a model on a fixed data set, in chunks of `chunkSize` rows.
public final class Evaluator {
    public let dataset: Dataset
    private let workspace: NetworkWorkspace
    private let chunkSize: Int

    public init(network: Network, dataset: Dataset, chunkSize: Int = 500) {
        precondition(
            dataset.featureCount == network.inputWidth,
            "data has \(dataset.featureCount) features, model expects \(network.inputWidth)")
        self.dataset = dataset
        self.chunkSize = chunkSize
        workspace = NetworkWorkspace(network: network, capacity: chunkSize, computesGradients: false)
    }

    /// Mean cross-entropy and the fraction classified correctly.
    public func evaluate(_ parameters: UnsafeBufferPointer<Float>) -> (loss: Double, accuracy: Double) {
        var lossSum = 0.0
        var correct = 0
        var start = 0
        while start < dataset.count {
            let end = min(start + chunkSize, dataset.count)
            dataset.copyRows(start..<end, into: workspace.input, labels: workspace.labels)
            let result = workspace.evaluate(parameters: parameters.baseAddress!, batchSize: end - start)
            lossSum += result.lossSum
            correct += result.correct
            start = end
        }
        return (lossSum / Double(dataset.count), Double(correct) / Double(dataset.count))
    }
}

/// Batch-norm running statistics estimated afresh for a given set of weights (the average model,
/// whose averaged running statistics belong to no model that was trained).
public enum RunningStatisticsEstimator {
    /// Sets each batch-norm layer's running mean and variance to the exact average, over the
    /// consecutive groups of `groupSize` rows of `dataset` (a last partial group is dropped unless
    /// it is the only one), of the group means and unbiased variances that a training-mode forward
    /// pass sees, layer after layer: PyTorch's cumulative average (`momentum=None`), as SWA's
    /// `update_bn` and "precise BN" use it.
    public static func recompute(
        _ parameters: inout [Float], network: Network, dataset: Dataset, groupSize: Int
    ) {
        guard !network.stateRanges.isEmpty, dataset.count > 0 else { return }
        let size = min(groupSize, dataset.count)
        let workspace = NetworkWorkspace(network: network, capacity: size, computesGradients: false)
        var groups = 0
        var start = 0
        while start + size <= dataset.count {
            dataset.copyRows(start..<(start + size), into: workspace.input, labels: workspace.labels)
            parameters.withUnsafeMutableBufferPointer { p in
                workspace.forward(
                    parameters: p.baseAddress!, batchSize: size, normalization: .batchStatistics(ghostBatchSize: nil))
                // momentum 1/(k + 1) on the k-th group (0-based) keeps the running value the mean of all groups so far.
                workspace.updateRunningStatistics(
                    parameters: p.baseAddress!, batchSize: size, ghostBatchSize: nil, rule: .sequential,
                    momentum: 1 / Float(groups + 1))
            }
            groups += 1
            start += size
        }
    }
}
