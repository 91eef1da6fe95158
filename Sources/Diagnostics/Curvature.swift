import LearningCore

/// Hessian spectra and traces from Hessian-vector products alone.
public enum Curvature {
    /// A symmetric linear operator v ↦ H·v on vectors of `dimension` entries (Float64 in and out).
    /// It writes into a buffer its caller keeps (`apply(_:into:)`), so an iteration that takes a
    /// hundred products does not also take a hundred model-sized arrays of fresh pages: on the
    /// default MLP those page faults and unmappings cost more than a third of a product (`perf`).
    public struct Operator {
        /// Writes H·v into `result`, replacing its storage only when its count is not H·v's.
        private let write: (_ v: [Double], _ result: inout [Double]) -> Void

        /// An operator that writes into the caller's buffer.
        public init(writingInto write: @escaping (_ v: [Double], _ result: inout [Double]) -> Void) {
            self.write = write
        }

        /// An operator from a function that returns each product as a new array.
        public init(_ product: @escaping ([Double]) -> [Double]) {
            write = { v, result in result = product(v) }
        }

        /// H·v into `result` (its storage reused when it holds as many values).
        public func apply(_ v: [Double], into result: inout [Double]) { write(v, &result) }

        /// H·v as a new array.
        public func callAsFunction(_ v: [Double]) -> [Double] {
            var result: [Double] = []
            write(v, &result)
            return result
        }
    }

    /// The operator of a loss surface's Hessian at x, optionally restricted to one block (a named
    /// parameter slice): the block's diagonal block H_bb.
    public static func hessian(of surface: LossSurface, at x: [Float], block: Range<Int>? = nil) -> (Operator, Int) {
        restrict(surface.hessianOperator(at: x), dimension: surface.dimension, to: block)
    }

    /// The operator of Float32 products `product` on `dimension` values, or of its diagonal block
    /// on `block`. The Float32 direction handed to `product` is one buffer, rewritten each time
    /// (the copy-on-write of an array keeps a caller that held on to it safe): a fresh
    /// model-sized array per product cost page faults, not arithmetic (`perf`).
    public static func restrict(_ product: @escaping ([Float]) -> [Float], dimension: Int, to block: Range<Int>? = nil)
        -> (Operator, Int)
    {
        let direction = DirectionBuffer(dimension: dimension)
        guard let block else {
            return (
                Operator(writingInto: { v, result in widen(product(direction.holding(v))[...], into: &result) }),
                dimension
            )
        }
        let operator_ = Operator(writingInto: { v, result in
            widen(product(direction.holding(v, at: block))[block], into: &result)
        })
        return (operator_, block.count)
    }

    /// The quadratic form of Float32 forms `form` on `dimension` values, or of its diagonal block
    /// on `block` (zᵀH_bb z is the full form of z extended by zeros).
    public static func restrict(
        quadraticForm form: @escaping ([Float]) -> Double, dimension: Int, to block: Range<Int>? = nil
    )
        -> (([Double]) -> Double, Int)
    {
        let direction = DirectionBuffer(dimension: dimension)
        guard let block else { return ({ z in form(direction.holding(z)) }, dimension) }
        return ({ z in form(direction.holding(z, at: block)) }, block.count)
    }

    /// A Float32 direction of `dimension` values, zero but where the last call put values.
    final class DirectionBuffer {
        private var values: [Float]
        /// Where the last call's values are (the rest is zero).
        private var written: Range<Int>

        init(dimension: Int) {
            values = [Float](repeating: 0, count: dimension)
            written = 0..<0
        }

        /// The direction `v` rounded to Float32 (v fills the whole vector when `block` is nil,
        /// otherwise the block, zero elsewhere).
        func holding(_ v: [Double], at block: Range<Int>? = nil) -> [Float] {
            let target = block ?? values.indices
            precondition(v.count == target.count, "\(v.count) values for a direction of \(target.count)")
            values.withUnsafeMutableBufferPointer { out in
                if target != written {
                    for i in written { out[i] = 0 }
                }
                v.withUnsafeBufferPointer { v in
                    for (k, i) in target.enumerated() { out[i] = Float(v[k]) }
                }
            }
            written = target
            return values
        }
    }

