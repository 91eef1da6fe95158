#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Mean, standard deviation and a two-sided Student-t confidence interval of a few values (one
/// figure over the seeds of a configuration).
///
/// sd uses n − 1; the interval is mean ± t_{(1+level)/2, n−1}·sd/√n, which assumes the values are
/// independent draws from a normal distribution (the usual reading of "mean ± CI over seeds").
/// With one value there is no spread: `standardDeviation` and `halfWidth` are nil.
public struct SampleSummary: Sendable, Equatable {
    public var count: Int
    public var mean: Double
    public var standardDeviation: Double?
    /// Half the width of the interval at `level` (nil with fewer than two values).
    public var halfWidth: Double?
    public var level: Double
    public var minimum: Double
    public var maximum: Double

    /// nil when `values` is empty; non-finite values are the caller's to leave out.
    public init?(_ values: [Double], level: Double = 0.95) {
        guard !values.isEmpty else { return nil }
        precondition(level > 0 && level < 1)
        count = values.count
        self.level = level
        // Two passes: the mean, then squared deviations from it (no cancellation).
        mean = values.reduce(0, +) / Double(values.count)
        minimum = values.min()!
        maximum = values.max()!
        if values.count >= 2 {
            let m = mean
            let sumSquares = values.reduce(0) { $0 + ($1 - m) * ($1 - m) }
            let sd = (sumSquares / Double(values.count - 1)).squareRoot()
            standardDeviation = sd
            halfWidth =
                StudentT.quantile(probability: (1 + level) / 2, degreesOfFreedom: Double(values.count - 1)) * sd
                / Double(values.count).squareRoot()
        } else {
            standardDeviation = nil
            halfWidth = nil
        }
    }
}

/// The difference of two means with its interval and test: unpaired, Welch's unequal-variance t
/// (Welch 1947):
/// Δ = mean(a) − mean(b), se = √(s_a²/n_a + s_b²/n_b), ν by the Welch–Satterthwaite formula,
/// interval Δ ± t_{(1+level)/2, ν}·se, two-sided p = 2·P(T_ν ≥ |Δ|/se). Unpaired, so it does not
/// assume that equal seeds make related runs (conservative when they do); `init(pairs:)` is the
/// paired form.
public struct MeanDifference: Sendable, Equatable {
    public var difference: Double
    public var standardError: Double
    public var degreesOfFreedom: Double
    public var low: Double
    public var high: Double
    /// Two-sided p-value of "the means are equal"; nil when both samples have no spread.
    public var pValue: Double?
    public var level: Double

    /// The paired form (Student's paired t, "ttest_rel"): `pairs` are (a, b) values measured
    /// under the same seed; Δ is the mean of a − b, se its standard error sd(a − b)/√n, ν = n − 1.
    /// Right when equal seeds make related runs (same initialization, shards and batches): the
    /// seed's share of the spread then cancels. nil with fewer than two pairs.
    public init?(pairs: [(a: Double, b: Double)], level: Double = 0.95) {
        guard let summary = SampleSummary(pairs.map { $0.a - $0.b }, level: level),
            let sd = summary.standardDeviation, let half = summary.halfWidth
        else { return nil }
        self.level = level
        difference = summary.mean
        standardError = sd / Double(summary.count).squareRoot()
        degreesOfFreedom = Double(summary.count - 1)
        low = difference - half
        high = difference + half
        pValue =
            standardError > 0
            ? 2 * (1 - StudentT.cdf(abs(difference) / standardError, degreesOfFreedom: degreesOfFreedom)) : nil
    }

    /// nil when either sample has fewer than two values (no spread to compare against).
    public init?(_ a: [Double], _ b: [Double], level: Double = 0.95) {
        guard let x = SampleSummary(a, level: level), let y = SampleSummary(b, level: level),
            let sdX = x.standardDeviation, let sdY = y.standardDeviation
        else { return nil }
        self.level = level
        difference = x.mean - y.mean
        let varianceX = sdX * sdX / Double(x.count)
        let varianceY = sdY * sdY / Double(y.count)
        standardError = (varianceX + varianceY).squareRoot()
        guard standardError > 0 else {
            // No spread in either sample: the difference is exact.
            degreesOfFreedom = Double(x.count + y.count - 2)
            low = difference
            high = difference
            pValue = nil
            return
        }
        degreesOfFreedom =
            (varianceX + varianceY) * (varianceX + varianceY)
            / (varianceX * varianceX / Double(x.count - 1) + varianceY * varianceY / Double(y.count - 1))
        let half =
            StudentT.quantile(probability: (1 + level) / 2, degreesOfFreedom: degreesOfFreedom) * standardError
        low = difference - half
        high = difference + half
        let t = abs(difference) / standardError
        pValue = 2 * (1 - StudentT.cdf(t, degreesOfFreedom: degreesOfFreedom))
    }

    /// Whether the interval leaves out zero (the difference is larger than the spread explains).
    public var excludesZero: Bool { low > 0 || high < 0 }
}

/// Student's t distribution: its CDF through the regularized incomplete beta function, and its
/// quantile by bisection on the CDF.
public enum StudentT {
    /// P(T ≤ t) for ν degrees of freedom: 1 − ½·I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0, by symmetry below.
    public static func cdf(_ t: Double, degreesOfFreedom nu: Double) -> Double {
        precondition(nu > 0)
        let tail = 0.5 * regularizedIncompleteBeta(x: nu / (nu + t * t), a: nu / 2, b: 0.5)
        return t >= 0 ? 1 - tail : tail
    }

    /// The t with P(T ≤ t) = `probability` (0 < p < 1), to about 1e-12 relative.
    public static func quantile(probability p: Double, degreesOfFreedom nu: Double) -> Double {
        precondition(p > 0 && p < 1 && nu > 0)
        if p < 0.5 { return -quantile(probability: 1 - p, degreesOfFreedom: nu) }
        if p == 0.5 { return 0 }
        var low = 0.0
        var high = 1.0
        while cdf(high, degreesOfFreedom: nu) < p { high *= 2 }
        for _ in 0..<200 {
            let middle = (low + high) / 2
            if cdf(middle, degreesOfFreedom: nu) < p { low = middle } else { high = middle }
            if high - low <= 1e-13 * high { break }
        }
        return (low + high) / 2
    }

    /// I_x(a, b), by the continued fraction of the incomplete beta function (modified Lentz's
    /// method), on the side of x where it converges fast.
    static func regularizedIncompleteBeta(x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logFront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log(1 - x)
        if x < (a + 1) / (a + b + 2) {
            return exp(logFront) * continuedFraction(x: x, a: a, b: b) / a
        }
        return 1 - exp(logFront) * continuedFraction(x: 1 - x, a: b, b: a) / b
    }

    private static func continuedFraction(x: Double, a: Double, b: Double) -> Double {
        let tiny = 1e-300
        var c = 1.0
        var d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var result = d
        for m in 1...10_000 {
            let m = Double(m)
            // Even step: d_{2m} = m(b − m)x / ((a + 2m − 1)(a + 2m)).
            var coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            d = 1 + coefficient * d
            if abs(d) < tiny { d = tiny }
            c = 1 + coefficient / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            result *= d * c
            // Odd step: d_{2m+1} = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1)).
            coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1 + coefficient * d
            if abs(d) < tiny { d = tiny }
            c = 1 + coefficient / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let step = d * c
            result *= step
            if abs(step - 1) < 1e-15 { break }
        }
        return result
    }
}
