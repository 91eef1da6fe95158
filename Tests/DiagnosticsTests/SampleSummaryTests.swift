import XCTest

@testable import Diagnostics

final class SampleSummaryTests: XCTestCase {
    /// Two-sided 95 % quantiles t_{0.975, ν} from the standard tables (five or more significant
    /// digits, e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2); the bisection meets them within
    /// the tables' rounding.
    func testStudentQuantiles_MatchTheTables() {
        let table: [(Double, Double)] = [
            (1, 12.7062), (2, 4.30265), (3, 3.18245), (4, 2.77645), (5, 2.57058), (9, 2.26216), (29, 2.04523),
            (100, 1.98397),
        ]
        for (nu, expected) in table {
            XCTAssertEqual(
                StudentT.quantile(probability: 0.975, degreesOfFreedom: nu), expected, accuracy: 6e-5 * expected,
                "ν = \(nu)")
        }
        // One degree of freedom is the Cauchy distribution: t_p = tan(π(p − ½)) exactly.
        for p in [0.6, 0.9, 0.975, 0.995] {
            XCTAssertEqual(
                StudentT.quantile(probability: p, degreesOfFreedom: 1), tan(Double.pi * (p - 0.5)), accuracy: 1e-9)
        }
        // Two degrees of freedom: F(t) = ½ + t / (2√(t² + 2)).
        for t in [-3.0, -0.5, 0.7, 4.0] {
            XCTAssertEqual(
                StudentT.cdf(t, degreesOfFreedom: 2), 0.5 + t / (2 * (t * t + 2).squareRoot()), accuracy: 1e-12)
        }
        XCTAssertEqual(
            StudentT.quantile(probability: 0.025, degreesOfFreedom: 4),
            -StudentT.quantile(probability: 0.975, degreesOfFreedom: 4))
    }

    func testSummary_MeanSdAndInterval() throws {
        let values = [0.81, 0.84, 0.79, 0.86]
        let summary = try XCTUnwrap(SampleSummary(values))
        let mean = (0.81 + 0.84 + 0.79 + 0.86) / 4
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3
        XCTAssertEqual(summary.count, 4)
        XCTAssertEqual(summary.mean, mean, accuracy: 1e-15)
        XCTAssertEqual(summary.standardDeviation!, variance.squareRoot(), accuracy: 1e-15)
        // t_{0.975, 3} = 3.18245 (table).
        XCTAssertEqual(summary.halfWidth!, 3.18245 * variance.squareRoot() / 2, accuracy: 1e-5)
        XCTAssertEqual(summary.minimum, 0.79)
        XCTAssertEqual(summary.maximum, 0.86)

        let single = try XCTUnwrap(SampleSummary([0.5]))
        XCTAssertNil(single.standardDeviation, "one seed has no spread")
        XCTAssertNil(single.halfWidth)
        XCTAssertNil(SampleSummary([]))
    }

    /// Welch's interval and test against SciPy 1.17's `ttest_ind(a, b, equal_var=False)` and its
    /// `confidence_interval(0.95)` on the same values (printed to 17 digits); the quantile's
    /// bisection and the incomplete beta's continued fraction are good to about 1e-10, so 1e-9.
    func testMeanDifference_AgainstSciPy() throws {
        let a = [0.8912, 0.8871, 0.8950]
        let b = [0.8820, 0.8790, 0.8861, 0.8805]
        let welch = try XCTUnwrap(MeanDifference(a, b))
        XCTAssertEqual(welch.difference / welch.standardError, 3.3508127452163747, accuracy: 1e-9)
        XCTAssertEqual(welch.degreesOfFreedom, 3.700905565036075, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(welch.pValue), 0.032125483647729484, accuracy: 1e-9)
        XCTAssertEqual(welch.low, 0.0013277645057426686, accuracy: 1e-9)
        XCTAssertEqual(welch.high, 0.017072235494257525, accuracy: 1e-9)
        XCTAssertTrue(welch.excludesZero)

        // One sample without spread: ν = n_a − 1 exactly.
        let one = try XCTUnwrap(MeanDifference([1, 2, 3], [1, 1, 1]))
        XCTAssertEqual(one.degreesOfFreedom, 2, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(one.pValue), 0.22540333075851665, accuracy: 1e-9)
        XCTAssertEqual(one.low, -1.4841377117503298, accuracy: 1e-9)
        XCTAssertEqual(one.high, 3.48413771175033, accuracy: 1e-9)
        XCTAssertFalse(one.excludesZero)

        XCTAssertNil(MeanDifference([1], [1, 2]), "one value has no spread to compare against")
        let exact = try XCTUnwrap(MeanDifference([2, 2], [1, 1]))
        XCTAssertEqual(exact.difference, 1)
        XCTAssertNil(exact.pValue)
        XCTAssertTrue(exact.excludesZero)
    }

    /// The paired form against SciPy 1.17's `ttest_rel(a, b)` and its `confidence_interval(0.95)`:
    /// the seeds' common offset cancels, so a difference the unpaired interval cannot see shows.
    func testPairedDifference_AgainstSciPy() throws {
        let a = [0.8612, 0.8355, 0.8413]
        let b = [0.8590, 0.8341, 0.8398]
        let paired = try XCTUnwrap(MeanDifference(pairs: Array(zip(a, b)).map { (a: $0.0, b: $0.1) }))
        XCTAssertEqual(paired.difference / paired.standardError, 6.755115021032607, accuracy: 1e-9)
        XCTAssertEqual(paired.degreesOfFreedom, 2)
        XCTAssertEqual(try XCTUnwrap(paired.pValue), 0.02121961108542463, accuracy: 1e-9)
        XCTAssertEqual(paired.low, 0.0006171894752643483, accuracy: 1e-9)
        XCTAssertEqual(paired.high, 0.002782810524735721, accuracy: 1e-9)
        XCTAssertTrue(paired.excludesZero)
        XCTAssertFalse(try XCTUnwrap(MeanDifference(a, b)).excludesZero, "unpaired, the seeds' spread hides it")
        XCTAssertNil(MeanDifference(pairs: [(a: 1, b: 0)]))
    }
}
