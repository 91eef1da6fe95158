import Datasets
import LearningCore

/// A differentiable loss over a flat parameter vector, with exact Hessian-vector products: what
/// the curvature and sharpness estimators need. `NetworkLoss` is the real one; tests also use
/// exact quadratics.
public protocol LossSurface {
    var dimension: Int { get }
    func loss(at x: [Float]) -> Double
    func lossAndGradient(at x: [Float]) -> (loss: Double, gradient: [Float])
    func hessianVectorProduct(at x: [Float], _ v: [Float]) -> [Float]
    /// Coordinates that are not parameters (batch-norm running statistics): random perturbations
    /// leave them alone, and the Hessian is zero on them.
    var frozenRanges: [Range<Int>] { get }
}

extension LossSurface {
    public var frozenRanges: [Range<Int>] { [] }

    /// `v` with the frozen coordinates set to zero.
    public func zeroingFrozen(_ v: [Float]) -> [Float] {
        var v = v
        for range in frozenRanges { for i in range { v[i] = 0 } }
        return v
    }
}

/// The mean softmax cross-entropy of a network over a fixed evaluation set, processed in chunks.
///
/// With batch norm, `normalization` says which loss this is: `.runningStatistics` is the
/// inference loss (the running statistics are constants); `.batchStatistics` is the training loss,
/// each chunk (or each ghost batch of a chunk) normalised with its own statistics, so the chunk
/// size is part of the definition. Loss, gradient and H·v all use the same mode.
public final class NetworkLoss: LossSurface {
    public let network: Network
    public let dataset: Dataset
    public let normalization: NormalizationMode
    private let workspace: NetworkWorkspace
    private let curvature: CurvatureWorkspace
    private let chunkSize: Int
    private let rows: [Int]

    /// - Parameter rows: which examples of `dataset` to use (all by default).
    public init(
        network: Network, dataset: Dataset, rows: [Int]? = nil, chunkSize: Int = 256,
        normalization: NormalizationMode = .runningStatistics
    ) {
        self.network = network
        self.normalization = normalization
        self.dataset = dataset
        self.chunkSize = chunkSize
        self.rows = rows ?? Array(0..<dataset.count)
        workspace = NetworkWorkspace(network: network, capacity: chunkSize)
        curvature = CurvatureWorkspace(network: network, capacity: chunkSize)
    }

    public var dimension: Int { network.parameterCount }
    public var exampleCount: Int { rows.count }

    /// The same loss restricted to a subset of this one's rows (for m-sharpness).
    public func restricted(to positions: Range<Int>) -> NetworkLoss {
        NetworkLoss(
            network: network, dataset: dataset, rows: Array(rows[positions]), chunkSize: chunkSize,
            normalization: normalization)
    }

    public var frozenRanges: [Range<Int>] { network.stateRanges }

    private func chunks() -> [ArraySlice<Int>] {
        stride(from: 0, to: rows.count, by: chunkSize).map { rows[$0..<min($0 + chunkSize, rows.count)] }
    }

    public func loss(at x: [Float]) -> Double { evaluate(at: x).loss }

    /// Mean loss and accuracy.
    public func evaluate(at x: [Float]) -> (loss: Double, accuracy: Double) {
        var lossSum = 0.0
        var correct = 0
        x.withUnsafeBufferPointer { p in
            for chunk in chunks() {
                dataset.copyRows(chunk, into: workspace.input, labels: workspace.labels)
                let result = workspace.evaluate(
                    parameters: p.baseAddress!, batchSize: chunk.count, normalization: normalization)
                lossSum += result.lossSum
                correct += result.correct
            }
        }
        return (lossSum / Double(rows.count), Double(correct) / Double(rows.count))
    }

    public func lossAndGradient(at x: [Float]) -> (loss: Double, gradient: [Float]) {
        var total = [Float](repeating: 0, count: dimension)
        var part = [Float](repeating: 0, count: dimension)
        var lossSum = 0.0
        x.withUnsafeBufferPointer { p in
            for chunk in chunks() {
                dataset.copyRows(chunk, into: workspace.input, labels: workspace.labels)
                let weight = Float(chunk.count) / Float(rows.count)
                let loss = part.withUnsafeMutableBufferPointer {
                    workspace.lossAndGradient(
                        parameters: p.baseAddress!, gradient: $0.baseAddress!, batchSize: chunk.count,
                        normalization: normalization
                    ).loss
                }
                lossSum += loss * Double(chunk.count)
                total.addScaled(part, by: weight)
            }
        }
        return (lossSum / Double(rows.count), total)
    }

    public func hessianVectorProduct(at x: [Float], _ v: [Float]) -> [Float] {
        var total = [Float](repeating: 0, count: dimension)
        var part = [Float](repeating: 0, count: dimension)
        x.withUnsafeBufferPointer { p in
            v.withUnsafeBufferPointer { d in
                for chunk in chunks() {
                    dataset.copyRows(chunk, into: curvature.input, labels: curvature.labels)
                    part.withUnsafeMutableBufferPointer {
                        _ = curvature.hessianVectorProduct(
                            parameters: p.baseAddress!, direction: d.baseAddress!, product: $0.baseAddress!,
                            batchSize: chunk.count, normalization: normalization)
                    }
                    total.addScaled(part, by: Float(chunk.count) / Float(rows.count))
                }
            }
        }
        return total
    }
}
