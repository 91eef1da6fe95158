import Algorithms
import Foundation
import LearningCore
import XCTest

/// The compression operators of CHOCO-SGD against their defining properties (Koloskova et al.,
/// ICML 2019, Assumption 1, and QSGD's unbiasedness), on random vectors.
final class CompressorTests: XCTestCase {
    /// Standard normal values (Box–Muller on a seeded stream).
    private func randomVector(_ d: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<d).map { _ in
            let u = max(generator.nextUnitDouble(), 1e-300)
            let v = generator.nextUnitDouble()
            return Float((-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * Double.pi * v))
        }
    }

    private func squaredNorm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) } }

    private func error(_ q: CompressedVector, _ x: [Float]) -> Double {
        squaredNorm(zip(q.decoded(), x).map { $0 - $1 })
    }

    private func compress(_ compressor: Compressor, _ x: [Float], generator: inout SplitMix64) -> CompressedVector {
        x.withUnsafeBufferPointer { compressor.compress($0, generator: &generator) }
    }

    /// Top-k keeps exactly the k largest magnitudes (ties to the lower index, as a full sort by
    /// (−|x|, index) says), keeps their values exactly, and so ‖Q(x) − x‖² ≤ (1 − k/d)‖x‖²
    /// deterministically (the dropped d − k entries are the smallest; 1e-6 relative slack for
    /// the Float64 sums of Float32 values).
    func testTopK_KeepsTheLargestMagnitudes_AndContracts() {
        var generator = SplitMix64(seed: 1)
        for d in [1, 7, 100, 1_000] {
            for ratio in [0.01, 0.1, 0.5, 1] {
                let x = randomVector(d, seed: UInt64(d))
                let k = Compressor.keptCount(ratio: ratio, of: d)
                let q = compress(.topK(ratio: ratio), x, generator: &generator)
                guard case .sparse(let indices, let values) = q.content else { return XCTFail("top-k is sparse") }
                let expected = x.indices.sorted { (abs(x[$0]), -$0) > (abs(x[$1]), -$1) }.prefix(k).sorted()
                XCTAssertEqual(indices.map(Int.init), expected, "d \(d) ratio \(ratio)")
                XCTAssertEqual(values, indices.map { x[Int($0)] })
                XCTAssertLessThanOrEqual(
                    error(q, x), (1 - Double(k) / Double(d)) * squaredNorm(x) * (1 + 1e-6) + 1e-12)
            }
        }
        // Ties: equal magnitudes go to the lower index.
        let tied: [Float] = [1, -1, 1, 0.5, -1]
        let q = compress(.topK(ratio: 0.4), tied, generator: &generator)
        guard case .sparse(let indices, _) = q.content else { return XCTFail("top-k is sparse") }
        XCTAssertEqual(indices, [0, 1])
        XCTAssertEqual(Compressor.keptCount(ratio: 0.01, of: 100), 1)
        XCTAssertEqual(Compressor.keptCount(ratio: 0.3, of: 10), 3)
        XCTAssertEqual(Compressor.keptCount(ratio: 0.001, of: 10), 1)
    }

    /// Random-k picks every coordinate with probability k/d and so has E‖Q(x) − x‖² = (1 − k/d)‖x‖².
    /// Over N = 4,000 draws the mean of ‖Q − x‖²/‖x‖² (each in [0, 1]) is within 5 standard errors
    /// of 1 − k/d, and each coordinate's pick count within 5σ of N·k/d (binomial σ).
    func testRandomK_ContractsInExpectation_AndPicksUniformly() {
        let d = 50
        let ratio = 0.2
        let k = Compressor.keptCount(ratio: ratio, of: d)
        let x = randomVector(d, seed: 5)
        var generator = SplitMix64(seed: 9)
        let draws = 4_000
        var ratios: [Double] = []
        var picks = [Int](repeating: 0, count: d)
        for _ in 0..<draws {
            let q = compress(.randomK(ratio: ratio), x, generator: &generator)
            guard case .sparse(let indices, let values) = q.content else { return XCTFail("random-k is sparse") }
            XCTAssertEqual(indices.count, k)
            XCTAssertEqual(Set(indices).count, k)
            XCTAssertEqual(values, indices.map { x[Int($0)] })
            for i in indices { picks[Int(i)] += 1 }
            ratios.append(error(q, x) / squaredNorm(x))
        }
        let mean = ratios.reduce(0, +) / Double(draws)
        let sd = (ratios.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(draws - 1)).squareRoot()
        XCTAssertEqual(mean, 1 - Double(k) / Double(d), accuracy: 5 * sd / Double(draws).squareRoot())
        let p = Double(k) / Double(d)
        let sigma = (Double(draws) * p * (1 - p)).squareRoot()
        for (i, count) in picks.enumerated() {
            XCTAssertEqual(Double(count), Double(draws) * p, accuracy: 5 * sigma, "coordinate \(i)")
        }
    }

    /// Scaled sign: ‖Q(x) − x‖² = ‖x‖² − ‖x‖₁²/d exactly in real arithmetic (relative 1e-5 here:
    /// the scale is rounded to Float32), which is the contraction with δ = ‖x‖₁²/(d‖x‖²).
    func testSign_ErrorIsTheNormMinusTheL1NormSquaredOverD() {
        var generator = SplitMix64(seed: 2)
        for d in [1, 9, 64, 1_001] {
            var x = randomVector(d, seed: UInt64(10 + d))
            if d > 3 { x[3] = 0 }  // sign(0) = +1
            let q = compress(.sign, x, generator: &generator)
            let l1 = x.reduce(0.0) { $0 + Double(abs($1)) }
            let expected = squaredNorm(x) - l1 * l1 / Double(d)
            XCTAssertEqual(error(q, x), expected, accuracy: 1e-5 * squaredNorm(x) + 1e-9, "d \(d)")
            let decoded = q.decoded()
            for i in 0..<d { XCTAssertEqual(decoded[i] < 0, x[i] < 0, "d \(d) coordinate \(i)") }
        }
    }

    /// QSGD with s levels: τ·Q(x) is unbiased (E[τQ] = x, τ = 1 + min(d/s², √d/s)) and Q = Q_s/τ
    /// contracts, E‖Q(x) − x‖² ≤ (1 − 1/τ)‖x‖². Over N = 20,000 draws each coordinate's mean of τQ
    /// is within 5 standard errors (its own sample sd) of x, and the mean error within 5 standard
    /// errors of the bound's side. Levels stay in −s…s.
    func testQSGD_ScaledBackIsUnbiased_AndItContracts() {
        for (d, s) in [(64, 4), (10, 1), (30, 16)] {
            let x = randomVector(d, seed: UInt64(d * 100 + s))
            let tau = Compressor.qsgdTau(levels: s, count: d)
            var generator = SplitMix64(seed: UInt64(s))
            let draws = 20_000
            var sum = [Double](repeating: 0, count: d)
            var sumSquares = [Double](repeating: 0, count: d)
            var errors: [Double] = []
            for _ in 0..<draws {
                let q = compress(.qsgd(levels: s), x, generator: &generator)
                guard case .levels(let levels, _, let values) = q.content else { return XCTFail("qsgd has levels") }
                XCTAssertEqual(levels, s)
                XCTAssertTrue(values.allSatisfy { abs(Int($0)) <= s })
                let decoded = q.decoded()
                for i in 0..<d {
                    let unscaled = Double(decoded[i]) * tau
                    sum[i] += unscaled
                    sumSquares[i] += unscaled * unscaled
                }
                errors.append(error(q, x))
            }
            for i in 0..<d {
                let mean = sum[i] / Double(draws)
                let variance = max(0, sumSquares[i] / Double(draws) - mean * mean)
                let standardError = (variance / Double(draws)).squareRoot()
                XCTAssertEqual(mean, Double(x[i]), accuracy: 5 * standardError + 1e-6, "d \(d) s \(s) coordinate \(i)")
            }
            let meanError = errors.reduce(0, +) / Double(draws)
            let sd = (errors.reduce(0) { $0 + ($1 - meanError) * ($1 - meanError) } / Double(draws - 1)).squareRoot()
            XCTAssertLessThanOrEqual(
                meanError, (1 - 1 / tau) * squaredNorm(x) + 5 * sd / Double(draws).squareRoot(), "d \(d) s \(s)")
        }
    }

    /// Every compressor's message decodes to the same values bit for bit, and its length is the
    /// counted size: 1 + 4d (identity), 5 + 8k (top-k, random-k), 5 + ⌈d/8⌉ (sign),
    /// 6 + ⌈d·⌈log₂(2s + 1)⌉/8⌉ (QSGD).
    func testEncoding_RoundTripsBitForBit_AndHasTheCountedSize() throws {
        let d = 103
        let x = randomVector(d, seed: 77)
        var generator = SplitMix64(seed: 3)
        let expectedSizes: [(Compressor, Int)] = [
            (.identity, 1 + 4 * d), (.topK(ratio: 0.1), 5 + 8 * 11), (.randomK(ratio: 0.05), 5 + 8 * 6),
            (.sign, 5 + 13), (.qsgd(levels: 4), 6 + (d * 4 + 7) / 8), (.qsgd(levels: 1), 6 + (d * 2 + 7) / 8),
            (.qsgd(levels: 127), 6 + d),
        ]
        for (compressor, size) in expectedSizes {
            let q = compress(compressor, x, generator: &generator)
            let bytes = q.encoded()
            XCTAssertEqual(bytes.count, size, "\(compressor)")
            XCTAssertEqual(q.encodedByteCount, size, "\(compressor)")
            let decoded = try CompressedVector(decoding: bytes, count: d)
            XCTAssertEqual(decoded, q, "\(compressor)")
            XCTAssertEqual(decoded.decoded().map(\.bitPattern), q.decoded().map(\.bitPattern), "\(compressor)")
        }
    }

    /// What a peer can get wrong in a message is refused with the reason.
    func testMalformedMessages_AreRefusedWithTheReason() {
        func reason(_ bytes: [UInt8], count: Int = 4) -> String {
            do {
                _ = try CompressedVector(decoding: bytes, count: count)
                return "accepted"
            } catch { return error.message }
        }
        func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        XCTAssertTrue(reason([]).contains("tag"))
        XCTAssertTrue(reason([9]).contains("tag 9"))
        XCTAssertTrue(reason([0] + le(1)).contains("expected 17"))
        XCTAssertTrue(reason([1] + le(1) + le(4) + le(0)).contains("out of range"))
        XCTAssertTrue(reason([1] + le(2) + le(2) + le(1) + le(0) + le(0)).contains("out of order"))
        XCTAssertTrue(reason([1] + le(5) + [UInt8](repeating: 0, count: 40)).contains("k = 5"))
        XCTAssertTrue(reason([1] + le(1) + le(2) + le(Float.nan.bitPattern)).contains("nan"))
        XCTAssertTrue(reason([2] + le(Float.infinity.bitPattern) + [0]).contains("scale is inf"))
        XCTAssertTrue(reason([2] + le(0) + [0, 0]).contains("expected 6"))
        // s = 2: 3-bit codes 0…4; 7 is out of range.
        XCTAssertTrue(reason([3, 2] + le(0) + [0b0000_0111, 0]).contains("outside"))
        XCTAssertTrue(reason([3, 0] + le(0) + [0]).contains("level count"))
        XCTAssertEqual(reason([1] + le(1) + le(2) + le(Float(0.5).bitPattern)), "accepted")
    }

    func testParsing_AcceptsTheFiveForms_AndNamesWhatIsWrong() {
        XCTAssertEqual(try Compressor(parsing: "top-k:0.01"), .topK(ratio: 0.01))
        XCTAssertEqual(try Compressor(parsing: "random-k:1"), .randomK(ratio: 1))
        XCTAssertEqual(try Compressor(parsing: "sign"), .sign)
        XCTAssertEqual(try Compressor(parsing: "qsgd:16"), .qsgd(levels: 16))
        XCTAssertEqual(try Compressor(parsing: "identity"), .identity)
        for (text, fragment) in [
            ("top-k", "ratio in (0, 1]"), ("top-k:0", "ratio"), ("random-k:1.5", "ratio"), ("qsgd:0", "1 to 127"),
            ("qsgd:200", "1 to 127"), ("sign:2", "unknown compressor"), ("zip", "unknown compressor"),
        ] {
            XCTAssertThrowsError(try Compressor(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(text): \(error)")
            }
        }
        for compressor in [Compressor.topK(ratio: 0.25), .randomK(ratio: 0.5), .sign, .qsgd(levels: 3), .identity] {
            XCTAssertEqual(try Compressor(parsing: compressor.description), compressor)
        }
    }
}
