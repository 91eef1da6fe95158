import Diagnostics
import LearningCore
import XCTest
import _TestSupport

/// Ξ² against a plain Float64 oracle, per slice and in total, with slices that straddle the
/// block length. Tolerance 1e-8 relative. Both sides sum in Float64 and xᵢ − x̄ is exact in
/// Float32 here (the two are within a factor 2); but x̄ is rounded once to Float32 (its
/// first-order effect cancels since Σᵢ(xᵢ − x̄) = 0; the second order adds n·Σₖδₖ², ≈ 1e-9
/// relative here), and the sums run in another order (32 partial sums). A wrong centre or a
/// missing slice is off by O(1).
final class ConsensusDistanceTests: XCTestCase {
    /// `count` models of standard normal values (seed 2) over slices "a", "b", … of these sizes.
    static func standardNormalModels(_ count: Int, sliceSizes: [Int]) -> (ParameterLayout, [[Float]]) {
        var layout = ParameterLayout()
        for (index, size) in sliceSizes.enumerated() {
            layout.append(String(UnicodeScalar(UInt8(97 + index))), shape: [size])
        }
        var generator = SplitMix64(seed: 2)
        let models: [[Float]] = (0..<count).map { _ in
            (0..<layout.count).map { _ in Float(generator.nextStandardNormal()) }
        }
        return (layout, models)
    }

    func testMatchesDirectComputation_PerSliceAndTotal() {
        var layout = ParameterLayout()
        layout.append("a", shape: [3])
        layout.append("b", shape: [5_000])
        layout.append("c", shape: [97, 50])
        var generator = SplitMix64(seed: 1)
        let models: [[Float]] = (0..<5).map { worker in
            (0..<layout.count).map { _ in Float(generator.nextStandardNormal() * 0.01 + Double(worker) * 1e-3 + 3) }
        }
        let result = withExtendedLifetime(models) {
            ConsensusDistance(models: models.map { $0.withUnsafeBufferPointer { $0 } }, layout: layout)
        }
        let direct = directConsensusDistanceSquared(models)
        XCTAssertEqual(result.distanceSquared, direct, accuracy: 1e-8 * direct)
        for (index, slice) in layout.slices.enumerated() {
            let part = directConsensusDistanceSquared(models.map { Array($0[slice.range]) })
            XCTAssertEqual(result.perSlice[index].name, slice.name)
            XCTAssertEqual(result.perSlice[index].distanceSquared, part, accuracy: 1e-8 * part)
        }
        for k in [0, 4_000, layout.count - 1] {
            let mean = models.reduce(0.0) { $0 + Double($1[k]) } / 5
            // x̄ is rounded once to Float32: half an ulp at 3 is 1.2e-7.
            XCTAssertEqual(Double(result.average[k]), mean, accuracy: 2.4e-7)
        }
    }