    /// Lanczos with full re-orthogonalisation (Golub and Van Loan, §10.1): `iterations` products
    /// give a tridiagonal T whose eigenvalues (Ritz values) approximate H's extreme eigenvalues of
    /// both signs. Returns Ritz values ascending and, for quadrature, the squared first components
    /// of T's eigenvectors.
    ///
    /// With `partialLevel` set (the relative error of the operator's products), the basis is
    /// re-orthogonalised only when Simon's estimate of the lost orthogonality passes its square
    /// root (partial re-orthogonalisation): T stays the projection of H to that error, which is all
    /// quadrature needs, at a fraction of the memory traffic.
    public static func lanczos(
        _ apply: Operator, dimension: Int, iterations: Int, start: [Double], partialLevel: Double? = nil
    ) -> (ritzValues: [Double], weights: [Double]) {
        let k = min(iterations, dimension)
        var process = LanczosProcess(start: start, capacity: k, partialLevel: partialLevel)
        for step in 0..<k {
            process.extend(apply)
            if step == k - 1 || process.isInvariant { break }
        }
        let (values, vectors) = tridiagonalEigen(alphas: process.alphas, betas: process.betas)
        return (values, vectors.map { $0[0] * $0[0] })
    }

    /// The state of a Lanczos iteration: the orthonormal basis so far, T's coefficients, and the
    /// residual that becomes the next basis vector.
    ///
    /// The vectors and the recurrence are Float64; the basis kept for re-orthogonalisation is
    /// stored in Float32, row after row, so re-orthogonalisation is two matrix-vector products
    /// over half the bytes (it is memory-bound: at 100 steps it cost more than the Hessian-vector
    /// products themselves). Orthogonality then holds to about 1e-6, the precision of the Float32
    /// products the operator is built from; T, and so the Ritz values and their bounds, are
    /// perturbed by about 1e-6·‖H‖, far inside any eigen tolerance.
    struct LanczosProcess {
        let dimension: Int
        private(set) var alphas: [Double] = []
        /// T's off-diagonal: betas[i] couples steps i and i + 1.
        private(set) var betas: [Double] = []
        /// ‖r‖ after the last step: the β of the next step, and the factor of every residual bound.
        private(set) var residualNorm: Double = 0
        /// The basis, row after row; `count` rows of it are written.
        private var basis: HugePageBuffer
        private var residual: [Double]
        private var previous: [Double] = []
        /// The storage of the vector before `previous`, for the next product.
        private var spare: [Double] = []
        /// Partial re-orthogonalisation (Simon, Math. Comp. 1984): nil re-orthogonalises every
        /// step; otherwise the level ε of the products' errors, and the estimates ω of the
        /// residual's and the last vector's inner products with every basis vector.
        private let partialLevel: Double?
        private var omegaResidual: [Double] = []
        private var omegaLast: [Double] = []
        /// The previous step re-orthogonalised for cause: this one does too (Simon's rule, so
        /// both vectors that carry the lost orthogonality are cleaned).
        private var reorthogonalizeNext = false
        /// Steps that re-orthogonalised against the whole basis.
        private(set) var fullReorthogonalizations = 0
        /// Re-orthogonalisation's Float32 copy of the vector and its projection on the basis, kept
        /// across steps (fresh pages each step cost more than the two matrix-vector products).
        private var single: [Float] = []
        private var projection: [Float] = []

        /// - Parameter partialLevel: nil for full re-orthogonalisation at every step, or the
        ///   relative error ε of the operator's products for partial re-orthogonalisation.
        init(start: [Double], capacity: Int, partialLevel: Double? = nil) {
            self.partialLevel = partialLevel
            dimension = start.count
            let norm = Curvature.dot(start, start).squareRoot()
            residual = start.map { $0 / norm }
            residualNorm = 1
            basis = HugePageBuffer(capacity: capacity * dimension)
        }

        var count: Int { alphas.count }

        /// The Krylov space is invariant: the residual vanished to round-off.
        var isInvariant: Bool { residualNorm < 1e-10 * max(abs(alphas.last ?? 0), 1) }

