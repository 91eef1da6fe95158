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
}