    /// ‖x̄‖² and ‖x̄ − x₀‖² from the same pass, against Float64 sums of the returned x̄ (so x̄'s own
    /// rounding is not in the comparison): per slice and in total, with slices straddling the
    /// block length and a state slice, which counts in ‖x̄‖ but not in the distance (0 there).
    /// Both sides square Float32 differences (each exact in Float64) and sum in Float64, in
    /// another order: 1e-12 relative covers 270,000 terms' rounding (≈ 1e-16 each, 2.7e-11 at
    /// worst in a row, far less with 32 partial sums); a missing block or slice is off by 1e-4
    /// or more. The federated form (about a given x̄) measures the same about it.
    func testNormAndDistanceFromReference_MatchFloat64SumsOfTheReturnedAverage() {
        var layout = ParameterLayout()
        layout.append("a", shape: [3])
        layout.append("b", shape: [5_000])
        layout.append("running", shape: [700], role: .state)
        layout.append("c", shape: [97, 50])
        var generator = SplitMix64(seed: 4)
        let models: [[Float]] = (0..<3).map { _ in
            (0..<layout.count).map { _ in Float(generator.nextStandardNormal() * 0.1 + 1) }
        }
        let reference: [Float] = (0..<layout.count).map { _ in Float(generator.nextStandardNormal()) }
        var storage: [Float] = []
        let result = withExtendedLifetime(models) {
            ConsensusDistance(
                models: models.map { $0.withUnsafeBufferPointer { $0 } }, layout: layout, reusing: &storage,
                reference: reference)
        }
        let average = result.average
        let norm = average.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertEqual(result.averageSquaredNorm, norm, accuracy: 1e-12 * norm)
        var total = 0.0
        for (index, slice) in layout.slices.enumerated() {
            let part =
                slice.role == .state
                ? 0
                : slice.range.reduce(0.0) { sum, k in
                    let difference = Double(average[k] - reference[k])
                    return sum + difference * difference
                }
            total += part
            XCTAssertEqual(result.perSliceDistanceFromReference[index].name, slice.name)
            XCTAssertEqual(result.perSliceDistanceFromReference[index].distanceSquared, part, accuracy: 1e-12 * part)
        }
        XCTAssertGreaterThan(total, 1_000)
        XCTAssertEqual(result.distanceFromReferenceSquared ?? -1, total, accuracy: 1e-12 * total)
        let about = withExtendedLifetime(models) {
            ConsensusDistance(
                models: models.map { $0.withUnsafeBufferPointer { $0 } }, layout: layout, about: average,
                reference: reference)
        }
        XCTAssertEqual(about.averageSquaredNorm.bitPattern, result.averageSquaredNorm.bitPattern)
        XCTAssertEqual(about.distanceFromReferenceSquared?.bitPattern, result.distanceFromReferenceSquared?.bitPattern)
        let without = withExtendedLifetime(models) {
            ConsensusDistance(models: models.map { $0.withUnsafeBufferPointer { $0 } }, layout: layout)
        }
        XCTAssertNil(without.distanceFromReferenceSquared)
        XCTAssertTrue(without.perSliceDistanceFromReference.isEmpty)
        XCTAssertEqual(without.averageSquaredNorm.bitPattern, result.averageSquaredNorm.bitPattern)
    }

