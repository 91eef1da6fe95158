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
    /// H(x) for many products at one x. A surface that can does the work that does not depend on
    /// the direction (the forward pass and the gradient) once, here.
    func curvatureOperators(at x: [Float]) -> CurvatureOperators
    /// Coordinates that are not parameters (batch-norm running statistics): random perturbations
    /// leave them alone, and the Hessian is zero on them.
    var frozenRanges: [Range<Int>] { get }
}

extension LossSurface {
    public var frozenRanges: [Range<Int>] { [] }

    public func curvatureOperators(at x: [Float]) -> CurvatureOperators {
        CurvatureOperators(product: { v in self.hessianVectorProduct(at: x, v) })
    }

    /// v ↦ H(x)·v.
    public func hessianOperator(at x: [Float]) -> ([Float]) -> [Float] { curvatureOperators(at: x).product }

    /// `v` with the frozen coordinates set to zero.
    public func zeroingFrozen(_ v: [Float]) -> [Float] {
        var v = v
        for range in frozenRanges { for i in range { v[i] = 0 } }
        return v
    }
}

/// A Hessian at one point: v ↦ H·v, and v ↦ vᵀHv (all Hutchinson's probes need; a surface may
/// compute it more cheaply than through the product).
public struct CurvatureOperators {
    public var product: ([Float]) -> [Float]
    public var quadraticForm: ([Float]) -> Double
    /// The operators for a diagonal block: for directions zero outside `block`, a product that
    /// is H·v on `block` (elsewhere it may be anything) and the same quadratic form. A surface may
    /// leave out work that cannot reach the block; by default these are the operators themselves.
    public var restricted: (_ block: Range<Int>) -> CurvatureOperators

