import Foundation
import XCTest

/// CurveZMQ: an authorised cluster runs; a peer without an authorised key is refused and logged.
final class SecurityTests: XCTestCase {
    func testCurve_AuthorisedClusterRuns_IntruderIsRefusedAndLogged() throws {
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("curve")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let keys = scratch.appendingPathComponent("keys")
        let other = scratch.appendingPathComponent("other")
        for folder in [keys, other] {
            let generate = try Child(
                binary, ["keys", "generate", folder.path], output: scratch.appendingPathComponent("gen.log"))
            XCTAssertEqual(generate.wait(seconds: 30), 0, generate.text)
        }
        // The intruder knows the server's public key but holds an unauthorised client key.
        try FileManager.default.removeItem(at: other.appendingPathComponent("server.pub"))
        try FileManager.default.copyItem(
            at: keys.appendingPathComponent("server.pub"), to: other.appendingPathComponent("server.pub"))
        let secretMode =
            try FileManager.default.attributesOfItem(atPath: keys.appendingPathComponent("client.key").path)[
                .posixPermissions] as? Int
        XCTAssertEqual(secretMode, 0o600)

        let run = scratch.appendingPathComponent("run")
        let endpointFile = scratch.appendingPathComponent("endpoint")
        let coordinator = try Child(
            binary,
            [
                "coordinator", "--workers", "2", "--rounds", "30", "--model", "784-16-10", "--data", "synthetic",
                "--sharpness-every", "0",
                "--run-dir", run.path, "--endpoint-file", endpointFile.path, "--curve-keys", keys.path,
                "--peer-timeout", "30",
            ], output: scratch.appendingPathComponent("coordinator.log"))
        let endpoint = waitForEndpoint(endpointFile)
        let intruder = try Child(
            binary, ["worker", "--coordinator", endpoint, "--curve-keys", other.path, "--peer-timeout", "3"],
            output: scratch.appendingPathComponent("intruder.log"))
        usleep(500_000)
        let workers = try (0..<2).map {
            try Child(
                binary, ["worker", "--coordinator", endpoint, "--curve-keys", keys.path],
                output: scratch.appendingPathComponent("w\($0).log"))
        }
        for worker in workers { XCTAssertEqual(worker.wait(seconds: 60), 0, worker.text) }
        XCTAssertEqual(coordinator.wait(seconds: 60), 0, coordinator.text)
        XCTAssertNotEqual(intruder.wait(seconds: 30), 0, "the intruder never gets in")
        XCTAssertTrue(coordinator.text.contains("security: refused a CURVE connection"), coordinator.text)
        let otherClient = try String(contentsOf: other.appendingPathComponent("client.pub"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(coordinator.text.contains(otherClient), "the refusal names the key")
        XCTAssertEqual(try jsonLines(run.appendingPathComponent("rounds.jsonl")).count, 30)

        // A malformed key folder is a clear error.
        try "short\n".write(to: other.appendingPathComponent("client.key"), atomically: true, encoding: .utf8)
        chmod(other.appendingPathComponent("client.key").path, 0o600)
        let bad = try Child(
            binary, ["worker", "--coordinator", endpoint, "--curve-keys", other.path],
            output: scratch.appendingPathComponent("bad.log"))
        XCTAssertNotEqual(bad.wait(seconds: 30), 0)
        XCTAssertTrue(bad.text.contains("client.key:1: not a 40-character Z85 CURVE key"), bad.text)
    }
}