        /// One step: the next basis vector q = r/‖r‖, w = H·q, α = qᵀw, then w minus its components
        /// on q and the previous vector (the three-term recurrence) and on every earlier vector
        /// (full re-orthogonalisation) becomes the residual.
        mutating func extend(_ apply: Operator) {
            if !alphas.isEmpty { betas.append(residualNorm) }
            let scale = 1 / residualNorm
            // q = r/‖r‖ in r's own storage (moved out, so not copied), appended to the basis as
            // Float32 without a temporary.
            var q = residual
            residual = []
            q.withUnsafeMutableBufferPointer { q in
                for i in 0..<q.count { q[i] = q[i] * scale }
            }
            precondition((alphas.count + 1) * dimension <= basis.capacity, "more Lanczos steps than the capacity")
            let row = basis.pointer + alphas.count * dimension
            q.withUnsafeBufferPointer { q in
                for i in 0..<dimension { row[i] = Float(q[i]) }
            }
            // The product goes into the buffer the vector before last left (none in the first
            // two steps): three model-sized buffers serve the whole iteration.
            var w = spare
            spare = []
            apply.apply(q, into: &w)
            precondition(w.count == dimension, "operator returned \(w.count) values for \(dimension)")
            let alpha = Curvature.dot(w, q)
            alphas.append(alpha)
            w.withUnsafeMutableBufferPointer { w in
                q.withUnsafeBufferPointer {
                    BLAS.axpy(count: dimension, alpha: -alpha, x: $0.baseAddress!, y: w.baseAddress!)
                }
                if let beta = betas.last {
                    previous.withUnsafeBufferPointer {
                        BLAS.axpy(count: dimension, alpha: -beta, x: $0.baseAddress!, y: w.baseAddress!)
                    }
                }
            }
            if let level = partialLevel {
                let norm = Curvature.dot(w, w).squareRoot()
                if updateOmega(residualNorm: norm, level: level) || reorthogonalizeNext {
                    orthogonalize(&w)
                    fullReorthogonalizations += 1
                    reorthogonalizeNext.toggle()
                    for k in omegaResidual.indices.dropLast() { omegaResidual[k] = level }
                }
            } else {
                orthogonalize(&w)
                fullReorthogonalizations += 1
            }
            spare = previous
            previous = q
            residual = w
            residualNorm = Curvature.dot(w, w).squareRoot()
        }

        /// Advances Simon's recurrence for ω_{j+1,k} ≈ q_{j+1}ᵀq_k (k ≤ j, 0-based, j the step just
        /// taken) from T's coefficients alone:
        /// β_j+1·ω_{j+1,k} = β_k·ω_{j,k+1} + (α_k − α_j)·ω_{j,k} + β_{k−1}·ω_{j,k−1} − β_{j}·ω_{j−1,k} ± ε(β_k + β_{j+1}),
        /// with ω_{j,j} = 1 and ω_{j+1,j} = ε. True when some |ω| passed √ε, the point past which
        /// semi-orthogonality, and with it Ritz values accurate to ε‖H‖, would be lost.
        mutating func updateOmega(residualNorm beta: Double, level: Double) -> Bool {
            let j = alphas.count - 1
            // ω for q_j (the vector just used) against q_0…q_j: last step's residual estimates.
            let current = j == 0 ? [1.0] : omegaResidual + [1.0]
            var next = [Double](repeating: level, count: j + 2)
            next[j + 1] = 1
            if beta > 0 {
                for k in 0..<j {
                    let betaK = betas[k]
                    var sum = betaK * current[k + 1] + (alphas[k] - alphas[j]) * current[k]
                    if k > 0 { sum += betas[k - 1] * current[k - 1] }
                    if j > 0, k < omegaLast.count { sum -= betas[j - 1] * omegaLast[k] }
                    let noise = level * (betaK + beta)
                    sum += sum >= 0 ? noise : -noise
                    next[k] = sum / beta
                }
            }
            omegaLast = current
            omegaResidual = Array(next.prefix(j + 1))
            return omegaResidual.dropLast().contains { abs($0) > level.squareRoot() }
        }

