import LearningCore

/// Loss-perturbation sharpness measures. Each returns L(x + ε) − L(x) for its own ε.
public enum Sharpness {
    /// A Monte-Carlo estimate with its standard error.
    public struct Estimate: Sendable, Equatable, Codable {
        public var value: Double
        public var standardError: Double
        public var samples: Int

        enum CodingKeys: String, CodingKey {
            case value
            case standardError = "standard_error"
            case samples
        }
    }

    /// SAM's worst-case ρ-sharpness (Foret et al., ICLR 2021). With `ascentSteps` = 1, one ascent
    /// step ε = ρ·g/‖g‖; with more, projected normalised-gradient ascent in the ρ-ball, keeping the
    /// largest loss seen.
    public static func worstCase(_ surface: LossSurface, at x: [Float], radius rho: Double, ascentSteps: Int = 1)
        -> Double
    {
        let (base, gradient) = surface.lossAndGradient(at: x)
        var epsilon = gradient
        scale(&epsilon, toNorm: rho)
        var point = x
        var best = surface.loss(at: sum(x, epsilon, into: &point)) - base
        guard ascentSteps > 1 else { return best }
        // Steps of the full radius, then projection: on a quadratic this is a power iteration
        // towards the top eigenvector (smaller steps converge far more slowly).
        let step = rho
        for _ in 1..<ascentSteps {
            var direction = surface.lossAndGradient(at: sum(x, epsilon, into: &point)).gradient
            scale(&direction, toNorm: step)
            epsilon.addScaled(direction, by: 1)
            let norm = epsilon.squaredNorm.squareRoot()
            if norm > rho { epsilon.scale(by: Float(rho / norm)) }
            best = max(best, surface.loss(at: sum(x, epsilon, into: &point)) - base)
        }
        return best
    }

    /// Adaptive sharpness (ASAM, Kwon et al., ICML 2021): with T = |x| + η elementwise, the ascent
    /// step ε = ρ·T²g/‖Tg‖, so the ball is measured relative to each weight's scale.
    public static func adaptive(_ surface: LossSurface, at x: [Float], radius rho: Double, eta: Double = 0.01) -> Double
    {
        let (base, gradient) = surface.lossAndGradient(at: x)
        let t = x.map { abs($0) + Float(eta) }
        let tg = zip(t, gradient).map { $0 * $1 }
        let norm = tg.squaredNorm.squareRoot()
        guard norm > 0 else { return 0 }
        let epsilon = zip(t, tg).map { Float(rho / norm) * $0 * $1 }
        var point = x
        return surface.loss(at: sum(x, epsilon, into: &point)) - base
    }

    /// m-sharpness (Foret et al. 2021; Andriushchenko and Flammarion, ICML 2022): the one-step
    /// sharpness averaged over disjoint batches of m examples, each with its own ascent direction.
    public static func mSharpness(
        _ surface: NetworkLoss, at x: [Float], radius rho: Double, batchSize m: Int, maximumBatches: Int = 16
    )
        -> Estimate
    {
        var values: [Double] = []
        var start = 0
        while start + m <= surface.exampleCount && values.count < maximumBatches {
            values.append(worstCase(surface.restricted(to: start..<(start + m)), at: x, radius: rho))
            start += m
        }
        return estimate(values)
    }

    /// Gaussian average sharpness E[L(x + δ)] − L(x), δ ~ N(0, σ²I), over `samples` draws. For a
    /// quadratic it is (σ²/2)·tr(H). Each δ is drawn straight into the one perturbed point the
    /// samples share (`SplitMix64.fillStandardNormals`); frozen coordinates keep x's values.
    public static func gaussian(_ surface: LossSurface, at x: [Float], sigma: Double, samples: Int, seed: UInt64 = 0)
        -> Estimate
    {
        var generator = SplitMix64(seed: seed, stream: 0x6A55)
        let base = surface.loss(at: x)
        let frozen = surface.frozenRanges
        var point = x
        let values = (0..<samples).map { _ in
            point.withUnsafeMutableBufferPointer { p in
                generator.fillStandardNormals(p, scale: sigma)
                x.withUnsafeBufferPointer { x in
                    for i in 0..<x.count { p[i] = x[i] + p[i] }
                    for range in frozen { for i in range { p[i] = x[i] } }
                }
            }
            return surface.loss(at: point) - base
        }
        return estimate(values)
    }

    /// Average-direction sharpness of D-SGD (Zhu et al., "Decentralized SGD and average-direction
    /// SAM are asymptotically equivalent", ICML 2023): E[L(x̄ + ε)] − L(x̄) with ε ~ N(0, Ξ), Ξ the
    /// empirical covariance (1/n)Σⱼ(xⱼ − x̄)(xⱼ − x̄)ᵀ of the workers' models, sampled as
    /// ε = Σⱼ zⱼ(xⱼ − x̄)/√n with zⱼ ~ N(0, 1), so Ξ is never formed. Zero when all workers agree;
    /// ½·tr(H·Ξ) for a quadratic.
    public static func averageDirection(
        _ surface: LossSurface, average: [Float], workers: [[Float]], samples: Int, seed: UInt64 = 0
    ) -> Estimate {
        var generator = SplitMix64(seed: seed, stream: 0xAD5A)
        let n = workers.count
        let deviations = workers.map { worker -> [Float] in
            var d = worker
            d.addScaled(average, by: -1)
            return surface.zeroingFrozen(d)
        }
        let base = surface.loss(at: average)
        var epsilon = [Float](repeating: 0, count: average.count)
        var point = average
        let values = (0..<samples).map { _ in
            epsilon.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            for d in deviations {
                epsilon.addScaled(d, by: Float(generator.nextStandardNormal() / Double(n).squareRoot()))
            }
            return surface.loss(at: sum(average, epsilon, into: &point)) - base
        }
        return estimate(values)
    }

    static func estimate(_ values: [Double]) -> Estimate {
        guard !values.isEmpty else { return Estimate(value: 0, standardError: 0, samples: 0) }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance =
            values.count > 1 ? values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1) : 0
        return Estimate(
            value: mean, standardError: (variance / Double(values.count)).squareRoot(), samples: values.count)
    }

    /// v rescaled in place to Euclidean norm `norm` (left zero when it is zero).
    static func scale(_ v: inout [Float], toNorm norm: Double) {
        let current = v.squaredNorm.squareRoot()
        guard current > 0 else { return }
        let factor = Float(norm / current)
        v.withUnsafeMutableBufferPointer { v in for i in 0..<v.count { v[i] = v[i] * factor } }
    }

    /// x + e (one rounded addition per coordinate, as `addScaled(_:by: 1)`) written into
    /// `point`'s storage, which the perturbations of one measure share: a fresh model-sized
    /// array per loss cost page faults, not arithmetic.
    static func sum(_ x: [Float], _ e: [Float], into point: inout [Float]) -> [Float] {
        precondition(x.count == e.count && x.count == point.count, "\(x.count), \(e.count), \(point.count) values")
        point.withUnsafeMutableBufferPointer { p in
            x.withUnsafeBufferPointer { x in p.baseAddress!.update(from: x.baseAddress!, count: x.count) }
        }
        point.addScaled(e, by: 1)
        return point
    }
}
