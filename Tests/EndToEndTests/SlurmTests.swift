import Foundation
import XCTest

/// `launch/slurm.sbatch` on a real Slurm: `launch/test-slurm.sh` starts a one-node cluster
/// (munged, slurmctld, slurmd) on this machine, submits the script with 4 workers, checks the run
/// folder and that its records equal `launch/local.sh`'s for the same seed, and stops the
/// daemons. Skipped, with the script's reason, without root or without slurm-wlm and munge (CI
/// installs them and runs as root).
final class SlurmTests: XCTestCase {
    func testSlurmBatchScript_OnAOneNodeCluster_EqualsTheLocalLaunch() throws {
        let scratch = try temporaryDirectory("slurm")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let script = try Child(
            URL(fileURLWithPath: "/bin/bash"), [packageRoot.appendingPathComponent("launch/test-slurm.sh").path],
            environment: ["DSGD_BIN": try dsgdBinary().path], output: scratch.appendingPathComponent("slurm.log"))
        let status = script.wait(seconds: 600)
        if status == 77 {
            throw XCTSkip(script.text.split(separator: "\n").last.map(String.init) ?? "skipped")
        }
        XCTAssertEqual(status, 0, script.text)
        XCTAssertTrue(script.text.contains("equals launch/local.sh's record for record"), script.text)
    }
}