        /// Classical Gram–Schmidt against the whole basis, repeated when a pass removed more than
        /// 1 − 1/√2 of the vector's norm (Daniel, Gragg, Kaufman and Stewart, Math. Comp. 1976: the
        /// second pass restores orthogonality to working precision; "twice is enough").
        mutating func orthogonalize(_ w: inout [Double]) {
            let rows = alphas.count
            var coefficients = [Float](repeating: 0, count: rows)
            if projection.count != dimension {
                projection = [Float](repeating: 0, count: dimension)
                single = projection
            }
            var norm = Curvature.dot(w, w).squareRoot()
            for _ in 0..<2 {
                single.withUnsafeMutableBufferPointer { single in
                    w.withUnsafeBufferPointer { w in for i in 0..<w.count { single[i] = Float(w[i]) } }
                }
                let q = UnsafePointer(basis.pointer)
                coefficients.withUnsafeMutableBufferPointer { c in
                    single.withUnsafeBufferPointer { x in
                        BLAS.gemv(
                            transposeA: false, m: rows, n: dimension, alpha: 1, a: q, lda: dimension,
                            x: x.baseAddress!, beta: 0, y: c.baseAddress!)
                    }
                    projection.withUnsafeMutableBufferPointer { p in
                        BLAS.gemv(
                            transposeA: true, m: rows, n: dimension, alpha: 1, a: q, lda: dimension,
                            x: UnsafePointer(c.baseAddress!), beta: 0, y: p.baseAddress!)
                    }
                }
                w.withUnsafeMutableBufferPointer { w in
                    projection.withUnsafeBufferPointer { p in
                        for i in 0..<dimension { w[i] -= Double(p[i]) }
                    }
                }
                let after = Curvature.dot(w, w).squareRoot()
                if after >= norm * 0.5.squareRoot() { break }
                norm = after
            }
        }
    }

    /// Eigenpairs of the symmetric tridiagonal matrix with diagonal `alphas` and off-diagonal
    /// `betas` (the first alphas.count − 1 of them), values ascending.
    static func tridiagonalEigen(alphas: [Double], betas: [Double]) -> (values: [Double], vectors: [[Double]]) {
        let m = alphas.count
        var t = [Double](repeating: 0, count: m * m)
        for i in 0..<m {
            t[i * m + i] = alphas[i]
            if i + 1 < m {
                t[i * m + i + 1] = betas[i]
                t[(i + 1) * m + i] = betas[i]
            }
        }
        return LAPACK.symmetricEigen(t, n: m, vectors: true)
    }

    /// Top eigenvalues of both signs: the `count` largest algebraic and the most negative, each
    /// with the Lanczos residual bound |β_m·s_mj| (Parlett, "The Symmetric Eigenvalue Problem",
    /// §13.1): H has an eigenvalue within that distance of the Ritz value. `converged` says whether
    /// every one of them met the tolerance when the iterations stopped.
    public struct Eigenvalues: Sendable, Equatable, Codable {
        public var largest: [Double]
        public var mostNegative: Double
        public var largestResidualBounds: [Double] = []
        public var mostNegativeResidualBound: Double = 0
        public var converged: Bool = true
        /// Hessian-vector products the iteration took.
        public var iterations: Int = 0
    }

    /// Lanczos with full re-orthogonalisation that stops as soon as the `count` largest Ritz values
    /// and the most negative one have residual bounds within `tolerance` × the spectral radius
    /// estimate (the largest |Ritz value|), or after `iterations` products (a maximum). The
    /// bounds come from the tridiagonal alone: no extra products.
    ///
    /// With `includingMostNegative` false only the largest must converge (the most negative is
    /// still reported, with its bound).
    public static func topEigenvalues(
        _ apply: Operator, dimension: Int, count: Int = 3, iterations: Int = 50, tolerance: Double = 1e-3,
        includingMostNegative: Bool = true, seed: UInt64 = 0
    ) -> Eigenvalues {
        // A Rademacher start: as good as a Gaussian one for Lanczos (any start with components on
        // the wanted eigenvectors), and 40× cheaper to draw for a large model.
        var generator = SplitMix64(seed: seed, stream: 0x1A9C)
        let start = rademacher(dimension, &generator)
        let limit = min(iterations, dimension)
        var process = LanczosProcess(start: start, capacity: limit)
        var result = Eigenvalues(largest: [], mostNegative: 0, converged: false)
        for step in 0..<limit {
            process.extend(apply)
            // Ritz pairs of the current tridiagonal and their residual bounds |β·last component|.
            let m = process.count
            let (values, vectors) = tridiagonalEigen(alphas: process.alphas, betas: process.betas)
            let invariant = process.isInvariant
            let bounds = vectors.map { invariant ? 0 : abs(process.residualNorm * $0[m - 1]) }
            let radius = values.map(abs).max() ?? 0
            let top = Array(values.indices.reversed().prefix(count))
            result = Eigenvalues(
                largest: top.map { values[$0] }, mostNegative: values.first ?? 0,
                largestResidualBounds: top.map { bounds[$0] }, mostNegativeResidualBound: bounds.first ?? 0,
                converged: false, iterations: step + 1)
            let wanted = includingMostNegative ? top + [0] : top
            result.converged =
                top.count == min(count, dimension) && wanted.allSatisfy { bounds[$0] <= tolerance * radius }
            if result.converged || invariant { break }
        }
        return result
    }

