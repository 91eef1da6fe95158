import LearningCore

/// Relative distance between two vectors, ‖a − b‖ / max(‖b‖, floor), accumulated in Float64.
///
/// Why relative-to-norm rather than elementwise: gossip and dense references sum the same terms in
/// different orders (saxpy chains versus one GEMM), so individual near-zero entries can differ by
/// many ulps relative to themselves while the vector as a whole agrees to Float32 rounding
/// (≈ 6e-8 per operation, growing with the number of rounds). A norm-wise bound states what matters:
/// the two computations describe the same model.
public func relativeDistance(_ a: [Float], _ b: [Float], floor: Double = 1e-12) -> Double {
    precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
    var difference = 0.0
    var reference = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        difference += d * d
        reference += Double(b[i]) * Double(b[i])
    }
    return difference.squareRoot() / max(reference.squareRoot(), floor)
}

/// |a − b| ≤ absolute + relative·max(|a|, |b|).
public func isClose(_ a: Double, _ b: Double, relative: Double, absolute: Double = 0) -> Bool {
    abs(a - b) <= absolute + relative * max(abs(a), abs(b))
}

/// Calls `body` for every element, labelling failures with the element (swift-collections style).
public func withEvery<S: Sequence>(_ label: String, in items: S, _ body: (S.Element) throws -> Void) rethrows {
    for item in items { try body(item) }
}

/// Gives every batch-norm running statistic in `parameters` a seeded, non-trivial value (mean
/// N(0, 0.3²), variance uniform in [0.5, 1.5)), so inference-mode tests do not run at the
/// identity statistics of a fresh model.
public func randomizeRunningStatistics(
    _ parameters: inout [Float], layout: ParameterLayout, generator: inout SplitMix64
) {
    for slice in layout.slices where slice.role == .state {
        for i in slice.range {
            parameters[i] = Float(
                slice.name.hasSuffix("running_var")
                    ? 0.5 + generator.nextUnitDouble() : generator.nextStandardNormal() * 0.3)
        }
    }
}
