import COpenBLAS

/// The LAPACK eigen-solvers that Debian's OpenBLAS exports (declared in COpenBLAS/shim.h).
public enum LAPACK {
    /// Eigenvalues (ascending) and, with `vectors`, orthonormal eigenvectors of a symmetric n×n
    /// matrix: `vectors[j]` belongs to `values[j]`.
    public static func symmetricEigen(_ matrix: [Double], n: Int, vectors wantVectors: Bool = false) -> (
        values: [Double], vectors: [[Double]]
    ) {
        guard n > 0 else { return ([], []) }
        var a = matrix
        var values = [Double](repeating: 0, count: n)
        var size = Int32(n)
        var lda = Int32(n)
        var info: Int32 = 0
        var query = 0.0
        var lwork: Int32 = -1
        (wantVectors ? "V" : "N").withCString { jobz in
            "U".withCString { uplo in
                dsyev_(jobz, uplo, &size, &a, &lda, &values, &query, &lwork, &info, 1, 1)
                lwork = Int32(query)
                var work = [Double](repeating: 0, count: Int(lwork))
                dsyev_(jobz, uplo, &size, &a, &lda, &values, &work, &lwork, &info, 1, 1)
            }
        }
        precondition(info == 0, "dsyev failed with info \(info)")
        // Column-major output: eigenvector j is a[j·n ..< (j+1)·n].
        let vectors = wantVectors ? (0..<n).map { Array(a[($0 * n)..<(($0 + 1) * n)]) } : []
        return (values, vectors)
    }

    /// Eigenvalues (real, imaginary) of a general n×n matrix (row-major).
    public static func generalEigenvalues(_ matrix: [Double], n: Int) -> [(Double, Double)] {
        guard n > 0 else { return [] }
        // LAPACK is column-major, so it sees the transpose, which has the same eigenvalues.
        var a = matrix
        var real = [Double](repeating: 0, count: n)
        var imaginary = [Double](repeating: 0, count: n)
        var size = Int32(n)
        var lda = Int32(n)
        var one: Int32 = 1
        var left = [Double](repeating: 0, count: 1)
        var right = [Double](repeating: 0, count: 1)
        var info: Int32 = 0
        var query = 0.0
        var lwork: Int32 = -1
        "N".withCString { jobvl in
            "N".withCString { jobvr in
                dgeev_(
                    jobvl, jobvr, &size, &a, &lda, &real, &imaginary, &left, &one, &right, &one, &query, &lwork, &info,
                    1, 1)
                lwork = Int32(query)
                var work = [Double](repeating: 0, count: Int(lwork))
                dgeev_(
                    jobvl, jobvr, &size, &a, &lda, &real, &imaginary, &left, &one, &right, &one, &work, &lwork, &info,
                    1, 1)
            }
        }
        precondition(info == 0, "dgeev failed with info \(info)")
        return Array(zip(real, imaginary))
    }
}