    /// A trace estimate with its standard error.
    public struct TraceEstimate: Sendable, Equatable, Codable {
        public var value: Double
        public var standardError: Double
        public var products: Int

        enum CodingKeys: String, CodingKey {
            case value
            case standardError = "standard_error"
            case products
        }

        /// The 95 % interval value ± t·s.e. with Student's t on products − 1 degrees of freedom
        /// (with few probes the normal ±2 s.e. covers far less than 95 %: with 2 probes, t = 12.7).
        public var interval95: (low: Double, high: Double) {
            let t = Curvature.studentT975(degreesOfFreedom: products - 1)
            return (value - t * standardError, value + t * standardError)
        }
    }

    /// The 0.975 quantile of Student's t with `degreesOfFreedom` (exact table to 30, then the
    /// Cornish–Fisher expansion around the normal quantile 1.96, accurate to 1e-3 there).
    public static func studentT975(degreesOfFreedom nu: Int) -> Double {
        let table: [Double] = [
            12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
            2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
            2.045, 2.042,
        ]
        guard nu >= 1 else { return .infinity }
        if nu <= table.count { return table[nu - 1] }
        let z = 1.959964
        let n = Double(nu)
        return z + (z * z * z + z) / (4 * n) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n)
    }

    /// Hutchinson's estimator with Rademacher probes (Hutchinson, 1990): tr(H) = E[zᵀHz]; the
    /// standard error is the sample standard deviation over √probes.
    public static func hutchinson(_ apply: Operator, dimension: Int, probes: Int, seed: UInt64 = 0) -> TraceEstimate {
        var product: [Double] = []
        return hutchinson(
            quadraticForm: { z in
                apply.apply(z, into: &product)
                return dot(z, product)
            }, dimension: dimension, probes: probes, seed: seed)
    }

    /// Hutchinson's estimator from the quadratic form z ↦ zᵀHz alone (cheaper than H·z for a
    /// network: one forward pass to second order); the same probes as the operator form.
    public static func hutchinson(
        quadraticForm: (_ z: [Double]) -> Double, dimension: Int, probes: Int, seed: UInt64 = 0
    ) -> TraceEstimate {
        var generator = SplitMix64(seed: seed, stream: 0x7ACE)
        var samples: [Double] = []
        var probe: [Double] = []
        for _ in 0..<probes {
            fillRademacher(&probe, dimension, &generator)
            samples.append(quadraticForm(probe))
        }
        let mean = samples.reduce(0, +) / Double(probes)
        let variance = probes > 1 ? samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(probes - 1) : 0
        return TraceEstimate(value: mean, standardError: (variance / Double(probes)).squareRoot(), products: probes)
    }

    /// Hutch++ (Meyer, Musco, Musco and Woodruff, SOSA 2021) with `products` Hessian-vector
    /// products: exact trace on the span of H·S (S with products/3 Rademacher columns), Hutchinson
    /// on the rest. Its standard error is that of the Hutchinson part.
    public static func hutchPlusPlus(_ apply: Operator, dimension: Int, products: Int, seed: UInt64 = 0)
        -> TraceEstimate
    {
        var generator = SplitMix64(seed: seed, stream: 0x4C2B)
        let third = max(1, products / 3)
        var q: [[Double]] = []
        for _ in 0..<third {
            var y = apply(rademacher(dimension, &generator))
            for _ in 0..<2 { for b in q { let c = dot(y, b); for i in y.indices { y[i] -= c * b[i] } } }
            let norm = dot(y, y).squareRoot()
            if norm > 1e-12 { q.append(y.map { $0 / norm }) }
        }
        var lowRank = 0.0
        var product: [Double] = []
        for b in q {
            apply.apply(b, into: &product)
            lowRank += dot(b, product)
        }
        var samples: [Double] = []
        var g: [Double] = []
        for _ in 0..<max(1, products - third - q.count) {
            fillRademacher(&g, dimension, &generator)
            for b in q { let c = dot(g, b); for i in g.indices { g[i] -= c * b[i] } }
            apply.apply(g, into: &product)
            samples.append(dot(g, product))
        }
        let mean = samples.reduce(0, +) / Double(samples.count)
        let variance =
            samples.count > 1 ? samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(samples.count - 1) : 0
        return TraceEstimate(
            value: lowRank + mean, standardError: (variance / Double(samples.count)).squareRoot(),
            products: third + q.count + samples.count)
    }

    /// A spectral density by stochastic Lanczos quadrature (Ubaru, Chen and Saad, SIMAX 2017;
    /// Ghorbani, Krishnan and Xiao, ICML 2019): per probe, Ritz values θⱼ with weights τⱼ²; the
    /// density is their average over probes.
    public struct SpectralDensity: Sendable, Equatable, Codable {
        public var nodes: [Double]
        public var weights: [Double]

        /// ∫ λ^p dμ(λ): the p-th moment, estimating tr(H^p)/d.
        public func moment(_ p: Int) -> Double {
            zip(nodes, weights).reduce(0) { $0 + $1.1 * pow($1.0, Double(p)) }
        }

        /// A histogram with `bins` equal bins between the extreme nodes: (lower edges, masses).
        public func histogram(bins: Int) -> (edges: [Double], masses: [Double]) {
            guard let low = nodes.min(), let high = nodes.max(), high > low else { return ([nodes.first ?? 0], [1]) }
            let width = (high - low) / Double(bins)
            var masses = [Double](repeating: 0, count: bins)
            for (node, weight) in zip(nodes, weights) { masses[min(bins - 1, Int((node - low) / width))] += weight }
            return ((0..<bins).map { low + Double($0) * width }, masses)
        }
    }

    /// The error level partial re-orthogonalisation assumes for the operator's products in SLQ:
    /// 1e-6, above the Float32 Hessian-vector products' relative error (about 1e-7), so the
    /// estimate of lost orthogonality errs high and re-orthogonalisation comes early rather than
    /// late (an exact Float64 operator is then merely re-orthogonalised more than it needs).
    public static let spectralDensityOrthogonalityLevel = 1e-6

    public static func spectralDensity(
        _ apply: Operator, dimension: Int, probes: Int, iterations: Int, seed: UInt64 = 0
    ) -> SpectralDensity {
        var generator = SplitMix64(seed: seed, stream: 0x5D0C)
        var nodes: [Double] = []
        var weights: [Double] = []
        for _ in 0..<probes {
            let start = rademacher(dimension, &generator)
            let result = lanczos(
                apply, dimension: dimension, iterations: iterations, start: start,
                partialLevel: spectralDensityOrthogonalityLevel)
            nodes += result.ritzValues
            weights += result.weights.map { $0 / Double(probes) }
        }
        return SpectralDensity(nodes: nodes, weights: weights)
    }

    /// Float32 to Float64 through pointers (vectorised; `map` here ran at about 2 ns an element,
    /// which at 270,000 parameters cost a third of a Lanczos step's overhead), into `out`'s own
    /// storage when it has the right count.
    static func widen(_ x: ArraySlice<Float>, into out: inout [Double]) {
        guard out.count == x.count else {
            out = [Double](unsafeUninitializedCapacity: x.count) { out, count in
                x.withUnsafeBufferPointer { x in for i in 0..<x.count { out[i] = Double(x[i]) } }
                count = x.count
            }
            return
        }
        out.withUnsafeMutableBufferPointer { out in
            x.withUnsafeBufferPointer { x in for i in 0..<x.count { out[i] = Double(x[i]) } }
        }
    }

    static func rademacher(_ dimension: Int, _ generator: inout SplitMix64) -> [Double] {
        var z: [Double] = []
        fillRademacher(&z, dimension, &generator)
        return z
    }

    /// `dimension` random signs into `z`, in its own storage when it has that many values (a
    /// fresh model-sized array per probe cost page faults).
    static func fillRademacher(_ z: inout [Double], _ dimension: Int, _ generator: inout SplitMix64) {
        if z.count != dimension { z = [Double](repeating: 0, count: dimension) }
        z.withUnsafeMutableBufferPointer { z in
            var bits: UInt64 = 0
            for i in 0..<dimension {
                if i % 64 == 0 { bits = generator.next() }
                z[i] = bits & 1 == 1 ? 1 : -1
                bits >>= 1
            }
        }
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        guard !a.isEmpty else { return 0 }
        return a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in BLAS.dot(count: a.count, x: a.baseAddress!, y: b.baseAddress!) }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif
