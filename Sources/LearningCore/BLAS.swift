import COpenBLAS

/// Thin, typed wrappers over CBLAS (row-major). All dense math in dsgd goes through these.
public enum BLAS {
    /// Time spent in `gemm`, accumulated while `gemmTimer` is set (by `dsgd bench`, on one
    /// thread); nil, the default, costs one load and branch per call.
    public final class GemmTimer: @unchecked Sendable {
        public private(set) var elapsed: Duration = .zero
        public private(set) var calls = 0
        public init() {}
        fileprivate func add(_ duration: Duration) {
            elapsed += duration
            calls += 1
        }
    }
    nonisolated(unsafe) public static var gemmTimer: GemmTimer?

    /// C ← alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.
    @inline(__always)
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if let timer = gemmTimer {
            let start = ContinuousClock.now
            cblas_sgemm(
                CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            timer.add(ContinuousClock.now - start)
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y ← alpha·op(A)·x + beta·y, row-major A of m×n.
    @inline(__always)
    public static func gemv(
        transposeA: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
            x, 1, beta, y, 1)
    }

    /// y ← alpha·op(A)·x + beta·y in Float64, row-major A of m×n.
    @inline(__always)
    public static func gemv(
        transposeA: Bool, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
        x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>
    ) {
        cblas_dgemv(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
            x, 1, beta, y, 1)
    }

    /// xᵀy in Float64.
    @inline(__always)
    public static func dot(count: Int, x: UnsafePointer<Double>, y: UnsafePointer<Double>) -> Double {
        cblas_ddot(Int32(count), x, 1, y, 1)
    }

    /// y ← alpha·x + y in Float64.
    @inline(__always)
    public static func axpy(count: Int, alpha: Double, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        cblas_daxpy(Int32(count), alpha, x, 1, y, 1)
    }

    /// A ← alpha·x·yᵀ + A, row-major A of m×n.
    @inline(__always)
    public static func ger(
        m: Int, n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
        a: UnsafeMutablePointer<Float>, lda: Int
    ) {
        cblas_sger(CblasRowMajor, Int32(m), Int32(n), alpha, x, 1, y, 1, a, Int32(lda))
    }

    /// y ← alpha·x + y.
    @inline(__always)
    public static func axpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
    }

    /// x ← alpha·x.
    @inline(__always)
    public static func scal(count: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
        cblas_sscal(Int32(count), alpha, x, 1)
    }

    /// xᵀy (accumulated in Float32 by OpenBLAS).
    @inline(__always)
    public static func dot(count: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(count), x, 1, y, 1)
    }

    /// xᵀy accumulated in Float64 (for metrics where cancellation matters).
    @inline(__always)
    public static func doubleDot(count: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Double {
        cblas_dsdot(Int32(count), x, 1, y, 1)
    }

    /// y ← x.
    @inline(__always)
    public static func copy(count: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_scopy(Int32(count), x, 1, y, 1)
    }

    /// Restrict OpenBLAS to one thread (each worker process is one core's worth of work).
    public static func useSingleThread() { openblas_set_num_threads(1) }

    /// The kernel family OpenBLAS chose (e.g. "Haswell").
    public static var coreName: String { String(cString: openblas_get_corename()) }
}

extension Array where Element == Float {
    /// self ← self + alpha·other, through BLAS.
    public mutating func addScaled(_ other: [Float], by alpha: Float) {
        precondition(count == other.count, "length mismatch \(count) vs \(other.count)")
        let n = count
        withUnsafeMutableBufferPointer { y in
            other.withUnsafeBufferPointer { x in BLAS.axpy(count: n, alpha: alpha, x: x.baseAddress!, y: y.baseAddress!)
            }
        }
    }

    /// self ← alpha·self, through BLAS.
    public mutating func scale(by alpha: Float) {
        let n = count
        withUnsafeMutableBufferPointer { BLAS.scal(count: n, alpha: alpha, x: $0.baseAddress!) }
    }

    /// Squared Euclidean norm accumulated in Float64.
    public var squaredNorm: Double {
        withUnsafeBufferPointer { BLAS.doubleDot(count: count, x: $0.baseAddress!, y: $0.baseAddress!) }
    }
}
