import COpenBLAS
import LearningCore

/// Spectral figures of a mixing matrix W (dense LAPACK: `dsyev` for symmetric W, `dgeev`
/// otherwise).
public struct SpectralSummary: Sendable, Equatable, Codable {
    /// |λ| of every eigenvalue, largest first.
    public var eigenvalueModuli: [Double]
    /// The second-largest eigenvalue modulus; for symmetric W, max(|λ₂|, |λₙ|).
    public var secondLargestModulus: Double
    /// 1 − secondLargestModulus: 1 for exact averaging, 0 when consensus is never reached.
    public var spectralGap: Double { 1 - secondLargestModulus }
    /// σ = ‖W − 11ᵀ/n‖₂ when W is doubly stochastic: the consensus distance contracts at least by
    /// σ² per round without gradients, Ξ²_{t+1} ≤ σ²·Ξ²_t (Boyd et al., "Randomized gossip
    /// algorithms", 2006). nil when W is not doubly stochastic.
    public var contraction: Double?

    enum CodingKeys: String, CodingKey {
        case eigenvalueModuli = "eigenvalue_moduli"
        case secondLargestModulus = "second_largest_modulus"
        case contraction
    }
}

public enum Spectrum {
    /// Eigenvalues of a symmetric n×n matrix, ascending.
    public static func symmetricEigenvalues(_ matrix: [Double], n: Int) -> [Double] {
        LAPACK.symmetricEigen(matrix, n: n).values
    }

    /// Eigenvalues (real, imaginary) of a general n×n matrix (row-major).
    public static func generalEigenvalues(_ matrix: [Double], n: Int) -> [(Double, Double)] {
        LAPACK.generalEigenvalues(matrix, n: n)
    }

    /// The spectral summary of a dense W.
    public static func summary(ofMatrix w: [Double], n: Int) -> SpectralSummary {
        let symmetric = (0..<n).allSatisfy { i in (0..<i).allSatisfy { j in abs(w[i * n + j] - w[j * n + i]) <= 1e-12 }
        }
        let moduli: [Double]
        if symmetric {
            moduli = symmetricEigenvalues(w, n: n).map(abs).sorted(by: >)
        } else {
            moduli = generalEigenvalues(w, n: n).map { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() }.sorted(by: >)
        }
        let second = n > 1 ? moduli[1] : 0
        let rows = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + w[i * n + $1] } }
        let columns = (0..<n).map { j in (0..<n).reduce(0.0) { $0 + w[$1 * n + j] } }
        let doublyStochastic = (rows + columns).allSatisfy { abs($0 - 1) <= Topology.tolerance }
        var contraction: Double?
        if doublyStochastic {
            if symmetric {
                contraction = second
            } else {
                // σ² = λ_max(MᵀM), M = W − 11ᵀ/n.
                let m = w.map { $0 - 1 / Double(n) }
                var gram = [Double](repeating: 0, count: n * n)
                m.withUnsafeBufferPointer { mp in
                    gram.withUnsafeMutableBufferPointer { gp in
                        cblas_dgemm(
                            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, mp.baseAddress!,
                            Int32(n),
                            mp.baseAddress!, Int32(n), 0, gp.baseAddress!, Int32(n))
                    }
                }
                contraction = max(symmetricEigenvalues(gram, n: n).last ?? 0, 0).squareRoot()
            }
        }
        return SpectralSummary(eigenvalueModuli: moduli, secondLargestModulus: second, contraction: contraction)
    }

    public static func summary(of topology: Topology) -> SpectralSummary {
        summary(ofMatrix: topology.denseMixingMatrix, n: topology.nodeCount)
    }

    /// W_{k−1}···W₁·W₀, the mixing of k consecutive rounds, dense.
    public static func product(_ topologies: [Topology]) -> [Double] {
        let n = topologies[0].nodeCount
        var result = topologies[0].denseMixingMatrix
        for topology in topologies.dropFirst() {
            let next = topology.denseMixingMatrix
            var out = [Double](repeating: 0, count: n * n)
            next.withUnsafeBufferPointer { a in
                result.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { c in
                        cblas_dgemm(
                            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.baseAddress!,
                            Int32(n),
                            b.baseAddress!, Int32(n), 0, c.baseAddress!, Int32(n))
                    }
                }
            }
            result = out
        }
        return result
    }
}

/// What `dsgd topology inspect` and the run reports say about a schedule's mixing.
public struct ScheduleSpectrum: Sendable, Equatable, Codable {
    /// Per phase (one entry for a fixed topology; sampled rounds for random schedules).
    public var phases: [SpectralSummary]
    /// The product over one period (or over the sampled rounds of a random schedule).
    public var product: SpectralSummary
    /// Rounds in the product.
    public var productRounds: Int
    /// Predicted per-round contraction factor of Ξ²: σ(product)^(2/productRounds), when doubly stochastic.
    public var consensusContractionPerRound: Double? {
        product.contraction.map { pow($0, 2 / Double(productRounds)) }
    }

    /// Spectra of a schedule; random schedules are sampled over `sampleRounds` rounds.
    public init(_ schedule: TopologySchedule, sampleRounds: Int = 16) {
        let rounds = schedule.period ?? sampleRounds
        let topologies = (0..<rounds).map { schedule.topology(atRound: $0) }
        phases = topologies.map { Spectrum.summary(of: $0) }
        productRounds = rounds
        product =
            rounds == 1 ? phases[0] : Spectrum.summary(ofMatrix: Spectrum.product(topologies), n: schedule.nodeCount)
    }

    enum CodingKeys: String, CodingKey {
        case phases, product
        case productRounds = "product_rounds"
        case spectralGap = "spectral_gap"
        case consensusContractionPerRound = "consensus_contraction_per_round"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        phases = try container.decode([SpectralSummary].self, forKey: .phases)
        product = try container.decode(SpectralSummary.self, forKey: .product)
        productRounds = try container.decode(Int.self, forKey: .productRounds)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(phases, forKey: .phases)
        try container.encode(product, forKey: .product)
        try container.encode(productRounds, forKey: .productRounds)
        try container.encode(product.spectralGap, forKey: .spectralGap)
        try container.encodeIfPresent(consensusContractionPerRound, forKey: .consensusContractionPerRound)
    }
}

#if canImport(Glibc)
    import Glibc
#endif
