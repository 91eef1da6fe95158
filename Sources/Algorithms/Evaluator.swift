import Datasets
import LearningCore

/// Loss and accuracy of a model on a fixed data set, in chunks of `chunkSize` rows.
public final class Evaluator {
    public let dataset: Dataset
    private let network: Network
    private let workspace: NetworkWorkspace
    public let chunkSize: Int

    public init(network: Network, dataset: Dataset, chunkSize: Int = 500) {
        precondition(
            dataset.featureCount == network.inputWidth,
            "data has \(dataset.featureCount) features, model expects \(network.inputWidth)")
        self.dataset = dataset
        self.network = network
        self.chunkSize = chunkSize
        workspace = NetworkWorkspace(network: network, capacity: chunkSize, computesGradients: false)
    }

    /// The same evaluation with scratch memory of its own (for another thread).
    public func replica() -> Evaluator { Evaluator(network: network, dataset: dataset, chunkSize: chunkSize) }

    /// Chunks of `chunkSize` rows (the last one shorter).
    public var chunkCount: Int { (dataset.count + chunkSize - 1) / chunkSize }

    /// Rows of chunk `chunk`.
    public func rows(ofChunk chunk: Int) -> Range<Int> {
        chunk * chunkSize..<min((chunk + 1) * chunkSize, dataset.count)
    }

    /// Mean cross-entropy and the fraction classified correctly.
    public func evaluate(_ parameters: UnsafeBufferPointer<Float>) -> (loss: Double, accuracy: Double) {
        result(of: (0..<chunkCount).map { chunkSums(parameters, chunk: $0) })
    }

    /// The summed loss and the correct count of one chunk.
    public func chunkSums(_ parameters: UnsafeBufferPointer<Float>, chunk: Int) -> ChunkSums {
        let rows = rows(ofChunk: chunk)
        dataset.copyRows(rows, into: workspace.input, labels: workspace.labels)
        let result = workspace.evaluate(parameters: parameters.baseAddress!, batchSize: rows.count)
        return ChunkSums(lossSum: result.lossSum, correct: result.correct)
    }

    /// `evaluate`'s result from every chunk's sums, added in chunk order (so chunks computed
    /// anywhere, in any order, give its bits).
    public func result(of chunks: [ChunkSums]) -> (loss: Double, accuracy: Double) {
        precondition(chunks.count == chunkCount, "\(chunks.count) chunks of \(chunkCount)")
        var lossSum = 0.0
        var correct = 0
        for chunk in chunks {
            lossSum += chunk.lossSum
            correct += chunk.correct
        }
        return (lossSum / Double(dataset.count), Double(correct) / Double(dataset.count))
    }

    public struct ChunkSums: Sendable, Equatable {
        public var lossSum: Double
        public var correct: Int
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
