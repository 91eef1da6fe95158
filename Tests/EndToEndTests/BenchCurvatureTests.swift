import Foundation
import XCTest

/// `dsgd bench --only-curvature` at a tiny size: every row is printed, the parameters file is the
/// model's flat Float32 layout, and a PyHessian comparison on data it cannot read is refused with
/// the reason.
final class BenchCurvatureTests: XCTestCase {
    func testCurvatureBench_PrintsEveryRow_AndWritesTheModel() throws {
        let directory = try temporaryDirectory("bench-curvature")
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = directory.appendingPathComponent("model.f32")
        let child = try Child(
            try dsgdBinary(),
            [
                "bench", "--only-curvature", "--data", "synthetic", "--curvature-training-steps", "3",
                "--curvature-examples", "64", "--curvature-repeats", "1", "--save-curvature-model", model.path,
            ], output: directory.appendingPathComponent("out.txt"))
        XCTAssertEqual(child.wait(seconds: 300), 0, child.text)
        for row in [
            "one gradient", "one Hessian-vector product", "top eigenvalue (Lanczos, tol 1e-3)",
            "top 5 eigenvalues", "trace, 100 Rademacher probes", "spectral density, SLQ 100 steps",
            "Hessian-vector product / gradient",
        ] {
            XCTAssertTrue(child.text.contains(row), "missing '\(row)' in:\n\(child.text)")
        }
        XCTAssertFalse(child.text.contains("NOT converged"), child.text)
        // 784·256 + 256 + 256·256 + 256 + 256·10 + 10 parameters, four bytes each.
        let bytes = try Data(contentsOf: model).count
        XCTAssertEqual(bytes, 269_322 * 4)
    }

    func testPyHessianComparison_OnSyntheticData_IsRefusedWithTheReason() throws {
        let directory = try temporaryDirectory("bench-pyhessian")
        defer { try? FileManager.default.removeItem(at: directory) }
        let child = try Child(
            try dsgdBinary(),
            [
                "bench", "--only-curvature", "--data", "synthetic", "--curvature-training-steps", "1",
                "--curvature-examples", "16", "--curvature-repeats", "1", "--pyhessian", "/bin/false",
            ], output: directory.appendingPathComponent("out.txt"))
        XCTAssertNotEqual(child.wait(seconds: 300), 0, child.text)
        XCTAssertTrue(child.text.contains("needs IDX data"), child.text)
    }
}
