import LearningCore
import Topologies

/// When the local update happens relative to the gossip averaging.
public enum GossipAlgorithm: String, Sendable, Codable, CaseIterable {
    /// Adapt-then-combine (diffusion): ψᵢ = local steps from xᵢ; xᵢ ← Σⱼ Wᵢⱼ ψⱼ.
    case adaptThenCombine = "atc"
    /// Combine-then-adapt in D-PSGD form (Lian et al., NeurIPS 2017): the update is computed at
    /// the pre-mix iterate and added after mixing: xᵢ ← Σⱼ Wᵢⱼ xⱼ + Δᵢ(xᵢ), where Δᵢ(xᵢ) is the
    /// change H local steps make to xᵢ (−η gᵢ(xᵢ) for one plain SGD step).
    case combineThenAdapt = "cta"
    /// CHOCO-SGD: gossip of compressed differences (`ChocoGossip`).
    case choco
    /// Gradient tracking: x and a tracker of the average gradient (`GradientTracking`).
    case gradientTracking = "gradient-tracking"
}

/// The averaging step of gossip, in a fixed order so every run of the same seed gives the same bits.
public enum Gossip {
    /// One neighbour's contribution.
    public struct Term {
        public var weight: Float
        public var values: UnsafeBufferPointer<Float>
        public init(weight: Float, values: UnsafeBufferPointer<Float>) {
            self.weight = weight
            self.values = values
        }
    }

    /// ATC: x ← selfWeight·x + Σ terms (terms in ascending sender order).
    public static func adaptThenCombine(_ x: inout [Float], selfWeight: Float, neighbors: [Term]) {
        check(neighbors, count: x.count)
        x.withUnsafeMutableBufferPointer { y in
            forEachBlock(count: y.count) { range in
                BLAS.scal(count: range.count, alpha: selfWeight, x: y.baseAddress! + range.lowerBound)
                add(neighbors, to: y, range)
            }
        }
    }

    /// CTA (D-PSGD): with `trained` = x after the local steps and `sent` = x before them,
    /// x ← Σⱼ Wᵢⱼ xⱼ + (trained − sent) = trained + (selfWeight − 1)·sent + Σ terms.
    public static func combineThenAdapt(
        _ trained: inout [Float], sent: UnsafeBufferPointer<Float>, selfWeight: Float, neighbors: [Term]
    ) {
        precondition(sent.count == trained.count)
        check(neighbors, count: trained.count)
        trained.withUnsafeMutableBufferPointer { y in
            forEachBlock(count: y.count) { range in
                BLAS.axpy(
                    count: range.count, alpha: selfWeight - 1, x: sent.baseAddress! + range.lowerBound,
                    y: y.baseAddress! + range.lowerBound)
                add(neighbors, to: y, range)
            }
        }
    }

    /// CTA with the all-reduce's average: x ← trained − sent + x̄, as `combineThenAdapt` with
    /// self-weight 0 and x̄ as the one term (weights −1 and 1), but over x̄'s chunks where they
    /// are. The bits are the same whatever the chunks' bounds: with weights ±1 every product is
    /// exact, so each value is (trained − sent) + x̄ rounded twice in that order, in any kernel.
    public static func combineThenAdapt(
        _ trained: inout [Float], sent: UnsafeBufferPointer<Float>, average: [AverageChunk]
    ) {
        precondition(sent.count == trained.count)
        trained.withUnsafeMutableBufferPointer { y in
            for chunk in average {
                var start = chunk.range.lowerBound
                while start < chunk.range.upperBound {
                    let end = min(start + blockLength, chunk.range.upperBound)
                    BLAS.axpy(count: end - start, alpha: -1, x: sent.baseAddress! + start, y: y.baseAddress! + start)
                    BLAS.axpy(
                        count: end - start, alpha: 1, x: chunk.values.baseAddress! + (start - chunk.range.lowerBound),
                        y: y.baseAddress! + start)
                    start = end
                }
            }
        }
    }

    /// Mixing runs block by block, every operation of a block before the next block, so the
    /// block of x stays in cache across the scaling and the neighbours' terms (one pass over
    /// memory instead of one per term). Each value sees the same operations in the same order as
    /// whole-vector calls, and blocks are a multiple of every BLAS kernel's unrolling, so the
    /// bits are those of the unblocked form.
    static let blockLength = 8_192

    private static func forEachBlock(count: Int, _ body: (Range<Int>) -> Void) {
        var start = 0
        while start < count {
            let end = min(start + blockLength, count)
            body(start..<end)
            start = end
        }
    }

    private static func check(_ terms: [Term], count: Int) {
        for term in terms {
            precondition(
                term.values.count == count, "neighbour model has \(term.values.count) values, expected \(count)")
        }
    }

    private static func add(_ terms: [Term], to y: UnsafeMutableBufferPointer<Float>, _ range: Range<Int>) {
        for term in terms {
            BLAS.axpy(
                count: range.count, alpha: term.weight, x: term.values.baseAddress! + range.lowerBound,
                y: y.baseAddress! + range.lowerBound)
        }
    }

    /// The dense reference X ← W·X over all n models at once (one SGEMM), for tests and checks.
    public static func denseMix(_ models: [[Float]], mixing topology: Topology) -> [[Float]] {
        let n = models.count
        precondition(n == topology.nodeCount)
        let d = models[0].count
        let w = topology.denseMixingMatrix.map(Float.init)
        let x = models.flatMap { $0 }
        var y = [Float](repeating: 0, count: n * d)
        w.withUnsafeBufferPointer { wp in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    BLAS.gemm(
                        transposeA: false, transposeB: false, m: n, n: d, k: n, alpha: 1, a: wp.baseAddress!, lda: n,
                        b: xp.baseAddress!, ldb: d, beta: 0, c: yp.baseAddress!, ldc: d)
                }
            }
        }
        return (0..<n).map { Array(y[($0 * d)..<(($0 + 1) * d)]) }
    }
}
