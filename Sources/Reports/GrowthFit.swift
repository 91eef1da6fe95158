import Foundation
import RunRecords

/// A least-squares growth law of the distance from initialisation d(t) = ‖x̄_t − x₀‖ over the
/// optimizer steps t. Hoffer, Hubara and Soudry (NeurIPS 2017) report a logarithmic growth
/// ("ultra-slow diffusion", d ≈ a + b·ln t); a power law d ≈ c·t^α is the alternative a reviewer
/// asks for. Both are fitted, and both carry R² measured the same way, in distance space
/// (1 − Σ(d − d̂)² / Σ(d − d̄)²), so the two are compared on one footing.
public struct GrowthFit: Sendable, Equatable {
    public enum Law: String, Sendable { case logarithmic, powerLaw }
    public var law: Law
    /// a (logarithmic) or ln c (power law).
    public var intercept: Double
    /// b, the increase per unit of ln t (logarithmic), or the exponent α (power law).
    public var slope: Double
    /// Coefficient of determination of the fitted curve against the distances themselves.
    public var rSquared: Double
    /// Points the fit used.
    public var count: Int

    /// d̂(t) of the fitted law.
    public func predicted(_ t: Double) -> Double {
        switch law {
        case .logarithmic: intercept + slope * log(t)
        case .powerLaw: exp(intercept) * pow(t, slope)
        }
    }

    /// d ≈ a + b·ln t, least squares in d; points with t ≥ 1 and a finite d. Nil with fewer than
    /// three usable points (two always fit exactly) or a single t.
    public static func logarithmic(_ points: [(t: Double, d: Double)]) -> GrowthFit? {
        let usable = points.filter { $0.t >= 1 && $0.d.isFinite }
        guard let (a, b) = line(usable.map { (log($0.t), $0.d) }), usable.count >= 3 else { return nil }
        return GrowthFit(law: .logarithmic, intercept: a, slope: b, rSquared: 0, count: usable.count).scored(usable)
    }

    /// d ≈ c·t^α, least squares in ln d against ln t (the usual log-log fit); points with t ≥ 1 and
    /// d > 0. R² is then measured in d, like the logarithmic fit's.
    public static func powerLaw(_ points: [(t: Double, d: Double)]) -> GrowthFit? {
        let usable = points.filter { $0.t >= 1 && $0.d.isFinite && $0.d > 0 }
        guard let (lnC, alpha) = line(usable.map { (log($0.t), log($0.d)) }), usable.count >= 3 else { return nil }
        return GrowthFit(law: .powerLaw, intercept: lnC, slope: alpha, rSquared: 0, count: usable.count).scored(usable)
    }

    private func scored(_ points: [(t: Double, d: Double)]) -> GrowthFit {
        let mean = points.reduce(0) { $0 + $1.d } / Double(points.count)
        let total = points.reduce(0) { $0 + ($1.d - mean) * ($1.d - mean) }
        let residual = points.reduce(0) { $0 + pow($1.d - predicted($1.t), 2) }
        var fit = self
        fit.rSquared = total > 0 ? 1 - residual / total : (residual == 0 ? 1 : 0)
        return fit
    }

    /// Ordinary least squares y ≈ p + q·x; nil when x takes one value.
    static func line(_ xy: [(Double, Double)]) -> (Double, Double)? {
        guard xy.count >= 2 else { return nil }
        let mx = xy.reduce(0) { $0 + $1.0 } / Double(xy.count)
        let my = xy.reduce(0) { $0 + $1.1 } / Double(xy.count)
        let sxx = xy.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
        guard sxx > 0 else { return nil }
        let q = xy.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) } / sxx
        return (my - q * mx, q)
    }

    /// The distances of a run over its longest stretch of consecutive recorded rounds at one
    /// learning rate (the constant-rate phase: after a warm-up, before a decay), with t the
    /// optimizer steps at the end of each round. Empty when the run recorded no distances.
    public static func constantRatePhase(_ rounds: [RoundRecord], localSteps: Int) -> [(t: Double, d: Double)] {
        var best: ArraySlice<RoundRecord> = []
        var start = rounds.startIndex
        for index in rounds.indices {
            if rounds[index].learningRate != rounds[start].learningRate { start = index }
            if index - start + 1 > best.count { best = rounds[start...index] }
        }
        return best.compactMap { r in r.distanceFromInit.map { (Double(r.round * localSteps), $0) } }
    }
}