    public init(
        product: @escaping ([Float]) -> [Float], quadraticForm: (([Float]) -> Double)? = nil,
        restricted: ((Range<Int>) -> CurvatureOperators)? = nil
    ) {
        self.product = product
        let form = quadraticForm ?? { v in zip(v, product(v)).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        self.quadraticForm = form
        self.restricted = restricted ?? { _ in CurvatureOperators(product: product, quadraticForm: form) }
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
    fileprivate let curvature: CurvatureWorkspace
    fileprivate let chunkSize: Int
    fileprivate let rows: [Int]
    /// One chunk's gradient, before it is weighted into the mean (kept: a fresh model-sized array
    /// per gradient cost page faults).
    private var chunkGradient: [Float] = []

    /// - Parameter rows: which examples of `dataset` to use (all by default).
    public convenience init(
        network: Network, dataset: Dataset, rows: [Int]? = nil, chunkSize: Int = 256,
        normalization: NormalizationMode = .runningStatistics
    ) {
        self.init(
            network: network, dataset: dataset, rows: rows ?? Array(0..<dataset.count), chunkSize: chunkSize,
            normalization: normalization, workspace: NetworkWorkspace(network: network, capacity: chunkSize),
            curvature: CurvatureWorkspace(network: network, capacity: chunkSize))
    }

    private init(
        network: Network, dataset: Dataset, rows: [Int], chunkSize: Int, normalization: NormalizationMode,
        workspace: NetworkWorkspace, curvature: CurvatureWorkspace
    ) {
        self.network = network
        self.normalization = normalization
        self.dataset = dataset
        self.chunkSize = chunkSize
        self.rows = rows
        self.workspace = workspace
        self.curvature = curvature
    }

    public var dimension: Int { network.parameterCount }
    public var exampleCount: Int { rows.count }

    /// The same loss restricted to a subset of this one's rows (for m-sharpness). It shares this
    /// loss's scratch memory, so use one of the two at a time (as every `NetworkLoss` is used:
    /// from one thread).
    public func restricted(to positions: Range<Int>) -> NetworkLoss {
        NetworkLoss(
            network: network, dataset: dataset, rows: Array(rows[positions]), chunkSize: chunkSize,
            normalization: normalization, workspace: workspace, curvature: curvature)
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
        var part = chunkGradient
        chunkGradient = []
        if part.count != dimension { part = [Float](repeating: 0, count: dimension) }
        defer { chunkGradient = part }
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
        PreparedCurvature(self, at: x, retainingAtMost: 0).product(v)
    }

    /// At most this many bytes of forward and backward state are kept by the operators from
    /// `curvatureOperators(at:)`; chunks beyond it are recomputed each time.
    public static let retainedStateBudgetBytes = 256 << 20

    public func curvatureOperators(at x: [Float]) -> CurvatureOperators {
        curvatureOperators(at: x, retainingAtMost: Self.retainedStateBudgetBytes)
    }

    /// The operators keeping at most `budget` bytes of state (tests use small budgets to mix
    /// prepared and recomputed chunks).
    func curvatureOperators(at x: [Float], retainingAtMost budget: Int) -> CurvatureOperators {
        let prepared = PreparedCurvature(self, at: x, retainingAtMost: budget)
        return CurvatureOperators(
            product: { prepared.product($0) }, quadraticForm: { prepared.quadraticForm($0) },
            restricted: { block in
                // A weight matrix's block: the layers below it are left out of both passes.
                let first = self.curvature.firstLayer(reaching: block)
                return CurvatureOperators(
                    product: { prepared.product($0, firstLayer: first) },
                    quadraticForm: { prepared.quadraticForm($0, firstLayer: first) })
            })
    }

    /// Rows per chunk of prepared curvature: `chunkSize` when batch statistics make the chunk part
    /// of the loss's definition, otherwise as many rows as 32 MB of state hold (larger GEMMs).
    fileprivate var preparedChunkSize: Int {
        let chunkDefinesLoss =
            normalization != .runningStatistics && network.layers.contains { $0 is BatchNorm }
        guard !chunkDefinesLoss else { return chunkSize }
        let rowsInBudget = (32 << 20) / CurvatureWorkspace.retainedBytesPerRow(of: network)
        return max(chunkSize, min(rows.count, rowsInBudget))
    }

    /// A `NetworkLoss` at one x, its chunks prepared: each chunk whose state fits in the budget
    /// has its rows converted to floats and its forward pass and gradient kept once, so a product
    /// costs one R-forward and one R-backward pass (about half of a from-scratch product) and a
    /// quadratic form one forward pass to second order. Chunks beyond the budget are recomputed
    /// each time, `chunkSize` rows at a time.
    fileprivate final class PreparedCurvature {
        let loss: NetworkLoss
        let x: [Float]
        let chunks: [ArraySlice<Int>]
        let workspaces: [CurvatureWorkspace?]
        /// The last product, and the per-piece scratch: rewritten by the next product in place
        /// when the caller has let go of it (copy-on-write gives it fresh storage otherwise), so
        /// products do not each cost a model's worth of fresh pages.
        private var output: [Float] = []
        private var part: [Float] = []

        init(_ loss: NetworkLoss, at x: [Float], retainingAtMost budget: Int) {
            precondition(x.count == loss.dimension, "\(x.count) parameters for a \(loss.dimension)-value model")
            self.loss = loss
            self.x = x
            let size = loss.preparedChunkSize
            let rows = loss.rows
            let chunks = stride(from: 0, to: rows.count, by: size).map { rows[$0..<min($0 + size, rows.count)] }
            self.chunks = chunks
            let bytesPerRow = CurvatureWorkspace.retainedBytesPerRow(of: loss.network)
            var retained = 0
            var workspaces: [CurvatureWorkspace?] = []
            x.withUnsafeBufferPointer { p in
                for chunk in chunks {
                    guard retained + bytesPerRow * chunk.count <= budget else {
                        workspaces.append(nil)
                        continue
                    }
                    retained += bytesPerRow * chunk.count
                    let workspace = CurvatureWorkspace(
                        network: loss.network, capacity: chunk.count,
                        sharingTemporariesWith: workspaces.first.flatMap { $0 } ?? loss.curvature)
                    loss.dataset.copyRows(chunk, into: workspace.input, labels: workspace.labels)
                    workspace.prepare(
                        parameters: p.baseAddress!, batchSize: chunk.count, normalization: loss.normalization)
                    workspaces.append(workspace)
                }
            }
            self.workspaces = workspaces
        }

        /// Calls `body` with each piece of the data, its weight in the mean, and its prepared
        /// workspace; unprepared pieces are loaded into the loss's own workspace first (nil).
        private func forEachPiece(_ body: (ArraySlice<Int>, Float, CurvatureWorkspace?) -> Void) {
            let total = Float(loss.rows.count)
            for (chunk, workspace) in zip(chunks, workspaces) {
                if let workspace {
                    body(chunk, Float(chunk.count) / total, workspace)
                    continue
                }
                for start in stride(from: chunk.startIndex, to: chunk.endIndex, by: loss.chunkSize) {
                    let piece = chunk[start..<min(start + loss.chunkSize, chunk.endIndex)]
                    loss.dataset.copyRows(piece, into: loss.curvature.input, labels: loss.curvature.labels)
                    body(piece, Float(piece.count) / total, nil)
                }
            }
        }

        /// One piece's mean H·v: from its prepared workspace, or from scratch (rows already loaded).
        private func product(
            of piece: ArraySlice<Int>, _ workspace: CurvatureWorkspace?, _ parameters: UnsafePointer<Float>,
            _ direction: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, firstLayer: Int
        ) {
            if let workspace {
                workspace.preparedProduct(
                    parameters: parameters, direction: direction, product: out, firstLayer: firstLayer)
            } else {
                loss.curvature.hessianVectorProduct(
                    parameters: parameters, direction: direction, product: out, batchSize: piece.count,
                    normalization: loss.normalization, firstLayer: firstLayer)
            }
        }

        /// H·v; with `firstLayer` > 0, for v zero below that layer, H·v from that layer up (zero
        /// below: `CurvatureWorkspace.preparedProduct`).
        func product(_ v: [Float], firstLayer: Int = 0) -> [Float] {
            let dimension = loss.dimension
            precondition(v.count == dimension, "direction of \(v.count) values for a \(dimension)-value model")
            if output.count != dimension { output = [Float](repeating: 0, count: dimension) }
            x.withUnsafeBufferPointer { p in
                v.withUnsafeBufferPointer { d in
                    if chunks.count == 1, let workspace = workspaces[0] {
                        // The whole set in one prepared chunk: its mean is the product.
                        output.withUnsafeMutableBufferPointer { out in
                            workspace.preparedProduct(
                                parameters: p.baseAddress!, direction: d.baseAddress!, product: out.baseAddress!,
                                firstLayer: firstLayer)
                        }
                        return
                    }
                    if part.count != dimension { part = [Float](repeating: 0, count: dimension) }
                    output.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
                    forEachPiece { piece, weight, workspace in
                        part.withUnsafeMutableBufferPointer {
                            product(
                                of: piece, workspace, p.baseAddress!, d.baseAddress!, into: $0.baseAddress!,
                                firstLayer: firstLayer)
                        }
                        output.addScaled(part, by: weight)
                    }
                }
            }
            return output
        }

        /// vᵀHv: per prepared chunk by forward mode to second order where every layer has it,
        /// otherwise vᵀ(H·v); `firstLayer` as for `product`.
        func quadraticForm(_ v: [Float], firstLayer: Int = 0) -> Double {
            let dimension = loss.dimension
            precondition(v.count == dimension, "direction of \(v.count) values for a \(dimension)-value model")
            var sum = 0.0
            x.withUnsafeBufferPointer { p in
                v.withUnsafeBufferPointer { d in
                    forEachPiece { piece, weight, workspace in
                        if let workspace,
                            let form = workspace.preparedQuadraticForm(
                                parameters: p.baseAddress!, direction: d.baseAddress!, firstLayer: firstLayer)
                        {
                            sum += Double(weight) * form
                            return
                        }
                        // Only pieces without a second-order forward need the product buffer.
                        if part.count != dimension { part = [Float](repeating: 0, count: dimension) }
                        part.withUnsafeMutableBufferPointer {
                            product(
                                of: piece, workspace, p.baseAddress!, d.baseAddress!, into: $0.baseAddress!,
                                firstLayer: firstLayer)
                            sum +=
                                Double(weight)
                                * BLAS.doubleDot(count: dimension, x: d.baseAddress!, y: UnsafePointer($0.baseAddress!))
                        }
                    }
                }
            }
            return sum
        }
    }
}
