import LearningCore
import XCTest

/// `SplitMix64.fillStandardNormals` (Marsaglia's polar method): the moments and tail mass of a
/// standard normal, the scale, an odd count, and the same values from the same seed.
final class StandardNormalFillTests: XCTestCase {
    func testFill_HasTheMomentsOfAStandardNormal() {
        let count = 400_001
        var values = [Float](repeating: .nan, count: count)
        var generator = SplitMix64(seed: 17, stream: 3)
        values.withUnsafeMutableBufferPointer { generator.fillStandardNormals($0) }
        XCTAssertFalse(values.contains { !$0.isFinite }, "a value left unwritten or not finite")
        let n = Double(count)
        let mean = values.reduce(0.0) { $0 + Double($1) } / n
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / (n - 1)
        let fourth = values.reduce(0.0) { $0 + pow(Double($1) - mean, 4) } / n
        let withinOne = Double(values.filter { abs($0) < 1 }.count) / n
        let beyondThree = Double(values.filter { abs($0) > 3 }.count) / n
        // Each within 5 standard errors of its exact value: E z = 0 (s.e. 1/√n), Var z = 1
        // (s.e. √(2/n)), E z⁴ = 3 (s.e. √(96/n)), P(|z| < 1) = 0.682689, P(|z| > 3) = 0.0026998.
        XCTAssertEqual(mean, 0, accuracy: 5 / n.squareRoot())
        XCTAssertEqual(variance, 1, accuracy: 5 * (2 / n).squareRoot())
        XCTAssertEqual(fourth, 3, accuracy: 5 * (96 / n).squareRoot())
        XCTAssertEqual(withinOne, 0.682689, accuracy: 5 * (0.682689 * 0.317311 / n).squareRoot())
        XCTAssertEqual(beyondThree, 0.0026998, accuracy: 5 * (0.0026998 * 0.9973 / n).squareRoot())
    }

    func testFill_IsSeeded_AndScaled() {
        func draw(_ count: Int, seed: UInt64, scale: Double) -> [Float] {
            var values = [Float](repeating: 0, count: count)
            var generator = SplitMix64(seed: seed)
            values.withUnsafeMutableBufferPointer { generator.fillStandardNormals($0, scale: scale) }
            return values
        }
        XCTAssertEqual(draw(1_001, seed: 1, scale: 1), draw(1_001, seed: 1, scale: 1))
        XCTAssertNotEqual(draw(1_001, seed: 1, scale: 1), draw(1_001, seed: 2, scale: 1))
        // The scale multiplies each draw before rounding to Float32.
        let unit = draw(1_001, seed: 3, scale: 1)
        let scaled = draw(1_001, seed: 3, scale: 0.25)
        for (a, b) in zip(unit, scaled) { XCTAssertEqual(Double(b), Double(a) * 0.25, accuracy: 1e-6 * abs(Double(a))) }
        // A prefix of an odd count is the same stream's values.
        XCTAssertEqual(Array(draw(7, seed: 4, scale: 1).prefix(6)), draw(6, seed: 4, scale: 1))
    }
}
