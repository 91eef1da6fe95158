import CKernels

/// Loops over whole models every round (x̄'s and Ξ²'s mixed-precision sums, publishing a model):
/// in C (`CKernels`) so that they run with AVX2 where the CPU has it, with the results of the
/// portable loop on every CPU.
public enum VectorKernels {
    /// target[j] = source[j] for j < count, in one pass that also checks the values: whether all
    /// are finite (none NaN or ±Inf). The buffers must not overlap.
    @inline(__always)
    public static func copyCheckingFinite(
        _ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, _ count: Int, portable: Bool = false
    ) -> Bool {
        (portable
            ? dsgd_copy_checking_finite_portable(source, target, count)
            : dsgd_copy_checking_finite(source, target, count)) != 0
    }

    /// total[j] += weight·Float64(x[j]) (a multiply and an add, each rounded). With `next`, as
    /// many values from there are hinted into cache meanwhile: the next model's block, which
    /// then arrives while this one is summed (those reads were x̄'s stalls, `perf`).
    @inline(__always)
    public static func accumulate(
        _ x: UnsafePointer<Float>, weight: Double, into total: UnsafeMutablePointer<Double>, _ count: Int,
        prefetching next: UnsafePointer<Float>? = nil, portable: Bool = false
    ) {
        if portable {
            dsgd_accumulate_portable(x, weight, total, count, next)
        } else {
            dsgd_accumulate(x, weight, total, count, next)
        }
    }

    /// Σⱼ (Float64(xⱼ − yⱼ))²: the difference rounded to Float32, squared and summed in Float64,
    /// in 32 partial sums (lane k takes j ≡ k mod 32 over the whole groups of 32) added in
    /// lane order, then the remaining values one by one.
    @inline(__always)
    public static func squaredDistance(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int, portable: Bool = false
    ) -> Double {
        portable ? dsgd_squared_distance_portable(x, y, count) : dsgd_squared_distance(x, y, count)
    }

    /// mean[j] = Float32(total[j] / divisor): a correctly rounded Float64 division, then one
    /// rounding to Float32 (a divisor of 1 only rounds).
    @inline(__always)
    public static func storeQuotient(
        _ total: UnsafePointer<Double>, dividedBy divisor: Double, into mean: UnsafeMutablePointer<Float>, _ count: Int,
        portable: Bool = false
    ) {
        if portable {
            dsgd_store_quotient_portable(total, divisor, mean, count)
        } else {
            dsgd_store_quotient(total, divisor, mean, count)
        }
    }
}