    /// x̄ written into reused storage (last round's x̄, full of other values) has the same bits as
    /// into fresh storage, and is written in place (no copy); storage of another length is not used.
    func testReusedStorage_SameBitsAndWrittenInPlace() {
        let (layout, models) = Self.standardNormalModels(4, sliceSizes: [3, 9_000])
        let buffers = models.map { $0.withUnsafeBufferPointer { $0 } }
        let fresh = withExtendedLifetime(models) { ConsensusDistance(models: buffers, layout: layout) }
        var storage = [Float](repeating: .nan, count: layout.count)
        let address = storage.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let reused = withExtendedLifetime(models) {
            ConsensusDistance(models: buffers, layout: layout, reusing: &storage)
        }
        XCTAssertEqual(reused.average.map(\.bitPattern), fresh.average.map(\.bitPattern))
        XCTAssertEqual(reused.distanceSquared.bitPattern, fresh.distanceSquared.bitPattern)
        XCTAssertEqual(reused.average.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }, address)
        XCTAssertTrue(storage.isEmpty, "the buffer moved into x̄")
        var short = [Float](repeating: 1, count: 5)
        let wrongLength = withExtendedLifetime(models) {
            ConsensusDistance(models: buffers, layout: layout, reusing: &short)
        }
        XCTAssertEqual(short.count, 5, "not used")
        XCTAssertEqual(wrongLength.average.map(\.bitPattern), fresh.average.map(\.bitPattern))
    }

    /// The accumulation, in every variant this CPU runs (portable, AVX2, AVX-512), with and without
    /// fetching the next block, has the scalar loop's bits (total += weight·Float64(x), one value
    /// at a time) at every length around the unrollings (16, 8, 4), from unaligned addresses,
    /// with a weight that rounds (0.1).
    func testAccumulate_ScalarBitsAtEveryLengthOnEveryVariant() {
        var generator = SplitMix64(seed: 3)
        let x = (0..<81).map { _ in Float(generator.nextStandardNormal()) }
        let start = (0..<81).map { _ in generator.nextStandardNormal() * 1e3 }
        for count in 0...40 {
            var scalar = start
            for j in 0..<count { scalar[j + 1] += 0.1 * Double(x[j + 1]) }
            for variant in VectorKernels.available {
                for prefetching in [false, true] {
                    var total = start
                    x.withUnsafeBufferPointer { x in
                        total.withUnsafeMutableBufferPointer { total in
                            VectorKernels.accumulate(
                                x.baseAddress! + 1, weight: 0.1, into: total.baseAddress! + 1, count,
                                prefetching: prefetching ? x.baseAddress! + 40 : nil, using: variant)
                        }
                    }
                    XCTAssertEqual(
                        total.map(\.bitPattern), scalar.map(\.bitPattern),
                        "count \(count), variant \(variant), prefetching \(prefetching)")
                }
            }
        }
    }

    /// Σⱼ (Float64(xⱼ − yⱼ))², in every variant this CPU runs, against the documented order written
    /// out in Swift (32 lane sums, added in lane order from −0, then the rest one by one), to
    /// the bit, at every length around the groups of 32, from unaligned addresses. Values of
    /// mixed magnitudes, so another order would change the last bits.
    func testSquaredDistance_DocumentedOrderOnEveryVariant() {
        var generator = SplitMix64(seed: 4)
        let scale = { (k: Int) in Double(1 << (k % 20)) }
        let x = (0..<201).map { Float(generator.nextStandardNormal() * scale($0)) }
        let y = (0..<201).map { _ in Float(generator.nextStandardNormal()) }
        for count in 0...200 {
            var lanes = [Double](repeating: 0, count: 32)
            let whole = count / 32 * 32
            for j in 0..<whole {
                let d = Double(x[j + 1] - y[j + 1])
                lanes[j % 32] += d * d
            }
            var expected = -0.0
            for lane in lanes { expected += lane }
            for j in whole..<count {
                let d = Double(x[j + 1] - y[j + 1])
                expected += d * d
            }
            for variant in VectorKernels.available {
                let value = x.withUnsafeBufferPointer { x in
                    y.withUnsafeBufferPointer { y in
                        VectorKernels.squaredDistance(x.baseAddress! + 1, y.baseAddress! + 1, count, using: variant)
                    }
                }
                XCTAssertEqual(value.bitPattern, expected.bitPattern, "count \(count), variant \(variant)")
            }
        }
    }

    /// Float32(total / divisor), in every variant this CPU runs, to the bit at every length around
    /// the groups of four, for divisors that round (3, 7) and that do not (1, 8).
    func testStoreQuotient_ScalarBitsOnEveryVariant() {
        var generator = SplitMix64(seed: 5)
        let total = (0..<41).map { _ in generator.nextStandardNormal() * 1e4 }
        for divisor in [1.0, 3, 7, 8] {
            for count in 0...40 {
                let expected = (0..<count).map { Float(total[$0 + 1] / divisor).bitPattern }
                for variant in VectorKernels.available {
                    var mean = [Float](repeating: .nan, count: count + 1)
                    total.withUnsafeBufferPointer { total in
                        mean.withUnsafeMutableBufferPointer { mean in
                            VectorKernels.storeQuotient(
                                total.baseAddress! + 1, dividedBy: divisor, into: mean.baseAddress!, count,
                                using: variant)
                        }
                    }
                    XCTAssertEqual(
                        mean.prefix(count).map(\.bitPattern), expected,
                        "divisor \(divisor), count \(count), variant \(variant)")
                    XCTAssertTrue(mean[count].isNaN, "nothing written past the end")
                }
            }
        }
    }

    func testIdenticalModels_HaveZeroDistance() {
        let model: [Float] = (0..<10_000).map { Float($0) * 0.001 }
        let result = model.withUnsafeBufferPointer { ConsensusDistance(models: [$0, $0, $0]) }
        XCTAssertEqual(result.distanceSquared, 0)
        XCTAssertEqual(result.average, model)
    }

    func testTwoModels_ClosedForm() {
        // x₁ = 0, x₂ = 2·1: x̄ = 1, Ξ² = (1/2)(d + d) = d.
        let zero = [Float](repeating: 0, count: 9_000)
        let two = [Float](repeating: 2, count: 9_000)
        let result = withExtendedLifetime((zero, two)) {
            ConsensusDistance(models: [zero.withUnsafeBufferPointer { $0 }, two.withUnsafeBufferPointer { $0 }])
        }
        XCTAssertEqual(result.distanceSquared, 9_000)
    }

    /// About a given centre (a federated server's aggregate): the same bits as the weighted
    /// initializer when the centre is the weighted average it computes (`ModelAverage`, the
    /// server's), and the closed form about any other centre.
    func testAboutAGivenCentre_SameBitsAsTheWeightedAverage() {
        let (layout, models) = Self.standardNormalModels(3, sliceSizes: [5, 6_001])
        let weights = [0.2, 0.3, 0.5]
        let buffers = models.map { $0.withUnsafeBufferPointer { $0 } }
        withExtendedLifetime(models) {
            let weighted = ConsensusDistance(models: buffers, layout: layout, weights: weights)
            let center = ModelAverage.weighted(buffers, weights: weights)
            XCTAssertEqual(center, weighted.average)
            let about = ConsensusDistance(models: buffers, layout: layout, about: center)
            XCTAssertEqual(about.distanceSquared.bitPattern, weighted.distanceSquared.bitPattern)
            XCTAssertEqual(about.perSlice.map(\.distanceSquared), weighted.perSlice.map(\.distanceSquared))
            // About the zero vector: Ξ² = (1/n)Σᵢ‖xᵢ‖².
            let zero = ConsensusDistance(
                models: buffers, layout: layout, about: [Float](repeating: 0, count: layout.count))
            let direct = models.reduce(0.0) { $0 + $1.reduce(0.0) { $0 + Double($1) * Double($1) } } / 3
            XCTAssertEqual(zero.distanceSquared, direct, accuracy: 1e-9 * direct)
        }
    }

    /// Publishing's copy, in every variant this CPU runs: every value copied bit for bit (−0.0, the
    /// smallest subnormal and the largest finite value included), and a NaN, +Inf or −Inf at any
    /// position (inside a group of 32 or in the tail) reported as not finite.
    func testCopyCheckingFinite_CopiesEveryBit_FindsANonFiniteValueAnywhere() {
        for variant in VectorKernels.available {
            for count in [0, 1, 7, 31, 32, 33, 64, 100] {
                var source = (0..<count).map { Float($0) * -0.75 + 0.5 }
                let specials: [Float] = [
                    -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                ]
                for (k, special) in specials.enumerated() where k < count { source[count - 1 - k] = special }
                var target = [Float](repeating: 9, count: count)
                let finite = source.withUnsafeBufferPointer { s in
                    target.withUnsafeMutableBufferPointer { t in
                        VectorKernels.copyCheckingFinite(s.baseAddress!, to: t.baseAddress!, count, using: variant)
                    }
                }
                XCTAssertTrue(finite, "count \(count), variant \(variant)")
                XCTAssertEqual(
                    target.map(\.bitPattern), source.map(\.bitPattern), "count \(count), variant \(variant)")
                for position in 0..<count {
                    for bad in [Float.nan, .infinity, -.infinity, Float(bitPattern: 0x7F80_0001)] {
                        var damaged = source
                        damaged[position] = bad
                        let finite = damaged.withUnsafeBufferPointer { s in
                            target.withUnsafeMutableBufferPointer { t in
                                VectorKernels.copyCheckingFinite(
                                    s.baseAddress!, to: t.baseAddress!, count, using: variant)
                            }
                        }
                        XCTAssertFalse(finite, "\(bad) at \(position) of \(count), variant \(variant)")
                    }
                }
            }
        }
    }
}
