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
        workspace = NetworkWorkspace(network: network, capacity: chunkSize)
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
