import CKernels

/// Loops over whole models every round (x̄'s and Ξ²'s mixed-precision sums, publishing a model):
/// in C (`CKernels`) so that they run with AVX-512 or AVX2 where the CPU has it, with the results
/// of the portable loop on every CPU.
public enum VectorKernels {
    /// The instruction sets the loops come in. Every variant gives the same bits.
    public enum Variant: Int32, CaseIterable, Sendable {
        case portable = 0
        case avx2 = 1
        case avx512 = 2
    }

    /// The widest variant this CPU runs: the one used unless a call asks for another (read once,
    /// not on every call of a loop over a model's blocks).
    public static let best: Variant = Variant(rawValue: dsgd_kernels_best()) ?? .portable

    /// Every variant this CPU runs (tests check each against the documented order).
    public static var available: [Variant] { Variant.allCases.filter { $0.rawValue <= best.rawValue } }

    /// Asks the CPU to bring the `count` bytes at `address` into its caches for reading soon. A
    /// hint only: it never faults and changes no value.
    @inline(__always)
    public static func prefetch(_ address: UnsafeRawPointer, count: Int) {
        dsgd_prefetch_range(address, count)
    }

    /// target[j] = source[j] for j < count, in one pass that also checks the values: whether all
    /// are finite (none NaN or ±Inf). The buffers must not overlap.
    @inline(__always)
    public static func copyCheckingFinite(
        _ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, _ count: Int,
        using variant: Variant? = nil
    ) -> Bool {
        dsgd_copy_checking_finite((variant ?? best).rawValue, source, target, count) != 0
    }

    /// total[j] += weight·Float64(x[j]) (a multiply and an add, each rounded). With `next`, as
    /// many values from there are hinted into cache meanwhile: the next model's block, which
    /// then arrives while this one is summed (those reads were x̄'s stalls, `perf`).
    @inline(__always)
    public static func accumulate(
        _ x: UnsafePointer<Float>, weight: Double, into total: UnsafeMutablePointer<Double>, _ count: Int,
        prefetching next: UnsafePointer<Float>? = nil, using variant: Variant? = nil
    ) {
        dsgd_accumulate((variant ?? best).rawValue, x, weight, total, count, next)
    }

    /// Σⱼ (Float64(xⱼ − yⱼ))²: the difference rounded to Float32, squared and summed in Float64,
    /// in 32 partial sums (lane k takes j ≡ k mod 32 over the whole groups of 32) added in
    /// lane order, then the remaining values one by one.
    @inline(__always)
    public static func squaredDistance(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int, using variant: Variant? = nil
    ) -> Double {
        dsgd_squared_distance((variant ?? best).rawValue, x, y, count)
    }

    /// y[j] = y[j] + (a·x[j]), the product rounded to Float32 before the sum: the bits of scaling
    /// x by a (`BLAS.scal`) and then adding it to y (`BLAS.axpy` with weight 1), in one pass over
    /// x and y instead of two. For a ≠ 0 (BLAS's scaling by 0 writes zeros, NaN or not); the
    /// buffers must not overlap.
    public static func addRoundedProducts(
        _ a: Float, _ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, _ count: Int
    ) {
        precondition(a != 0, "scaling by 0 is BLAS's zero fill, not a product")
        let width = 16
        let whole = count / width * width
        let scale = SIMD16<Float>(repeating: a)
        var j = 0
        while j < whole {
            let product = scale * UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self)
            let sum = UnsafeRawPointer(y + j).loadUnaligned(as: SIMD16<Float>.self) + product
            UnsafeMutableRawPointer(y + j).storeBytes(of: sum, as: SIMD16<Float>.self)
            j += width
        }
        while j < count {
            let product = a * x[j]
            y[j] = y[j] + product
            j += 1
        }
    }

    /// mean[j] = Float32(total[j] / divisor): a correctly rounded Float64 division, then one
    /// rounding to Float32 (a divisor of 1 only rounds).
    @inline(__always)
    public static func storeQuotient(
        _ total: UnsafePointer<Double>, dividedBy divisor: Double, into mean: UnsafeMutablePointer<Float>, _ count: Int,
        using variant: Variant? = nil
    ) {
        dsgd_store_quotient((variant ?? best).rawValue, total, divisor, mean, count)
    }
}
